"""The learned cuts applied: reduced skim tables, their event counts, the trade-off as records.

ReduceEvents' work outside the task: :func:`reduce_tables` applies the hard cuts of a
:class:`~analysis.selection.learn.LearnedSelection` to every skim table and counts the nominal
events kept; :func:`tradeoff_records` and :func:`tradeoff_markdown` give the trade-off scan of
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
import torch

from analysis.errors import InputDataError
from analysis.io import atomic_path, write_parquet
from analysis.selection.learn import (
    LearnedSelection,
    TradeoffPoint,
    selection_mask,
)
from analysis.selection.samples import SelectionSamples
from analysis.tables import markdown_table

__all__ = ["load_selection_samples", "reduce_tables", "save_selection_samples", "tradeoff_cells",
           "tradeoff_markdown", "tradeoff_records"]

_FORMAT = "diffana-selection-samples-1"


def reduce_tables(tables: Mapping[str, Mapping[str, str | os.PathLike[str]]],
                  outputs: Mapping[str, Mapping[str, str | os.PathLike[str]]],
                  selection: LearnedSelection, provenance: Mapping[str, Any]) -> tuple[int, int]:
    """Write each skim table with only the events that pass ``selection`` (hard cuts).

    Args:
        tables: dataset -> shift -> Parquet path of a skim table.
        outputs: dataset -> shift -> destination Parquet path (its directory must exist); the
            same keys as ``tables``.
        selection: the learned cuts.
        provenance: stored in each output's metadata.

    Returns:
        ``(kept, total)``: nominal events (all datasets) passing the cuts, and before them.

    Raises:
        InputDataError: a table missing from ``outputs`` or a cut column missing from a table.
    """
    kept, total = 0, 0
    for dataset, shifts in tables.items():
        for shift, path in shifts.items():
            try:
                destination = outputs[dataset][shift]
            except KeyError as err:
                raise InputDataError(f"reduce_tables: no output for dataset {dataset!r}, "
                                     f"shift {shift!r}") from err
            table = ak.from_parquet(path)
            try:
                mask = selection_mask({f: table[f] for f in selection.features}, selection)
            except ak.errors.FieldNotFoundError as err:
                raise InputDataError(f"{path}: {err}: a cut feature of the learned selection "
                                     f"is not in the skim") from err
            if shift == "nominal":
                kept, total = kept + int(mask.sum()), total + len(mask)
            write_parquet(destination, table[mask], provenance)
    return kept, total


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
