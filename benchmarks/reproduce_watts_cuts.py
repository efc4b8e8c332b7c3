"""Watts' two-feature cut toy: learned rectangular cuts against a fine grid scan (a table).

Usage: python benchmarks/reproduce_watts_cuts.py [--n-events 10000] [--seed 20230508] [--steps 300]

The toy, the objectives, the learning and the grid scan live in ``analysis.validation.cut_toy``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

import torch

from analysis.validation.cut_toy import (
    COARSE_POINTS,
    COARSE_TAIL,
    EXPECTED_EVENTS,
    FINE_HALF_WIDTH,
    FINE_STEP,
    INIT_QUANTILES,
    MIN_BACKGROUND,
    N_CANDIDATES,
    NAMES,
    OBJECTIVES,
    SLOPE_END,
    SLOPE_STARTS,
    grid_scan,
    learn_cuts,
    toy_sample,
)


def _fmt(thresholds: Sequence[float]) -> str:
    return "(" + ", ".join(f"{t:+.3f}" for t in thresholds) + ")"


def main(argv: Sequence[str] | None = None) -> None:
    """Run both objectives on one toy sample and print the Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-events", type=int, default=10_000, help="events per class")
    parser.add_argument("--seed", type=int, default=20230508)
    parser.add_argument("--steps", type=int, default=300, help="Adam steps per restart")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    sample = toy_sample(args.n_events, torch.Generator().manual_seed(args.seed))
    print(f"Watts toy, {args.n_events} events per class (each weighted to "
          f"{EXPECTED_EVENTS:.0f}), seed {args.seed}, {args.steps} steps x "
          f"{len(INIT_QUANTILES) * len(SLOPE_STARTS)} restarts (init quantiles {INIT_QUANTILES} x "
          f"start slopes {SLOPE_STARTS}), end slope {SLOPE_END}, "
          f"min background {MIN_BACKGROUND:g}; thresholds {NAMES}\n")
    print("| objective | learned (hard) | grid best | ratio | learned s, b | grid s, b "
          "| learned thresholds | grid thresholds | learn s | grid s (combos) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, objective in OBJECTIVES.items():
        start = time.perf_counter()
        learned = learn_cuts(sample, objective, args.steps)
        t_learn = time.perf_counter() - start
        start = time.perf_counter()
        grid, n_combos = grid_scan(sample, objective)
        t_grid = time.perf_counter() - start
        print(f"| {name} | {learned.value:.4f} | {grid.value:.4f} | "
              f"{learned.value / grid.value:.4f} | {learned.s:.0f}, {learned.b:.0f} | "
              f"{grid.s:.0f}, {grid.b:.0f} | {_fmt(learned.thresholds)} | "
              f"{_fmt(grid.thresholds)} | {t_learn:.1f} | {t_grid:.1f} ({n_combos:.2e}) |")
    print(f"\nGrid: {COARSE_POINTS} values per threshold over the signal's "
          f"[{COARSE_TAIL:g}, {1 - COARSE_TAIL:g}] quantile range, then steps of {FINE_STEP} "
          f"within +-{FINE_HALF_WIDTH} of each of the {N_CANDIDATES} best distinct coarse "
          f"optima (re-centred while on the window edge).")


if __name__ == "__main__":
    main()
