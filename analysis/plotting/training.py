"""Training curves: the loss of each training stage against the optimiser step."""

from __future__ import annotations

import os
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")  # files only; no display on batch nodes
import matplotlib.pyplot as plt  # noqa: E402
import mplhep  # noqa: E402

__all__ = ["plot_training_curves"]


def plot_training_curves(stages: Sequence[tuple[str, Sequence[float]]], title: str,
                         path_base: str | os.PathLike[str]) -> list[str]:
    """Plot the loss of consecutive training stages and write it as PNG and PDF.

    Args:
        stages: ``(name, losses)`` per stage in order, e.g. ``[("ce", [...]), ("inference",
            [...])]``; each stage gets its own axis (the losses have different units).
        title: plot title (model, strategy, fold).
        path_base: output path without suffix.

    Returns:
        The written files, ``[<base>.png, <base>.pdf]``.
    """
    plt.style.use(mplhep.style.CMS)
    figure, axes = plt.subplots(1, len(stages), figsize=(6 * len(stages), 5), squeeze=False)
    for axis, (name, losses) in zip(axes[0], stages):
        axis.plot(range(1, len(losses) + 1), losses)
        axis.set_xlabel("optimiser step")
        axis.set_ylabel(f"{name} loss")
    figure.suptitle(title, fontsize=14)
    figure.tight_layout()
    paths = [f"{os.fspath(path_base)}.{suffix}" for suffix in ("png", "pdf")]
    for path in paths:
        tmp = f"{path}.tmp{os.getpid()}.{path.rsplit('.', 1)[1]}"
        figure.savefig(tmp)
        os.replace(tmp, path)
    plt.close(figure)
    return paths
