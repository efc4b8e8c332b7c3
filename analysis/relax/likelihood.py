"""Binned HistFactory likelihood in torch: expected rates, NLL, Fisher information and sigma_mu.

The likelihood is HistFactory's (CERN-OPEN-2012-016, Sec. 2.2) in pyhf's convention
(https://pyhf.readthedocs.io/en/v0.7.6/likelihood.html): Poisson terms for the main bins, Gaussian
constraints for normsys, histosys, staterror and lumi, Poisson constraints for shapesys, none for
the free normfactors and shapefactors (one free factor per bin), all with
their constants (continuous Poisson, ``n! = Gamma(n + 1)``), so that :func:`nll` equals
``-pyhf.Model.logpdf``. normsys interpolates with pyhf's code 4, histosys with code 4p. Everything
is differentiable in the parameters and in the histograms of the :class:`BinnedModel`, so the
expected uncertainty :func:`sigma_mu` from the inverse Fisher information (Asimov data) can be a
training loss (Wunsch et al., arXiv:2003.07186).
"""

from __future__ import annotations

import math

import torch

from analysis.errors import FitError, InputDataError
from analysis.relax.histfactory import BinnedModel, Modifier, ParameterSet

__all__ = [
    "nominal_parameters",
    "interpolate_code4",
    "interpolate_code4p",
    "expected_data",
    "expected_auxdata",
    "asimov_data",
    "nll",
    "fisher_information",
    "covariance",
    "sigma_mu",
]

# pyhf code 4 with alpha0 = 1: A^-1 of the 6x6 system that matches value, first and second
# derivative of the exponential extrapolation at alpha = ±1 (pyhf.interpolators.code4).
_CODE4_A_INVERSE = (
    (15 / 16, -15 / 16, -7 / 16, -7 / 16, 1 / 16, -1 / 16),
    (3 / 2, 3 / 2, -9 / 16, 9 / 16, 1 / 16, 1 / 16),
    (-5 / 8, 5 / 8, 5 / 8, 5 / 8, -1 / 8, 1 / 8),
    (-3 / 2, -3 / 2, 7 / 8, -7 / 8, -1 / 8, -1 / 8),
    (3 / 16, -3 / 16, -3 / 16, -3 / 16, 1 / 16, -1 / 16),
    (1 / 2, 1 / 2, -5 / 16, 5 / 16, 1 / 16, 1 / 16),
)
_SQRT_2 = math.sqrt(2.0)
#: smallest Cholesky pivot of the equilibrated Fisher information: the fraction of a
#: parameter's information not shared with the parameters before it; below it, unconstrained
_MIN_PIVOT = 1e-12
_SQRT_2PI = math.sqrt(2.0 * math.pi)
#: Nominal value of each kind's parameters (pyhf's suggested init; lumi's auxdata is 1).
NOMINAL_VALUES = {"normfactor": 1.0, "normsys": 0.0, "histosys": 0.0, "staterror": 1.0,
                  "shapesys": 1.0, "shapefactor": 1.0, "lumi": 1.0}


def nominal_parameters(model: BinnedModel) -> torch.Tensor:
    """``(n_parameters,)`` nominal point: normfactors (mu) and gammas 1, alphas 0, lumi 1."""
    pars = torch.empty(model.n_parameters, dtype=model.dtype, device=model.device)
    for p in model.parameters:
        pars[p.index] = NOMINAL_VALUES[p.kind]
    return pars


