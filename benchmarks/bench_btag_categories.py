"""What splitting the statistical model's categories by b-tag multiplicity buys on the demo.

Usage: flock /tmp/diffana-heavy.lock python benchmarks/bench_btag_categories.py
       --store /work/demo_store [--config config/tth_bb.yaml]
       [--networks dnn_ce,dnn_inference,gnn_ce] [--splits "none;3;3,4"] [--seeds 3]
       [--out FILE.json]

Issue 17, item 1 ("the demo's b-tag categories"). For each network of a demo store (its
Evaluate outputs: the held-out scores of every (seed index, fold) network, with ``n_btag``, the
number of medium b-tagged jets), the statistical model is built from the *same* scores three
times: with the config's categories (one channel per network output) and with
``inference.categories.btag_split`` ``[3]`` and ``[3, 4]`` (each output's channel split into
``< 3`` / ``>= 3``, or ``< 3`` / ``3`` / ``>= 4`` medium b-tags). The chain is the tasks' own:
``seed_histograms`` (CreateHistograms), ``build_workspace`` / ``build_fold_workspaces``
(BuildWorkspace) and ``fit_network`` with the config's engine (Fit, the torch fitter). Every
variant sets ``inference.categories.drop_empty`` (a split can leave a channel without events,
e.g. tt+other with >= 4 b-tags in one fold); it changes nothing where no channel is empty.

Reported per network and categories:

- channels and bins (after merging);
- sigma_mu stat (every nuisance fixed), without MC stat. (no staterror), total (MC stat.
  included): the full fit, seed index 0's networks on all held-out events, as the Fit task;
- sigma_mu of every (seed index, fold) network (its held-out fold at the full luminosity), and
  the paired change of each split against the config's categories over those networks
  (``analysis.report.comparison.paired_comparison``: mean, standard error clustered by fold,
  verdict at 2 standard errors);
- the library's warnings (count; their text in the JSON), e.g. a profile interval that reaches
  the lower bound of mu (sigma_mu then from the other side);
- the effective number of simulated ttH, tt+bb and tt+light events in the signal-sensitive
  channels (``cat_tth`` and its b-tag splits), replicas counted as correlated
  (``analysis.inference.score_histograms.category_effective_counts``), seed index 0.

The config's result is checked against the store's own Fit ``results.json`` where present.
Prints Markdown tables and writes the numbers as JSON with ``--out``.
"""

from __future__ import annotations

import argparse
import dataclasses
import glob
import json
import logging
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from analysis.config import OBJECT_SHIFTS, AnalysisConfig, load_config
from analysis.inference.fits import fit_network
from analysis.inference.model import model_spec
from analysis.inference.score_histograms import (
    category_effective_counts,
    seed_histograms,
)
from analysis.inference.workspace import (
    build_fold_workspaces,
    build_workspace,
    validate_workspace,
)
from analysis.io import read_columns
from analysis.report.comparison import paired_comparison

DEFAULT_NETWORKS = ("dnn_ce", "dnn_penalty", "dnn_inference", "dnn_inference+cuts", "gnn_ce",
                    "gnn_penalty", "gnn_inference")
N_EFF_PROCESSES = ("tth_bb", "tt_bb", "tt_lf")


def parse_splits(text: str) -> list[tuple[int, ...]]:
    """``"none;3;3,4"`` -> ``[(), (3,), (3, 4)]``."""
    return [() if part.strip() in ("", "none") else tuple(int(x) for x in part.split(","))
            for part in text.split(";")]


def split_name(split: tuple[int, ...]) -> str:
    return "config (no split)" if not split else f"btag_split {list(split)}"


def with_split(config: AnalysisConfig, split: tuple[int, ...]) -> AnalysisConfig:
    """The config with ``inference.categories.btag_split = split`` and ``drop_empty``."""
    categories = dataclasses.replace(config.inference.categories, btag_split=split,
                                     drop_empty=True)
    return dataclasses.replace(config, inference=dataclasses.replace(config.inference,
                                                                     categories=categories))


def find_one(pattern: str) -> str | None:
    found = sorted(glob.glob(pattern))
    if len(found) > 1:
        raise SystemExit(f"several matches for {pattern}: {found}; pass a store with one")
    return found[0] if found else None


