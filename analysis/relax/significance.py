"""Profile-likelihood test statistics q0 and q_mu, differentiable by the envelope theorem.

The discovery statistic ``q0 = 2 (NLL(0, theta_hat_hat) - NLL(mu_hat, theta_hat))`` (0 for
``mu_hat < 0``) and the one-sided limit statistic ``q_mu`` are those of Cowan, Cranmer, Gross and
Vitells, "Asymptotic formulae for likelihood-based tests of new physics", arXiv:1007.1727,
Eqs. (12) and (14); with Asimov data, ``Z0 = sqrt(q0)`` is the median discovery significance
(Eq. 52) and ``p0 = 1 - Phi(sqrt(q0))`` (Eq. 53). Both fits run with torch's L-BFGS; their optima
are detached, and the NLL is re-evaluated there with the differentiable model. Since the NLL is
stationary in the fitted parameters at the optimum, ``d NLL* / d h = dNLL / dh`` at fixed
``theta_hat`` for any histogram or data ``h`` (envelope theorem), so no optimiser is unrolled
(as in neos, Simpson and Heinrich, arXiv:2203.05570, which uses implicit differentiation).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence

import torch

from analysis.errors import FitError, InputDataError
from analysis.relax.histfactory import BinnedModel
from analysis.relax.likelihood import nll, nominal_parameters

__all__ = [
    "profile_fit",
    "q0",
    "q_mu",
    "discovery_significance",
    "p_value",
    "p0",
]

#: Kinds whose parameters must stay positive: fitted as ``exp(u)``.
_POSITIVE_KINDS = frozenset({"staterror", "shapesys", "shapefactor", "lumi"})
# Accepted max |dNLL/du| at the optimum (u: the fit coordinates), per event of data: the NLL
# sums terms of the size of the data, so its gradient's rounding floor grows with them.
_GRAD_TOLERANCE = 1e-9
_MAX_ROUNDS = 3
_MAX_NEWTON = 10


def _fixed_values(model: BinnedModel, fixed: Mapping[str, float | Sequence[float] | torch.Tensor]
                  | None, pars: torch.Tensor) -> torch.Tensor:
    """``(n_parameters,)`` bool mask of fixed entries; writes the fixed values into ``pars``."""
    mask = torch.zeros(model.n_parameters, dtype=torch.bool, device=model.device)
    for name, value in (fixed or {}).items():
        sl = model.parameter(name).index
        values = torch.as_tensor(value, dtype=model.dtype, device=model.device).detach()
        if values.numel() not in (1, sl.stop - sl.start):
            raise InputDataError(f"profile_fit: fixed {name!r} needs 1 or {sl.stop - sl.start} "
                                 f"values, got {values.numel()}")
        pars[sl] = values.reshape(-1)
        mask[sl] = True
    return mask


def profile_fit(model: BinnedModel, data: torch.Tensor,
                fixed: Mapping[str, float | Sequence[float] | torch.Tensor] | None = None,
                init: torch.Tensor | None = None, max_iter: int = 200) -> torch.Tensor:
    """Minimise the NLL over the parameters not in ``fixed`` (L-BFGS, strong Wolfe, float64).

    Gammas (staterror, shapesys, shapefactor) and lumi are fitted as ``exp(u)`` so they stay
    positive; the POI, normfactors and alphas are unbounded (HistFactory, CERN-OPEN-2012-016, Sec. 2.2). The
    histograms and ``data`` are detached for the fit.

    Args:
        model: the binned model.
        data: ``(n_main + n_aux,)`` observed events then auxiliary data.
        fixed: parameter name -> value (a float, or one value per bin), held constant.
        init: ``(n_parameters,)`` start point; default :func:`nominal_parameters`.
        max_iter: L-BFGS iterations per round (3 rounds, then up to 10 Newton steps).

    Returns:
        ``(n_parameters,)`` detached best-fit parameters, float64, fixed entries included.

    Raises:
        InputDataError: on a wrong ``init`` shape, unknown name, or non-positive positive start.
        FitError: if the NLL is not finite or the gradient does not vanish at the end
            (max ``|dNLL/du|`` above ``1e-9`` times the summed data, at least ``1e-9``).

    Example:
        >>> from analysis.relax.histfactory import Channel, Modifier, Sample
        >>> s = Sample("s", torch.tensor([10.0], dtype=torch.float64), (Modifier.normfactor(),))
        >>> b = Sample("b", torch.tensor([50.0], dtype=torch.float64))
        >>> m = BinnedModel((Channel("sr", (s, b)),))
        >>> round(profile_fit(m, torch.tensor([70.0], dtype=torch.float64)).item(), 6)  # (70-50)/10
        2.0
    """
    start = nominal_parameters(model) if init is None else init.detach().to(model.dtype).clone()
    if tuple(start.shape) != (model.n_parameters,):
        raise InputDataError(f"profile_fit: init must have shape ({model.n_parameters},), got "
                             f"{tuple(start.shape)}")
    start = start.to(torch.float64)
    is_fixed = _fixed_values(model, fixed, start)
    positive = torch.zeros_like(is_fixed)
    for p in model.parameters:
        positive[p.index] = p.kind in _POSITIVE_KINDS
    if bool((start[positive] <= 0).any()):
        raise InputDataError("profile_fit: gammas and lumi must start > 0")
    free = ~is_fixed
    u_start = torch.where(positive, torch.log(start.clamp_min(1e-300)), start)
    u = u_start[free].clone().requires_grad_(True)
    data_d = data.detach().to(torch.float64)
    detached = _detached(model)

    def to_pars(u_free: torch.Tensor) -> torch.Tensor:
        u_all = u_start.masked_scatter(free, u_free) if bool(free.any()) else u_start
        return torch.where(positive & free, torch.exp(u_all), torch.where(free, u_all, start))

    def objective() -> torch.Tensor:
        return nll(detached, to_pars(u), data_d)

    if not bool(free.any()):
        return start
    optimiser = torch.optim.LBFGS([u], lr=1.0, max_iter=max_iter, tolerance_grad=1e-12,
                                  tolerance_change=1e-15, history_size=50,
                                  line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimiser.zero_grad()
        value = objective()
        value.backward()  # type: ignore[no-untyped-call]
        return value

    grad_norm, tolerance = math.inf, _GRAD_TOLERANCE * max(1.0, float(data_d.abs().sum()))
    for _ in range(_MAX_ROUNDS):
        optimiser.step(closure)  # type: ignore[no-untyped-call]
        grad_norm = _check(closure(), u, to_pars)
        if grad_norm < tolerance:
            return to_pars(u).detach()
    # L-BFGS stalls at the rounding floor of the NLL value; Newton steps on the exact Hessian
    # (small for binned models) converge on the gradient, which has no such floor.
    for _ in range(_MAX_NEWTON):
        with torch.no_grad():
            u -= _newton_step(objective, u)
        grad_norm = _check(closure(), u, to_pars)
        if grad_norm < tolerance:
            return to_pars(u).detach()
    raise FitError(f"profile_fit: not converged, max |dNLL/dpar| = {grad_norm:.3g} > "
                   f"{tolerance:.3g} after {_MAX_ROUNDS} x {max_iter} L-BFGS iterations and "
                   f"{_MAX_NEWTON} Newton steps (fixed: {dict(fixed or {})})")


def _check(value: torch.Tensor, u: torch.Tensor, to_pars: Callable[[torch.Tensor], torch.Tensor],
           ) -> float:
    """Max ``|dNLL/du|`` after a closure call; FitError if the NLL is not finite."""
    if not bool(torch.isfinite(value)) or u.grad is None:
        raise FitError(f"profile_fit: NLL is {value.item()} at {to_pars(u).tolist()}")
    return float(u.grad.abs().max())


def _newton_step(objective: Callable[[], torch.Tensor], u: torch.Tensor) -> torch.Tensor:
    """``H^-1 g`` at ``u`` (Levenberg-damped if ``H`` is not positive definite)."""
    with torch.enable_grad():
        (grad,) = torch.autograd.grad(objective(), u, create_graph=True)
        hessian = torch.stack([torch.autograd.grad(g, u, retain_graph=True)[0] for g in grad])
    hessian = 0.5 * (hessian + hessian.T).detach()
    eye = torch.eye(u.shape[0], dtype=u.dtype, device=u.device)
    scale, relative = float(hessian.diagonal().abs().max()), 0.0
    for _ in range(20):
        cholesky, info = torch.linalg.cholesky_ex(hessian + relative * scale * eye)
        if int(info) == 0:
            return torch.cholesky_solve(grad.detach().unsqueeze(1), cholesky).squeeze(1)
        relative = max(1e-8, 10 * relative)
    raise FitError("profile_fit: Hessian not positive definite even with damping")


def _detached(model: BinnedModel) -> BinnedModel:
    """A float64 copy of ``model`` whose tensors carry no graph (cheap fits, no backward leaks)."""
    def det(x: object) -> object:
        return x.detach().to(torch.float64) if isinstance(x, torch.Tensor) else x

    channels = tuple(dataclasses.replace(c, samples=tuple(
        dataclasses.replace(s, nominal=det(s.nominal), modifiers=tuple(
            dataclasses.replace(m, hi=det(m.hi), lo=det(m.lo), uncertainty=det(m.uncertainty))
            for m in s.modifiers)) for s in c.samples)) for c in model.channels)
    return dataclasses.replace(model, channels=channels)


def _profile_difference(model: BinnedModel, data: torch.Tensor,
                        mu: float) -> tuple[torch.Tensor, float]:
    """``2 (NLL(mu, theta_hat_hat) - NLL(mu_hat, theta_hat))``, envelope-differentiable, and mu_hat.

    Both NLLs are re-evaluated with the (differentiable) ``model`` and ``data`` at the detached
    optima, so the gradient in histograms and data is the envelope-theorem gradient.
    """
    free = profile_fit(model, data)
    init = free.clone()
    init[model.parameter(model.poi).index] = mu
    conditional = profile_fit(model, data, fixed={model.poi: mu}, init=init)
    free, conditional = free.to(model.dtype), conditional.to(model.dtype)
    mu_hat = float(free[model.parameter(model.poi).index.start])
    q = 2.0 * (nll(model, conditional, data) - nll(model, free, data))
    return q.clamp_min(0.0), mu_hat  # rounding can make q = -1e-12


def q0(model: BinnedModel, data: torch.Tensor) -> torch.Tensor:
    """Discovery test statistic q0 (arXiv:1007.1727, Eq. 12), differentiable in the histograms.

    Args:
        model: the binned model; its histograms may require gradients.
        data: ``(n_main + n_aux,)`` events and auxiliary data, e.g. ``asimov_data(model)``
            (which may carry a graph to the histograms too).

    Returns:
        Scalar ``q0 = 2 (NLL(mu=0, theta_hat_hat) - NLL(mu_hat, theta_hat))``, 0 if ``mu_hat < 0``.

    Raises:
        FitError: if a fit does not converge.
    """
    q, mu_hat = _profile_difference(model, data, 0.0)
    return q if mu_hat >= 0 else q * 0.0


def q_mu(model: BinnedModel, data: torch.Tensor, mu: float) -> torch.Tensor:
    """One-sided limit test statistic q_mu (arXiv:1007.1727, Eq. 14), differentiable.

    Args:
        model: the binned model.
        data: ``(n_main + n_aux,)`` events and auxiliary data.
        mu: tested signal strength (POI units).

    Returns:
        Scalar ``2 (NLL(mu, theta_hat_hat) - NLL(mu_hat, theta_hat))``, 0 if ``mu_hat > mu``.

    Raises:
        FitError: if a fit does not converge.
    """
    q, mu_hat = _profile_difference(model, data, float(mu))
    return q if mu_hat <= mu else q * 0.0


def discovery_significance(model: BinnedModel, data: torch.Tensor) -> torch.Tensor:
    """``Z0 = sqrt(q0)`` (arXiv:1007.1727, Eq. 52 with Asimov data), in Gaussian sigmas.

    Args:
        model: the binned model.
        data: ``(n_main + n_aux,)`` events and auxiliary data.

    Returns:
        Scalar significance; its gradient at ``q0 = 0`` is taken as 0.

    Raises:
        FitError: if a fit does not converge.

    Example:
        >>> from analysis.relax.histfactory import Channel, Modifier, Sample
        >>> from analysis.relax.likelihood import asimov_data
        >>> s = Sample("s", torch.tensor([10.0], dtype=torch.float64), (Modifier.normfactor(),))
        >>> b = Sample("b", torch.tensor([50.0], dtype=torch.float64))
        >>> m = BinnedModel((Channel("sr", (s, b)),))
        >>> z = discovery_significance(m, asimov_data(m))  # sqrt(2((s+b) ln(1+s/b) - s))
        >>> round(z.item(), 6) == round(math.sqrt(2 * (60 * math.log(1.2) - 10)), 6)
        True
    """
    q = q0(model, data)
    return torch.sqrt(q.clamp_min(1e-300)) * (q > 0)


def p_value(z: torch.Tensor) -> torch.Tensor:
    """One-sided p-value ``1 - Phi(z)`` of a significance (arXiv:1007.1727, Eq. 53), stable tail.

    Args:
        z: significance(s) in Gaussian sigmas, any shape.

    Returns:
        p-values, shape of ``z``.
    """
    return 0.5 * torch.erfc(z / math.sqrt(2.0))


def p0(model: BinnedModel, data: torch.Tensor) -> torch.Tensor:
    """Discovery p-value ``p0 = 1 - Phi(sqrt(q0))``, as ``pyhf.infer.hypotest(0, test_stat="q0")``.

    Args:
        model: the binned model.
        data: ``(n_main + n_aux,)`` events and auxiliary data.

    Returns:
        Scalar p-value, differentiable in the histograms (and in ``data``).

    Raises:
        FitError: if a fit does not converge.
    """
    return p_value(discovery_significance(model, data))
