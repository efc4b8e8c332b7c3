"""The learned cuts applied: reduced skim tables, their event counts, the trade-off as records.

ReduceEvents' work outside the task: :func:`reduce_fold_tables` applies, per fold ``k``, the
hard cuts cuts_k (a :class:`~analysis.selection.learn.LearnedSelection` learned without fold
``k``) to every skim table and counts the nominal events kept, in all folds and in fold ``k``;
:func:`tradeoff_records` and :func:`tradeoff_markdown` give the trade-off scan of
:func:`~analysis.selection.learn.selection_tradeoff` as JSON records and as a Markdown table.
:func:`save_selection_samples` and :func:`load_selection_samples` hand the samples that
LearnCuts built to ReduceEvents, so they are built once.
"""

from __future__ import annotations

import dataclasses
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
from analysis.selection.cut_tables import tradeoff_cells
from analysis.selection.learn import (
    LearnedSelection,
    TradeoffPoint,
    selection_mask,
)
from analysis.tables import markdown_table

__all__ = ["FoldReduction", "load_selection_samples", "reduce_fold_tables",
           "save_selection_samples", "tradeoff_markdown", "tradeoff_records"]

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


def tradeoff_markdown(points: Sequence[TradeoffPoint], selection: LearnedSelection) -> str:
    """The trade-off scan as a Markdown table
    (:func:`~analysis.selection.cut_tables.tradeoff_cells`).

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
