"""Fit time of one network's Fit task: pyhf + MINUIT against the torch fitter, same workspaces.

Usage: python benchmarks/bench_fits.py [--repeats 1] [--only tiny,demo,demo_1ch]
       python benchmarks/bench_fits.py --workspace DIR [--workspace DIR ...] [--config tth_bb]
       python benchmarks/bench_fits.py --task --workspace DIR [...] [--config tth_bb_tiny]

Each workspace is fitted by :func:`analysis.inference.fits.fit_network` (what the Fit task runs:
every fit of ``fit_workspace`` on the network's workspace, then sigma_mu per fold and without MC
statistics) once with ``engine="pyhf"`` (MINUIT, the settings the Fit task used before the
torch fitter) and once with ``engine="torch"``, in this process, one after the other. The
workspaces are built by ``build_workspace`` from demo-shaped histograms
(:mod:`analysis.validation.demo_histograms`) with the fit settings of the named config:

- ``tiny``: ``config/tth_bb_tiny.yaml``'s fit settings: one channel of 3 score bins (merged
  to the MC statistics);
- ``demo``: ``config/tth_bb.yaml``: three categories of 10 score bins (merged), a free tt+bb
  normalisation, as the demo's Fit tasks have them;
- ``demo_1ch``: the demo's model before issue 16: one channel of the ttH score, tt+bb with its
  50 % cross-section uncertainty.

The histograms are demo-shaped (:func:`~analysis.validation.demo_histograms.demo_like_categories`);
the tiny pipeline's own workspaces (46 events after its learned cuts: three one-bin channels
for 14 parameters) are degenerate and are not what this measures (``docs/benchmarks.md``).

``--workspace DIR`` measures real workspaces instead: a BuildWorkspace output folder
(``workspace.json`` and ``workspace_folds.json``, e.g. from the demo's store), with the fit
settings of ``--config``.

``--workspace`` also takes a workspace JSON file (e.g. the committed
``tests/unit/inference/workspaces/demo_dnn_penalty_workspace.json``): no fold workspaces then.

``--task`` times the whole Fit task's computation instead of ``fit_network`` alone:
:func:`analysis.inference.fit_outputs.fit_and_write`, what ``Fit.run`` calls (every fit, the
four plots as PNG and PDF, ``results.json``), into a temporary folder. The first call of the
process draws the plots once beforehand, untimed, so that neither engine pays matplotlib's
one-off font and style loading; the engines then alternate, ``--repeats`` times each.

Prints a Markdown table: wall time of each engine (the fastest of ``--repeats``), the speed-up,
and how far the torch results lie from pyhf's (sigma_mu, the expected limit, Z); with
``--task`` also the fits' and the outputs' share of each.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analysis.config import load_config  # noqa: E402
from analysis.inference.fit_outputs import FIT_PLOTS, fit_and_write  # noqa: E402
from analysis.inference.fits import fit_network  # noqa: E402
from analysis.inference.torch_fitter import WorkspaceLikelihood  # noqa: E402
from analysis.inference.workspace import build_workspace  # noqa: E402
from analysis.validation.demo_histograms import demo_like_categories  # noqa: E402


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
    settings; or a workspace JSON file and no folds."""
    folder = Path(directory)
    if folder.is_file():
        return json.loads(folder.read_text()), [], stored_settings(config_name)
    spec = json.loads((folder / "workspace.json").read_text())
    folds = json.loads((folder / "workspace_folds.json").read_text())["workspaces"]
    return spec, folds, stored_settings(config_name)


def stored_settings(config_name: str) -> dict[str, Any]:
    """``config_name``'s fit settings (scan points, scan end and limit search end, mu)."""
    settings = load_config(config_name).inference
    return {"scan_points": settings.scan_points, "scan_max": settings.scan_max,
                         "limit_max": settings.limit_max}


