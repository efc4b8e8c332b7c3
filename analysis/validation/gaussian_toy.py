"""The two-dimensional Gaussian toy of Wunsch et al., arXiv:2003.07186 (and arXiv:1907.11674).

Two processes in a two-dimensional input space ``x = (x1, x2)`` (unitless):

- signal: ``N(x; m_s, I)`` with ``m_s = (0, 0)``, ``n_signal = 50`` expected events;
- background: ``N(x; m_b + theta * delta, I)`` with ``m_b = (1, 1)``, ``n_background = 1000``
  expected events, and one systematic uncertainty, a shift ``delta = (0, 1)`` of the background
  along ``x2``; its up/down variations are the background inputs shifted by ``+-delta``
  (``theta = +-1`` standard deviations of a unit Gaussian constraint).

These values follow the description of the toy as handed to us; the paper's text could not be
retrieved to check them (see :data:`PAPER_TOY`), so they are parameters of :class:`GaussianToy`.

The best achievable uncertainty of the signal strength ``mu`` is given by the Fisher information
of the *unbinned* extended likelihood
``L(mu, theta) = Pois(N | mu S + B) prod_i f(x_i | mu, theta) * N(0 | theta, 1)``,
whose intensity is ``lambda(x) = mu S s(x) + B b(x; theta)``:
``I_jk = int d_j lambda(x) d_k lambda(x) / lambda(x) dx + delta_{j theta} delta_{k theta}``
(the constraint adds 1 to ``I_theta,theta``), and ``sigma_mu = sqrt((I^-1)_mu,mu)`` (Cramér-Rao).
Any histogram of any function of ``x`` loses information (the binned Fisher information is a
coarse-graining of this integral), so a binned analysis cannot do better.

The derivative of the background intensity in ``theta`` at ``theta = 0`` is either that of the
density with a continuous shift, ``B b(x) (x - m_b) . delta`` (``interpolation="shift"``), or the
symmetric difference ``B (b_up(x) - b_down(x)) / 2`` that pyhf's histosys (codes 0, 4p) uses at
``theta = 0`` (``interpolation="histosys"``); the latter is the model a histosys fit describes,
and the bound that applies to it.

:func:`run` reproduces the paper's comparison on the toy with the public training API: a
network trained with cross entropy, then (from it) on the expected ``sigma_mu`` with and without
the background shift, each evaluated with hard bins on an independent test sample.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import numpy as np
import torch

from analysis.config import CROSS_ENTROPY, INFERENCE, PENALTY
from analysis.errors import ConfigError, InputDataError
from analysis.training.architectures import seeded_build
from analysis.training.loop import LossSettings, train_classifier
from analysis.training.metrics import evaluate_sigma_mu
from analysis.training.samples import Nuisance

__all__ = [
    "INTERPOLATIONS",
    "PAPER_TOY",
    "GaussianToy",
    "generate_toy",
    "event_weights",
    "gaussian_density",
    "signal_density",
    "background_density",
    "unbinned_fisher_information",
    "optimal_sigma_mu",
    "Evaluation",
    "make_network",
    "run",
]

INTERPOLATIONS: tuple[str, ...] = ("histosys", "shift")
"""Background derivative in ``theta``: symmetric up/down difference, or the continuous shift."""

_GRID_HALF_WIDTH = 9.0  # grid reaches this many unit standard deviations beyond every mean
_GRID_STEP = 0.02  # midpoint-rule step of the Fisher integral, in x units


@dataclass(frozen=True)
class GaussianToy:
    """Parameters of the two-process Gaussian toy; the defaults are :data:`PAPER_TOY`.

    Attributes:
        signal_mean: ``(2,)`` mean of the signal, unit covariance.
        background_mean: ``(2,)`` nominal mean of the background, unit covariance.
        shift: ``(2,)`` shift of the background mean at ``theta = +1`` (``-shift`` at ``-1``).
        n_signal: expected signal events at ``mu = 1``; > 0.
        n_background: expected background events; > 0.
    """

    signal_mean: tuple[float, float] = (0.0, 0.0)
    background_mean: tuple[float, float] = (1.0, 1.0)
    shift: tuple[float, float] = (0.0, 1.0)
    n_signal: float = 50.0
    n_background: float = 1000.0

    def __post_init__(self) -> None:
        for name in ("signal_mean", "background_mean", "shift"):
            value = getattr(self, name)
            if len(value) != 2 or not all(math.isfinite(float(v)) for v in value):
                raise ConfigError(f"GaussianToy: {name} = {value}: must be 2 finite numbers")
        for name in ("n_signal", "n_background"):
            value = float(getattr(self, name))
            if not (math.isfinite(value) and value > 0):
                raise ConfigError(f"GaussianToy: {name} = {value}: must be finite and > 0 events")


PAPER_TOY = GaussianToy()
"""The toy as described for arXiv:2003.07186, Sec. 4 (values unverified against the paper)."""


def generate_toy(toy: GaussianToy, n_per_process: int, generator: torch.Generator,
                 dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    """Simulated events of the toy: signal, background and the shifted background inputs.

    The up/down samples are the *same* background events shifted by ``+-toy.shift`` (a variation
    of the inputs, as for a histosys from shifted simulation), so they differ from the nominal
    only by the systematic effect.

    Args:
        toy: the toy's parameters.
        n_per_process: simulated events per process, >= 1.
        generator: seeded CPU random generator (the only source of randomness).
        dtype: floating dtype of the returned tensors.

    Returns:
        ``{"signal", "background", "background_up", "background_down"}``, each
        ``(n_per_process, 2)`` inputs ``x`` (unitless), on the CPU.

    Raises:
        InputDataError: if ``n_per_process < 1``.

    Example:
        >>> x = generate_toy(PAPER_TOY, 3, torch.Generator().manual_seed(0))
        >>> (x["background_up"] - x["background"])[0].tolist()
        [0.0, 1.0]
    """
    if int(n_per_process) < 1:
        raise InputDataError(f"generate_toy: n_per_process = {n_per_process}: must be >= 1")
    shape = (int(n_per_process), 2)
    signal = torch.randn(shape, generator=generator, dtype=dtype)
    signal = signal + torch.tensor(toy.signal_mean, dtype=dtype)
    background = torch.randn(shape, generator=generator, dtype=dtype)
    background = background + torch.tensor(toy.background_mean, dtype=dtype)
    shift = torch.tensor(toy.shift, dtype=dtype)
    return {"signal": signal, "background": background, "background_up": background + shift,
            "background_down": background - shift}


def event_weights(toy: GaussianToy, n_per_process: int,
                  dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    """Per-event weights (expected events per simulated event) of :func:`generate_toy`'s samples.

    Args:
        toy: the toy's parameters.
        n_per_process: simulated events per process, >= 1.
        dtype: floating dtype of the weights.

    Returns:
        Same keys as :func:`generate_toy`, each ``(n_per_process,)``; signal weights sum to
        ``toy.n_signal``, each background sample's to ``toy.n_background``.

    Raises:
        InputDataError: if ``n_per_process < 1``.
    """
    if int(n_per_process) < 1:
        raise InputDataError(f"event_weights: n_per_process = {n_per_process}: must be >= 1")
    n = int(n_per_process)
    background = torch.full((n,), toy.n_background / n, dtype=dtype)
    return {"signal": torch.full((n,), toy.n_signal / n, dtype=dtype), "background": background,
            "background_up": background.clone(), "background_down": background.clone()}


def gaussian_density(x: np.ndarray, mean: tuple[float, float] | np.ndarray) -> np.ndarray:
    """Unit-covariance bivariate normal density ``N(x; mean, I)``.

    Args:
        x: ``(..., 2)`` points (unitless).
        mean: ``(2,)`` mean.

    Returns:
        ``(...)`` density per unit area of ``x``.

    Example:
        >>> round(float(gaussian_density(np.zeros(2), (0.0, 0.0))), 6)  # 1 / (2 pi)
        0.159155
    """
    d = np.asarray(x, dtype=np.float64) - np.asarray(mean, dtype=np.float64)
    return np.exp(-0.5 * (d**2).sum(axis=-1)) / (2.0 * math.pi)


def signal_density(toy: GaussianToy, x: np.ndarray) -> np.ndarray:
    """True signal density ``s(x)`` (normalised to 1), ``(..., 2) -> (...)``."""
    return gaussian_density(x, toy.signal_mean)


def background_density(toy: GaussianToy, x: np.ndarray, theta: float = 0.0) -> np.ndarray:
    """True background density ``b(x; theta) = N(x; m_b + theta * shift, I)``.

    Args:
        toy: the toy's parameters.
        x: ``(..., 2)`` points.
        theta: nuisance parameter in units of its constraint (``+-1`` are the up/down samples).

    Returns:
        ``(...)`` density per unit area, normalised to 1 for every ``theta``.
    """
    mean = np.asarray(toy.background_mean) + float(theta) * np.asarray(toy.shift)
    return gaussian_density(x, mean)


def _background_derivative(toy: GaussianToy, x: np.ndarray, interpolation: str) -> np.ndarray:
    """``d b(x; theta) / d theta`` at ``theta = 0``, per unit area, ``(..., 2) -> (...)``."""
    if interpolation == "histosys":
        return 0.5 * (background_density(toy, x, 1.0) - background_density(toy, x, -1.0))
    d = np.asarray(x) - np.asarray(toy.background_mean)
    return background_density(toy, x) * (d @ np.asarray(toy.shift, dtype=np.float64))


def unbinned_fisher_information(toy: GaussianToy, include_systematic: bool = True,
                                interpolation: str = "histosys", step: float = _GRID_STEP,
                                half_width: float = _GRID_HALF_WIDTH) -> np.ndarray:
    """Fisher information of the unbinned extended likelihood at ``mu = 1``, ``theta = 0``.

    ``I_jk = int d_j lambda d_k lambda / lambda dx`` with ``lambda(x) = mu S s(x) + B b(x;
    theta)``, plus the unit Gaussian constraint on ``theta`` (module docstring), integrated with
    the midpoint rule on a square grid that reaches ``half_width`` beyond every mean. For these
    smooth, Gaussian-tailed integrands the midpoint rule converges faster than any power of
    ``step``: at the defaults the relative error of ``sigma_mu`` is below 1e-9 (checked against
    ``step / 2`` and a wider grid in the tests).

    Args:
        toy: the toy's parameters.
        include_systematic: add ``theta`` (with its constraint); otherwise only ``mu``.
        interpolation: ``"histosys"`` or ``"shift"``, see :data:`INTERPOLATIONS`.
        step: grid spacing in ``x`` units, > 0.
        half_width: grid margin beyond the means in ``x`` units, > 0.

    Returns:
        ``(n_par, n_par)`` symmetric matrix in the order ``(mu, theta)``; ``n_par`` is 2 with
        the systematic and 1 without, in inverse parameter units squared.

    Raises:
        ConfigError: if ``interpolation`` is unknown or ``step``/``half_width`` is not > 0.

    Example:
        >>> same = GaussianToy(signal_mean=(1.0, 1.0))  # s = b: a counting experiment
        >>> info = unbinned_fisher_information(same, include_systematic=False)
        >>> round(float(info[0, 0]), 6) == round(50.0**2 / 1050.0, 6)  # S^2 / (S + B)
        True
    """
    if interpolation not in INTERPOLATIONS:
        raise ConfigError(f"unbinned_fisher_information: interpolation = {interpolation!r}: "
                          f"must be one of {INTERPOLATIONS}")
    if not (step > 0 and half_width > 0):
        raise ConfigError(f"unbinned_fisher_information: step = {step}, half_width = "
                          f"{half_width}: must both be > 0 (x units)")
    means = np.array([toy.signal_mean, toy.background_mean,
                      np.add(toy.background_mean, toy.shift),
                      np.subtract(toy.background_mean, toy.shift)], dtype=np.float64)
    axes = []
    for dim in range(2):
        low, high = means[:, dim].min() - half_width, means[:, dim].max() + half_width
        n_cells = int(math.ceil((high - low) / step))
        axes.append(low + step * (np.arange(n_cells) + 0.5))
    cell_area = step * step
    info = np.zeros((2, 2))
    for x1 in np.array_split(axes[0], max(1, axes[0].size // 200)):  # bounded memory
        grid = np.stack(np.meshgrid(x1, axes[1], indexing="ij"), axis=-1)  # (n1, n2, 2)
        d_mu = toy.n_signal * signal_density(toy, grid)
        rate = d_mu + toy.n_background * background_density(toy, grid)
        d_theta = toy.n_background * _background_derivative(toy, grid, interpolation)
        grads = np.stack([d_mu, d_theta], axis=-1).reshape(-1, 2)
        info += np.einsum("ni,nj->ij", grads / rate.reshape(-1, 1), grads) * cell_area
    info[1, 1] += 1.0  # unit Gaussian constraint on theta
    return info if include_systematic else info[:1, :1]


def optimal_sigma_mu(toy: GaussianToy, include_systematic: bool = True,
                     interpolation: str = "histosys", step: float = _GRID_STEP,
                     half_width: float = _GRID_HALF_WIDTH) -> float:
    """Best achievable ``sigma_mu = sqrt((I^-1)_mu,mu)`` of the toy (Cramér-Rao bound).

    Args:
        toy: the toy's parameters.
        include_systematic: profile the background shift ``theta``; otherwise ``mu`` only.
        interpolation: ``"histosys"`` or ``"shift"``, see :data:`INTERPOLATIONS`.
        step: grid spacing of :func:`unbinned_fisher_information`, x units.
        half_width: grid margin of :func:`unbinned_fisher_information`, x units.

    Returns:
        The expected uncertainty of the signal strength, in units of ``mu``.

    Raises:
        ConfigError: as :func:`unbinned_fisher_information`.
    """
    info = unbinned_fisher_information(toy, include_systematic, interpolation, step, half_width)
    return float(math.sqrt(np.linalg.inv(info)[0, 0]))


@dataclass(frozen=True)
class Evaluation:
    """Hard-binned ``sigma_mu`` of one network on the test sample, with its test-sample precision.

    Attributes:
        stat_only: ``sigma_mu`` without the systematic (POI units).
        stat_only_error: its standard error from the spread over disjoint test sub-samples.
        with_syst: ``sigma_mu`` with the background shift profiled (histosys).
        with_syst_error: its standard error, as ``stat_only_error``.
    """

    stat_only: float
    stat_only_error: float
    with_syst: float
    with_syst_error: float


def make_network(seed: int, n_hidden: int = 100) -> torch.nn.Module:
    """2-``n_hidden``-1 ReLU network, one logit per event, initialised from ``seed``."""
    return seeded_build(lambda: torch.nn.Sequential(torch.nn.Linear(2, n_hidden), torch.nn.ReLU(),
                                                    torch.nn.Linear(n_hidden, 1)),
                        torch.Generator().manual_seed(seed))


def _evaluate(net: torch.nn.Module, x: dict[str, torch.Tensor], w: dict[str, torch.Tensor],
              shift: Nuisance, edges: list[float], n_splits: int) -> Evaluation:
    """Hard-binned ``sigma_mu`` on the full sample, and its precision from ``n_splits`` parts."""
    def sigma(k: int, n: int) -> tuple[float, float]:
        result = evaluate_sigma_mu(net, {s: (x[s][k::n], n * w[s][k::n])
                                         for s in ("signal", "background")}, [shift], edges)
        return result.stat_only, result.total

    full = sigma(0, 1)
    parts = torch.tensor([sigma(k, n_splits) for k in range(n_splits)], dtype=torch.float64)
    error = parts.std(dim=0) / math.sqrt(n_splits)
    return Evaluation(full[0], float(error[0]), full[1], float(error[1]))


def run(toy: GaussianToy, n_train: int, n_test: int, seed: int, *, n_bins: int = 8,
        n_hidden: int = 100, bandwidth: float = 0.02, ce_steps: int = 600, ce_lr: float = 3e-3,
        sigma_mu_steps: int = 600, sigma_mu_lr: float = 1e-3, n_splits: int = 8,
        train_stat_only: bool = True, penalty_weight: float | None = None
        ) -> dict[str, Evaluation]:
    """Train CE and ``sigma_mu`` networks on the toy and evaluate them (arXiv:2003.07186, Sec. 4).

    :func:`~analysis.training.loop.train_classifier` with ``"ce"`` (full-batch Adam, classes
    balanced), then, from copies of that network, with ``"inference"`` on the soft histogram of
    ``n_bins`` equal bins of the output in ``[0, 1]``, with the background shift as a
    :meth:`~analysis.training.loop.Nuisance.shift` (and, if ``train_stat_only``, without it).
    Each network is evaluated by :func:`~analysis.training.metrics.evaluate_sigma_mu` on an
    independent test sample; the precision is the spread over ``n_splits`` disjoint test
    sub-samples (weights scaled by ``n_splits``) divided by ``sqrt(n_splits)``.

    Args:
        toy: the toy's parameters.
        n_train: training events per process, >= 1.
        n_test: test events per process, >= ``n_splits``.
        seed: seed of the training data and the initialisation (test data: ``seed + 1000003``).
        n_bins: equal bins of the network output in ``[0, 1]``, for training and evaluation.
        n_hidden: hidden ReLU units of :func:`make_network`.
        bandwidth: soft-histogram kernel width in score units, > 0.
        ce_steps: full-batch Adam steps of the CE training.
        ce_lr: its learning rate.
        sigma_mu_steps: full-batch Adam steps of each ``sigma_mu`` training.
        sigma_mu_lr: its learning rate.
        n_splits: test sub-samples for the precision, >= 2.
        train_stat_only: also train a network on ``sigma_mu`` without the systematic.
        penalty_weight: if given, also train (from the CE network, ``sigma_mu_steps`` steps) with
            CE plus this ``lambda`` times the systematic penalty of arXiv:1907.11674.

    Returns:
        ``{"cross entropy", "CE + penalty" (if ``penalty_weight``), "sigma_mu, stat. only" (if
        ``train_stat_only``), "sigma_mu, with syst."}`` -> :class:`Evaluation`.

    Raises:
        ConfigError, InputDataError: as :func:`~analysis.training.loop.train_classifier`.
        FitError: if a Fisher information is singular.
    """
    train = generate_toy(toy, n_train, torch.Generator().manual_seed(seed))
    test = generate_toy(toy, n_test, torch.Generator().manual_seed(seed + 1_000_003))
    w_train, w_test = event_weights(toy, n_train), event_weights(toy, n_test)
    delta = torch.tensor(toy.shift)
    shift = Nuisance.shift("bkg_shift", lambda x: x + delta.to(x), lambda x: x - delta.to(x),
                           ["background"])
    samples = {s: (train[s], w_train[s]) for s in ("signal", "background")}
    edges = torch.linspace(0.0, 1.0, n_bins + 1, dtype=torch.float64).tolist()
    ce, _ = train_classifier(make_network(seed, n_hidden), samples, CROSS_ENTROPY, steps=ce_steps,
                             lr=ce_lr)
    nets = {"cross entropy": ce}
    if penalty_weight is not None:
        nets["CE + penalty"], _ = train_classifier(
            copy.deepcopy(ce), samples, PENALTY, [shift], steps=sigma_mu_steps, lr=sigma_mu_lr,
            loss=LossSettings(edges=edges, bandwidth=bandwidth, penalty_weight=penalty_weight))
    for name, nuisances in (("sigma_mu, stat. only", []), ("sigma_mu, with syst.", [shift])):
        if nuisances or train_stat_only:
            nets[name], _ = train_classifier(copy.deepcopy(ce), samples, INFERENCE, nuisances,
                                             steps=sigma_mu_steps, lr=sigma_mu_lr,
                                             loss=LossSettings(edges=edges, bandwidth=bandwidth))
    return {name: _evaluate(net, test, w_test, shift, edges, n_splits)
            for name, net in nets.items()}
