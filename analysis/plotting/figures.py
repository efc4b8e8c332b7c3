"""Shared figure plumbing: mplhep's CMS style, applied per drawing call, and atomic PNG + PDF writing.

Nothing here changes matplotlib's global state: figures are :class:`~matplotlib.figure.Figure`
objects that pyplot never sees (no backend is chosen or switched; savefig picks the writer for
PNG and PDF from the suffix), and the style lives only inside the functions that :func:`cms_style`
decorates, so a caller's rcParams are the same after a plot as before.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import matplotlib.style
import mplhep
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.layout_engine import TightLayoutEngine

from analysis.io import atomic_path

__all__ = ["cms_style", "new_figure", "save_figure"]

_P = ParamSpec("_P")
_R = TypeVar("_R")


def cms_style(draw: Callable[_P, _R]) -> Callable[_P, _R]:
    """Decorator: run ``draw`` (which makes, fills and saves a figure) in mplhep's CMS style.

    The style is set on entry and the caller's rcParams are restored on exit, also on error.
    matplotlib reads rcParams when artists are created and when a figure is saved, so the whole
    of the drawing, :func:`new_figure` to :func:`save_figure`, belongs inside ``draw``.
    """
    @functools.wraps(draw)
    def styled(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        with matplotlib.style.context(mplhep.style.CMS):
            return draw(*args, **kwargs)
    return styled


def new_figure(n_columns: int = 1, n_rows: int = 1, width: float = 7.0,
               height: float = 5.5) -> tuple[Figure, np.ndarray]:
    """A figure with a grid of axes, outside pyplot (call it inside a :func:`cms_style` function).

    Args:
        n_columns, n_rows: the grid of axes.
        width, height: size of one axis in inches.

    Returns:
        ``(figure, axes)`` with ``axes`` always a ``(n_rows, n_columns)`` array.
    """
    figure = Figure(figsize=(width * n_columns, height * n_rows))
    # its own Agg canvas: the layout pass and the PNG then use one renderer, whose text
    # metrics and mathtext are computed once (a bare Figure gets a new renderer for each)
    FigureCanvasAgg(figure)
    return figure, figure.subplots(n_rows, n_columns, squeeze=False)


def save_figure(figure: Figure, path_base: str | os.PathLike[str]) -> list[str]:
    """Write ``figure`` as ``<path_base>.png`` and ``.pdf`` atomically.

    Args:
        figure: a matplotlib figure (e.g. from :func:`new_figure`); pyplot holds no reference
            to it, so nothing needs closing.
        path_base: output path without suffix; its directory must exist.

    Returns:
        The written paths, ``[<base>.png, <base>.pdf]``.
    """
    # Figure.tight_layout would leave a placeholder layout engine on the figure, and savefig
    # draws a figure with any engine twice (once only to lay it out); the engine's own execute
    # lays it out once, with the same result (rect=None: tight_layout's single pass)
    TightLayoutEngine(rect=None).execute(figure)
    paths = [f"{os.fspath(path_base)}.{suffix}" for suffix in ("png", "pdf")]
    for path in paths:
        if path.endswith(".pdf"):  # no creation date: the same inputs give the same bytes
            options = {"metadata": {"CreationDate": None}}
        else:  # lossless at any level; 3 encodes in about 60 % of the default 6's time
            options = {"pil_kwargs": {"compress_level": 3}}
        with atomic_path(path) as tmp:
            figure.savefig(tmp, dpi=100, **options)
    return paths
