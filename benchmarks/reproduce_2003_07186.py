"""Reproduce the Gaussian toy of Wunsch et al., arXiv:2003.07186: CE vs sigma_mu-trained NN.

Usage: python benchmarks/reproduce_2003_07186.py [--n-train 50000] [--n-test 200000] [--seed 1]

The toy (:mod:`analysis.training.toys`): signal N((0,0), I), 50 events; background N((1,1), I),
1000 events, with a histosys from the background inputs shifted by (0, +-1). A 2-100-1 network
with a sigmoid output is trained (Adam, full batch, CPU, fixed seed) either with the weighted
cross entropy (classes balanced) or, starting from that network, with the expected sigma_mu of
the 8-bin histogram of its output on Asimov data (soft histogram, histosys from the shifted
inputs; :func:`~analysis.training.losses.inference_loss`). Every network is then evaluated with
hard bins on an independent test sample, with and without the systematic, and compared with the
best achievable sigma_mu from the unbinned Fisher information of the true densities
(:func:`~analysis.training.toys.optimal_sigma_mu`). The test-sample precision of each binned
sigma_mu is the spread over ``N_SPLITS`` disjoint sub-samples divided by sqrt(N_SPLITS).
Prints a Markdown table beside the paper's numbers (not retrieved: the paper's table could not
be read from the sources available here, so that column says so).
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import dataclass

import torch

from analysis.training.losses import cross_entropy_loss, inference_loss
from analysis.training.toys import (
    PAPER_TOY,
    GaussianToy,
    event_weights,
    generate_toy,
    optimal_sigma_mu,
)

N_BINS = 8  # equidistant bins of the NN output in [0, 1]
N_HIDDEN = 100  # hidden ReLU units
BANDWIDTH = 0.02  # logistic kernel width of the soft histogram, score units
CE_STEPS, CE_LR = 600, 3e-3
SIGMA_STEPS, SIGMA_LR = 600, 1e-3
N_SPLITS = 8  # test sub-samples for the statistical precision of a binned sigma_mu
SYSTEMATIC = "bkg_shift"
F64 = torch.float64


@dataclass(frozen=True)
class Evaluation:
    """Binned sigma_mu of one network on the test sample, with its test-sample precision."""

    stat_only: float
    stat_only_error: float
    with_syst: float
    with_syst_error: float


def make_network(seed: int) -> torch.nn.Module:
    """2-``N_HIDDEN``-1 ReLU network returning one logit per event, seeded initialisation."""
    torch.manual_seed(seed)  # torch.nn initialisation only draws from the global generator
    return torch.nn.Sequential(torch.nn.Linear(2, N_HIDDEN), torch.nn.ReLU(),
                               torch.nn.Linear(N_HIDDEN, 1))


def scores(net: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``(n,)`` sigmoid output of ``net`` on ``(n, 2)`` inputs, in float64."""
    return torch.sigmoid(net(x)[:, 0]).to(F64)


def _edges() -> torch.Tensor:
    return torch.linspace(0.0, 1.0, N_BINS + 1, dtype=F64)


def binned_sigma_mu(net: torch.nn.Module, x: dict[str, torch.Tensor],
                    w: dict[str, torch.Tensor], with_syst: bool,
                    histogram: str = "hard") -> torch.Tensor:
    """sigma_mu of the ``N_BINS``-bin histogram of ``net``'s output on the samples ``x``."""
    s = {name: scores(net, x[name]) for name in x}
    nominal = {"signal": s["signal"], "background": s["background"]}
    weights = {"signal": w["signal"].to(F64), "background": w["background"].to(F64)}
    shifted = ({SYSTEMATIC: {"background": ((s["background_up"], w["background_up"].to(F64)),
                                            (s["background_down"],
                                             w["background_down"].to(F64)))}}
               if with_syst else None)
    return inference_loss(nominal, weights, shifted, _edges(), BANDWIDTH, "signal",
                          histogram=histogram, flow="clip")