def interpolate_code4(alpha: torch.Tensor, hi: torch.Tensor, lo: torch.Tensor) -> torch.Tensor:
    """Multiplicative normsys factor, pyhf interpolation code 4 (polynomial inside |alpha| < 1).

    ``hi**alpha`` for ``alpha >= 1``, ``lo**-alpha`` for ``alpha <= -1``, and in between the
    6th-order polynomial ``1 + sum_i a_i alpha^i`` continuous up to the second derivative
    (pyhf docs, ``pyhf.interpolators.code4``; ROOT HistFactory's ``PiecewiseInterpolation``).

    Args:
        alpha: scalar nuisance parameter (units of its Gaussian constraint's sigma).
        hi: factor at ``alpha = +1``, > 0 (scalar or any shape broadcasting with ``alpha``).
        lo: factor at ``alpha = -1``, > 0.

    Returns:
        The factor, shape of ``hi`` broadcast with ``alpha``.

    Example:
        >>> hi, lo = torch.tensor(1.2, dtype=torch.float64), torch.tensor(0.8, dtype=torch.float64)
        >>> round(interpolate_code4(torch.tensor(0.5, dtype=torch.float64), hi, lo).item(), 8)
        1.09743964
    """
    a_inv = torch.tensor(_CODE4_A_INVERSE, dtype=hi.dtype, device=hi.device)
    log_hi, log_lo = torch.log(hi), torch.log(lo)
    b = torch.stack([hi - 1, lo - 1, log_hi * hi, -log_lo * lo, log_hi**2 * hi, log_lo**2 * lo])
    coefficients = torch.tensordot(a_inv, b, dims=1)  # (6, *shape)
    powers = torch.stack([alpha**i for i in range(1, 7)])
    powers = powers.reshape(powers.shape + (1,) * (coefficients.ndim - 1))
    polynomial = 1 + (coefficients * powers).sum(dim=0)
    return torch.where(alpha >= 1, hi**alpha, torch.where(alpha > -1, polynomial, lo ** (-alpha)))


def interpolate_code4p(alpha: torch.Tensor, nominal: torch.Tensor, hi: torch.Tensor,
                       lo: torch.Tensor) -> torch.Tensor:
    """Additive histosys shift, pyhf interpolation code 4p (piecewise linear, polynomial inside).

    ``alpha (hi - nominal)`` for ``alpha > 1``, ``alpha (nominal - lo)`` for ``alpha < -1``, and
    ``alpha S + alpha^2 (3 alpha^4 - 10 alpha^2 + 15) A`` in between with ``S`` the mean and
    ``A = (up - down) / 16`` the asymmetry of the shifts (pyhf docs, ``interpolators.code4p``).

    Args:
        alpha: scalar nuisance parameter.
        nominal: ``(n_bins,)`` nominal events.
        hi: ``(n_bins,)`` events at ``alpha = +1``.
        lo: ``(n_bins,)`` events at ``alpha = -1``.

    Returns:
        ``(n_bins,)`` shift in events, to be added to ``nominal``.

    Example:
        >>> one = torch.ones(1)
        >>> interpolate_code4p(torch.tensor(2.0), one, 1.5 * one, 0.8 * one)
        tensor([1.])
    """
    up, down = hi - nominal, nominal - lo
    mean, asym = 0.5 * (up + down), 0.0625 * (up - down)
    a2 = alpha * alpha
    inside = alpha * mean + a2 * (a2 * (3 * a2 - 10) + 15) * asym
    return torch.where(alpha > 1, alpha * up, torch.where(alpha < -1, alpha * down, inside))


