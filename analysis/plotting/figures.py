"""Shared figure plumbing: the CMS-like mplhep style and atomic PNG + PDF writing."""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")  # files only; no display on batch nodes
import matplotlib.pyplot as plt  # noqa: E402
import mplhep  # noqa: E402

from analysis.io import atomic_path

__all__ = ["new_figure", "save_figure"]


def new_figure(n_columns: int = 1, n_rows: int = 1, width: float = 7.0, height: float = 5.5):
    """A figure in mplhep's CMS style.

    Args:
        n_columns, n_rows: the grid of axes.
        width, height: size of one axis in inches.

    Returns:
        ``(figure, axes)`` with ``axes`` always a ``(n_rows, n_columns)`` array.
    """
    plt.style.use(mplhep.style.CMS)
    return plt.subplots(n_rows, n_columns, figsize=(width * n_columns, height * n_rows),
                        squeeze=False)


def save_figure(figure, path_base: str | os.PathLike[str]) -> list[str]:
    """Write ``figure`` as ``<path_base>.png`` and ``.pdf`` atomically and close it.

    Args:
        figure: a matplotlib figure (e.g. from :func:`new_figure`).
        path_base: output path without suffix; its directory must exist.

    Returns:
        The written paths, ``[<base>.png, <base>.pdf]``.
    """
    figure.tight_layout()
    paths = [f"{os.fspath(path_base)}.{suffix}" for suffix in ("png", "pdf")]
    for path in paths:
        # no creation date in the PDF: the same inputs give the same bytes
        metadata = {"CreationDate": None} if path.endswith(".pdf") else None
        with atomic_path(path) as tmp:
            figure.savefig(tmp, dpi=100, metadata=metadata)
    plt.close(figure)
    return paths