def read_seed_scores(directory: str, config: AnalysisConfig, seed: int
                     ) -> dict[str, dict[str, dict[str, np.ndarray]]]:
    """Evaluate's scores of one seed index: dataset -> shift -> columns."""
    base = directory if seed == 0 else os.path.join(directory, f"seed{seed}")
    return {dataset: {shift: read_columns(os.path.join(base, dataset, f"{shift}.parquet"))
                      for shift in OBJECT_SHIFTS}
            for dataset in config.datasets}


class _Collect(logging.Handler):
    """Keeps the library's warnings (e.g. a sigma_mu interval at the bound of mu)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def measure(scores: list[dict], config: AnalysisConfig, split: tuple[int, ...]
            ) -> dict[str, Any]:
    """Histograms, workspaces and fits of one network's scores with one b-tag split."""
    collect = _Collect()
    logging.getLogger("analysis").addHandler(collect)
    try:
        return _measure(scores, config, split) | {"warnings": collect.messages}
    finally:
        logging.getLogger("analysis").removeHandler(collect)


def _measure(scores: list[dict], config: AnalysisConfig, split: tuple[int, ...]
             ) -> dict[str, Any]:
    variant = with_split(config, split)
    spec = model_spec(variant)
    settings = variant.inference
    start = time.process_time()
    histograms = seed_histograms(iter(scores), spec, variant.training.n_folds)
    details: dict[str, Any] = {}
    workspace = build_workspace(histograms, variant, pseudo_data_seed=settings.pseudo_data_seed,
                                details=details)
    validate_workspace(workspace)
    folds = build_fold_workspaces(histograms["folds"], variant,
                                  pseudo_data_seed=settings.pseudo_data_seed)
    labels = [[h["seed"], h["fold"]] for h in histograms["folds"]]
    built = time.process_time()
    result = fit_network(workspace, folds, fold_labels=labels, scan_points=settings.scan_points,
                         scan_max=settings.scan_max, limit_max=settings.limit_max,
                         engine=settings.fit_engine)
    fitted = time.process_time()
    node = spec.process_class[spec.signal]
    signal_channels = [c.name for c in spec.categories if c.node_name == node]
    n_eff = category_effective_counts(scores[0], spec)
    return {
        "btag_split": list(split),
        "channels": [c["name"] for c in workspace["channels"]],
        "dropped_channels": details.get("dropped_channels", []),
        "n_bins": details["n_bins"],
        "sigma_mu": result["sigma_mu"], "sigma_mu_stat": result["sigma_mu_stat"],
        "sigma_mu_no_mcstat": result["sigma_mu_no_mcstat"],
        "sigma_mu_folds": result["sigma_mu_folds"],
        "sigma_mu_no_mcstat_folds": result["sigma_mu_no_mcstat_folds"],
        "fold_labels": result["fold_labels"], "poi_bounds": details.get("poi_bounds"),
        "n_eff_signal_channels": {c: {p: n_eff[c][p] for p in spec.processes}
                                  for c in signal_channels},
        "cpu_s_build": built - start, "cpu_s_fit": fitted - built,
    }


def fold_summary(values: list[float]) -> str:
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return "n/a"
    spread = f" ± {np.std(finite, ddof=1):.2f}" if len(finite) > 1 else ""
    missing = f", {len(values) - len(finite)} n/a" if len(finite) < len(values) else ""
    return f"{np.mean(finite):.2f}{spread} ({len(finite)}{missing})"


