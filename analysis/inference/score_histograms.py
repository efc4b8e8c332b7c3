"""Histograms of the NN signal score per process and systematic variation, with ``hist``.

Every process of the config is histogrammed under every variation of the skim: ``nominal``,
the object shifts ``jes_up/down`` and ``jer_up/down`` (their own re-selected events) and the
weight variations ``btag/isr/fsr_up/down`` (nominal events, ``weight_<name>_up/down``). The
score is the network's ttH probability; its range [0, 1] is split into ``n_bins`` equal bins.
Weighted storage keeps the sum of squared weights, the MC statistical uncertainty of each bin.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import hist
import numpy as np

from analysis.config import FIT_SYSTEMATICS, SHIFT_SYSTEMATICS, WEIGHT_SYSTEMATICS
from analysis.errors import InputDataError
from analysis.folds import fold_of
from analysis.inference.mcstat import effective_event_count, replica_cross_terms
from analysis.inference.model import ModelSpec, btag_groups

__all__ = ["VARIATIONS", "category_effective_counts", "category_histograms", "category_scores",
           "fold_histograms",
           "fold_scores", "histogram_dict", "score_histograms", "seed_histograms",
           "templates_from_histograms"]

VARIATIONS: tuple[str, ...] = ("nominal", *(f"{s}_{d}" for s in FIT_SYSTEMATICS
                                            for d in ("up", "down")))
"""Variation axis of the histograms."""

_SCORE_TOP = np.nextafter(1.0, 0.0)  # a score of exactly 1 belongs to the last bin


def score_histograms(scores: Mapping[str, Mapping[str, Mapping[str, np.ndarray]]],
                     processes: Sequence[str], n_bins: int, score: str,
                     low: float = 0.0) -> hist.Hist:
    """Weighted histograms ``process x variation x score``.

    Args:
        scores: dataset -> shift (``nominal``, ``jes_up``, ...) -> columns ``label`` (process
            index into ``processes``), ``weight`` (expected events), ``weight_<syst>_up/down``
            and the ``score`` column (unitless, in [0, 1]).
        processes: process names in label order.
        n_bins: equal bins of the score in [low, 1].
        score: the column to histogram (a class's ``p_<class>``,
            :func:`~analysis.classes.score_column`).
        low: lower end of the score axis (below it: the first bin).

    Returns:
        A ``hist.Hist`` with axes ``process`` (StrCategory), ``variation`` (StrCategory,
        :data:`VARIATIONS`) and ``score`` (Regular), Weight storage (expected events).

    Raises:
        InputDataError: a missing shift or column.
    """
    result = hist.Hist(hist.axis.StrCategory(list(processes), name="process"),
                       hist.axis.StrCategory(list(VARIATIONS), name="variation"),
                       hist.axis.Regular(n_bins, low, 1.0, name="score", label="ttH score",
                                         flow=False),
                       storage=hist.storage.Weight())
    names = list(processes)
    for dataset, shifts in scores.items():
        for variation in VARIATIONS:
            syst, _, direction = variation.rpartition("_")
            shift = variation if syst in SHIFT_SYSTEMATICS else "nominal"
            weight = f"weight_{variation}" if syst in WEIGHT_SYSTEMATICS else "weight"
            try:
                columns = shifts[shift]
                labels = np.asarray(columns["label"], dtype=np.int64)
                values = np.clip(np.asarray(columns[score], dtype=np.float64), low, _SCORE_TOP)
                weights = np.asarray(columns[weight], dtype=np.float64)
            except KeyError as err:
                raise InputDataError(f"score_histograms: dataset {dataset}: no {err} for "
                                     f"variation {variation}") from err
            for k, process in enumerate(names):
                chosen = labels == k
                if chosen.any():
                    result.fill(process=process, variation=variation, score=values[chosen],
                                weight=weights[chosen])
                    if "event" in columns:  # detector replicas of one event are correlated
                        bins = result.axes["score"].index(values[chosen])
                        result.view()["variance"][k, VARIATIONS.index(variation)] += (
                            replica_cross_terms(bins, weights[chosen],
                                                np.asarray(columns["event"])[chosen], n_bins))
    return result


def fold_scores(scores: Mapping[str, Mapping[str, Mapping[str, np.ndarray]]], fold: int,
                n_folds: int, scale: bool = True) -> dict[str, dict[str, dict[str, np.ndarray]]]:
    """The events of one fold (``event % n_folds == fold``), weights scaled by ``n_folds``.

    Each fold is scored by its own network, so the folds give independent estimates of the
    result at the full luminosity; their spread measures how much of a difference between
    strategies is the finite simulated sample.

    Args:
        scores: as :func:`score_histograms`, with an ``event`` column.
        fold: the fold, ``0 <= fold < n_folds``.
        n_folds: number of folds.
        scale: multiply the weights by ``n_folds`` (the fold at the full luminosity).

    Returns:
        The same structure, restricted to the fold; with ``scale`` every ``weight*`` column
        times ``n_folds``.
    """
    factor = n_folds if scale else 1
    out: dict[str, dict[str, dict[str, np.ndarray]]] = {}
    for dataset, shifts in scores.items():
        out[dataset] = {}
        for shift, columns in shifts.items():
            keep = fold_of(columns["event"], n_folds) == fold
            out[dataset][shift] = {
                name: (np.asarray(values)[keep] * factor if name.startswith("weight")
                       else np.asarray(values)[keep]) for name, values in columns.items()}
    return out


def fold_histograms(scores: Mapping[str, Mapping[str, Mapping[str, np.ndarray]]],
                    processes: Sequence[str], n_bins: int, n_folds: int,
                    score: str, low: float = 0.0
                    ) -> tuple[hist.Hist, list[hist.Hist]]:
    """The full histograms and each fold's at the full luminosity, every event filled once.

    Each fold is filled once with its own events; the full histogram is their sum, and a fold
    stands for the full luminosity with its values times ``n_folds`` and its variances times
    ``n_folds**2`` (as :func:`fold_scores` scales the weights).

    Args:
        scores: as :func:`score_histograms`, with an ``event`` column (fold = ``event %
            n_folds``).
        processes: process names in label order.
        n_bins: equal bins of the score in [0, 1].
        n_folds: number of folds, >= 1.
        score: the column to histogram.
        low: lower end of the score axis.

    Returns:
        ``(full, [fold_0, ..., fold_{n_folds-1}])``, each as :func:`score_histograms` returns.
    """
    unscaled = [score_histograms(fold_scores(scores, fold, n_folds, scale=False), processes,
                                 n_bins, score, low) for fold in range(n_folds)]
    full = unscaled[0].copy()
    for other in unscaled[1:]:
        full += other
    folds = []
    for histogram in unscaled:
        view = histogram.view()  # structured (value, variance), written in place
        view["value"] *= n_folds
        view["variance"] *= n_folds**2
        folds.append(histogram)
    return full, folds


def histogram_dict(histograms: hist.Hist) -> dict[str, Any]:
    """JSON-ready form of :func:`score_histograms`' result.

    Args:
        histograms: ``process x variation x score`` with Weight storage.

    Returns:
        ``{"edges": [n_bins + 1 floats], "processes": {process: {variation: {"values":
        [n_bins expected events], "variances": [n_bins sums of squared weights]}}}}``.
    """
    edges = histograms.axes["score"].edges.tolist()
    out: dict[str, Any] = {"edges": edges, "processes": {}}
    for process in histograms.axes["process"]:
        out["processes"][process] = {}
        for variation in histograms.axes["variation"]:
            view = histograms[{"process": process, "variation": variation}]
            out["processes"][process][variation] = {"values": view.values().tolist(),
                                                    "variances": view.variances().tolist()}
    return out


def category_scores(scores: Mapping[str, Mapping[str, Mapping[str, np.ndarray]]],
                    spec: ModelSpec) -> dict[str, dict[str, dict[str, dict[str, np.ndarray]]]]:
    """The events of each channel of ``spec``: largest output's node, then b-tag group.

    Args:
        scores: dataset -> shift -> columns with ``p_<class>`` for every class of
            ``spec.classes`` (and ``n_btag``, medium b-tagged jets, with a b-tag split).
        spec: the channels (:class:`~analysis.inference.model.ModelSpec`).

    Returns:
        channel -> dataset -> shift -> the columns of its events.

    Raises:
        InputDataError: a missing ``p_<class>`` or ``n_btag`` column, naming the dataset.
    """
    out: dict[str, dict[str, dict[str, dict[str, np.ndarray]]]] = {
        c.name: {} for c in spec.categories}
    for dataset, shifts in scores.items():
        for c in spec.categories:
            out[c.name][dataset] = {}
        for shift, columns in shifts.items():
            try:
                p = np.stack([np.asarray(columns[f"p_{k}"]) for k in spec.classes], axis=1)
                group = (btag_groups(np.asarray(columns["n_btag"]), spec.btag_split)
                         if spec.btag_split else None)
            except KeyError as err:
                raise InputDataError(f"category_scores: dataset {dataset}, shift {shift}: no "
                                     f"column {err} (needed by inference.categories)") from err
            largest = np.argmax(p, axis=1)
            for c in spec.categories:
                keep = (largest == c.node) if c.selects else np.ones(len(largest), dtype=bool)
                if c.group is not None and group is not None:
                    keep &= group == c.group
                out[c.name][dataset][shift] = {name: np.asarray(values)[keep]
                                               for name, values in columns.items()}
    return out


def category_effective_counts(scores: Mapping[str, Mapping[str, Mapping[str, np.ndarray]]],
                              spec: ModelSpec, shift: str = "nominal"
                              ) -> dict[str, dict[str, float]]:
    """Effective number of simulated events of every process in every channel of ``spec``.

    The events of a channel are :func:`category_scores`'; per process their effective count is
    :func:`~analysis.inference.mcstat.effective_event_count` with the detector replicas of one
    event counted as one (event identity: dataset and ``event``, so equal event numbers of two
    datasets are two events). This is the MC statistical power behind a channel's templates:
    the relative MC uncertainty of a process's yield there is ``1 / sqrt(N_eff)``.

    Args:
        scores: dataset -> shift -> columns ``event``, ``label`` (process index into
            ``spec.processes``), ``weight`` (expected events) and those :func:`category_scores`
            needs (``p_<class>``, ``n_btag`` with a b-tag split).
        spec: the channels and processes.
        shift: the shift whose events are counted (``nominal``).

    Returns:
        channel -> process -> effective number of simulated events (0 where the process has no
        events in the channel), channels and processes in ``spec`` order.

    Raises:
        InputDataError: a dataset without ``shift`` or a missing column, naming it.
    """
    nominal: dict[str, dict[str, Mapping[str, np.ndarray]]] = {}
    for dataset, shifts in scores.items():
        if shift not in shifts:
            raise InputDataError(f"category_effective_counts: dataset {dataset} has no shift "
                                 f"{shift}")
        nominal[dataset] = {shift: shifts[shift]}
    per_channel = category_scores(nominal, spec)
    out: dict[str, dict[str, float]] = {}
    for channel in spec.channels:
        labels, weights, ids = [], [], []
        for index, (dataset, shifts) in enumerate(per_channel[channel].items()):
            columns = shifts[shift]
            try:
                labels.append(np.asarray(columns["label"], dtype=np.int64))
                weights.append(np.asarray(columns["weight"], dtype=np.float64))
                events = np.asarray(columns["event"], dtype=np.int64)
            except KeyError as err:
                raise InputDataError(f"category_effective_counts: dataset {dataset}, shift "
                                     f"{shift}: no column {err}") from err
            ids.append(np.column_stack([np.full(len(events), index, dtype=np.int64), events]))
        label = np.concatenate(labels) if labels else np.zeros(0, dtype=np.int64)
        weight = np.concatenate(weights) if weights else np.zeros(0)
        identity = np.concatenate(ids) if ids else np.zeros((0, 2), dtype=np.int64)
        out[channel] = {process: effective_event_count(weight[label == k], identity[label == k])
                        for k, process in enumerate(spec.processes)}
    return out


def category_histograms(scores: Mapping[str, Mapping[str, Mapping[str, np.ndarray]]],
                        spec: ModelSpec, n_folds: int
                        ) -> tuple[dict[str, hist.Hist], list[dict[str, hist.Hist]]]:
    """Per channel, :func:`fold_histograms` of its node's output (``p_<node>``).

    Args:
        scores: as :func:`category_scores`, with ``event``, ``label`` and weight columns.
        spec: channels, processes, bins and score range.
        n_folds: number of folds.

    Returns:
        ``(channel -> full histogram, [channel -> fold histogram] per fold)``.
    """
    full: dict[str, hist.Hist] = {}
    folds: list[dict[str, hist.Hist]] = [{} for _ in range(n_folds)]
    per_channel = category_scores(scores, spec)
    for c in spec.categories:
        channel_full, channel_folds = fold_histograms(
            per_channel[c.name], spec.processes, spec.n_bins, n_folds,
            score=f"p_{c.node_name}", low=spec.score_range[0])
        full[c.name] = channel_full
        for fold, histogram in zip(folds, channel_folds, strict=True):
            fold[c.name] = histogram
    return full, folds


def seed_histograms(
        scores_per_seed: Iterable[Mapping[str, Mapping[str, Mapping[str, np.ndarray]]]],
        spec: ModelSpec, n_folds: int) -> dict[str, Any]:
    """The histograms of the full analysis and of every (seed index, fold) network, as JSON.

    The full analysis is seed index 0's networks on all events; the other seed indices only
    repeat the training (the paired comparison reads the spread of their folds' sigma_mu).

    Args:
        scores_per_seed: per seed index, in order from 0, dataset -> shift -> columns as for
            :func:`category_scores` (held-out scores of that seed's fold networks); read one
            at a time, so an iterator holds one seed's scores in memory.
        spec: channels, processes, bins and score range.
        n_folds: number of folds.

    Returns:
        ``{"channels": channel -> histogram_dict (seed index 0, all events), "folds":
        [{"seed": s, "fold": k, "channels": channel -> histogram_dict}]}`` with the folds in
        order of seed index, then fold; every fold histogram is scaled to the full
        luminosity (:func:`fold_histograms`). Values in expected events.

    Raises:
        InputDataError: no seed index's scores.
    """
    channels: dict[str, Any] | None = None
    folds: list[dict[str, Any]] = []
    for seed, scores in enumerate(scores_per_seed):
        full, per_fold = category_histograms(scores, spec, n_folds)
        if seed == 0:
            channels = {name: histogram_dict(h) for name, h in full.items()}
        folds += [{"seed": seed, "fold": k,
                   "channels": {name: histogram_dict(h) for name, h in fold.items()}}
                  for k, fold in enumerate(per_fold)]
    if channels is None:
        raise InputDataError("seed_histograms: no seed index's scores (training.seeds >= 1)")
    return {"channels": channels, "folds": folds}


def templates_from_histograms(channels: Mapping[str, Any]) -> dict[str, Any]:
    """:data:`~analysis.inference.model.Templates` of JSON histograms (:func:`histogram_dict`
    per channel): channel -> process -> variation -> ``(values, variances)`` float64 tensors."""
    import torch

    return {name: {process: {variation: (torch.as_tensor(h["values"], dtype=torch.float64),
                                         torch.as_tensor(h["variances"], dtype=torch.float64))
                             for variation, h in variations.items()}
                   for process, variations in channel["processes"].items()}
            for name, channel in channels.items()}
