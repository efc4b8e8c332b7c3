"""Time of one yield-aware training step of the GNN: reused outputs and event slices.

Usage: python benchmarks/bench_training_step.py [--events 14000] [--slices 12] [--steps 5]

A GNN of the demo's size (5000 parameters, :func:`analysis.training.network.build_network`)
on graph rows of the demo's width, in three samples (signal, two backgrounds) with the skim's
five systematics: two precomputed shifts with events of their own (JES, JER: other arrays,
other rows) and three reweightings of the nominal rows (b-tag, ISR, FSR: the nominal input
array with other weights). One step is :func:`analysis.training.loop.train` with one
``"penalty"`` stage step (the penalty of arXiv:1907.11674 on the signal score's soft
histogram, the loss that evaluates the network on every variation). Measured in this process,
one torch thread, median of ``--steps``:

- **baseline**: the reweightings given as copies of the nominal array, so the network is
  evaluated on them again (the behaviour before the outputs were reused);
- **reused**: the reweightings given the nominal array itself: one network evaluation each of
  nominal, JES up/down and JER up/down;
- **reused + slices**: as reused, on one of ``--slices`` event slices per step
  (``training.event_slices``).

The table gives seconds per step and the ratio to the baseline.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analysis.training.architectures import NODE_FEATURES  # noqa: E402
from analysis.training.loop import LossSettings, Stage, train  # noqa: E402
from analysis.training.network import build_network  # noqa: E402
from analysis.training.samples import Nuisance  # noqa: E402

N_NODES = 10  # 8 jet slots, the lepton, MET: the demo's graph rows
WIDTH = N_NODES * (len(NODE_FEATURES) + 1)
# a synthetic problem of the demo's three classes (config/tth_bb.yaml), signal first: fractions
# of the rows
SAMPLES = {"tth": 0.3, "ttbb": 0.2, "ttother": 0.5}


def _rows(rng: np.random.Generator, n: int) -> np.ndarray:
    """Graph rows: node features then the node mask, the first 4 + k jets real."""
    x = rng.normal(0.0, 1.0, (n, WIDTH)).astype(np.float32)
    mask = np.zeros((n, N_NODES), dtype=np.float32)
    real = rng.integers(4, N_NODES - 1, n)
    mask[np.arange(N_NODES)[None, :] < real[:, None]] = 1.0
    mask[:, -2:] = 1.0  # the lepton and MET
    x[:, N_NODES * len(NODE_FEATURES):] = mask
    return x


def _problem(n_events: int, seed: int, copies: bool):
    """Samples and the five nuisances; ``copies``: the reweightings get a copy of the inputs."""
    rng = np.random.default_rng(seed)
    samples, shifts, weights = {}, {"jes": {}, "jer": {}}, {"btag": {}, "isr": {}, "fsr": {}}
    for name, fraction in SAMPLES.items():
        n = int(fraction * n_events)
        x, w = _rows(rng, n), rng.uniform(0.5, 1.5, n).astype(np.float32)
        samples[name] = (x, w)
        for syst in shifts:  # other events: other rows, about as many
            pair = [(_rows(rng, n), w.copy()) for _ in range(2)]
            shifts[syst][name] = tuple(pair)
        for syst in weights:
            inputs = (lambda: x.copy()) if copies else (lambda: x)
            weights[syst][name] = ((inputs(), 1.05 * w), (inputs(), 0.95 * w))
    nuisances = [Nuisance.precomputed(s, v) for s, v in {**shifts, **weights}.items()]
    return samples, nuisances


def _time(n_events: int, slices: int, copies: bool, steps: int) -> float:
    """Median seconds of one step over ``steps`` steps (each a fresh one-step training)."""
    parts = [_problem(n_events // slices, 100 + k, copies) for k in range(slices)]
    model = build_network("gnn", WIDTH, 5000, torch.Generator().manual_seed(0),
                          n_classes=len(SAMPLES))
    settings = LossSettings(signal=next(iter(SAMPLES)), edges=np.linspace(0, 1, 9).tolist(),
                            penalty_weight=1.0, classes={c: k for k, c in enumerate(SAMPLES)})
    times = []
    for step in range(steps):
        start = time.perf_counter()
        train(model, parts[0][0], [Stage("penalty", 1, 1e-3)], parts[0][1], loss=settings,
              slices=parts[step % slices:step % slices + 1] if slices > 1 else None)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=14000,
                        help="training rows (the demo's fit part of one fold: about 14 000)")
    parser.add_argument("--slices", type=int, default=12)
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        rows = [("baseline: reweightings evaluated again", _time(args.events, 1, True,
                                                                 args.steps)),
                ("reused outputs", _time(args.events, 1, False, args.steps)),
                (f"reused outputs + {args.slices} event slices",
                 _time(args.events, args.slices, False, args.steps))]
    finally:
        torch.set_num_threads(previous)
    print(f"GNN penalty step, {args.events} rows, 5 systematics (2 shifts, 3 reweightings), "
          f"1 thread, median of {args.steps}\n")
    print("| variant | s / step | ratio to baseline |")
    print("| --- | --- | --- |")
    for name, seconds in rows:
        print(f"| {name} | {seconds:.3f} | {seconds / rows[0][1]:.3f} |")


if __name__ == "__main__":
    main()
