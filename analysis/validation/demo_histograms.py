"""Demo-shaped score histograms, to validate and benchmark the fitters on realistic workspaces.

:func:`demo_like_histograms` returns what
:func:`~analysis.inference.score_histograms.histogram_dict` returns for the demo: every process of
a config under every variation, with a signal rising and backgrounds falling towards high scores,
shape systematics of a few percent that tilt the score and MC statistical variances of a set
relative size. Passed through :func:`~analysis.inference.workspace.build_workspace` they give
workspaces with the demo's modifiers (normsys, histosys, staterror, lumi), without running the
demo. ``tests/unit/inference/test_torch_fitter.py`` and ``benchmarks/bench_fits.py`` use them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from analysis.config import AnalysisConfig
from analysis.inference.score_histograms import VARIATIONS

__all__ = ["demo_like_categories", "demo_like_histograms"]


def demo_like_histograms(config: AnalysisConfig, n_bins: int = 10, seed: int = 0,
                         signal_events: float = 60.0, background_events: float = 8000.0,
                         relative_mc_stat: float = 0.15) -> dict[str, Any]:
    """Histograms of every process and variation of ``config`` on ``n_bins`` score bins.

    Args:
        config: the analysis (its processes, the first one with role ``signal`` is the signal).
        n_bins: equal bins of the score in [0, 1].
        seed: seed of the random shapes and variances.
        signal_events: expected signal events, summed over bins.
        background_events: expected events of the first background; the k-th has ``1/k`` of it.
        relative_mc_stat: typical ``sqrt(variance) / value`` per bin (uniformly 0.7-1.2 times).

    Returns:
        ``{"edges": (n_bins + 1,) list, "processes": {process: {variation: {"values",
        "variances"}}}}`` in expected events (and events squared).
    """
    rng = np.random.default_rng(seed)
    x = (np.arange(n_bins) + 0.5) / n_bins
    out: dict[str, Any] = {"edges": np.linspace(0.0, 1.0, n_bins + 1).tolist(), "processes": {}}
    backgrounds = 0
    for name, process in config.processes.items():
        if process.role == "signal":
            shape = np.exp(3.0 * x)
            total = signal_events
        else:
            backgrounds += 1
            shape = np.exp(-2.0 * x) * rng.uniform(0.7, 1.3, n_bins)
            total = background_events / backgrounds
        values = total * shape / shape.sum()
        variances = (relative_mc_stat * values) ** 2 * rng.uniform(0.5, 1.5, n_bins)
        hists = {"nominal": {"values": values.tolist(), "variances": variances.tolist()}}
        tilts = {}
        for variation in VARIATIONS[1:]:
            syst, _, direction = variation.rpartition("_")
            tilts.setdefault(syst, (rng.uniform(0.01, 0.1), rng.uniform(0.005, 0.04)))
            slope, rate = tilts[syst]
            sign = 1.0 if direction == "up" else -1.0
            varied = values * (1.0 + sign * slope * np.linspace(-1.0, 1.0, n_bins)) * (
                1.0 + sign * rate)
            hists[variation] = {"values": varied.tolist(), "variances": variances.tolist()}
        out["processes"][name] = hists
    return out


def demo_like_categories(config: AnalysisConfig, n_bins: int | None = None, seed: int = 0,
                         relative_mc_stat: float = 0.15) -> dict[str, Any]:
    """:func:`demo_like_histograms` for every channel of ``config``'s statistical model.

    Each category (``cat_<node>``, :func:`~analysis.inference.model.model_spec`) gets its own
    random shapes, on the channel's score range, with the processes of its node enriched: the
    signal and the processes trained to the category's node 3 times, the rest a third. The
    result is what CreateHistograms writes for a categorised model, so ``build_workspace`` makes
    the configured channels and free normalisations of it.

    Args:
        config: the analysis, with or without ``inference.categories``.
        n_bins: bins per channel; default ``config.inference.n_bins``.
        seed: seed of the shapes (each channel adds its index to it).
        relative_mc_stat: as :func:`demo_like_histograms`.

    Returns:
        ``{"channels": {channel: histogram_dict}}`` in expected events.
    """
    from analysis.inference.model import model_spec

    spec = model_spec(config)
    n_bins = n_bins or spec.n_bins
    channels = {}
    for k, category in enumerate(spec.categories):
        histograms = demo_like_histograms(config, n_bins, seed + k,
                                          relative_mc_stat=relative_mc_stat)
        histograms["edges"] = np.linspace(*spec.score_range, n_bins + 1).tolist()
        for process, variations in histograms["processes"].items():
            enriched = (spec.process_class[process] == category.node_name
                        if category.selects else True)
            scale = 3.0 if enriched else 1.0 / 3.0
            for h in variations.values():
                h["values"] = [scale * v for v in h["values"]]
                h["variances"] = [scale**2 * v for v in h["variances"]]
        channels[category.name] = histograms
    return {"channels": channels}
