"""The learned cuts applied: reduced skim tables, their event counts, the trade-off as records.

ReduceEvents' work outside the task: :func:`reduce_fold_tables` applies, per fold ``k``, the
hard cuts cuts_k (a :class:`~analysis.selection.learn.LearnedSelection` learned without fold
``k``) to every skim table and counts the nominal events kept, in all folds and in fold ``k``;
:func:`threshold_cells` tabulates every fold's thresholds; :func:`tradeoff_records` and
:func:`tradeoff_markdown` give the trade-off scan of
:func:`~analysis.selection.learn.selection_tradeoff` as JSON records and as a Markdown table.
:func:`save_selection_samples` and :func:`load_selection_samples` hand the samples that
LearnCuts built to ReduceEvents, so they are built once.
"""

from __future__ import annotations

import dataclasses
import math
import os
import pickle
from collections.abc import Mapping, Sequence
from typing import Any

import awkward as ak
import numpy as np
import torch

from analysis.errors import InputDataError
from analysis.folds import fold_of
from analysis.io import atomic_path, write_parquet
from analysis.selection.cut_samples import SelectionSamples
from analysis.selection.learn import (
    LearnedSelection,
    TradeoffPoint,
    selection_mask,
)
from analysis.tables import markdown_table

__all__ = ["FoldReduction", "load_selection_samples", "reduce_fold_tables",
           "save_selection_samples", "threshold_cells", "tradeoff_cells", "tradeoff_markdown",
           "tradeoff_records"]

_FORMAT = "diffana-selection-samples-1"


@dataclasses.dataclass(frozen=True)
class FoldReduction:
    """Nominal event counts (all datasets) of one fold's reduced tables.

    Attributes:
        fold: the fold whose cuts (cuts_k, learned without it) were applied.
        kept: events passing cuts_k, every fold (what network ``fold`` trains and is
            evaluated on).
        total: skimmed events, every fold.
        held_out_kept: events of fold ``fold`` passing cuts_k (what it contributes to the
            held-out histograms).
        held_out_total: skimmed events of fold ``fold``.
    """

    fold: int
    kept: int
    total: int
    held_out_kept: int
    held_out_total: int


def reduce_fold_tables(tables: Mapping[str, Mapping[str, str | os.PathLike[str]]],
                       outputs: Sequence[Mapping[str, Mapping[str, str | os.PathLike[str]]]],
                       selections: Sequence[LearnedSelection], provenance: Mapping[str, Any]
                       ) -> list[FoldReduction]:
    """Write, for each fold ``k``, each skim table with only the events passing cuts_k (hard).

    Each skim table is read once; fold ``k``'s copy keeps every event that passes
    ``selections[k]``: network ``k`` trains on its events outside fold ``k`` and is evaluated on
    those in fold ``k`` (``event % n_folds == k``, with ``n_folds = len(selections)``).

    Args:
        tables: dataset -> shift -> Parquet path of a skim table.
        outputs: per fold, dataset -> shift -> destination Parquet path (its directory must
            exist); the same keys as ``tables``.
        selections: per fold, the cuts learned without it.
        provenance: stored in each output's metadata.

    Returns:
        One :class:`FoldReduction` per fold (nominal events, all datasets).

    Raises:
        InputDataError: folds of ``outputs`` and ``selections`` that differ in number (or fewer
            than 2), a table missing from ``outputs``, or a cut column missing from a table.
    """
    n_folds = len(selections)
    if n_folds < 2 or len(outputs) != n_folds:
        raise InputDataError(f"reduce_fold_tables: {len(selections)} cut sets for "
                             f"{len(outputs)} folds of outputs: need one per fold, >= 2")
    counts = np.zeros((n_folds, 4), dtype=np.int64)  # kept, total, held-out kept, held-out total
    for dataset, shifts in tables.items():
        for shift, path in shifts.items():
            table = ak.from_parquet(path)
            held_out_fold = fold_of(table["event"], n_folds)
            for fold, (selection, destinations) in enumerate(zip(selections, outputs,
                                                                 strict=True)):
                try:
                    destination = destinations[dataset][shift]
                except KeyError as err:
                    raise InputDataError(f"reduce_fold_tables: no output for fold {fold}, "
                                         f"dataset {dataset!r}, shift {shift!r}") from err
                try:
                    mask = selection_mask({f: table[f] for f in selection.features}, selection)
                except ak.errors.FieldNotFoundError as err:
                    raise InputDataError(f"{path}: {err}: a cut feature of the learned "
                                         f"selection of fold {fold} is not in the skim") from err
                if shift == "nominal":
                    held_out = held_out_fold == fold
                    counts[fold] += (mask.sum(), len(mask), (mask & held_out).sum(),
                                     held_out.sum())
                write_parquet(destination, table[mask], provenance)
    return [FoldReduction(fold, *map(int, row)) for fold, row in enumerate(counts)]


