"""Reproduce the Gaussian toy of Wunsch et al., arXiv:2003.07186: CE vs sigma_mu-trained NN.

Usage: python benchmarks/reproduce_2003_07186.py [--n-train 50000] [--n-test 200000] [--seed 1]

The toy (:mod:`analysis.validation.gaussian_toy`): signal N((0,0), I), 50 events; background N((1,1), I),
1000 events, with a histosys from the background inputs shifted by (0, +-1) (the same toy serves
arXiv:1907.11674, whose CE + penalty training is the third network). A 2-100-1 network
with a sigmoid output is trained (Adam, full batch, CPU, fixed seed) by
:func:`~analysis.training.loop.train_classifier` either with the weighted cross entropy (classes
balanced) or, starting from that network, with the expected sigma_mu of the 8-bin histogram of
its output on Asimov data (soft histogram, the shift a ``Nuisance.shift``; the reproduction is
:func:`~analysis.validation.gaussian_toy.run`). Every network is then evaluated with hard bins on an
independent test sample, with and without the systematic, and compared with the best achievable
sigma_mu from the unbinned Fisher information of the true densities
(:func:`~analysis.validation.gaussian_toy.optimal_sigma_mu`). The test-sample precision of each binned
sigma_mu is the spread over 8 disjoint sub-samples divided by sqrt(8).
Prints a Markdown table beside the paper's numbers (not retrieved: the paper's table could not
be read from the sources available here, so that column says so).
"""

from __future__ import annotations

import argparse
import math
import time

import torch

from analysis.validation.gaussian_toy import PAPER_TOY, optimal_sigma_mu, run

N_BINS = 8  # equidistant bins of the NN output in [0, 1]
PENALTY_WEIGHT = 10.0  # lambda of the CE + penalty network


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-train", type=int, default=50_000, help="training events per process")
    parser.add_argument("--n-test", type=int, default=200_000, help="test events per process")
    parser.add_argument("--seed", type=int, default=1, help="seed of data and initialisation")
    parser.add_argument("--penalty-weight", type=float, default=PENALTY_WEIGHT,
                        help="lambda of the CE + penalty network (arXiv:1907.11674)")
    args = parser.parse_args()
    torch.set_num_threads(1)  # the networks are tiny: more threads only contend
    t0 = time.perf_counter()
    results = run(PAPER_TOY, args.n_train, args.n_test, args.seed, n_bins=N_BINS,
                  penalty_weight=args.penalty_weight)
    seconds = time.perf_counter() - t0
    optimum = {False: optimal_sigma_mu(PAPER_TOY, include_systematic=False),
               True: optimal_sigma_mu(PAPER_TOY, include_systematic=True)}
    shift_bound = optimal_sigma_mu(PAPER_TOY, include_systematic=True, interpolation="shift")
    print(f"Toy of arXiv:2003.07186: {PAPER_TOY}; {N_BINS} bins, {args.n_train} training and "
          f"{args.n_test} test events per process, seed {args.seed}, {seconds:.0f} s\n")
    print("| sigma_mu (hard bins, test sample) | stat. only | with syst. | with syst. / bound "
          "| paper |")
    print("|---|---|---|---|---|")
    for name, e in results.items():
        print(f"| NN, {name} | {e.stat_only:.4f} ± {e.stat_only_error:.4f} | "
              f"{e.with_syst:.4f} ± {e.with_syst_error:.4f} | {e.with_syst / optimum[True]:.3f} "
              f"| not retrieved |")
    print(f"| best achievable from the true densities (unbinned Fisher, histosys) | {optimum[False]:.4f} | "
          f"{optimum[True]:.4f} | 1 | not retrieved |")
    print(f"| best achievable from the true densities (unbinned Fisher, continuous shift) | {optimum[False]:.4f} | "
          f"{shift_bound:.4f} | {shift_bound / optimum[True]:.3f} | not retrieved |")
    ce, inf = results["cross entropy"], results["sigma_mu, with syst."]
    gain = (ce.with_syst - inf.with_syst) / math.hypot(ce.with_syst_error, inf.with_syst_error)
    print(f"\nsigma_mu-trained vs CE with syst.: {inf.with_syst / ce.with_syst - 1:+.1%} "
          f"({gain:.1f} standard deviations of the test-sample precision)")


if __name__ == "__main__":
    main()