def _as_tensor(x: torch.Tensor | float | None, like: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(x, dtype=like.dtype, device=like.device)


def _check_length(x: torch.Tensor, n: int, what: str) -> None:
    if x.ndim != 1 or x.shape[0] != n:
        raise InputDataError(f"{what}: expected shape ({n},), got {tuple(x.shape)}")


def _sample_rate(model: BinnedModel, nominal: torch.Tensor, modifiers: tuple[Modifier, ...],
                 pars: torch.Tensor) -> torch.Tensor:
    """``(n_bins,)`` expected events of one sample: (nominal + histosys shifts) x factors."""
    rate, factor = nominal, torch.ones_like(nominal)
    for m in modifiers:
        value = pars[model.parameter(m.name).index]
        if m.kind == "histosys":
            rate = rate + interpolate_code4p(value[0], nominal, _as_tensor(m.hi, nominal),
                                             _as_tensor(m.lo, nominal))
        elif m.kind == "normsys":
            factor = factor * interpolate_code4(value[0], _as_tensor(m.hi, nominal),
                                                _as_tensor(m.lo, nominal))
        else:  # normfactor, lumi: scalar; staterror, shapesys, shapefactor: one per bin
            factor = factor * value
    return rate * factor


def expected_data(model: BinnedModel, pars: torch.Tensor) -> torch.Tensor:
    """Expected main-measurement events (CERN-OPEN-2012-016 Sec. 2.2, pyhf's convention).

    Args:
        model: the binned model.
        pars: ``(n_parameters,)`` parameters in ``model.parameters`` order.

    Returns:
        ``(n_main,)`` expected events, channels in ``model.channels`` order.

    Raises:
        InputDataError: if ``pars`` has the wrong shape.
    """
    _check_length(pars, model.n_parameters, "expected_data: pars")
    return torch.cat([sum((_sample_rate(model, s.nominal, s.modifiers, pars) for s in c.samples),
                          torch.zeros_like(c.samples[0].nominal)) for c in model.channels])


def _constraint_widths(model: BinnedModel) -> dict[str, torch.Tensor]:
    """Per parameter set: Gaussian sigma, or for shapesys the Poisson scale tau = (nom / unc)^2.

    staterror sigma is ``sqrt(sum_s unc_s^2) / sum_s nom_s`` over the samples that carry it
    (Barlow-Beeston lite, CERN-OPEN-2012-016 Sec. 2.2.1); it depends on the histograms.
    """
    ref = model.channels[0].samples[0].nominal
    widths: dict[str, torch.Tensor] = {}
    sums: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    for c in model.channels:
        for s in c.samples:
            for m in s.modifiers:
                if m.kind == "staterror" and m.uncertainty is not None:
                    var, nom = sums.get(m.name, (0 * s.nominal, 0 * s.nominal))
                    sums[m.name] = (var + m.uncertainty**2, nom + s.nominal)
                elif m.kind == "shapesys" and m.uncertainty is not None:
                    widths[m.name] = (s.nominal / m.uncertainty) ** 2
    for name, (var, nom) in sums.items():
        widths[name] = torch.sqrt(var) / nom
    for p in model.parameters:
        if p.kind in ("normsys", "histosys"):
            widths[p.name] = torch.ones(1, dtype=ref.dtype, device=ref.device)
        elif p.kind == "lumi":
            widths[p.name] = torch.full((1,), float(model.lumi_sigma or 0.0), dtype=ref.dtype,
                                        device=ref.device)
    return widths


def _expected_aux(p: ParameterSet, pars: torch.Tensor,
                  widths: dict[str, torch.Tensor]) -> torch.Tensor:
    value = pars[p.index]
    return value * widths[p.name] if p.kind == "shapesys" else value


def expected_auxdata(model: BinnedModel, pars: torch.Tensor) -> torch.Tensor:
    """Expected auxiliary data: the parameter for Gaussian constraints, gamma tau for shapesys.

    Args:
        model: the binned model.
        pars: ``(n_parameters,)`` parameters.

    Returns:
        ``(n_aux,)`` auxiliary data in ``model.parameters`` order.
    """
    _check_length(pars, model.n_parameters, "expected_auxdata: pars")
    widths = _constraint_widths(model)
    parts = [_expected_aux(p, pars, widths) for p in model.parameters if p.aux_index]
    return torch.cat(parts) if parts else pars[:0]


def asimov_data(model: BinnedModel, pars: torch.Tensor | None = None) -> torch.Tensor:
    """Asimov data set: expected main and auxiliary data, like ``pyhf.Model.expected_data``.

    Args:
        model: the binned model.
        pars: ``(n_parameters,)`` parameters; default :func:`nominal_parameters` (mu = 1).

    Returns:
        ``(n_main + n_aux,)`` events and auxiliary data.
    """
    pars = nominal_parameters(model) if pars is None else pars
    return torch.cat([expected_data(model, pars), expected_auxdata(model, pars)])


def _poisson_logpdf(n: torch.Tensor, rate: torch.Tensor) -> torch.Tensor:
    return torch.xlogy(n, rate) - rate - torch.lgamma(n + 1)


def nll(model: BinnedModel, pars: torch.Tensor, data: torch.Tensor,
        include_constraints: bool = True) -> torch.Tensor:
    """Negative log-likelihood ``-log L(pars | data)``, equal to ``-pyhf.Model.logpdf``.

    Args:
        model: the binned model.
        pars: ``(n_parameters,)`` parameters.
        data: ``(n_main + n_aux,)`` observed events then auxiliary data; with
            ``include_constraints=False`` also ``(n_main,)``.
        include_constraints: add the constraint terms (auxiliary measurements).

    Returns:
        Scalar NLL (dimensionless), constants included.

    Raises:
        InputDataError: if ``pars`` or ``data`` has the wrong shape.
    """
    n_full = model.n_main + model.n_aux
    if include_constraints or data.shape[-1:] != (model.n_main,):
        _check_length(data, n_full, "nll: data")
    log_l = _poisson_logpdf(data[:model.n_main], expected_data(model, pars)).sum()
    if include_constraints:
        widths = _constraint_widths(model)
        for p in model.parameters:
            if p.aux_index is None:
                continue
            aux = data[model.n_main + p.aux_index.start:model.n_main + p.aux_index.stop]
            if p.kind == "shapesys":
                log_l = log_l + _poisson_logpdf(aux, _expected_aux(p, pars, widths)).sum()
            else:
                sigma = widths[p.name]
                log_l = log_l + (-torch.log(sigma * _SQRT_2PI)
                                 - ((aux - pars[p.index]) / (_SQRT_2 * sigma)) ** 2).sum()
    return -log_l


def fisher_information(model: BinnedModel, pars: torch.Tensor | None = None,
                       create_graph: bool = True) -> torch.Tensor:
    """Fisher information: the Hessian of the NLL on the Asimov data of ``pars``, at ``pars``.

    ``I_ij = d^2 NLL / dtheta_i dtheta_j`` on Asimov data, as in Wunsch et al., arXiv:2003.07186.
    On the Asimov data of the point itself (``n_b = lambda_b``) the Poisson terms' second
    derivatives of ``lambda`` cancel, and the Hessian is exactly
    ``J^T diag(1 / lambda) J`` (``J = d lambda / d theta``, ``(n_main, n_parameters)``) plus the
    constraint terms' diagonal: ``1 / sigma^2`` (Gaussian), ``tau / gamma`` (shapesys), nothing
    for the free normfactors and shapefactors. This
    needs one vectorised Jacobian of the expected events instead of an autograd Hessian, and
    the training loss's backward pass one order of differentiation less (a third of the time
    per inference-aware training step). ``tests/unit/relax/test_likelihood.py`` checks it and
    its gradient against the autograd Hessian.

    Args:
        model: the binned model.
        pars: ``(n_parameters,)`` point of the Asimov data and of the Hessian; default nominal.
        create_graph: keep the graph so the result is differentiable in the histograms.

    Returns:
        ``(n_parameters, n_parameters)`` symmetric matrix, parameter order of ``model``.
    """
    pars = nominal_parameters(model) if pars is None else pars
    _check_length(pars, model.n_parameters, "fisher_information: pars")
    jacobian = torch.autograd.functional.jacobian(  # type: ignore[no-untyped-call]
        lambda p: expected_data(model, p), pars, create_graph=create_graph, vectorize=True)
    rates = expected_data(model, pars)
    if not create_graph:
        rates = rates.detach()
    # an empty bin (lambda = 0) adds nothing: its Poisson term is flat to second order there
    inverse = torch.where(rates > 0, 1.0 / torch.where(rates > 0, rates, 1.0), 0.0)
    information = jacobian.T @ (inverse[:, None] * jacobian)
    widths = _constraint_widths(model)
    diagonal = torch.zeros_like(pars)
    for p in model.parameters:
        if p.aux_index is None:
            continue
        if p.kind == "shapesys":  # Poisson(tau gamma | aux = tau gamma): tau / gamma
            diagonal = diagonal.index_put((torch.arange(p.index.start, p.index.stop,
                                                        device=pars.device),),
                                          widths[p.name] / pars[p.index])
        else:
            diagonal = diagonal.index_put((torch.arange(p.index.start, p.index.stop,
                                                        device=pars.device),),
                                          1.0 / widths[p.name] ** 2
                                          * torch.ones_like(pars[p.index]))
    if not create_graph:
        diagonal = diagonal.detach()
    return information + torch.diag(diagonal)


def covariance(model: BinnedModel, pars: torch.Tensor | None = None,
               create_graph: bool = True) -> torch.Tensor:
    """Expected covariance of the parameters, the inverse of :func:`fisher_information`.

    Args:
        model: the binned model.
        pars: ``(n_parameters,)`` point; default nominal.
        create_graph: keep the graph for gradients in the histograms.

    Returns:
        ``(n_parameters, n_parameters)`` covariance in parameter units squared.

    Raises:
        FitError: if the Fisher information is not positive definite (unconstrained direction).
    """
    fisher = fisher_information(model, pars, create_graph=create_graph)
    diagonal = torch.diagonal(fisher)
    if not bool((diagonal.detach() > 0).all()):
        index = int(torch.nonzero(diagonal.detach() <= 0)[0, 0])
        raise FitError(f"covariance: Fisher information is not positive definite: parameter "
                       f"{_parameter_name(model, index)} has no effect on the likelihood")
    # equilibrated (unit diagonal): an exactly singular direction, e.g. a free factor per bin
    # (shapefactor) and a free mu in the same bins, then fails the Cholesky decomposition
    # instead of passing it with a rounding-error pivot (sigma_mu ~ 1e7)
    scale = torch.rsqrt(diagonal)
    cholesky, info = torch.linalg.cholesky_ex(fisher * scale[:, None] * scale[None, :])
    pivots = torch.diagonal(cholesky).detach() ** 2
    if int(info) != 0 or float(pivots.min()) < _MIN_PIVOT:
        index = int(info) - 1 if int(info) != 0 else int(pivots.argmin())
        raise FitError(f"covariance: Fisher information is not positive definite (leading minor "
                       f"{index + 1} of {fisher.shape[0]}, parameter "
                       f"{_parameter_name(model, index)}); a parameter is unconstrained")
    return torch.cholesky_inverse(cholesky) * scale[:, None] * scale[None, :]


def _parameter_name(model: BinnedModel, index: int) -> str:
    """``name`` or ``name[bin]`` of entry ``index`` of the parameter vector."""
    for p in model.parameters:
        if p.index.start <= index < p.index.stop:
            return p.name if p.index.stop - p.index.start == 1 else \
                f"{p.name}[{index - p.index.start}]"
    return str(index)


def sigma_mu(model: BinnedModel, pars: torch.Tensor | None = None) -> torch.Tensor:
    """Expected uncertainty of the POI, ``sqrt((I^-1)_mu,mu)``, differentiable in the histograms.

    Args:
        model: the binned model.
        pars: ``(n_parameters,)`` point; default nominal (mu = 1, alphas 0, gammas 1).

    Returns:
        Scalar uncertainty on the POI, in units of the POI.

    Raises:
        FitError: if the Fisher information is not positive definite.

    Example:
        >>> from analysis.relax.histfactory import Channel, Sample
        >>> s = Sample("s", torch.tensor([10.0], dtype=torch.float64), (Modifier.normfactor(),))
        >>> b = Sample("b", torch.tensor([100.0], dtype=torch.float64))
        >>> round(sigma_mu(BinnedModel((Channel("sr", (s, b)),))).item(), 4)  # sqrt(s + b) / s
        1.0488
    """
    index = model.parameter(model.poi).index.start
    return torch.sqrt(covariance(model, pars)[index, index])
