"""Differentiable weighted histograms: kernel-smoothed bins and straight-through hard counts.

Two relaxations of ``numpy.histogram(values, bins=edges, weights=weights)``:

- :func:`soft_histogram` replaces the indicator of bin ``[e_i, e_{i+1})`` by a difference of kernel
  CDFs, ``F((e_{i+1} - x) / h) - F((e_i - x) / h)`` with a logistic (``"sigmoid"``) or normal
  (``"gaussian"``) ``F`` and a bandwidth ``h`` (a KDE integrated over each bin). It is smooth in the
  values, the weights and the edges, and tends to the hard histogram as ``h -> 0``.
- :func:`straight_through_histogram` returns the exact hard counts in the forward pass and the
  gradient of :func:`soft_histogram` in the backward pass, the construction of Wunsch et al.,
  "Optimal statistical inference in the presence of systematic uncertainties using neural network
  optimization based on binned Poisson likelihoods with nuisance parameters", Comput. Softw. Big
  Sci. 5 (2021) 4, arXiv:2003.07186 (hard bins forward, a smooth surrogate for the derivative of
  the bin function backward).

Bin convention (as ``numpy.histogram``): bins are closed on the left, ``[e_i, e_{i+1})``, and the
last bin is closed on both sides, ``[e_{n-1}, e_n]``. Values outside ``[e_0, e_n]`` are handled by
``flow``: ``"drop"`` ignores them (numpy's behaviour); ``"clip"`` adds the underflow to the first
bin and the overflow to the last (the soft version then takes the outer edges as -inf and +inf).

Errors: a wrong ``kernel`` or ``flow`` string raises :class:`~analysis.errors.ConfigError`; bad
shapes, NaN values, non-finite weights, non-increasing or non-finite edges, or ``bandwidth <= 0``
raise :class:`~analysis.errors.InputDataError`. Everything runs in the dtype and on the device of
``values``; memory is ``O(n_events * n_bins)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch

from analysis.errors import ConfigError, InputDataError

__all__ = [
    "BANDWIDTH_PER_BIN_WIDTH",
    "FLOWS",
    "KERNELS",
    "bin_memberships",
    "hard_histogram",
    "resolve_bandwidth",
    "soft_histogram",
    "straight_through_histogram",
]

KERNELS: tuple[str, ...] = ("sigmoid", "gaussian")
"""Kernel CDFs of :func:`soft_histogram`: logistic or standard normal."""

FLOWS: tuple[str, ...] = ("drop", "clip")
"""Under/overflow handling: ignore it, or add it to the first/last bin."""

BANDWIDTH_PER_BIN_WIDTH = 0.2
"""Default kernel width ``h`` of the soft histogram, as a fraction of the narrowest bin width.