def tradeoff_records(points: Sequence[TradeoffPoint]) -> list[dict[str, Any]]:
    """JSON-ready records of the trade-off scan (thresholds as lists)."""
    return [dataclasses.asdict(p) | {"thresholds": list(p.thresholds)} for p in points]


def _number(x: float | None, digits: str = ".4g") -> str:
    return "n/a" if x is None or not math.isfinite(x) else format(x, digits)


def tradeoff_cells(records: Sequence[Mapping[str, Any]], features: Sequence[str],
                   directions: Sequence[str]) -> tuple[list[str], list[list[str]]]:
    """The trade-off scan as table cells, one row per point, the learned one (t = 1) marked.

    Args:
        records: :func:`tradeoff_records` (as ``tradeoff.json`` holds them).
        features, directions: the cut features and their directions (column headers).

    Returns:
        ``(header, rows)``: ``t``, each threshold, events kept, signal and background
        efficiency, sigma_mu stat only and total, Z_A.
    """
    header = ["t", *(f"{f} {d}" for f, d in zip(features, directions, strict=True)),
              "events kept", "signal eff.", "background eff.", "σ_μ stat", "σ_μ total", "Z_A"]
    rows = [[f"{p['t']:.3g}" + (" (learned)" if abs(p["t"] - 1.0) < 1e-9 else ""),
             *(_number(t) for t in p["thresholds"]), f"{p['data_fraction']:.3f}",
             f"{p['signal_efficiency']:.3f}", f"{p['background_efficiency']:.3f}",
             _number(p["sigma_mu_stat"]), _number(p["sigma_mu"]),
             _number(p["significance"], ".3f")] for p in records]
    return header, rows


def threshold_cells(selections: Sequence[Mapping[str, Any]],
                    reductions: Sequence[Mapping[str, Any]] | None = None
                    ) -> tuple[list[str], list[list[str]]]:
    """Every fold's learned thresholds as table cells, one row per fold.

    Args:
        selections: per fold, :meth:`~analysis.selection.learn.LearnedSelection.as_dict` of
            cuts_k (``features``, ``directions``, ``thresholds``, ``objective``,
            ``initial_hard_value``, ``hard_value``).
        reductions: per fold, :class:`FoldReduction` as a dict; adds the held-out events kept.

    Returns:
        ``(header, rows)``: the fold, each cut's threshold (feature units), the hard objective
        before and after learning, and (with ``reductions``) fold ``k``'s events kept by cuts_k.

    Example:
        >>> threshold_cells([{"features": ["ht"], "directions": [">"], "thresholds": [312.5],
        ...                   "objective": "sigma_mu", "initial_hard_value": 0.5,
        ...                   "hard_value": 0.41}])
        (['fold k', 'ht >', 'sigma_mu start', 'sigma_mu learned'], [['0', '312.5', '0.5', '0.41']])
    """
    first = selections[0]
    header = ["fold k", *(f"{f} {d}" for f, d in zip(first["features"], first["directions"],
                                                     strict=True)),
              f"{first['objective']} start", f"{first['objective']} learned"]
    if reductions is not None:
        header.append("fold k events kept")
    rows = []
    for k, selection in enumerate(selections):
        row = [str(k), *(_number(t) for t in selection["thresholds"]),
               _number(selection["initial_hard_value"]), _number(selection["hard_value"])]
        if reductions is not None:
            counts = reductions[k]
            row.append(f"{counts['held_out_kept']} of {counts['held_out_total']}")
        rows.append(row)
    return header, rows


def tradeoff_markdown(points: Sequence[TradeoffPoint], selection: LearnedSelection) -> str:
    """The trade-off scan as a Markdown table (:func:`tradeoff_cells`).

    Args:
        points: from :func:`~analysis.selection.learn.selection_tradeoff`.
        selection: the learned cuts (column headers).
    """
    header, rows = tradeoff_cells(tradeoff_records(points), selection.features,
                                  selection.directions)
    return markdown_table(header, rows) + "\n"


def save_selection_samples(path: str | os.PathLike[str], samples: SelectionSamples) -> None:
    """Write ``samples`` as a torch file (tensors, names, floats only), atomically."""
    payload = {"format": _FORMAT, **{f.name: getattr(samples, f.name)
                                     for f in dataclasses.fields(samples)}}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_selection_samples(path: str | os.PathLike[str]) -> SelectionSamples:
    """The samples written by :func:`save_selection_samples`.

    Raises:
        InputDataError: the file is unreadable or not such a file.
    """
    try:
        payload = torch.load(path, weights_only=True)
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as err:
        raise InputDataError(f"{path}: unreadable selection samples ({err})") from err
    if not isinstance(payload, dict) or payload.pop("format", None) != _FORMAT:
        raise InputDataError(f"{path}: not a selection-samples file ({_FORMAT})")
    return SelectionSamples(**payload)
