"""Fixtures of the figure tests: the figures that the plotting functions save, kept for
inspection after they are written and closed."""

from __future__ import annotations

import importlib
from collections.abc import Callable

import pytest
from matplotlib.figure import Figure

PLOTTING_MODULES = ("analysis.plotting.inference", "analysis.plotting.selection",
                    "analysis.plotting.sigma_mu", "analysis.plotting.training")


@pytest.fixture
def saved_figures(monkeypatch: pytest.MonkeyPatch) -> list[Figure]:
    """The figures passed to ``save_figure`` by the plotting modules during the test, in order
    (each is still written by the real ``save_figure``, and closed)."""
    from analysis.plotting import figures

    saved: list[Figure] = []
    real: Callable[..., list[str]] = figures.save_figure

    def keep(figure: Figure, path_base: object) -> list[str]:
        saved.append(figure)
        return real(figure, path_base)

    for name in PLOTTING_MODULES:
        monkeypatch.setattr(importlib.import_module(name), "save_figure", keep)
    return saved