The logistic kernel then has a standard deviation of ``pi / sqrt(3) * 0.2 = 0.36`` bin widths:
an event well inside a bin puts almost all of its weight there (the soft histogram is close to
the hard one the analysis will use), yet its gradient still reaches the neighbouring edges.
Measured on the three-feature shape-systematic toy (:mod:`analysis.validation.shape_toy`,
``benchmarks/scan_bandwidth.py``): ``h`` between 0.1 and 0.3 bin widths is best; one bin width
(the former absolute default 0.1 with 0.1-wide bins) loses about a third of the gain over
cross entropy."""

_KERNEL_CDF: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "sigmoid": torch.sigmoid,
    "gaussian": torch.special.ndtr,
}


def _validate(name: str, values: torch.Tensor, weights: torch.Tensor,
              edges: torch.Tensor | np.ndarray | Sequence[float], flow: str,
              bandwidth: float | None = None, kernel: str | None = None) -> torch.Tensor:
    """Check the arguments of a histogram function; return ``edges`` as ``values``' dtype/device."""
    if flow not in FLOWS:
        raise ConfigError(f"{name}: flow = {flow!r}: must be one of {FLOWS}")
    if kernel is not None and kernel not in KERNELS:
        raise ConfigError(f"{name}: kernel = {kernel!r}: must be one of {KERNELS}")
    if not isinstance(values, torch.Tensor) or not isinstance(weights, torch.Tensor):
        raise InputDataError(f"{name}: values and weights must be torch tensors, got "
                             f"{type(values).__name__} and {type(weights).__name__}")
    if values.dim() != 1 or weights.shape != values.shape:
        raise InputDataError(f"{name}: values and weights must both be (n_events,), got values "
                             f"{tuple(values.shape)} and weights {tuple(weights.shape)}")
    if not values.is_floating_point():
        raise InputDataError(f"{name}: values must be floating point, got {values.dtype}")
    if bandwidth is not None and not (math.isfinite(float(bandwidth)) and float(bandwidth) > 0):
        raise InputDataError(f"{name}: bandwidth = {bandwidth}: must be finite and > 0 "
                             f"(in the unit of values)")
    edge_tensor = torch.as_tensor(edges, dtype=values.dtype, device=values.device)
    if edge_tensor.dim() != 1 or edge_tensor.numel() < 2:
        raise InputDataError(f"{name}: edges must be (n_bins + 1,) with n_bins >= 1, got shape "
                             f"{tuple(edge_tensor.shape)}")
    flags = torch.stack([
        torch.isnan(values).any(),
        ~torch.isfinite(weights).all(),
        ~torch.isfinite(edge_tensor).all(),
        (edge_tensor[1:] <= edge_tensor[:-1]).any(),
    ]).tolist()  # one host sync for all data checks
    problems = ["values contain NaN", "weights are not all finite", "edges are not all finite",
                "edges are not strictly increasing"]
    found = [problem for problem, flag in zip(problems, flags, strict=True) if flag]
    if found:
        raise InputDataError(f"{name}: {'; '.join(found)}")
    return edge_tensor.contiguous()


def resolve_bandwidth(bandwidth: float | None,
                      edges: torch.Tensor | np.ndarray | Sequence[float],
                      name: str = "bandwidth") -> float:
    """The soft-histogram kernel width ``h`` to use with ``edges``: the given one, or the default.

    ``None`` means :data:`BANDWIDTH_PER_BIN_WIDTH` (0.2) times the narrowest bin width, so the
    default follows the binning (0.02 for ten bins in [0, 1]). How to choose ``h``: the soft
    histogram is the hard one convolved with the kernel (logistic: standard deviation
    ``1.81 h``), so a wide kernel biases the bin contents and the systematic shape changes
    towards their smoothed versions, and the network is optimised for a binning the analysis
    does not use; a narrow kernel is unbiased but its gradient comes only from the few events
    within about ``h`` of an edge, so it is noisy (small batches, few events) and an empty
    region of the score gets no gradient at all. Keep ``h`` well below the bin width (0.1-0.3
    bin widths were best in ``benchmarks/scan_bandwidth.py``; one bin width lost about a third
    of the gain over cross entropy) and start from a cross-entropy-trained network, whose
    scores already fill the bins.

    Args:
        bandwidth: kernel width in the unit of the edges (score units), finite and > 0, or
            None for the default.
        edges: ``(n_bins + 1,)`` strictly increasing finite bin edges.
        name: the setting's name in error messages (e.g. ``"training.bandwidth"``).

    Returns:
        ``h`` in the unit of the edges.

    Raises:
        ConfigError: naming ``name`` if ``bandwidth`` is not finite and > 0, or (for the
            default) if the edges are not at least two strictly increasing finite numbers.

    Example:
        >>> resolve_bandwidth(None, [0.0, 0.1, 0.2, 1.0])  # 0.2 of the narrowest bin
        0.02
        >>> resolve_bandwidth(0.05, [0.0, 0.5, 1.0])
        0.05
    """
    if bandwidth is not None:
        if isinstance(bandwidth, bool) or not isinstance(bandwidth, int | float) or not (
                math.isfinite(bandwidth) and bandwidth > 0):
            raise ConfigError(f"{name} = {bandwidth!r}: must be a finite number > 0 (the "
                              f"soft-histogram kernel width in score units), or None for "
                              f"{BANDWIDTH_PER_BIN_WIDTH} of the narrowest bin width")
        return float(bandwidth)
    widths = np.diff(np.asarray(torch.as_tensor(edges, dtype=torch.float64).cpu()))
    if widths.size < 1 or not (np.isfinite(widths).all() and (widths > 0).all()):
        raise ConfigError(f"{name} = None: the default needs strictly increasing finite bin "
                          f"edges, got {np.asarray(edges).tolist()}")
    return round(BANDWIDTH_PER_BIN_WIDTH * float(widths.min()), 12)