def train_cross_entropy(x: dict[str, torch.Tensor], seed: int, steps: int = CE_STEPS,
                        lr: float = CE_LR) -> torch.nn.Module:
    """Network trained with the class-balanced cross entropy, signal vs nominal background."""
    net = make_network(seed)
    inputs = torch.cat([x["signal"], x["background"]])
    labels = torch.cat([torch.ones(len(x["signal"]), dtype=torch.long),
                        torch.zeros(len(x["background"]), dtype=torch.long)])
    weights = torch.cat([torch.full((len(x["signal"]),), 1.0 / len(x["signal"])),
                         torch.full((len(x["background"]),), 1.0 / len(x["background"]))])
    optimiser = torch.optim.Adam(net.parameters(), lr=lr)
    for _ in range(steps):
        optimiser.zero_grad()
        logit = net(inputs)  # (n, 1): logit of signal against background
        loss = cross_entropy_loss(torch.cat([torch.zeros_like(logit), logit], dim=1), labels,
                                  weights)
        loss.backward()  # type: ignore[no-untyped-call]
        optimiser.step()
    return net


def train_sigma_mu(start: torch.nn.Module, x: dict[str, torch.Tensor],
                   w: dict[str, torch.Tensor], with_syst: bool, steps: int = SIGMA_STEPS,
                   lr: float = SIGMA_LR) -> torch.nn.Module:
    """Copy of ``start`` trained further on the soft-histogram sigma_mu (arXiv:2003.07186)."""
    net = make_network(0)
    net.load_state_dict(start.state_dict())
    optimiser = torch.optim.Adam(net.parameters(), lr=lr)
    for _ in range(steps):
        optimiser.zero_grad()
        binned_sigma_mu(net, x, w, with_syst, histogram="soft").backward()  # type: ignore[no-untyped-call]
        optimiser.step()
    return net


def evaluate(net: torch.nn.Module, x: dict[str, torch.Tensor],
             w: dict[str, torch.Tensor]) -> Evaluation:
    """Hard-binned sigma_mu on the full test sample, and its precision from ``N_SPLITS`` parts."""
    results = []
    for with_syst in (False, True):
        with torch.no_grad():
            full = float(binned_sigma_mu(net, x, w, with_syst))
            parts = []
            for k in range(N_SPLITS):
                sub = {name: v[k::N_SPLITS] for name, v in x.items()}
                sub_w = {name: N_SPLITS * v[k::N_SPLITS] for name, v in w.items()}
                parts.append(float(binned_sigma_mu(net, sub, sub_w, with_syst)))
        spread = torch.tensor(parts, dtype=F64).std().item()
        results += [full, spread / math.sqrt(N_SPLITS)]
    return Evaluation(*results)


def run(toy: GaussianToy, n_train: int, n_test: int, seed: int) -> dict[str, Evaluation]:
    """Train the CE and the two sigma_mu networks and evaluate them; keyed by network name."""
    train = generate_toy(toy, n_train, torch.Generator().manual_seed(seed))
    test = generate_toy(toy, n_test, torch.Generator().manual_seed(seed + 1_000_003))
    w_train, w_test = event_weights(toy, n_train), event_weights(toy, n_test)
    ce = train_cross_entropy(train, seed)
    nets = {"cross entropy": ce,
            "sigma_mu, stat. only": train_sigma_mu(ce, train, w_train, with_syst=False),
            "sigma_mu, with syst.": train_sigma_mu(ce, train, w_train, with_syst=True)}
    return {name: evaluate(net, test, w_test) for name, net in nets.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-train", type=int, default=50_000, help="training events per process")
    parser.add_argument("--n-test", type=int, default=200_000, help="test events per process")
    parser.add_argument("--seed", type=int, default=1, help="seed of data and initialisation")
    args = parser.parse_args()
    torch.set_num_threads(1)  # the networks are tiny: more threads only contend
    t0 = time.perf_counter()
    results = run(PAPER_TOY, args.n_train, args.n_test, args.seed)
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
    print(f"| best achievable (unbinned Fisher, histosys) | {optimum[False]:.4f} | "
          f"{optimum[True]:.4f} | 1 | not retrieved |")
    print(f"| best achievable (unbinned Fisher, continuous shift) | {optimum[False]:.4f} | "
          f"{shift_bound:.4f} | {shift_bound / optimum[True]:.3f} | not retrieved |")
    ce, inf = results["cross entropy"], results["sigma_mu, with syst."]
    gain = (ce.with_syst - inf.with_syst) / math.hypot(ce.with_syst_error, inf.with_syst_error)
    print(f"\nsigma_mu-trained vs CE with syst.: {inf.with_syst / ce.with_syst - 1:+.1%} "
          f"({gain:.1f} standard deviations of the test-sample precision)")


if __name__ == "__main__":
    main()
