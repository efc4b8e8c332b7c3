"""Figures of the statistical analysis: the stacked score histogram, the scan, pulls, impacts."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import mplhep
import numpy as np
from matplotlib.ticker import NullLocator

from analysis.plotting.figures import cms_style, new_figure, save_figure

__all__ = ["plot_impacts", "plot_pulls", "plot_scan", "plot_score_stack", "plot_taylor"]


@cms_style
def plot_score_stack(histograms: Mapping[str, Any], labels: Mapping[str, str],
                     colors: Mapping[str, str], signal: str, title: str,
                     path_base: str | os.PathLike[str]) -> list[str]:
    """Stacked backgrounds and the signal (x 10, as a line) of the nominal score histograms.

    Args:
        histograms: :func:`~analysis.inference.score_histograms.histogram_dict` output.
        labels, colors: per process (the config's).
        signal: the signal process.
        title: e.g. model and strategy.
        path_base: output path without suffix.
    """
    figure, axes = new_figure()
    axis = axes[0, 0]
    edges = np.asarray(histograms["edges"])
    processes = histograms["processes"]
    backgrounds = [p for p in processes if p != signal]
    values = [np.asarray(processes[p]["nominal"]["values"]) for p in backgrounds]
    mplhep.histplot(values, edges, stack=True, histtype="fill", ax=axis,
                    label=[labels.get(p, p) for p in backgrounds],
                    color=[colors.get(p) for p in backgrounds])
    signal_values = 10 * np.asarray(processes[signal]["nominal"]["values"])
    mplhep.histplot(signal_values, edges, ax=axis, color=colors.get(signal, "red"),
                    label=f"{labels.get(signal, signal)} x 10", linewidth=2)
    axis.set_yscale("log")
    axis.set_xlabel("ttH score")
    axis.set_ylabel("expected events")
    axis.set_title(title, fontsize=14)
    axis.legend(fontsize=11, ncol=2)
    return save_figure(figure, path_base)


@cms_style
def plot_scan(mu: Sequence[float], curves: Mapping[str, Sequence[float]], title: str,
              path_base: str | os.PathLike[str]) -> list[str]:
    """``-2 Delta ln L`` against mu for each named curve, with the 68 % and 95 % lines.

    Args:
        mu: ``(n,)`` signal strengths; curves: name -> ``(n,)`` values; title: plot title;
        path_base: output path without suffix. Returns the PNG and PDF paths.
    """
    figure, axes = new_figure()
    axis = axes[0, 0]
    for name, values in curves.items():
        axis.plot(mu, values, label=name)
    for level in (1.0, 3.84):
        axis.axhline(level, color="grey", linestyle=":")
    axis.set_xlabel(r"$\mu$")
    axis.set_ylabel(r"$-2\,\Delta\ln L$")
    axis.set_title(title, fontsize=14)
    axis.legend()
    return save_figure(figure, path_base)


@cms_style
def plot_pulls(pulls: Mapping[str, tuple[float, float]], title: str,
               path_base: str | os.PathLike[str]) -> list[str]:
    """Post-fit ``theta-hat +- sigma`` of each nuisance against its prior 0 +- 1.

    Args:
        pulls: nuisance -> ``(theta-hat, post-fit sigma)`` in units of the prior width; title;
        path_base: output path without suffix. Returns the PNG and PDF paths.
    """
    names = list(pulls)
    figure, axes = new_figure(height=max(3.0, 0.45 * len(names) + 1.5))
    axis = axes[0, 0]
    y = np.arange(len(names))
    axis.axvspan(-1, 1, color="#dddddd")
    axis.errorbar([pulls[n][0] for n in names], y, xerr=[pulls[n][1] for n in names], fmt="o",
                  color="black")
    axis.set_yticks(y, names)
    axis.yaxis.set_minor_locator(NullLocator())  # one row per name: minor ticks mean nothing
    axis.set_xlim(-2.5, 2.5)
    axis.set_xlabel(r"$(\hat\theta - \theta_0) / \Delta\theta$")
    axis.set_title(title, fontsize=14)
    return save_figure(figure, path_base)


@cms_style
def plot_impacts(impacts: Mapping[str, tuple[float, float]], title: str,
                 path_base: str | os.PathLike[str]) -> list[str]:
    """Ranked impacts on mu-hat of each nuisance fixed at its post-fit +-1 sigma (largest on top).

    Args:
        impacts: nuisance -> ``(delta mu-hat up, down)`` in the ranking order; title;
        path_base: output path without suffix. Returns the PNG and PDF paths.
    """
    names = list(impacts)[::-1]
    figure, axes = new_figure(height=max(3.0, 0.45 * len(names) + 1.5))
    axis = axes[0, 0]
    y = np.arange(len(names))
    axis.barh(y, [impacts[n][0] for n in names], color="#e41a1c", alpha=0.7, label=r"$+1\sigma$")
    axis.barh(y, [impacts[n][1] for n in names], color="#377eb8", alpha=0.7, label=r"$-1\sigma$")
    axis.set_yticks(y, names)
    axis.yaxis.set_minor_locator(NullLocator())  # one row per name: minor ticks mean nothing
    axis.axvline(0, color="black", linewidth=0.8)
    axis.set_xlabel(r"$\Delta\hat\mu$")
    axis.set_title(title, fontsize=14)
    axis.legend()
    return save_figure(figure, path_base)


@cms_style
def plot_taylor(ranked: Sequence[tuple[str, float]], title: str, path_base: str | os.PathLike[str],
                n_show: int = 20) -> list[str]:
    """The ``n_show`` largest Taylor coefficients ``<|t_i|>``, ``<|t_ij|>`` as bars.

    Args:
        ranked: ``(label, value)`` pairs, largest first (units of the output per input unit);
        title; path_base: output path without suffix; n_show: how many. Returns the paths.
    """
    shown = list(ranked)[:n_show][::-1]
    figure, axes = new_figure(height=max(3.0, 0.4 * len(shown) + 1.5))
    axis = axes[0, 0]
    y = np.arange(len(shown))
    axis.barh(y, [v for _, v in shown])
    axis.set_yticks(y, [name for name, _ in shown], fontsize=11)
    axis.set_xlabel(r"$\langle|t|\rangle$ of the ttH output")
    axis.set_title(title, fontsize=14)
    return save_figure(figure, path_base)


@cms_style
def plot_prefit_postfit(yields: Mapping[str, Mapping[str, Any]], labels: Mapping[str, str],
                        colors: Mapping[str, str], title: str,
                        path_base: str | os.PathLike[str]) -> list[str]:
    """Stacked expected events per category before and after the fit, with the pseudo-data.

    Args:
        yields: :attr:`~analysis.inference.fits.FitResults.yields` (channel -> ``observed``,
            ``prefit`` and ``postfit`` events per sample and bin).
        labels, colors: per process (the config's).
        title: e.g. model and strategy.
        path_base: output path without suffix.

    Returns:
        The written paths (PNG and PDF): one column per channel, pre-fit above, post-fit below.
    """
    channels = list(yields)
    figure, axes = new_figure(n_columns=len(channels), n_rows=2, width=5.0, height=4.5)
    for column, channel in enumerate(channels):
        observed = np.asarray(yields[channel]["observed"], dtype=float)
        edges = np.arange(len(observed) + 1)
        for row, stage in enumerate(("prefit", "postfit")):
            axis = axes[row, column]
            samples = yields[channel][stage]
            # the smallest yields on top, so the control processes stay visible
            order = sorted(samples, key=lambda s: -float(np.sum(samples[s])))
            mplhep.histplot([np.asarray(samples[s]) for s in order], edges, stack=True,
                            histtype="fill", ax=axis, label=[labels.get(s, s) for s in order],
                            color=[colors.get(s) for s in order])
            axis.errorbar(edges[:-1] + 0.5, observed, yerr=np.sqrt(observed), fmt="o",
                          color="black", label="pseudo-data", markersize=4)
            axis.set_yscale("log")
            axis.set_title(f"{channel}, {stage.replace('fit', '-fit')}", fontsize=12)
            axis.set_xlabel(f"bin of the {channel} score")
            if column == 0:
                axis.set_ylabel("events")
    axes[0, 0].legend(fontsize=9, ncol=2)
    figure.suptitle(title, fontsize=14)
    return save_figure(figure, path_base)