def task_run(spec: dict[str, Any], folds: list[dict[str, Any]], settings: dict[str, Any],
             engine: str, folder: Path) -> tuple[dict[str, Any], dict[str, float]]:
    """The Fit task's computation (:func:`fit_and_write`) with ``engine``, outputs in
    ``folder``: ``(results, {"fits": s, "outputs": s})``."""
    return fit_and_write(spec, folds, engine=engine, title="benchmark", labels={}, colors={},
                         results_path=folder / "results.json",
                         plot_bases={name: folder / name for name in FIT_PLOTS}, **settings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--only", default="tiny,demo,demo_1ch")
    parser.add_argument("--workspace", action="append", default=[],
                        help="a BuildWorkspace output folder or a workspace JSON file "
                             "(repeatable); replaces --only")
    parser.add_argument("--config", default="tth_bb", help="fit settings for --workspace")
    parser.add_argument("--task", action="store_true",
                        help="time the whole Fit task computation (fits, plots, JSON)")
    args = parser.parse_args()
    # the fits' warnings (limits beyond the range, intervals at the bounds) are the same on
    # every repeat and are not what this measures
    logging.getLogger("analysis.inference.fits").setLevel(logging.ERROR)
    rows = []
    cases = ([(Path(d).parent.name + "/" + Path(d).name, d) for d in args.workspace]
             if args.workspace else [(name, None) for name in args.only.split(",")])
    scratch = tempfile.TemporaryDirectory(prefix="bench_fits_")
    folder = Path(scratch.name)
    warmed = False
    for name, directory in cases:
        spec, folds, settings = (stored_workspaces(directory, args.config) if directory
                                 else workspaces(name))
        if args.task and not warmed:  # matplotlib's fonts and styles, once per process
            task_run(spec, folds, settings, "torch", folder)
            warmed = True
        times: dict[str, float] = {"pyhf": float("inf"), "torch": float("inf")}
        shares: dict[str, dict[str, float]] = {}
        results: dict[str, dict[str, Any]] = {}
        for _ in range(args.repeats):
            for engine in ("pyhf", "torch"):
                start = time.perf_counter()
                if args.task:
                    results[engine], seconds = task_run(spec, folds, settings, engine, folder)
                else:
                    results[engine] = fit_network(spec, folds, engine=engine, **settings)
                    seconds = {}
                elapsed = time.perf_counter() - start
                if elapsed < times[engine]:
                    times[engine], shares[engine] = elapsed, seconds
                print(f"{name}: {engine} {elapsed:.2f} s", file=sys.stderr, flush=True)
        n_bins = sum(len(c["samples"][0]["data"]) for c in spec["channels"])
        deviation = {key: abs(results["torch"][key] / results["pyhf"][key] - 1.0)
                     for key in ("sigma_mu", "expected_limit", "expected_significance")}
        engines = f"{results['pyhf']['engine']}/{results['torch']['engine']}"
        n_parameters = len(WorkspaceLikelihood(spec).par_names)
        rows.append((name, len(spec["channels"]), n_bins, n_parameters, len(folds), times,
                     shares, deviation, engines))
    scratch.cleanup()
    what = "whole Fit task (fits + plots + JSON)" if args.task else "fit_network"
    print(f"{what}, fastest of {args.repeats}:")
    split = " (fits + outputs)" if args.task else ""
    print(f"| workspace | channels | bins | parameters | fold workspaces | pyhf + MINUIT (s)"
          f"{split} | torch (s){split} | speed-up | rel. diff. sigma_mu / limit / Z "
          f"| engines used |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, channels, bins, n_parameters, n_folds, times, shares, deviation, engines in rows:
        diffs = " / ".join(f"{deviation[k]:.1e}" for k in deviation)
        cells = []
        for engine in ("pyhf", "torch"):
            cell = f"{times[engine]:.2f}"
            if shares[engine]:
                cell += f" ({shares[engine]['fits']:.2f} + {shares[engine]['outputs']:.2f})"
            cells.append(cell)
        print(f"| {name} | {channels} | {bins} | {n_parameters} | {n_folds} | {cells[0]} | "
              f"{cells[1]} | {times['pyhf'] / times['torch']:.1f}x | {diffs} | {engines} |")


if __name__ == "__main__":
    main()