def paired(result: dict[str, Any], reference: dict[str, Any], key: str) -> dict[str, Any]:
    comparison = paired_comparison(result[f"{key}_folds"], reference[f"{key}_folds"],
                                   clusters=[k for _, k in result["fold_labels"]])
    return {**dataclasses.asdict(comparison), "sentence": comparison.sentence()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", required=True, help="law store root (holds <config name>/)")
    parser.add_argument("--config", default="config/tth_bb.yaml")
    parser.add_argument("--networks", default=",".join(DEFAULT_NETWORKS),
                        help="comma-separated <model>_<strategy> directories of Evaluate")
    parser.add_argument("--splits", default="none;3;3,4",
                        help="b-tag splits separated by ';', 'none' for the config's categories")
    parser.add_argument("--seeds", type=int, default=None,
                        help="seed indices whose fold networks are fitted (default: "
                        "training.seeds); the full fit is always seed index 0's")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    # the library's warnings go to the JSON (``warnings`` per network and categories) and a
    # count to the table, not to the terminal
    logging.getLogger("analysis").propagate = False

    config = load_config(args.config)
    if config.inference.categories is None:
        raise SystemExit(f"{args.config}: inference.categories is not set; nothing to split")
    splits = parse_splits(args.splits)
    if () not in splits:
        splits.insert(0, ())
    n_seeds = args.seeds or config.training.seeds
    root = os.path.join(args.store, config.name)
    wall = time.perf_counter()
    results: dict[str, Any] = {}
    for network in args.networks.split(","):
        directory = find_one(os.path.join(root, "Evaluate", "*", "*", "*", network))
        if directory is None:
            print(f"{network}: no Evaluate output under {root}; skipped")
            continue
        scores = [read_seed_scores(directory, config, seed) for seed in range(n_seeds)]
        stored_path = find_one(os.path.join(root, "Fit", "*", "*", "*", network, "results.json"))
        stored = json.loads(Path(stored_path).read_text()) if stored_path else {}
        per_split = {split_name(s): measure(scores, config, s) for s in splits}
        reference = per_split[split_name(())]
        for name, result in per_split.items():
            if name != split_name(()):
                result["paired_vs_config"] = {key: paired(result, reference, key)
                                              for key in ("sigma_mu", "sigma_mu_no_mcstat")}
        results[network] = {"evaluate": directory, "stored_fit": {
            k: stored.get(k) for k in ("sigma_mu", "sigma_mu_stat", "sigma_mu_no_mcstat")},
            "categories": per_split}
        print(f"{network}: done ({time.perf_counter() - wall:.0f} s)", flush=True)

    print("\n### sigma_mu per network and categories (full fit: seed index 0, all events)\n")
    print("| network | categories | channels / bins | σ_μ stat | σ_μ no MC stat. | σ_μ total "
          "| stored Fit σ_μ | σ_μ folds: mean ± sd (n) | σ_μ no MC stat. folds | warnings |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for network, entry in results.items():
        for name, r in entry["categories"].items():
            stored = entry["stored_fit"]["sigma_mu"] if not r["btag_split"] else None
            print(f"| {network} | {name} | {len(r['channels'])} / {r['n_bins']} "
                  f"| {r['sigma_mu_stat']:.3f} | {r['sigma_mu_no_mcstat']:.3f} "
                  f"| {r['sigma_mu']:.2f} | {'' if stored is None else f'{stored:.2f}'} "
                  f"| {fold_summary(r['sigma_mu_folds'])} "
                  f"| {fold_summary(r['sigma_mu_no_mcstat_folds'])} | {len(r['warnings'])} |")

    print("\n### Paired change against the config's categories over (seed, fold) networks\n")
    print("| network | categories | σ_μ total | σ_μ without MC stat. |")
    print("| --- | --- | --- | --- |")
    for network, entry in results.items():
        for name, r in entry["categories"].items():
            if "paired_vs_config" in r:
                p = r["paired_vs_config"]
                print(f"| {network} | {name} | {p['sigma_mu']['sentence']} "
                      f"| {p['sigma_mu_no_mcstat']['sentence']} |")

    print("\n### Effective simulated events in the signal-sensitive channels (seed index 0)\n")
    print("| network | categories | channel | N_eff ttH | N_eff tt+bb | N_eff tt+light |")
    print("| --- | --- | --- | --- | --- | --- |")
    for network, entry in results.items():
        for name, r in entry["categories"].items():
            for channel, counts in r["n_eff_signal_channels"].items():
                cells = " | ".join(f"{counts.get(p, 0.0):.1f}" for p in N_EFF_PROCESSES)
                print(f"| {network} | {name} | {channel} | {cells} |")

    total = time.perf_counter() - wall
    print(f"\nwall time {total:.0f} s; config {args.config}; seed indices fitted per fold: "
          f"{n_seeds}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"config": args.config, "store": args.store,
                                        "seeds": n_seeds, "wall_s": total,
                                        "networks": results}, indent=1, default=float))


if __name__ == "__main__":
    main()
