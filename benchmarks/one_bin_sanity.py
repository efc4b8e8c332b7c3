"""One-bin sanity check of the profiled discovery p-value (the neos / relaxed example).

Usage: python benchmarks/one_bin_sanity.py [--start 0.0] [--steps 80]

Model: s = 15 + phi, b = 45 - 2 phi, absolute background uncertainty sigma_b = 0.5 + 0.1 phi^2
as a Poisson-constrained shapesys (pyhf's ``uncorrelated_background``), Asimov data at mu = 1.
Adam on phi, differentiating p0 = 1 - Phi(sqrt(q0)) through both profiled fits (envelope
theorem), should land at phi ~ 4.64 (p0 ~ 3.08e-3), while s / sqrt(b) grows monotonically in phi
and so picks the end of the example's range, phi = 10. Prints a Markdown table; pyhf's
``hypotest(0, ..., test_stat="q0")`` gives the reference p0.
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import pyhf
import torch

from analysis.relax.histfactory import BinnedModel
from analysis.relax.likelihood import asimov_data
from analysis.relax.significance import p0
from analysis.relax.simplemodels import uncorrelated_background

PHI_RANGE = (0.0, 10.0)  # the example's range of phi


def one_bin_model(phi: torch.Tensor) -> BinnedModel:
    """The one-bin model at ``phi`` (scalar tensor, may require grad)."""
    return uncorrelated_background(15 + phi, 45 - 2 * phi, 0.5 + 0.1 * phi**2)


def p0_ours(phi: float) -> float:
    """Our asymptotic discovery p-value at ``phi`` on Asimov data (mu = 1)."""
    model = one_bin_model(torch.tensor(phi, dtype=torch.float64))
    return float(p0(model, asimov_data(model)))


def p0_pyhf(phi: float) -> float:
    """pyhf's asymptotic discovery p-value at ``phi`` on its Asimov data (mu = 1)."""
    pdf = pyhf.simplemodels.uncorrelated_background([15 + phi], [45 - 2 * phi],
                                                    [0.5 + 0.1 * phi**2])
    return float(pyhf.infer.hypotest(0.0, pdf.expected_data(pdf.config.suggested_init()), pdf,
                                     test_stat="q0"))


def optimise(start: float, steps: int) -> float:
    """Adam on p0(phi) from ``start``; returns the final phi."""
    phi = torch.tensor(start, dtype=torch.float64, requires_grad=True)
    optimiser = torch.optim.Adam([phi], lr=0.5, betas=(0.5, 0.9))
    scheduler = torch.optim.lr_scheduler.ExponentialLR(optimiser, gamma=0.97)
    for _ in range(steps):
        optimiser.zero_grad()
        model = one_bin_model(phi)
        p0(model, asimov_data(model)).backward()  # type: ignore[no-untyped-call]
        optimiser.step()
        scheduler.step()
    return phi.item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--start", type=float, default=0.0, help="initial phi")
    parser.add_argument("--steps", type=int, default=80, help="Adam steps")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", "jsonschema.RefResolver is deprecated")
    pyhf.set_backend("numpy", "scipy")
    t0 = time.perf_counter()
    phi = optimise(args.start, args.steps)
    seconds = time.perf_counter() - t0
    grid = np.linspace(*PHI_RANGE, 1001)
    phi_ssb = float(grid[np.argmax((15 + grid) / np.sqrt(45 - 2 * grid))])
    print(f"Adam from phi = {args.start}, {args.steps} steps, {seconds:.1f} s "
          f"({1e3 * seconds / args.steps:.0f} ms per step: two profiled fits + backward)\n")
    print("| optimum of | phi | p0 (ours) | p0 (pyhf) | ours / pyhf - 1 |")
    print("|---|---|---|---|---|")
    for name, value in (("p0, profiled (ours)", phi), ("s / sqrt(b) in [0, 10]", phi_ssb)):
        ours, theirs = p0_ours(value), p0_pyhf(value)
        print(f"| {name} | {value:.4f} | {ours:.5e} | {theirs:.5e} | {ours / theirs - 1:+.2e} |")


if __name__ == "__main__":
    main()
