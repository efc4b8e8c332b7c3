"""How much a network's output depends on each systematic: the shape change of its histograms.

The penalty of arXiv:1907.11674 trains the network so that its output histogram changes little
under the systematic variations of its inputs; this is the number that shows whether it did,
whether or not sigma_mu improves. It is read from CreateHistograms' templates, summed over
processes, per channel and bin: of seed index 0's networks on every event
(:func:`systematic_dependence`), and of each (seed index, fold) network on its held-out fold, as
a mean ± standard error over seeds × folds (:func:`dependence_over_folds`), which is what a
difference between two networks must exceed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from analysis.errors import InputDataError
from analysis.report.comparison import mean_and_standard_error

__all__ = ["DIRECTIONS", "dependence_over_folds", "systematic_dependence"]

DIRECTIONS = ("up", "down")
"""The two sides of each systematic variation, in the order of the returned pairs."""


def _totals(channels: Mapping[str, Any], variation: str) -> np.ndarray:
    """``(n_channels x n_bins,)`` expected events of all processes under ``variation``."""
    try:
        return np.concatenate([
            np.sum([np.asarray(p[variation]["values"], dtype=np.float64)
                    for p in channel["processes"].values()], axis=0)
            for channel in channels.values()])
    except KeyError as err:
        raise InputDataError(f"systematic_dependence: no variation {err} in a channel's "
                             f"histograms") from err


def systematic_dependence(channels: Mapping[str, Any]) -> dict[str, tuple[float, float]]:
    """Relative shape change of the score histograms under each systematic's up and down.

    With ``N_0`` the nominal and ``N_v`` the varied expected events of all processes together
    per channel and bin, the varied histogram is first scaled to the nominal total (so a
    change of the overall rate, which no network can remove, does not count; migrations
    between channels and bins do)::

        D_v = sum_cb |N_v,cb * sum(N_0) / sum(N_v) - N_0,cb| / sum(N_0)

    0 means the output's shape does not depend on the systematic; 2 is the largest possible.

    Args:
        channels: CreateHistograms' ``histograms.json`` ``channels``: channel -> ``processes``
            -> variation (``nominal``, ``<syst>_up``, ``<syst>_down``) -> ``values``
            (``(n_bins,)`` expected events).

    Returns:
        systematic -> ``(D_up, D_down)`` (dimensionless), in the order the variations first
        appear; NaN where a total is not positive.

    Raises:
        InputDataError: no channel, or a channel without a variation that another has.

    Example:
        >>> ch = {"c": {"processes": {"tth": {
        ...     "nominal": {"values": [1.0, 3.0]}, "jes_up": {"values": [2.0, 6.0]},
        ...     "jes_down": {"values": [2.0, 2.0]}}}}}
        >>> systematic_dependence(ch)  # up: the rate only; down: a quarter of the events moved
        {'jes': (0.0, 0.5)}
    """
    if not channels:
        raise InputDataError("systematic_dependence: no channel")
    first = next(iter(next(iter(channels.values()))["processes"].values()))
    systematics = list(dict.fromkeys(v.rpartition("_")[0] for v in first
                                     if v.rpartition("_")[2] in DIRECTIONS))
    nominal = _totals(channels, "nominal")
    total = nominal.sum()
    out: dict[str, tuple[float, float]] = {}
    for name in systematics:
        sides = []
        for direction in DIRECTIONS:
            varied = _totals(channels, f"{name}_{direction}")
            if total <= 0 or varied.sum() <= 0:
                sides.append(float("nan"))
                continue
            sides.append(float(np.abs(varied * (total / varied.sum()) - nominal).sum() / total))
        out[name] = (sides[0], sides[1])
    return out


def dependence_over_folds(folds: Sequence[Mapping[str, Any]]
                          ) -> dict[str, list[list[float]]]:
    """:func:`systematic_dependence` of each (seed index, fold) network's histograms, as the
    mean ± standard error over them (clustered by fold: the seeds of a fold share its events,
    :func:`~analysis.report.comparison.mean_and_standard_error`).

    Args:
        folds: CreateHistograms' ``histograms.json`` ``folds``: each ``{"seed", "fold",
            "channels"}`` (a fold network on its held-out fold, at the full luminosity).

    Returns:
        systematic -> ``[[mean_up, error_up], [mean_down, error_down]]`` (dimensionless;
        JSON-ready); empty without folds.
    """
    per_fold = [(int(f["fold"]), systematic_dependence(f["channels"])) for f in folds]
    names = list(dict.fromkeys(n for _, d in per_fold for n in d))
    out: dict[str, list[list[float]]] = {}
    for name in names:
        sides = []
        for side in range(len(DIRECTIONS)):
            values = [d[name][side] if name in d else math.nan for _, d in per_fold]
            sides.append(list(mean_and_standard_error(values, [k for k, _ in per_fold])))
        out[name] = sides
    return out