def _soft_membership(values: torch.Tensor, edges: torch.Tensor, bandwidth: float, kernel: str,
                     flow: str) -> torch.Tensor:
    """Each value's kernel mass in each bin, no validation; ``(n_events, n_bins)``."""
    cdf = _KERNEL_CDF[kernel]((edges[None, :] - values[:, None]) / bandwidth)  # P(value < edge)
    if flow == "clip":  # outer edges at -inf and +inf
        cdf = torch.cat([torch.zeros_like(cdf[:, :1]), cdf[:, 1:-1], torch.ones_like(cdf[:, :1])],
                        dim=1)
    return cdf[:, 1:] - cdf[:, :-1]


def _hard_membership(values: torch.Tensor, edges: torch.Tensor, flow: str) -> torch.Tensor:
    """Whether each value is in each bin (numpy's edge convention), no validation;
    ``(n_events, n_bins)`` bool."""
    n_bins = edges.numel() - 1
    index = torch.searchsorted(edges, values.contiguous(), right=True) - 1  # [e_i, e_i+1) -> i
    index = torch.where(values == edges[-1], n_bins - 1, index)  # last bin closed on the right
    if flow == "clip":
        index = index.clamp(0, n_bins - 1)
    # index -1 (underflow) and n_bins (overflow) match no bin and are dropped
    return index[:, None] == torch.arange(n_bins, device=values.device)[None, :]


def _soft_counts(values: torch.Tensor, weights: torch.Tensor, edges: torch.Tensor,
                 bandwidth: float, kernel: str, flow: str) -> torch.Tensor:
    """Kernel-smoothed counts, no validation; ``(n_bins,)``."""
    membership = _soft_membership(values, edges, bandwidth, kernel, flow)
    return (weights.to(membership.dtype)[:, None] * membership).sum(dim=0)


def _hard_counts(values: torch.Tensor, weights: torch.Tensor, edges: torch.Tensor,
                 flow: str) -> torch.Tensor:
    """Exact counts with numpy's edge convention, no validation; ``(n_bins,)``."""
    is_member = _hard_membership(values, edges, flow)
    weights = weights.to(values.dtype)
    return torch.where(is_member, weights[:, None], torch.zeros_like(weights[:, None])).sum(dim=0)


