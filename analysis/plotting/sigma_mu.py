"""The report's comparison figure: sigma_mu per model x strategy against CE."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

from matplotlib.axes import Axes
from matplotlib.legend import Legend
from matplotlib.legend_handler import HandlerTuple
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from analysis.config import REFERENCE_STRATEGY
from analysis.plotting.figures import cms_style, new_figure, save_figure
from analysis.report.comparison import SigmaMuPoint, mean_and_standard_error

__all__ = ["LEGEND_WIDTH", "plot_sigma_mu_comparison"]

LEGEND_WIDTH = 2.2
"""Inches added to the figure's width for the legend, right of the panels."""


@cms_style
def plot_sigma_mu_comparison(points: Sequence[SigmaMuPoint], measures: Sequence[str],
                             title: str, path_base: str | os.PathLike[str]) -> list[str]:
    """sigma_mu per network, one panel per measure (stacked), CE of each group as the reference.

    Each network is a marker at the mean of its (seed index, fold) networks' sigma_mu with the
    standard error of that mean as its error bar; the CE network of its group is drawn as a
    dashed line with a band of its own standard error across the group, so a strategy
    that reduces sigma_mu sits below its group's line. One legend, right of the top panel and
    outside every panel, names the strategies and the reference.

    Args:
        points: the networks, in display order; consecutive networks of one ``group`` are drawn
            together.
        measures: the keys of ``SigmaMuPoint.values`` to draw, one panel each (e.g.
            ``"σ_μ total (incl. MC stat.)"``, ``"σ_μ without MC stat."``).
        title: the figure's title.
        path_base: output path without suffix.

    Returns:
        The written files, ``[<base>.png, <base>.pdf]``.
    """
    n_slots = len(points) + len({p.group for p in points})
    # one panel per measure, stacked: the page is narrower than a row of many networks; the
    # legend's column to the right of the panels adds LEGEND_WIDTH
    figure, axes = new_figure(1, len(measures),
                              width=max(7.0, 2.0 + 0.5 * n_slots) + LEGEND_WIDTH, height=4.5)
    groups = list(dict.fromkeys(p.group for p in points))
    colours = {}
    cycle = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown"]
    for point in points:
        colours.setdefault(point.strategy, cycle[len(colours) % len(cycle)])
    for axis, measure in zip(axes[:, 0], measures):
        positions, labels, x = [], [], 0
        shown: set[str] = set()
        for group in groups:
            members = [p for p in points if p.group == group]
            start = x
            for point in members:
                mean, error = mean_and_standard_error(point.values[measure], point.clusters)
                label = point.strategy if point.strategy not in shown else None
                shown.add(point.strategy)
                axis.errorbar([x], [mean], yerr=[0.0 if math.isnan(error) else error],
                              fmt="o" if point.strategy != REFERENCE_STRATEGY else "s", capsize=4,
                              color=colours[point.strategy], label=label)
                positions.append(x)
                labels.append(f"{group}: {point.strategy}")
                x += 1
            reference = next((p for p in members if p.strategy == REFERENCE_STRATEGY), None)
            if reference is not None:
                mean, error = mean_and_standard_error(reference.values[measure],
                                                      reference.clusters)
                if math.isfinite(mean):
                    axis.hlines(mean, start - 0.4, x - 0.6, colors="grey", linestyles="--")
                    if math.isfinite(error):
                        axis.fill_between([start - 0.4, x - 0.6], mean - error, mean + error,
                                          color="grey", alpha=0.2, linewidth=0)
            x += 1  # a gap between groups
        axis.set_xticks(positions)
        axis.set_xticklabels(labels, rotation=45, ha="right", fontsize=10)
        axis.set_xlim(-0.7, x - 0.3)
        axis.set_ylabel(measure, fontsize=13)
    _legend_outside(axes[0, 0])
    # two lines: one would be wider than a figure of few networks (it was clipped)
    figure.suptitle(f"{title}\n(mean ± standard error over seeds × folds, clustered by fold)",
                    fontsize=13)
    return save_figure(figure, path_base)


def _legend_outside(axis: Axes) -> Legend:
    """One legend for every panel, right of ``axis`` (the top one) and outside it, so that it
    covers no point; the layout (:func:`~analysis.plotting.figures.save_figure`) makes room
    for it. Its last entry is the CE reference: the dashed line and its band."""
    handles, labels = axis.get_legend_handles_labels()
    reference = (Patch(color="grey", alpha=0.2, linewidth=0),
                 Line2D([], [], color="grey", linestyle="--"))
    return axis.legend([*handles, reference], [*labels, "CE of the group ± s.e."],
                       handler_map={tuple: HandlerTuple(ndivide=1)}, fontsize=10,
                       loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)
