"""Figures of the learned skim: the optimisation and the size / efficiency / sigma_mu trade-off."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from analysis.plotting.figures import cms_style, new_figure, save_figure
from analysis.selection.learn import LearnedSelection, TradeoffPoint

__all__ = ["plot_learning", "plot_tradeoff"]


@cms_style
def plot_learning(selection: LearnedSelection, path_base: str | os.PathLike[str]) -> list[str]:
    """The soft objective and the slope against the optimiser step.

    Args:
        selection: the learned cuts with their ``history`` and ``slopes``.
        path_base: output path without suffix.

    Returns:
        The written files, ``[<base>.png, <base>.pdf]``.
    """
    figure, axes = new_figure(2)
    steps = np.arange(1, len(selection.history) + 1)
    axes[0, 0].plot(steps, selection.history)
    axes[0, 0].set_xlabel("optimiser step")
    label = r"expected $\sigma_\mu$ (soft cuts)" if selection.objective == "sigma_mu" else (
        "Asimov significance (soft cuts)")
    axes[0, 0].set_ylabel(label)
    axes[0, 1].semilogy(steps, selection.slopes)
    axes[0, 1].set_xlabel("optimiser step")
    axes[0, 1].set_ylabel("slope per interquartile range")
    return save_figure(figure, path_base)


@cms_style
def plot_tradeoff(points: Sequence[TradeoffPoint], path_base: str | os.PathLike[str]) -> list[str]:
    """Data size kept against signal efficiency, and expected sigma_mu against data size kept.

    The learned cuts (``t = 1``) are marked with a star.

    Args:
        points: the trade-off scan of :func:`~analysis.selection.learn.selection_tradeoff`.
        path_base: output path without suffix.

    Returns:
        The written files, ``[<base>.png, <base>.pdf]``.
    """
    figure, axes = new_figure(2)
    size = np.array([p.data_fraction for p in points])
    efficiency = np.array([p.signal_efficiency for p in points])
    total = np.array([p.sigma_mu for p in points])
    stat = np.array([p.sigma_mu_stat for p in points])
    learned = int(np.argmin([abs(p.t - 1.0) for p in points]))
    axes[0, 0].plot(efficiency, size, "o-")
    axes[0, 0].plot(efficiency[learned], size[learned], "*", markersize=18, label="learned cuts")
    axes[0, 0].set_xlabel("signal efficiency")
    axes[0, 0].set_ylabel("fraction of skimmed events kept")
    axes[0, 0].legend()
    axes[0, 1].plot(size, total, "o-", label="with systematics")
    axes[0, 1].plot(size, stat, "s--", label="stat. only")
    axes[0, 1].plot(size[learned], total[learned], "*", markersize=18, label="learned cuts")
    axes[0, 1].set_xlabel("fraction of skimmed events kept")
    axes[0, 1].set_ylabel(r"expected $\sigma_\mu$")
    axes[0, 1].legend()
    return save_figure(figure, path_base)
