"""Fit time of one network's Fit task: pyhf + MINUIT against the torch fitter, same workspaces.

Usage: python benchmarks/bench_fits.py [--repeats 1] [--only tiny,demo,demo_1ch]
       python benchmarks/bench_fits.py --workspace DIR [--workspace DIR ...] [--config tth_bb]

Each workspace is fitted by :func:`analysis.inference.fits.fit_network` (what the Fit task runs:
every fit of ``fit_workspace`` on the network's workspace, then sigma_mu per fold and without MC
statistics) once with ``engine="pyhf"`` (MINUIT, the settings the Fit task used before the
torch fitter) and once with ``engine="torch"``, in this process, one after the other. The
workspaces are built by ``build_workspace`` from demo-shaped histograms
(:mod:`analysis.validation.workspaces`) with the fit settings of the named config:

- ``tiny``: ``config/tth_bb_tiny.yaml``'s fit settings: one channel of 3 score bins (merged
  to the MC statistics);
- ``demo``: ``config/tth_bb.yaml``: three categories of 10 score bins (merged), a free tt+bb
  normalisation, as the demo's Fit tasks have them;
- ``demo_1ch``: the demo's model before issue 16: one channel of the ttH score, tt+bb with its
  50 % cross-section uncertainty.

The histograms are demo-shaped (:func:`~analysis.validation.workspaces.demo_like_categories`);
the tiny pipeline's own workspaces (46 events after its learned cuts: three one-bin channels
for 14 parameters) are degenerate and are not what this measures (``docs/benchmarks.md``).

``--workspace DIR`` measures real workspaces instead: a BuildWorkspace output folder
(``workspace.json`` and ``workspace_folds.json``, e.g. from the demo's store), with the fit
settings of ``--config``.

Prints a Markdown table: wall time of each engine (the fastest of ``--repeats``), the speed-up,
and how far the torch results lie from pyhf's (sigma_mu, the expected limit, Z).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analysis.config import load_config  # noqa: E402
from analysis.inference.fits import fit_network  # noqa: E402
from analysis.inference.torch_fitter import WorkspaceLikelihood  # noqa: E402
from analysis.inference.workspace import build_workspace  # noqa: E402
from analysis.validation.workspaces import demo_like_categories  # noqa: E402


def workspaces(name: str) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any]]:
    """The network's workspace, two fold workspaces (half the simulated events each: twice
    the relative MC variance) and the fit settings, for the benchmark called ``name``."""
    config = load_config("tth_bb_tiny" if name == "tiny" else "tth_bb")
    if name == "demo_1ch":  # the model before issue 16: one channel, no free normalisation
        config = dataclasses.replace(config, inference=dataclasses.replace(
            config.inference, categories=None, free_normalisations=()))
    settings = config.inference

    def build(seed: int, mc_stat: float) -> dict[str, Any]:
        histograms = demo_like_categories(config, seed=seed, relative_mc_stat=mc_stat)
        if settings.categories is None:
            histograms = histograms["channels"]["nn_score"]
        return build_workspace(histograms, config, pseudo_data_seed=settings.pseudo_data_seed)

    spec = build(1, 0.1)
    folds = [build(2 + k, 0.1 * np.sqrt(2.0)) for k in range(2)]
    return spec, folds, {"scan_points": settings.scan_points, "scan_max": settings.scan_max,
                         "limit_max": settings.limit_max}


def stored_workspaces(directory: str, config_name: str
                      ) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any]]:
    """A BuildWorkspace output folder's workspace, fold workspaces and ``config_name``'s fit
    settings."""
    folder = Path(directory)
    spec = json.loads((folder / "workspace.json").read_text())
    folds = json.loads((folder / "workspace_folds.json").read_text())["workspaces"]
    settings = load_config(config_name).inference
    return spec, folds, {"scan_points": settings.scan_points, "scan_max": settings.scan_max,
                         "limit_max": settings.limit_max}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--only", default="tiny,demo,demo_1ch")
    parser.add_argument("--workspace", action="append", default=[],
                        help="a BuildWorkspace output folder (repeatable); replaces --only")
    parser.add_argument("--config", default="tth_bb", help="fit settings for --workspace")
    args = parser.parse_args()
    rows = []
    cases = ([(Path(d).parent.name + "/" + Path(d).name, d) for d in args.workspace]
             if args.workspace else [(name, None) for name in args.only.split(",")])
    for name, directory in cases:
        spec, folds, settings = (stored_workspaces(directory, args.config) if directory
                                 else workspaces(name))
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
        engines = f"{results['pyhf']['engine']}/{results['torch']['engine']}"
        n_parameters = len(WorkspaceLikelihood(spec).par_names)
        rows.append((name, len(spec["channels"]), n_bins, n_parameters, times["pyhf"],
                     times["torch"], times["pyhf"] / times["torch"], deviation, engines))
    print("| workspace | channels | bins | parameters | pyhf + MINUIT (s) | torch (s) | speed-up "
          "| rel. diff. sigma_mu / limit / Z | engines used |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, channels, bins, n_parameters, pyhf_s, torch_s, ratio, deviation, engines in rows:
        diffs = " / ".join(f"{deviation[k]:.1e}" for k in deviation)
        print(f"| {name} | {channels} | {bins} | {n_parameters} | {pyhf_s:.1f} | {torch_s:.2f} "
              f"| {ratio:.0f}x | {diffs} | {engines} |")


if __name__ == "__main__":
    main()
