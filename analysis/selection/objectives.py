"""Counting-experiment objectives of soft-selected yields: S/sqrt(B) and the Asimov significance.

A selection (hard 0/1 or soft, e.g. :class:`analysis.relax.cuts.LearnableCuts`) gives each event
a weight ``sel_j`` in ``[0, 1]``; the selected yields are ``s = sum_j w_j sel_j`` over signal and
``b`` the same over background (:func:`selected_yield`). The objectives below are functions of
``(s, b)`` that broadcast, so the same code scores one soft selection during training and a whole
grid of hard selections at once.

Both objectives diverge as ``b -> 0`` (``s / sqrt(b)`` as ``b**-1/2``, the Asimov significance
logarithmically), which a finite simulated sample reaches by cutting around a few signal events.
Both therefore take ``min_background`` and evaluate at ``b_eff = max(b, min_background)``. Because
loosening a cut never lowers ``s`` or ``b``, the maximum of the floored objective is the maximum
of the plain one subject to ``b >= min_background`` (up to the granularity of one event), and
below the floor the gradient pushes the cuts open again.
"""

from __future__ import annotations

import math

import torch

from analysis.errors import InputDataError

__all__ = ["selected_yield", "s_over_sqrt_b", "asimov_significance"]


def _check_floor(name: str, min_background: float) -> float:
    """Return ``min_background`` as a float; InputDataError unless finite and > 0."""
    if not (math.isfinite(value := float(min_background)) and value > 0):
        raise InputDataError(f"{name}: min_background = {min_background}: must be finite and > 0 "
                             f"(expected background events)")
    return value


def _yields(name: str, s: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Check that ``s`` and ``b`` are floating tensors that broadcast; return them."""
    if not all(isinstance(t, torch.Tensor) and t.is_floating_point() for t in (s, b)):
        raise InputDataError(f"{name}: s and b must be floating-point tensors (expected events)")
    try:
        torch.broadcast_shapes(s.shape, b.shape)
    except RuntimeError as err:
        raise InputDataError(f"{name}: s {tuple(s.shape)} and b {tuple(b.shape)} do not "
                             f"broadcast") from err
    return s, b


def selected_yield(selection: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Expected selected events ``sum_j weights_j * selection_j``, differentiable in both.

    Args:
        selection: ``(n_events,)`` selection weights in ``[0, 1]`` (soft or hard).
        weights: ``(n_events,)`` expected events per simulated event.

    Returns:
        Scalar tensor (expected events).

    Raises:
        InputDataError: if the shapes differ or are not 1-D.

    Example:
        >>> selected_yield(torch.tensor([1.0, 0.5, 0.0]), torch.tensor([2.0, 2.0, 2.0]))
        tensor(3.)
    """
    if selection.dim() != 1 or selection.shape != weights.shape:
        raise InputDataError(f"selected_yield: need equal 1-D shapes, got selection "
                             f"{tuple(selection.shape)}, weights {tuple(weights.shape)}")
    return (selection * weights.to(selection)).sum()


def s_over_sqrt_b(s: torch.Tensor, b: torch.Tensor, *, min_background: float) -> torch.Tensor:
    """``s / sqrt(max(b, min_background))``: the large-``b`` significance of a counting experiment.

    Args:
        s: selected signal yield (expected events), any shape broadcasting with ``b``.
        b: selected background yield (expected events).
        min_background: floor on ``b`` (expected events), > 0; see the module docstring.

    Returns:
        Tensor of the broadcast shape (dimensionless, in standard deviations).

    Raises:
        InputDataError: for non-tensor inputs, shapes that do not broadcast, or a bad floor.

    Example:
        >>> s_over_sqrt_b(torch.tensor([10.0, 10.0]), torch.tensor([100.0, 1.0]), min_background=4.0)
        tensor([1., 5.])
    """
    floor = _check_floor("s_over_sqrt_b", min_background)
    s, b = _yields("s_over_sqrt_b", s, b)
    return s / b.clamp_min(floor).sqrt()


def asimov_significance(s: torch.Tensor, b: torch.Tensor, *, relative_uncertainty: float = 0.1,
                        min_background: float) -> torch.Tensor:
    """Median discovery significance with a background known to ``sigma = relative * b``.

    The profile-likelihood (Asimov) significance of a counting experiment ``n ~ Pois(s + b)``
    whose background has a Gaussian-approximated auxiliary measurement of uncertainty ``sigma``,
    G. Cowan, "Discovery sensitivity for a counting experiment with background uncertainty"
    (2012), Eq. (20); the ``sigma -> 0`` limit is Cowan, Cranmer, Gross, Vitells, arXiv:1007.1727,
    Eq. (97), ``sqrt(2 ((s + b) ln(1 + s/b) - s))``::

        Z_A = sqrt(2 ((s+b) ln[(s+b)(b+sigma^2) / (b^2+(s+b) sigma^2)]
                      - b^2/sigma^2 ln[1 + sigma^2 s / (b (b+sigma^2))]))

    It is evaluated in the algebraically equal form ``(s+b) log1p(s b / (b^2 + (s+b) sigma^2))
    - b^2/sigma^2 log1p(sigma^2 s / (b (b + sigma^2)))``, which keeps precision for ``s << b``,
    at ``b_eff = max(b, min_background)`` and ``sigma = relative_uncertainty * b_eff``.

    Args:
        s: selected signal yield (expected events), >= 0, broadcasting with ``b``.
        b: selected background yield (expected events).
        relative_uncertainty: ``sigma / b``, >= 0 (0.1 for 10 %; 0 gives the known-``b`` formula).
        min_background: floor on ``b`` (expected events), > 0; see the module docstring.

    Returns:
        Tensor of the broadcast shape (standard deviations), >= 0; ``~ s / sqrt(b + sigma^2)``
        for ``s << b``.

    Raises:
        InputDataError: for non-tensor inputs, shapes that do not broadcast, a bad floor, or a
            negative or non-finite ``relative_uncertainty``.

    Example:
        >>> s, b = torch.tensor(10.0, dtype=torch.float64), torch.tensor(100.0, dtype=torch.float64)
        >>> round(asimov_significance(s, b, min_background=1.0).item(), 4)  # s/sqrt(b+sigma^2) 0.707
        0.6902
    """
    name = "asimov_significance"
    floor = _check_floor(name, min_background)
    if not (math.isfinite(rel := float(relative_uncertainty)) and rel >= 0):
        raise InputDataError(f"{name}: relative_uncertainty = {relative_uncertainty}: must be "
                             f"finite and >= 0")
    s, b = _yields(name, s, b)
    b = b.clamp_min(floor)
    if rel == 0:
        q = 2 * ((s + b) * torch.log1p(s / b) - s)
    else:
        var = (rel * b) ** 2
        term_on = (s + b) * torch.log1p(s * b / (b**2 + (s + b) * var))
        term_aux = b**2 / var * torch.log1p(var * s / (b * (b + var)))
        q = 2 * (term_on - term_aux)
    # q >= 0 analytically; rounding can make it slightly negative for s << b. The floor keeps
    # sqrt's gradient finite at s = 0.
    return q.clamp_min(torch.finfo(q.dtype).tiny).sqrt()
