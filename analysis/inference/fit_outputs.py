"""The Fit task's computation: every fit of one network's workspaces, its plots and results.json.

:func:`fit_and_write` is what ``tasks.inference.Fit.run`` calls between reading its inputs and
publishing its message, and what ``benchmarks/bench_fits.py`` times for each engine: the whole
task, not only the fits.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from analysis.inference.fits import fit_network
from analysis.io import write_json
from analysis.plotting.inference import (
    plot_impacts,
    plot_prefit_postfit,
    plot_pulls,
    plot_scan,
)

__all__ = ["FIT_PLOTS", "fit_and_write"]

FIT_PLOTS = ("scan", "pulls", "impacts", "postfit")


def fit_and_write(spec: Mapping[str, Any], fold_specs: Sequence[Mapping[str, Any] | None], *,
                  scan_points: int, scan_max: float, limit_max: float, engine: str,
                  title: str, labels: Mapping[str, str], colors: Mapping[str, str],
                  results_path: str | os.PathLike[str],
                  plot_bases: Mapping[str, str | os.PathLike[str]],
                  provenance: Mapping[str, Any] | None = None,
                  fold_labels: Sequence[Sequence[int]] | None = None,
                  progress: Callable[[int], None] | None = None
                  ) -> tuple[dict[str, Any], dict[str, float]]:
    """Fit one network's workspaces (:func:`~analysis.inference.fits.fit_network`), draw its
    plots and write its results.

    Args:
        spec, fold_specs, scan_points, scan_max, limit_max, engine, fold_labels, progress: as
            :func:`~analysis.inference.fits.fit_network` (mu in units of the expected signal).
        title: plot titles' prefix (model, strategy, cuts).
        labels, colors: per process, for the pre- and post-fit stacks.
        results_path: where ``results.json`` goes (its directory must exist).
        plot_bases: each of :data:`FIT_PLOTS` -> output path without suffix (PNG and PDF).
        provenance: stored in ``results.json`` under ``"provenance"``.

    Returns:
        ``(results, seconds)``: the results as written (``fit_network``'s dictionary) and the
        wall time in seconds of the ``"fits"`` and of the ``"outputs"`` (plots and JSON).
    """
    start = time.perf_counter()
    results = fit_network(spec, fold_specs, fold_labels=fold_labels, scan_points=scan_points,
                          scan_max=scan_max, limit_max=limit_max, engine=engine,
                          progress=progress)
    fitted = time.perf_counter()
    plot_scan(results["scan_mu"], {"Asimov (expected)": results["scan_asimov"],
                                   "pseudo-data": results["scan_observed"]}, title,
              plot_bases["scan"])
    plot_pulls(results["pulls"], f"{title}: pulls (pseudo-data)", plot_bases["pulls"])
    plot_impacts(results["impacts"], f"{title}: impacts (Asimov)", plot_bases["impacts"])
    plot_prefit_postfit(results["yields"], labels, colors, title, plot_bases["postfit"])
    write_json(results_path, results, provenance=provenance)
    return results, {"fits": fitted - start, "outputs": time.perf_counter() - fitted}