def bin_memberships(values: torch.Tensor, edges: torch.Tensor | np.ndarray | Sequence[float],
                    bandwidth: float | None = None, kernel: str = "sigmoid",
                    flow: str = "drop") -> torch.Tensor:
    """How much of each value falls into each bin: the matrix behind the histograms.

    ``weights @ bin_memberships(values, edges, bandwidth)`` is :func:`soft_histogram` (and with
    ``bandwidth=None`` :func:`hard_histogram`). Per-event contributions are needed where events
    are summed in groups before squaring, e.g. the MC statistical variance of detector replicas
    (:func:`analysis.inference.mcstat.grouped_cross_terms`).

    Args:
        values: ``(n_events,)`` observable, e.g. a classifier score (unitless).
        edges: ``(n_bins + 1,)`` strictly increasing finite bin edges, same unit as ``values``.
        bandwidth: kernel width ``h`` in the unit of ``values`` (the soft memberships of
            :func:`soft_histogram`, differentiable in ``values``), or None for the exact 0/1
            memberships of :func:`hard_histogram` (no gradient).
        kernel: ``"sigmoid"`` or ``"gaussian"`` (soft only).
        flow: ``"drop"`` or ``"clip"``, as in the histogram functions.

    Returns:
        ``(n_events, n_bins)`` in ``values``' dtype and on its device; each row sums to 1 inside
        ``[edges[0], edges[-1]]`` (and everywhere with ``flow="clip"``).

    Raises:
        ConfigError, InputDataError: as :func:`soft_histogram`.

    Example:
        >>> bin_memberships(torch.tensor([0.2, 0.7]), [0.0, 0.5, 1.0])
        tensor([[1., 0.],
                [0., 1.]])
    """
    ones = torch.ones_like(values) if isinstance(values, torch.Tensor) else values
    if bandwidth is None:
        edge_tensor = _validate("bin_memberships", values, ones, edges, flow)
        return _hard_membership(values.detach(), edge_tensor, flow).to(values.dtype)
    edge_tensor = _validate("bin_memberships", values, ones, edges, flow, bandwidth, kernel)
    return _soft_membership(values, edge_tensor, float(bandwidth), kernel, flow)


def hard_histogram(values: torch.Tensor, weights: torch.Tensor,
                   edges: torch.Tensor | np.ndarray | Sequence[float],
                   flow: str = "drop") -> torch.Tensor:
    """Exact weighted histogram, ``numpy.histogram`` for ``flow="drop"``; not differentiable.

    Args:
        values: ``(n_events,)`` observable, e.g. a classifier score (unitless) or a mass (GeV).
        weights: ``(n_events,)`` expected events per simulated event (may be negative).
        edges: ``(n_bins + 1,)`` strictly increasing finite bin edges, same unit as ``values``.
        flow: ``"drop"`` ignores values outside ``[edges[0], edges[-1]]``; ``"clip"`` adds them to
            the first/last bin.

    Returns:
        ``(n_bins,)`` sum of weights per bin, in ``values``' dtype and on its device.

    Raises:
        ConfigError: if ``flow`` is not one of :data:`FLOWS`.
        InputDataError: on shape mismatch, NaN values, non-finite weights or bad edges.

    Example:
        >>> hard_histogram(torch.tensor([-1.0, 0.0, 0.5, 1.0, 2.0]), torch.ones(5), [0.0, 0.5, 1.0])
        tensor([1., 2.])
        >>> hard_histogram(torch.tensor([-1.0, 0.0, 0.5, 1.0, 2.0]), torch.ones(5), [0.0, 0.5, 1.0],
        ...                flow="clip")
        tensor([2., 3.])
    """
    edge_tensor = _validate("hard_histogram", values, weights, edges, flow)
    return _hard_counts(values.detach(), weights.detach(), edge_tensor, flow)


