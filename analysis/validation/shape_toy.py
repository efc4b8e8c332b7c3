"""A three-feature toy with two strong shape systematics, for choosing the soft-histogram bandwidth.

Two processes in ``x = (x1, x2, x3)`` (unitless), unit covariance:

- signal: ``N(x; (0, 0, 0), I)``, :data:`N_SIGNAL` = 50 expected events;
- background: ``N(x; (1, 1, 1), I)``, :data:`N_BACKGROUND` = 1000 expected events, with two
  histosys-like systematics: the background inputs shifted by ``+-1`` along ``x2`` and along
  ``x3`` (:data:`SHIFTS`), i.e. one standard deviation of the background in a separating
  direction each, so that cross entropy, blind to them, leaves much to gain.

It is the Gaussian toy of arXiv:2003.07186 (:mod:`analysis.validation.gaussian_toy`) with a third
feature and a second shift. :func:`compare_bandwidths` trains one cross-entropy network and,
from copies of it, inference-aware networks with the given soft-histogram bandwidths, all with
the defaults of :func:`~analysis.training.loop.train_classifier`, and reports the hard-binned
``sigma_mu`` of each on held-out events.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from analysis.config import CROSS_ENTROPY, INFERENCE
from analysis.errors import InputDataError
from analysis.training.architectures import seeded_build
from analysis.training.loop import LossSettings, train_classifier
from analysis.training.metrics import evaluate_sigma_mu
from analysis.training.samples import Nuisance, Samples

__all__ = ["N_BACKGROUND", "N_SIGNAL", "SHIFTS", "BandwidthComparison", "compare_bandwidths",
           "generate", "make_network", "nuisances"]

N_SIGNAL = 50.0
"""Expected signal events at ``mu = 1``."""
N_BACKGROUND = 1000.0
"""Expected background events."""
SIGNAL_MEAN = (0.0, 0.0, 0.0)
BACKGROUND_MEAN = (1.0, 1.0, 1.0)
SHIFTS: dict[str, tuple[float, float, float]] = {"shift_x2": (0.0, 1.0, 0.0),
                                                 "shift_x3": (0.0, 0.0, 1.0)}
"""Systematic name -> shift of the background inputs at ``theta = +1`` (``-shift`` at -1)."""
_TEST_SEED_OFFSET = 99  # held-out events: seed + this


def generate(n_per_process: int, generator: torch.Generator) -> Samples:
    """Simulated events: ``{"signal", "background"} -> (x (n, 3), weights (n,))``.

    Args:
        n_per_process: simulated events per process, >= 1.
        generator: seeded CPU generator (the only source of randomness).

    Returns:
        float32 inputs (unitless) and weights in expected events per simulated event (signal
        weights sum to :data:`N_SIGNAL`, background to :data:`N_BACKGROUND`).

    Raises:
        InputDataError: if ``n_per_process < 1``.
    """
    n = int(n_per_process)
    if n < 1:
        raise InputDataError(f"shape_toy.generate: n_per_process = {n_per_process}: must be >= 1")
    signal = torch.randn(n, 3, generator=generator) + torch.tensor(SIGNAL_MEAN)
    background = torch.randn(n, 3, generator=generator) + torch.tensor(BACKGROUND_MEAN)
    return {"signal": (signal, torch.full((n,), N_SIGNAL / n)),
            "background": (background, torch.full((n,), N_BACKGROUND / n))}


def nuisances() -> list[Nuisance]:
    """The two background shifts of :data:`SHIFTS`, as :meth:`Nuisance.shift` (histosys)."""
    result = []
    for name, shift in SHIFTS.items():
        delta = torch.tensor(shift)
        result.append(Nuisance.shift(name, lambda x, d=delta: x + d.to(x),
                                     lambda x, d=delta: x - d.to(x), ["background"]))
    return result


def make_network(seed: int, n_hidden: int = 32) -> torch.nn.Module:
    """3-``n_hidden``-1 ReLU network, one logit per event, initialised from ``seed``."""
    return seeded_build(lambda: torch.nn.Sequential(torch.nn.Linear(3, n_hidden), torch.nn.ReLU(),
                                                    torch.nn.Linear(n_hidden, 1)),
                        torch.Generator().manual_seed(seed))


@dataclass(frozen=True)
class BandwidthComparison:
    """Hard-binned ``sigma_mu`` (with both systematics) on held-out events, POI units.

    Attributes:
        cross_entropy: the network trained with cross entropy.
        inference: bandwidth (None: the default) -> the inference-aware network from it.
    """

    cross_entropy: float
    inference: dict[float | None, float]

    def ratio(self, bandwidth: float | None) -> float:
        """``sigma_mu`` of the inference-aware network over that of CE (< 1: it beats CE)."""
        return self.inference[bandwidth] / self.cross_entropy


def compare_bandwidths(bandwidths: Sequence[float | None], seed: int, *, n_train: int = 2000,
                       n_test: int = 20_000, n_bins: int = 10) -> BandwidthComparison:
    """CE vs inference-aware training at each bandwidth, every other setting a default.

    :func:`~analysis.training.loop.train_classifier` with its defaults (100 full-batch Adam
    steps, learning rate 1e-2): ``"ce"`` from :func:`make_network`, then ``"inference"`` with
    both :func:`nuisances` from a copy of the CE network (as in arXiv:2003.07186) with
    ``LossSettings(edges=n_bins equal bins in [0, 1], bandwidth=b)``. Each network is evaluated
    by :func:`~analysis.training.metrics.evaluate_sigma_mu` (hard bins, the same edges) on
    ``n_test`` held-out events per process.

    Args:
        bandwidths: soft-histogram kernel widths in score units (None: the default of
            :func:`~analysis.relax.histograms.resolve_bandwidth`).
        seed: seed of the training events and the initialisation (test events: seed + 99).
        n_train: training events per process.
        n_test: held-out events per process.
        n_bins: equal bins of the score in [0, 1], for training and evaluation.

    Returns:
        The :class:`BandwidthComparison`.

    Raises:
        ConfigError, InputDataError, FitError: as :func:`~analysis.training.loop.train_classifier`.
    """
    train = generate(n_train, torch.Generator().manual_seed(seed))
    test = generate(n_test, torch.Generator().manual_seed(seed + _TEST_SEED_OFFSET))
    shifts = nuisances()
    edges = torch.linspace(0.0, 1.0, n_bins + 1, dtype=torch.float64).tolist()
    ce, _ = train_classifier(make_network(seed), train, CROSS_ENTROPY)
    inference = {}
    for bandwidth in bandwidths:
        net, _ = train_classifier(copy.deepcopy(ce), train, INFERENCE, shifts,
                                  loss=LossSettings(edges=edges, bandwidth=bandwidth))
        inference[bandwidth] = evaluate_sigma_mu(net, test, shifts, edges).total
    return BandwidthComparison(evaluate_sigma_mu(ce, test, shifts, edges).total, inference)
