"""The pyhf JSON workspace of the analysis from the score histograms.

One channel (the NN score), one sample per process. Modifiers:

- ``mu`` (normfactor) on the signal;
- ``lumi`` (normsys, the config's luminosity uncertainty) on every process;
- ``xsec_<process>`` (normsys, the config's cross-section uncertainty) on every background;
- ``jes``, ``jer``, ``btag``, ``isr``, ``fsr``: each a histosys of the shape (the up/down
  histograms scaled to the nominal yield) plus a normsys of the yield ratio, sharing one
  parameter, as CMS and ATLAS split a variation into shape and rate;
- ``staterror_<channel>`` (Barlow-Beeston lite) from the sum of squared weights.

Two optional treatments of the finite simulated samples, as in CMS and ATLAS fits:

- bin merging (``max_background_mc_stat``): adjacent score bins are merged, from the
  signal-like end down, until the total background's relative MC statistical uncertainty in
  every bin is below the threshold, so that no bin's prediction rests on one or two events;
- shape pruning (``prune_shape_chi2``): the histosys of a process and variation is dropped
  (its normsys kept) when the shape change, in units of the nominal template's MC statistical
  uncertainty, is below the threshold per bin: a shape that cannot be told from a fluctuation
  of the template is covered by staterror and would only add noise.

Bins with no expected events at all are dropped; an empty process bin gets a tiny floor
(``1e-6`` of its yield) so the Poisson terms and ratios stay defined. The observations are
pseudo-data: Poisson draws of the expected yields at ``mu = 1`` with a fixed seed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from analysis.config import FIT_SYSTEMATICS, AnalysisConfig
from analysis.errors import ConfigError, InputDataError

__all__ = ["CHANNEL", "POI", "build_workspace", "merge_bins", "poi_bounds", "validate_workspace"]

CHANNEL = "nn_score"
POI = "mu"
_FLOOR = 1e-6  # relative floor of an empty bin of a process
_NORM_FLOOR = 1e-3  # smallest normsys factor: a variation that removes all events


def _floored(values: np.ndarray, total: float) -> np.ndarray:
    return np.maximum(values, _FLOOR * max(total, 1e-12))


def merge_bins(values: np.ndarray, variances: np.ndarray, max_relative: float) -> np.ndarray:
    """Groups of adjacent bins whose summed relative MC statistical uncertainty is small.

    Bins are collected from the last (signal-like) one down; a group closes once
    ``sqrt(sum variances) / sum values <= max_relative``. Low bins left over at the end join
    the group above them; if no group ever closes, everything is one bin.

    Args:
        values: ``(n_bins,)`` expected events of the total background per bin.
        variances: ``(n_bins,)`` sums of squared weights of the same events.
        max_relative: largest allowed relative uncertainty of a merged bin (> 0).

    Returns:
        ``(n_bins,)`` int: the merged bin of each bin, ``0 .. n_merged - 1`` in bin order.

    Raises:
        ConfigError: ``max_relative <= 0`` (it comes from ``inference.max_background_mc_stat``).
    """
    if max_relative <= 0:
        raise ConfigError(f"inference.max_background_mc_stat = {max_relative}: must be > 0 "
                          f"(the largest relative MC-stat. uncertainty of a merged bin)")
    values = np.asarray(values, dtype=np.float64)
    variances = np.asarray(variances, dtype=np.float64)
    closed_at: list[int] = []  # lowest bin of each closed group, from the top down
    total = variance = 0.0
    for index in range(values.size - 1, -1, -1):
        total += values[index]
        variance += max(variances[index], 0.0)
        if total > 0 and math.sqrt(variance) <= max_relative * total:
            closed_at.append(index)
            total = variance = 0.0
    if not closed_at:
        return np.zeros(values.size, dtype=np.int64)
    starts = sorted(closed_at)
    starts[0] = 0  # leftover low bins join the lowest closed group
    return np.searchsorted(np.asarray(starts), np.arange(values.size), side="right") - 1


def poi_bounds(signal: np.ndarray, background: np.ndarray, upper: float = 50.0
               ) -> tuple[float, float]:
    """Range of ``mu`` for the fits: wide enough for an uncertainty of tens, and never so
    negative that a bin's expected events (background + mu signal) approach zero.

    Args:
        signal: ``(n_bins,)`` expected signal events at ``mu = 1``.
        background: ``(n_bins,)`` expected background events.
        upper: the upper bound of ``mu``.

    Returns:
        ``(lower, upper)`` with ``lower = -min(upper, max(5, 0.5 min_i background_i /
        signal_i))``: at least -5, the range before this function existed.
    """
    signal = np.asarray(signal, dtype=np.float64)
    background = np.asarray(background, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(signal > 0, background / signal, np.inf)
    return -float(min(upper, max(5.0, 0.5 * float(np.min(ratio))))), float(upper)


def _merged(histograms: Mapping[str, Any], groups: np.ndarray | None) -> dict[str, Any]:
    if groups is None:
        return dict(histograms["processes"])
    n_merged = int(groups.max()) + 1
    return {process: {variation: {key: np.bincount(groups, weights=np.asarray(column, float),
                                                   minlength=n_merged)
                                  for key, column in hist.items()}
                      for variation, hist in variations.items()}
            for process, variations in histograms["processes"].items()}


def build_workspace(histograms: Mapping[str, Any], config: AnalysisConfig, *,
                    pseudo_data_seed: int, poi_range: Sequence[float] | None = None,
                    systematics: Sequence[str] = FIT_SYSTEMATICS,
                    max_background_mc_stat: float | None = None,
                    prune_shape_chi2: float | None = None,
                    details: dict[str, Any] | None = None) -> dict[str, Any]:
    """The pyhf workspace specification (a JSON-ready dict).

    Args:
        histograms: :func:`~analysis.inference.histograms.histogram_dict` output (expected
            events per bin at the config's luminosity).
        config: process roles and cross-section and luminosity uncertainties.
        pseudo_data_seed: seed of the Poisson pseudo-data (the workspace's observations).
        poi_range: allowed range of ``mu``; None: :func:`poi_bounds` of the merged bins, up
            to ``config.inference.poi_max``.
        systematics: the up/down variations to include (histosys + normsys each).
        max_background_mc_stat: merge bins (:func:`merge_bins`) to this relative MC
            statistical uncertainty of the total background; None: keep the binning.
        prune_shape_chi2: drop a histosys whose ``sum((shape - nominal)^2 / variance) / n_bins``
            is below this for both directions; None: keep every histosys.
        details: if given, filled with ``edges`` (the score bin edges after merging),
            ``pruned_shapes`` (``[[process, variation], ...]``) and ``poi_bounds``.

    Returns:
        The specification: ``channels``, ``observations``, ``measurements``, ``version``.

    Raises:
        InputDataError: a process or variation missing from ``histograms``, or no events.
    """
    missing = [p for p in config.processes if p not in histograms["processes"]]
    if missing:
        raise InputDataError(f"build_workspace: no histograms for processes {missing}")
    background_names = [p for p, spec in config.processes.items() if spec.role != "signal"]
    groups = None
    if max_background_mc_stat is not None:
        groups = merge_bins(
            sum(np.asarray(histograms["processes"][p]["nominal"]["values"], float)
                for p in background_names),
            sum(np.asarray(histograms["processes"][p]["nominal"]["variances"], float)
                for p in background_names), max_background_mc_stat)
    processes = _merged(histograms, groups)
    edges = np.asarray(histograms.get("edges", []), dtype=np.float64)
    if groups is not None and edges.size:
        edges = np.append(edges[:-1][np.r_[True, np.diff(groups) > 0]], edges[-1])
    nominal = {p: np.asarray(processes[p]["nominal"]["values"], dtype=np.float64)
               for p in config.processes}
    total = sum(nominal.values())
    keep = total > 0
    if not keep.any():
        raise InputDataError("build_workspace: no expected events in any bin")
    lumi = config.luminosity.uncertainty
    samples = []
    pruned: list[list[str]] = []
    for process, spec in config.processes.items():
        hists = processes[process]
        values = nominal[process]
        yield_ = float(values.sum())
        if yield_ <= 0:
            continue  # no events of this process after the selection
        data = _floored(values[keep], yield_)
        modifiers: list[dict[str, Any]] = []
        if spec.role == "signal":
            modifiers.append({"name": POI, "type": "normfactor", "data": None})
        elif spec.cross_section.uncertainty > 0:
            u = spec.cross_section.uncertainty
            modifiers.append({"name": f"xsec_{process}", "type": "normsys",
                              "data": {"hi": 1.0 + u, "lo": max(1.0 - u, _NORM_FLOOR)}})
        if lumi > 0:
            modifiers.append({"name": "lumi", "type": "normsys",
                              "data": {"hi": 1.0 + lumi, "lo": 1.0 - lumi}})
        for syst in systematics:
            try:
                up, down = (np.asarray(hists[f"{syst}_{d}"]["values"], dtype=np.float64)
                            for d in ("up", "down"))
            except KeyError as err:
                raise InputDataError(f"build_workspace: process {process}: no variation "
                                     f"{err}") from err
            ratio_up, ratio_down = up.sum() / yield_, down.sum() / yield_
            modifiers.append({"name": syst, "type": "normsys",
                              "data": {"hi": max(float(ratio_up), _NORM_FLOOR),
                                       "lo": max(float(ratio_down), _NORM_FLOOR)}})
            shape_up = up[keep] / ratio_up if ratio_up > 0 else data
            shape_down = down[keep] / ratio_down if ratio_down > 0 else data
            if prune_shape_chi2 is not None and _shape_chi2(
                    data, (shape_up, shape_down),
                    np.asarray(hists["nominal"]["variances"], float)[keep]) < prune_shape_chi2:
                pruned.append([process, syst])
                continue
            modifiers.append({"name": syst, "type": "histosys",
                              "data": {"hi_data": _floored(shape_up, yield_).tolist(),
                                       "lo_data": _floored(shape_down, yield_).tolist()}})
        variances = np.asarray(hists["nominal"]["variances"], dtype=np.float64)[keep]
        modifiers.append({"name": f"staterror_{CHANNEL}", "type": "staterror",
                          "data": np.sqrt(np.maximum(variances, 0.0)).tolist()})
        samples.append({"name": process, "data": data.tolist(), "modifiers": modifiers})
    expected = sum(np.asarray(s["data"]) for s in samples)
    observed = np.random.default_rng(pseudo_data_seed).poisson(expected).astype(float)
    if poi_range is None:
        signal = sum((np.asarray(s["data"]) for s in samples
                      if config.processes[s["name"]].role == "signal"), np.zeros(expected.size))
        poi_range = poi_bounds(signal, expected - signal, upper=config.inference.poi_max)
    if details is not None:
        details.update({"edges": np.append(edges[:-1][keep], edges[-1]).tolist()
                        if edges.size else [],
                        "pruned_shapes": pruned, "poi_bounds": list(map(float, poi_range))})
    return {
        "channels": [{"name": CHANNEL, "samples": samples}],
        "observations": [{"name": CHANNEL, "data": observed.tolist()}],
        "measurements": [{"name": "measurement", "config": {
            "poi": POI, "parameters": [{"name": POI, "bounds": [list(map(float, poi_range))],
                                        "inits": [1.0]}]}}],
        "version": "1.0.0",
    }


def _shape_chi2(nominal: np.ndarray, shapes: Sequence[np.ndarray], variances: np.ndarray
                ) -> float:
    """Largest mean squared shape change over the directions, in units of the nominal
    template's MC statistical variance (bins without events are left out)."""
    filled = variances > 0
    if not filled.any():
        return 0.0
    return max(float(np.mean((shape[filled] - nominal[filled]) ** 2 / variances[filled]))
               for shape in shapes)


def validate_workspace(spec: Mapping[str, Any]) -> Any:
    """Validate ``spec`` against pyhf's schema and build its model.

    Args:
        spec: a pyhf workspace specification (``channels``, ``observations``,
            ``measurements``, ``version``).

    Returns:
        The ``pyhf.Workspace``.

    Raises:
        pyhf.exceptions.InvalidSpecification: the schema rejects it.
    """
    import pyhf

    workspace = pyhf.Workspace(dict(spec))  # validates against workspace.json
    workspace.model()  # and the model builds (modifier consistency)
    return workspace