def soft_histogram(values: torch.Tensor, weights: torch.Tensor,
                   edges: torch.Tensor | np.ndarray | Sequence[float], bandwidth: float,
                   kernel: str = "sigmoid", flow: str = "drop") -> torch.Tensor:
    """Kernel-smoothed weighted histogram, differentiable in ``values``, ``weights`` and ``edges``.

    Bin ``i`` receives ``sum_j w_j [F((e_{i+1} - x_j) / h) - F((e_i - x_j) / h)]`` with ``F`` the
    logistic function or the standard normal CDF and ``h = bandwidth``: each event is spread by the
    kernel and integrated over the bin (a binned KDE). As ``h -> 0`` this is ``numpy.histogram``
    for values off the edges; a value exactly on an interior edge is split half and half.

    Args:
        values: ``(n_events,)`` observable, e.g. a classifier score (unitless).
        weights: ``(n_events,)`` expected events per simulated event (may be negative).
        edges: ``(n_bins + 1,)`` strictly increasing finite bin edges, same unit as ``values``;
            a tensor that requires grad gets gradients too.
        bandwidth: kernel width ``h`` in the unit of ``values``; finite and > 0. The logistic
            kernel has standard deviation ``pi * h / sqrt(3)``, the Gaussian ``h``.
        kernel: ``"sigmoid"`` (logistic CDF) or ``"gaussian"`` (normal CDF, lighter tails).
        flow: ``"drop"`` lets mass beyond the outer edges leave the histogram; ``"clip"`` treats
            the outer edges as ``-inf``/``+inf``, so the bins sum to ``weights.sum()``.

    Returns:
        ``(n_bins,)`` expected events per bin, in ``values``' dtype and on its device.

    Raises:
        ConfigError: if ``kernel`` or ``flow`` is not a known option.
        InputDataError: on shape mismatch, NaN values, non-finite weights, bad edges or
            ``bandwidth <= 0``.

    Example:
        >>> soft_histogram(torch.tensor([0.2, 0.7]), torch.ones(2), [0.0, 0.5, 1.0], 1e-3)
        tensor([1., 1.])
        >>> soft_histogram(torch.tensor([0.5]), torch.ones(1), [0.0, 0.5, 1.0], 0.01)
        tensor([0.5000, 0.5000])
    """
    edge_tensor = _validate("soft_histogram", values, weights, edges, flow, bandwidth, kernel)
    return _soft_counts(values, weights, edge_tensor, float(bandwidth), kernel, flow)


def straight_through_histogram(values: torch.Tensor, weights: torch.Tensor,
                               edges: torch.Tensor | np.ndarray | Sequence[float], bandwidth: float,
                               kernel: str = "sigmoid", flow: str = "drop") -> torch.Tensor:
    """Exact weighted histogram forward, gradient of :func:`soft_histogram` backward.

    Computed as ``hard + (soft - soft.detach())``: the forward value is bit-identical to
    :func:`hard_histogram` at any bandwidth, and the backward pass is exactly that of
    :func:`soft_histogram` with the same ``bandwidth``, ``kernel`` and ``flow`` (Wunsch et al.,
    arXiv:2003.07186). The bandwidth now only sets how far the gradient reaches.

    Args:
        values: ``(n_events,)`` observable, e.g. a classifier score (unitless).
        weights: ``(n_events,)`` expected events per simulated event (may be negative).
        edges: ``(n_bins + 1,)`` strictly increasing finite bin edges, same unit as ``values``.
        bandwidth: kernel width of the backward pass in the unit of ``values``; finite and > 0.
        kernel: ``"sigmoid"`` or ``"gaussian"``, as in :func:`soft_histogram`.
        flow: ``"drop"`` or ``"clip"``, as in :func:`hard_histogram`; used forward and backward.

    Returns:
        ``(n_bins,)`` expected events per bin, in ``values``' dtype and on its device.

    Raises:
        ConfigError: if ``kernel`` or ``flow`` is not a known option.
        InputDataError: on shape mismatch, NaN values, non-finite weights, bad edges or
            ``bandwidth <= 0``.

    Example:
        >>> x = torch.tensor([0.2, 0.5, 0.7], requires_grad=True)
        >>> straight_through_histogram(x, torch.ones(3), [0.0, 0.5, 1.0], 0.1)
        tensor([1., 2.], grad_fn=<AddBackward0>)
    """
    name = "straight_through_histogram"
    edge_tensor = _validate(name, values, weights, edges, flow, bandwidth, kernel)
    hard = _hard_counts(values.detach(), weights.detach(), edge_tensor.detach(), flow)
    soft = _soft_counts(values, weights, edge_tensor, float(bandwidth), kernel, flow)
    return hard + (soft - soft.detach())
