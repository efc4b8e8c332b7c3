"""Effective simulated events per process that each fold's networks train on, in a demo store.

Usage: python benchmarks/demo_effective_events.py --store STORE [--config tth_bb] [--version v1]
       [--reference 37]

For every fold k, the events a network of fold k trains on are those of the other folds
(``event % n_folds != k``): in the skim (``Skim``'s nominal tables) and behind fold k's learned
cuts (``ReduceEvents``' tables of fold k). Per process the effective count is
:func:`analysis.inference.mcstat.effective_event_count` with the replicas of one event counted as
one (event identity: dataset, event number). Prints a Markdown table, and each count divided by
``--reference`` (37: the tt+bb of the demo's training folds before issue 17).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from analysis.config import load_config
from analysis.folds import fold_of
from analysis.inference.mcstat import effective_event_count

COLUMNS = ["event", "label", "weight"]


def fold_counts(tables: list[tuple[int, dict[str, np.ndarray]]], fold: int, n_folds: int,
                processes: list[str]) -> dict[str, float]:
    """N_eff per process of the rows outside ``fold`` (``tables``: (dataset index, columns))."""
    counts = {}
    for label, process in enumerate(processes):
        weights, ids = [], []
        for dataset, t in tables:
            keep = (t["label"] == label) & (fold_of(t["event"], n_folds) != fold)
            weights.append(t["weight"][keep])
            ids.append(np.stack([np.full(keep.sum(), dataset), t["event"][keep]], axis=1))
        counts[process] = effective_event_count(np.concatenate(weights), np.concatenate(ids))
    return counts


def _read(path: Path) -> dict[str, np.ndarray]:
    table = pq.read_table(path, columns=COLUMNS)
    return {c: table.column(c).to_numpy() for c in COLUMNS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", required=True, type=Path)
    parser.add_argument("--config", default="tth_bb")
    parser.add_argument("--version", default="v1")
    parser.add_argument("--reference", type=float, default=37.0)
    args = parser.parse_args()
    config = load_config(args.config)
    processes, n_folds = list(config.process_names), config.training.n_folds
    datasets = list(config.datasets)
    (skim,) = (args.store / config.name / "Skim" / args.version).glob("cfg-*")
    (reduced,) = (args.store / config.name / "ReduceEvents" / args.version).glob("cfg-*")
    skimmed = [(datasets.index(d), _read(skim / d / "nominal.parquet")) for d in datasets]
    print("| fold k | selection | " + " | ".join(processes) + " | tt+bb / reference |")
    print("|---" * (len(processes) + 3) + "|")
    for fold in range(n_folds):
        behind = [(datasets.index(d), _read(reduced / f"fold{fold}" / d / "nominal.parquet"))
                  for d in datasets if (reduced / f"fold{fold}" / d / "nominal.parquet").exists()]
        for name, tables in (("skim", skimmed), ("behind fold k's cuts", behind)):
            counts = fold_counts(tables, fold, n_folds, processes)
            ttbb = counts.get("tt_bb", float("nan"))
            print(f"| {fold} | {name} | " + " | ".join(f"{counts[p]:.0f}" for p in processes)
                  + f" | {ttbb / args.reference:.1f}x |")


if __name__ == "__main__":
    main()
