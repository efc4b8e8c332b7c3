"""Fit time of one network's Fit task: pyhf + MINUIT against the torch fitter, same workspaces.

Usage: python benchmarks/bench_fits.py [--repeats 1] [--only tiny,demo,demo_2ch]

Each workspace is fitted by :func:`analysis.inference.fits.fit_network` (what the Fit task runs:
every fit of ``fit_workspace`` on the network's workspace, then sigma_mu per fold and without MC
statistics) once with ``engine="pyhf"`` (MINUIT, the settings the Fit task used before the
torch fitter) and once with ``engine="torch"``, in this process, one after the other. The
workspaces are built by ``build_workspace`` from demo-shaped histograms
(:mod:`analysis.validation.workspaces`) with the fit settings of the named config:

- ``tiny``: ``config/tth_bb_tiny.yaml`` (3 score bins, merged to the MC statistics);
- ``demo``: ``config/tth_bb.yaml`` (10 score bins, merged), as the demo's Fit tasks had them;
- ``demo_2ch``: the demo workspace plus a control channel and a free tt+bb normalisation, the
  categorised model of issue 16.

Prints a Markdown table: wall time of each engine (the fastest of ``--repeats``), the speed-up,
and how far the torch results lie from pyhf's (sigma_mu, the expected limit, Z).
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analysis.config import load_config  # noqa: E402
from analysis.inference.fits import fit_network  # noqa: E402
from analysis.inference.workspace import build_workspace  # noqa: E402
from analysis.validation.workspaces import demo_like_histograms  # noqa: E402


def _control_channel(spec: dict[str, Any]) -> dict[str, Any]:
    """The workspace plus a tt+bb-rich control channel; tt+bb's normsys becomes free."""
    out = copy.deepcopy(spec)
    control = copy.deepcopy(out["channels"][0])
    control["name"] = "control"
    for sample in control["samples"]:
        scale = {"tth_bb": 0.3, "tt_bb": 2.0}.get(sample["name"], 1.0)
        sample["data"] = [scale * x for x in sample["data"]]
        for modifier in sample["modifiers"]:
            if modifier["type"] == "histosys":
                for key in ("hi_data", "lo_data"):
                    modifier["data"][key] = [scale * x for x in modifier["data"][key]]
            elif modifier["type"] == "staterror":
                modifier["name"] = "staterror_control"
                modifier["data"] = [scale * x for x in modifier["data"]]
    out["channels"].append(control)
    for channel in out["channels"]:
        for sample in channel["samples"]:
            if sample["name"] == "tt_bb":
                sample["modifiers"] = [m for m in sample["modifiers"]
                                       if m["name"] != "xsec_tt_bb"]
                sample["modifiers"].append({"name": "norm_tt_bb", "type": "normfactor",
                                            "data": None})
    rng = np.random.default_rng(5)
    out["observations"] = [
        {"name": c["name"], "data": rng.poisson(np.sum([s["data"] for s in c["samples"]],
                                                       axis=0)).astype(float).tolist()}
        for c in out["channels"]]
    return out


def workspaces(name: str) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any]]:
    """The network's workspace, two fold workspaces (half the simulated events each: twice
    the relative MC variance) and the fit settings, for the benchmark called ``name``."""
    config = load_config("tth_bb_tiny" if name == "tiny" else "tth_bb")
    settings = config.inference
    n_bins = settings.n_bins

    def build(seed: int, mc_stat: float) -> dict[str, Any]:
        histograms = demo_like_histograms(config, n_bins=n_bins, seed=seed,
                                          relative_mc_stat=mc_stat)
        spec = build_workspace(histograms, config, pseudo_data_seed=settings.pseudo_data_seed,
                               max_background_mc_stat=settings.max_background_mc_stat,
                               prune_shape_chi2=settings.prune_shape_chi2)
        return _control_channel(spec) if name == "demo_2ch" else spec

    spec = build(1, 0.1)
    folds = [build(2 + k, 0.1 * np.sqrt(2.0)) for k in range(2)]
    return spec, folds, {"scan_points": settings.scan_points, "scan_max": settings.scan_max,
                         "limit_max": settings.limit_max}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--only", default="tiny,demo,demo_2ch")
    args = parser.parse_args()
    rows = []
    for name in args.only.split(","):
        spec, folds, settings = workspaces(name)
        times, results = {}, {}
        for engine in ("pyhf", "torch"):
            best = float("inf")
            for _ in range(args.repeats):
                start = time.perf_counter()
                results[engine] = fit_network(spec, folds, engine=engine, **settings)
                best = min(best, time.perf_counter() - start)
            times[engine] = best
            print(f"{name}: {engine} {best:.1f} s", file=sys.stderr, flush=True)
        n_bins = sum(len(c["samples"][0]["data"]) for c in spec["channels"])
        deviation = {key: abs(results["torch"][key] / results["pyhf"][key] - 1.0)
                     for key in ("sigma_mu", "expected_limit", "expected_significance")}
        rows.append((name, len(spec["channels"]), n_bins, times["pyhf"], times["torch"],
                     times["pyhf"] / times["torch"], deviation))
    print("| workspace | channels | bins | pyhf + MINUIT (s) | torch (s) | speed-up | "
          "max rel. diff. sigma_mu / limit / Z |")
    print("|---|---|---|---|---|---|---|")
    for name, channels, bins, pyhf_s, torch_s, ratio, deviation in rows:
        diffs = " / ".join(f"{deviation[k]:.1e}" for k in deviation)
        print(f"| {name} | {channels} | {bins} | {pyhf_s:.1f} | {torch_s:.2f} | "
              f"{ratio:.0f}x | {diffs} |")


if __name__ == "__main__":
    main()
