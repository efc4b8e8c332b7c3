"""DNN vs GNN at matched size (arXiv:2402.17386): the held-out AUCs of the two models per
strategy, and whether the GNN meets its target, "within 0.02 of the DNN's AUC, or above it".

Three readings of the AUC, all on held-out events, from the Evaluate task's results as
:func:`~analysis.report.build.network_summary` keeps them:

- *pooled, seed 0*: every event scored by its fold's network of seed index 0, all folds ranked
  together (what the full fit's histograms see; ``auc``);
- *pooled, mean over seeds*: the same per seed index, averaged (``auc_seeds``);
- *per fold*: each fold network on its own held-out events, averaged over seeds × folds
  (``auc_folds``, seed-major; the usual k-fold estimate).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from analysis.report.blocks import Table
from analysis.report.comparison import mean_and_standard_error

__all__ = ["AUC_TOLERANCE", "AucReading", "auc_readings", "dnn_gnn_auc_table",
           "per_fold_auc"]

AUC_TOLERANCE = 0.02
"""The GNN's target: its held-out AUC within this of the DNN's, or above it."""

AucReading = tuple[str, float, float]
"""One reading of a network's AUC: ``(name, mean, standard error)`` (NaN where not given)."""


def per_fold_auc(record: Mapping[str, Any]) -> tuple[float, float]:
    """Mean of the per-fold AUCs over seeds × folds and its standard error, clustered by fold
    (a fold's seeds share its held-out events).

    Args:
        record: a network summary with ``auc_folds`` (seed-major, ``n_seeds x n_folds``
            values; empty in results written before them) and ``auc_seeds`` (one per seed).

    Returns:
        ``(mean, standard error)``; NaN, NaN without per-fold AUCs.
    """
    values = [float(a) for a in record.get("auc_folds", [])]
    if not values:
        return math.nan, math.nan
    n_folds = len(values) // max(len(record.get("auc_seeds", [])), 1) or 1
    return mean_and_standard_error(values, [k % n_folds for k in range(len(values))])


def auc_readings(record: Mapping[str, Any]) -> list[AucReading]:
    """The three readings of one network's held-out AUC (module docstring).

    Args:
        record: a network summary with ``auc``, ``auc_seeds`` and ``auc_folds``.

    Returns:
        ``[(name, mean, standard error)]``: pooled of seed index 0 (no error); the mean over
        seeds of the pooled AUC, with the seeds' standard error (left out with one seed: it is
        the first reading); per fold (:func:`per_fold_auc`).
    """
    seeds = [float(a) for a in record.get("auc_seeds", [record["auc"]])]
    readings: list[AucReading] = [("pooled, seed 0", float(record["auc"]), math.nan)]
    if len(seeds) > 1:
        readings.append((f"pooled, mean of {len(seeds)} seeds", *mean_and_standard_error(seeds)))
    readings.append(("per fold, seeds × folds", *per_fold_auc(record)))
    return readings


def _auc_cell(mean: float, error: float) -> str:
    if not math.isfinite(mean):
        return "n/a"
    return f"{mean:.4f}" + (f" ± {error:.4f}" if math.isfinite(error) else "")


def _meets_target(difference: float, tolerance: float) -> str:
    """``yes``/``no``: is GNN − DNN at least ``-tolerance``; ``n/a`` where undetermined."""
    if not math.isfinite(difference):
        return "n/a"
    return "yes" if difference >= -tolerance - 1e-12 else "no"  # 1e-12: rounding of 0.02


def _model_pairs(summary: Mapping[str, Mapping[str, Any]]
                 ) -> list[tuple[Mapping[str, Any], Mapping[str, Any]]]:
    """``(DNN, GNN)`` records of the same strategy and selection, in the DNNs' order."""
    gnn = {(r["strategy"], bool(r["learned_cuts"])): r for r in summary.values()
           if r["model"] == "gnn"}
    return [(r, gnn[(r["strategy"], bool(r["learned_cuts"]))]) for r in summary.values()
            if r["model"] == "dnn" and (r["strategy"], bool(r["learned_cuts"])) in gnn]


def dnn_gnn_auc_table(summary: Mapping[str, Mapping[str, Any]],
                      tolerance: float = AUC_TOLERANCE) -> Table:
    """The DNN's and the GNN's held-out AUC per strategy and reading, and the GNN's target.

    Args:
        summary: network key -> :func:`~analysis.report.build.network_summary` record;
            only strategies with a DNN and a GNN of the same selection get rows.
        tolerance: the target: GNN − DNN at least ``-tolerance`` (AUC units).

    Returns:
        One row per (selection, strategy) and :func:`auc_readings` reading that both models
        have: the DNN's and the GNN's AUC (± standard error where the reading has one), GNN −
        DNN of the means, and ``yes``/``no`` for "within ``tolerance`` of the DNN or above".
    """
    header = ["selection / strategy", "AUC reading", "DNN", "GNN", "GNN − DNN",
              f"within {tolerance:g} of the DNN or above"]
    rows: list[Sequence[str]] = []
    for dnn, gnn in _model_pairs(summary):
        name = f"{'cuts' if dnn['learned_cuts'] else 'no cuts'} / {dnn['strategy']}"
        theirs = {reading: (mean, error) for reading, mean, error in auc_readings(gnn)}
        for reading, mean, error in auc_readings(dnn):
            if reading not in theirs:
                continue
            difference = theirs[reading][0] - mean
            rows.append([name, reading, _auc_cell(mean, error), _auc_cell(*theirs[reading]),
                         f"{difference:+.3f}" if math.isfinite(difference) else "n/a",
                         _meets_target(difference, tolerance)])
    return Table(header, rows)
