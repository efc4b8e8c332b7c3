"""A pyhf workspace as a vectorised torch likelihood, and a bounded Newton minimiser for it.

:class:`WorkspaceLikelihood` evaluates ``-log L`` of a pyhf JSON workspace (HistFactory,
CERN-OPEN-2012-016; pyhf 0.7's conventions: code 4 normsys, code 4p histosys, Barlow-Beeston-lite
staterror, Gaussian lumi, free normfactors and shapefactors) with every sample of every channel stacked into one
``(n_rows, n_bins)`` tensor, so that one NLL is a few dozen tensor operations whatever the number
of modifiers. The parameter vector, its bounds and start values and the auxiliary data are
pyhf's own (``pyhf.Model.config``), so pyhf's and this NLL are the same function of the same
vector: ``twice_nll`` equals ``-2 pyhf.Model.logpdf`` (tested to 1e-9 relative).

:func:`minimize` is Fisher scoring with the analytic expected information (the Jacobian of the
expected events; positive semi-definite, about a millisecond per step) and box bounds handled by
an active set, falling back to L-BFGS-B, in float64; a fit is converged at MINUIT's own goal
(EDM < 2e-4). The exact autograd Hessian is computed once per best fit, for the parabolic
(Hesse) uncertainties, and each fit with mu or a nuisance fixed starts from the nearest
converged fit's quadratic model. This is what makes the Fit task's fits take seconds instead of
minutes with MINUIT (docs/benchmarks.md, "Fits: pyhf + MINUIT against the torch fitter").
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from analysis.errors import FitError, InputDataError
from analysis.relax.likelihood import _CODE4_A_INVERSE

log = logging.getLogger(__name__)

__all__ = ["SUPPORTED_MODIFIERS", "Anchor", "FitResult", "WorkspaceLikelihood", "minimize"]

SUPPORTED_MODIFIERS = ("normfactor", "normsys", "histosys", "staterror", "shapefactor", "lumi")
_DTYPE = torch.float64
# pyhf code 4's polynomial coefficients: the one matrix of analysis.relax.likelihood
_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)


class WorkspaceLikelihood:
    """``-2 log L`` of a pyhf workspace as a torch function of pyhf's parameter vector.

    Args:
        spec: a pyhf workspace specification (``channels``, ``observations``,
            ``measurements``, ``version``); its first measurement is used.
        validate: check ``spec`` against pyhf's workspace schema (default); False for a spec
            derived from one already checked (e.g. :func:`~analysis.inference.fits.
            without_staterror` of it).

    Attributes:
        pyhf_model: the ``pyhf.Model`` of ``spec`` (its config orders everything here).
        n_parameters: length of the parameter vector (pyhf's ``config.npars``).
        poi_index: index of the parameter of interest.
        init: ``(n_parameters,)`` pyhf's suggested start values.
        bounds: ``(n_parameters, 2)`` pyhf's suggested bounds (measurement overrides applied).
        fixed: ``(n_parameters,)`` bool, pyhf's suggested fixed parameters (e.g. a staterror
            gamma of a bin without uncertainty).
        observed: ``(n_main + n_aux,)`` the workspace's observations then auxiliary data, in
            pyhf's order (``workspace.data(model)``).

    Raises:
        InputDataError: a modifier type outside :data:`SUPPORTED_MODIFIERS` (naming channel,
            sample and modifier); pyhf's own errors for an invalid specification.
    """

    def __init__(self, spec: Mapping[str, Any], validate: bool = True) -> None:
        import pyhf

        # the workspace schema covers the model's channels and parameters: validating the
        # model again (pyhf's default) doubles the cost of building, ~20 ms a workspace
        workspace = pyhf.Workspace(dict(spec), validate=validate)
        model = workspace.model(validate=False)
        config = model.config
        self.pyhf_model = model
        self.n_parameters = int(config.npars)
        self.poi_index = int(config.poi_index)
        self.par_names = self._expanded_names(config)
        self.init = np.asarray(config.suggested_init(), dtype=np.float64)
        self.bounds = np.asarray(config.suggested_bounds(), dtype=np.float64)
        self.fixed = np.asarray(config.suggested_fixed(), dtype=bool)
        self.observed = np.asarray(workspace.data(model), dtype=np.float64)
        self._build(spec, config)

    @staticmethod
    def _expanded_names(config: Any) -> list[str]:
        names = [""] * int(config.npars)
        for name in config.par_order:
            sl = config.par_slice(name)
            size = sl.stop - sl.start
            for k in range(sl.start, sl.stop):
                names[k] = name if size == 1 else f"{name}[{k - sl.start}]"
        return names

    def parameter_index(self, name: str) -> int:
        """Index of the scalar parameter ``name`` (e.g. ``"mu"``, ``"jes"``) in the vector.

        Raises:
            InputDataError: ``name`` is not a scalar parameter of the workspace.
        """
        try:
            return self.par_names.index(name)
        except ValueError as err:
            raise InputDataError(f"WorkspaceLikelihood: no scalar parameter {name!r}; the "
                                 f"workspace has {sorted(set(self.par_names))}") from err

    def _build(self, spec: Mapping[str, Any], config: Any) -> None:
        channels = {c["name"]: c for c in spec["channels"]}
        offsets, start = {}, 0
        for name in config.channels:  # pyhf orders the main data by sorted channel name
            offsets[name], start = start, start + config.channel_nbins[name]
        self.n_main = start
        rows: list[tuple[str, Mapping[str, Any]]] = [
            (name, sample) for name in config.channels for sample in channels[name]["samples"]]
        self._rows = [(name, sample["name"]) for name, sample in rows]
        self._channel_bins = {name: slice(offsets[name], offsets[name] + config.channel_nbins[name])
                              for name in config.channels}
        n_rows, n_bins = len(rows), self.n_main
        nominal = np.zeros((n_rows, n_bins))
        scalar: dict[int, np.ndarray] = {}  # normfactor/lumi parameter -> rows it multiplies
        normsys: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # alpha -> (hi, lo) per row
        histosys: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # alpha -> (up, down) shifts
        # per-bin factors (staterror, shapefactor gammas): layers of (rows, bins) parameter
        # indices, -1 where a layer has none; a row with both kinds uses two layers
        gamma_layers: list[np.ndarray] = []
        for r, (channel, sample) in enumerate(rows):
            lo_bin = offsets[channel]
            bins = slice(lo_bin, lo_bin + config.channel_nbins[channel])
            values = np.asarray(sample["data"], dtype=np.float64)
            nominal[r, bins] = values
            for modifier in sample["modifiers"]:
                kind, name = modifier["type"], modifier["name"]
                if kind not in SUPPORTED_MODIFIERS:
                    raise InputDataError(
                        f"WorkspaceLikelihood: channel {channel!r}, sample {sample['name']!r}: "
                        f"modifier {name!r} of type {kind!r} is not supported by the torch "
                        f"fitter (supported: {SUPPORTED_MODIFIERS}); fit this workspace with "
                        f"pyhf (fits.fit_workspace(..., engine='pyhf'))")
                sl = config.par_slice(name)
                if kind in ("normfactor", "lumi"):
                    scalar.setdefault(sl.start, np.zeros(n_rows, dtype=bool))[r] = True
                elif kind == "normsys":
                    hi, lo = normsys.setdefault(sl.start, (np.ones(n_rows), np.ones(n_rows)))
                    hi[r], lo[r] = modifier["data"]["hi"], modifier["data"]["lo"]
                elif kind == "histosys":
                    up, down = histosys.setdefault(sl.start, (np.zeros((n_rows, n_bins)),
                                                              np.zeros((n_rows, n_bins))))
                    up[r, bins] = np.asarray(modifier["data"]["hi_data"], float) - values
                    down[r, bins] = values - np.asarray(modifier["data"]["lo_data"], float)
                else:  # staterror, shapefactor: one gamma per bin of the channel
                    layer = next((g for g in gamma_layers if (g[r, bins] < 0).all()), None)
                    if layer is None:
                        layer = np.full((n_rows, n_bins), -1, dtype=np.int64)
                        gamma_layers.append(layer)
                    layer[r, bins] = np.arange(sl.start, sl.stop)
        t = lambda x: torch.as_tensor(np.asarray(x), dtype=_DTYPE)  # noqa: E731
        self._nominal = t(nominal)
        self._scalar_index = torch.as_tensor(list(scalar), dtype=torch.long)
        self._scalar_mask = (torch.as_tensor(np.stack(list(scalar.values())))
                             if scalar else torch.zeros((0, n_rows), dtype=torch.bool))
        self._normsys_index = torch.as_tensor(list(normsys), dtype=torch.long)
        if normsys:
            hi = t(np.stack([h for h, _ in normsys.values()]))
            lo = t(np.stack([lo for _, lo in normsys.values()]))
            b = torch.stack([hi - 1, lo - 1, torch.log(hi) * hi, -torch.log(lo) * lo,
                             torch.log(hi) ** 2 * hi, torch.log(lo) ** 2 * lo])
            self._code4_coefficients = torch.tensordot(t(_CODE4_A_INVERSE), b, dims=1)
            self._normsys_hi, self._normsys_lo = hi, lo
        self._histosys_index = torch.as_tensor(list(histosys), dtype=torch.long)
        if histosys:
            self._histosys_up = t(np.stack([u for u, _ in histosys.values()]))
            self._histosys_down = t(np.stack([d for _, d in histosys.values()]))
        gamma_index = (np.stack(gamma_layers) if gamma_layers
                       else np.full((0, n_rows, n_bins), -1, dtype=np.int64))
        self._has_gamma = torch.as_tensor(gamma_index >= 0)  # (layers, rows, bins)
        self._gamma_index = torch.as_tensor(np.maximum(gamma_index, 0))
        # constraint terms, in pyhf's auxdata order: Gaussian(aux | parameter, sigma)
        aux_pars, aux_sigmas = [], []
        for name in config.auxdata_order:
            paramset = config.param_set(name)
            if getattr(paramset, "pdf_type", "normal") != "normal":
                raise InputDataError(f"WorkspaceLikelihood: parameter {name!r} has a "
                                     f"{paramset.pdf_type} constraint; only Gaussian "
                                     f"constraints are supported")
            sl = config.par_slice(name)
            sigmas = getattr(paramset, "sigmas", None)
            aux_pars.extend(range(sl.start, sl.stop))
            aux_sigmas.extend([1.0] * (sl.stop - sl.start) if sigmas is None
                              else [float(s) for s in sigmas])
        self._aux_index = torch.as_tensor(aux_pars, dtype=torch.long)
        self._aux_sigma = t(aux_sigmas)
        self._aux_log_norm = (torch.log(self._aux_sigma) + _LOG_SQRT_2PI).sum()
        self.n_aux = len(aux_pars)
        # numpy copies for the analytic gradient (the fits' inner loop; see twice_nll_and_grad)
        self._np = {name: value.numpy() for name, value in vars(self).items()
                    if name.startswith("_") and isinstance(value, torch.Tensor)}

    # -- the model -------------------------------------------------------------------------

    def expected_main(self, pars: torch.Tensor) -> torch.Tensor:
        """``(n_main,)`` expected events in pyhf's main-data order at ``pars`` (float64)."""
        return self._sample_rates(pars).sum(0)

    def expected_by_sample(self, pars: np.ndarray) -> dict[str, dict[str, list[float]]]:
        """Expected events of every sample at ``pars``: channel -> sample -> ``(n_bins,)``
        events of that channel's bins (pre-fit at ``init``, post-fit at a best fit)."""
        with torch.no_grad():
            rates = self._sample_rates(torch.as_tensor(pars, dtype=_DTYPE)).numpy()
        out: dict[str, dict[str, list[float]]] = {name: {} for name in self._channel_bins}
        for row, (channel, sample) in enumerate(self._rows):
            out[channel][sample] = rates[row, self._channel_bins[channel]].tolist()
        return out

    def observed_by_channel(self) -> dict[str, list[float]]:
        """The workspace's observations: channel -> ``(n_bins,)`` events."""
        return {name: self.observed[bins].tolist() for name, bins in self._channel_bins.items()}

    def _sample_rates(self, pars: torch.Tensor) -> torch.Tensor:
        """``(n_rows, n_main)`` expected events of each (channel, sample) row at ``pars``."""
        rates = self._nominal
        if len(self._histosys_index):
            alpha = pars[self._histosys_index][:, None, None]  # (K, 1, 1)
            up, down = self._histosys_up, self._histosys_down
            mean, asym = 0.5 * (up + down), 0.0625 * (up - down)
            a2 = alpha * alpha
            inside = alpha * mean + a2 * (a2 * (3 * a2 - 10) + 15) * asym
            shift = torch.where(alpha > 1, alpha * up, torch.where(alpha < -1, alpha * down,
                                                                   inside))
            rates = rates + shift.sum(0)
        factor = torch.ones(rates.shape[0], dtype=_DTYPE)
        if len(self._scalar_index):
            values = pars[self._scalar_index][:, None].expand_as(self._scalar_mask)
            factor = factor * torch.where(self._scalar_mask, values, 1.0).prod(0)
        if len(self._normsys_index):
            alpha = pars[self._normsys_index][:, None]  # (K, 1)
            powers = torch.stack([alpha**i for i in range(1, 7)])  # (6, K, 1)
            polynomial = 1 + (self._code4_coefficients * powers).sum(0)
            code4 = torch.where(alpha >= 1, self._normsys_hi**alpha,
                                torch.where(alpha > -1, polynomial, self._normsys_lo ** (-alpha)))
            factor = factor * code4.prod(0)
        gammas = torch.where(self._has_gamma, pars[self._gamma_index], 1.0).prod(0)
        return rates * factor[:, None] * gammas

    def expected_data(self, pars: torch.Tensor | np.ndarray) -> np.ndarray:
        """``(n_main + n_aux,)`` expected main and auxiliary data at ``pars``, as
        ``pyhf.Model.expected_data`` (the Asimov data set of ``pars``)."""
        pars = torch.as_tensor(pars, dtype=_DTYPE)
        with torch.no_grad():
            return torch.cat([self.expected_main(pars), pars[self._aux_index]]).numpy()

    def twice_nll_and_grad(self, pars: np.ndarray, data: np.ndarray) -> tuple[float, np.ndarray]:
        """``-2 log L`` and its ``(n_parameters,)`` gradient, analytically in numpy.

        The same function as :meth:`twice_nll` (tested against its autograd gradient), written
        out by the chain rule through the expected events ``lambda_b``:
        ``d(-2 log L)/d theta = sum_b 2 (1 - n_b / lambda_b) d lambda_b / d theta`` plus the
        constraint terms. It costs a tenth of a torch backward pass at this size, and the
        line searches of :func:`minimize` need nothing else.

        Args:
            pars: ``(n_parameters,)`` float64.
            data: ``(n_main + n_aux,)`` float64.
        """
        value, grad, _ = self.twice_nll_grad_information(pars, data, information=False)
        return value, grad

    def twice_nll_grad_information(self, pars: np.ndarray, data: np.ndarray,
                                   information: bool = True
                                   ) -> tuple[float, np.ndarray, np.ndarray | None]:
        """``-2 log L``, its gradient and its expected information (Fisher scoring matrix).

        The information is ``2 J^T diag(1 / lambda) J`` (``J = d lambda / d theta``,
        ``(n_main, n_parameters)``) plus ``2 / sigma^2`` for the constrained parameters: the
        Hessian of ``-2 log L`` without the terms ``2 (1 - n_b / lambda_b) d^2 lambda_b``,
        which vanish at a minimum that fits the data and can make the exact Hessian
        indefinite far from it. It is positive semi-definite everywhere.

        Args:
            pars: ``(n_parameters,)`` float64.
            data: ``(n_main + n_aux,)`` float64.
            information: also return the ``(n_parameters, n_parameters)`` matrix (else None).
        """
        a = self._np
        n_rows = a["_nominal"].shape[0]
        jacobian = np.zeros((self.n_main, self.n_parameters))  # d lambda_b / d theta
        rates = a["_nominal"]
        if len(a["_histosys_index"]):
            alpha = pars[a["_histosys_index"]][:, None, None]
            up, down = a["_histosys_up"], a["_histosys_down"]
            mean, asym = 0.5 * (up + down), 0.0625 * (up - down)
            a2 = alpha * alpha
            inside = alpha * mean + a2 * (a2 * (3 * a2 - 10) + 15) * asym
            shift = np.where(alpha > 1, alpha * up, np.where(alpha < -1, alpha * down, inside))
            slope = np.where(alpha > 1, up, np.where(alpha < -1, down, mean + alpha * (
                a2 * (18 * a2 - 40) + 30) * asym))  # d shift / d alpha, (K, rows, bins)
            rates = rates + shift.sum(0)
        # (K, rows): each normfactor/lumi parameter where it applies, 1 elsewhere
        scalar = np.where(a["_scalar_mask"], pars[a["_scalar_index"]][:, None], 1.0)
        normsys_product = np.ones(n_rows)
        if len(a["_normsys_index"]):
            alpha = pars[a["_normsys_index"]][:, None]
            hi, lo = a["_normsys_hi"], a["_normsys_lo"]
            coefficients = a["_code4_coefficients"]  # (6, K, rows)
            powers = np.stack([alpha**i for i in range(0, 7)])  # (7, K, 1)
            polynomial = 1 + (coefficients * powers[1:]).sum(0)
            d_polynomial = (coefficients * np.arange(1, 7)[:, None, None] * powers[:-1]).sum(0)
            code4 = np.where(alpha >= 1, hi**alpha, np.where(alpha > -1, polynomial,
                                                             lo ** (-alpha)))
            d_code4 = np.where(alpha >= 1, hi**alpha * np.log(hi), np.where(
                alpha > -1, d_polynomial, -lo ** (-alpha) * np.log(lo)))
            normsys_product = code4.prod(0)
        factor = scalar.prod(0) * normsys_product if len(scalar) else normsys_product
        layers = np.where(a["_has_gamma"], pars[a["_gamma_index"]], 1.0)  # (L, rows, bins)
        gammas = layers.prod(0)
        per_row = rates * gammas  # (rows, bins), before the row factors
        expected = (per_row * factor[:, None]).sum(0)
        main = data[:self.n_main]
        with np.errstate(divide="ignore", invalid="ignore"):
            log_terms = np.where(main > 0, main * np.log(expected), 0.0)
            weight = 2.0 * (1.0 - np.where(main > 0, main / expected, 0.0))  # d/d lambda_b
        value = 2.0 * float((expected - log_terms).sum() + _lgamma_sum(main))
        for k, index in enumerate(a["_scalar_index"]):
            # the product of the other factors: no division, a normfactor may be 0 (mu = 0)
            others = np.delete(scalar, k, axis=0).prod(0) * normsys_product
            jacobian[:, index] += np.where(a["_scalar_mask"][k], others, 0.0) @ per_row
        for k, index in enumerate(a["_normsys_index"]):
            jacobian[:, index] += (factor * d_code4[k] / code4[k]) @ per_row
        if len(a["_histosys_index"]):
            jacobian[:, a["_histosys_index"]] += (
                slope * (gammas * factor[:, None])[None]).sum(1).T
        for k in range(len(layers)):  # no division: a shapefactor gamma may be 0
            has = a["_has_gamma"][k]
            others = np.delete(layers, k, axis=0).prod(0)
            np.add.at(jacobian, (np.nonzero(has)[1], a["_gamma_index"][k][has]),
                      (rates * factor[:, None] * others)[has])
        grad = jacobian.T @ weight
        aux = data[self.n_main:]
        sigma = a["_aux_sigma"]
        pulls = (aux - pars[a["_aux_index"]]) / sigma
        value += float((pulls**2).sum()) + 2.0 * float(a["_aux_log_norm"])
        np.add.at(grad, a["_aux_index"], -2.0 * pulls / sigma)
        if not information:
            return value, grad, None
        with np.errstate(divide="ignore"):
            inverse = np.where(expected > 0, 1.0 / expected, 0.0)
        fisher = 2.0 * jacobian.T @ (inverse[:, None] * jacobian)
        np.add.at(fisher, (a["_aux_index"], a["_aux_index"]), 2.0 / sigma**2)
        return value, grad, fisher

    def twice_nll(self, pars: torch.Tensor, data: torch.Tensor) -> torch.Tensor:
        """``-2 log L(pars | data)`` with all constants, equal to ``-2 pyhf.Model.logpdf``.

        Args:
            pars: ``(n_parameters,)`` float64, pyhf's parameter order.
            data: ``(n_main + n_aux,)`` float64 main data then auxiliary data.

        Returns:
            Scalar tensor (dimensionless), differentiable in ``pars``.
        """
        rates = self.expected_main(pars)
        main = data[:self.n_main]
        log_l = (torch.xlogy(main, rates) - rates - torch.lgamma(main + 1)).sum()
        aux = data[self.n_main:]
        pulls = (aux - pars[self._aux_index]) / self._aux_sigma
        log_l = log_l - 0.5 * (pulls**2).sum() - self._aux_log_norm
        return -2.0 * log_l


def _lgamma_sum(n: np.ndarray) -> float:
    from scipy.special import gammaln

    return float(gammaln(n + 1).sum())


#: a minimum and the curvature of ``-2 log L`` there (Hessian or information): the start of
#: the fits near it
Anchor = tuple[np.ndarray, np.ndarray]


@dataclass
class FitResult:
    """One minimisation of :func:`minimize`.

    Attributes:
        pars: ``(n_parameters,)`` best-fit parameters (fixed ones at their given values).
        uncertainties: ``(n_parameters,)`` parabolic uncertainties, ``sqrt(diag(H^-1))`` with
            ``H`` the Hessian of ``-log L`` over the free parameters; 0 for fixed parameters,
            NaN when not asked for or ``H`` is singular.
        twice_nll: ``-2 log L`` at ``pars``.
        iterations: Fisher-scoring steps used (L-BFGS-B iterations not counted).
        hessian: ``(n_parameters, n_parameters)`` curvature of ``-2 log L`` at ``pars``: the
            exact Hessian with ``uncertainties``, else the expected information of the last
            step (None if no step was taken): the anchor of nearby fits.
        converged: False where no step criterion was met (a flat or indefinite valley of a
            model with far more parameters than bins): ``pars`` is the best point found.
    """

    pars: np.ndarray
    uncertainties: np.ndarray
    twice_nll: float
    iterations: int
    hessian: np.ndarray | None = None
    converged: bool = True

    @property
    def anchor(self) -> Anchor | None:
        """``(pars, hessian)`` for :func:`minimize`'s ``anchor`` (None without a Hessian)."""
        return None if self.hessian is None else (self.pars, self.hessian)


def _grad_hessian(function: Any, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray, float]:
    """``(n,)`` gradient, ``(n, n)`` Hessian and value of ``function`` at ``x`` (numpy)."""
    x = x.detach().requires_grad_(True)
    value = function(x)
    (grad,) = torch.autograd.grad(value, x, create_graph=True)
    eye = torch.eye(x.shape[0], dtype=_DTYPE)
    # one batched backward pass for all rows of the Hessian
    (hessian,) = torch.autograd.grad(grad, x, eye, is_grads_batched=True)
    return grad.detach().numpy(), hessian.detach().numpy(), float(value.detach())


def _active(x: np.ndarray, grad: np.ndarray, free: np.ndarray, low: np.ndarray,
            high: np.ndarray) -> np.ndarray:
    """Indices of the free parameters not held at a bound (gradient pointing outwards)."""
    return np.flatnonzero(free & ~((x <= low) & (grad > 0)) & ~((x >= high) & (grad < 0)))


def _line_search(value_grad: Any, x: np.ndarray, value: float, index: np.ndarray,
                 step: np.ndarray, decrease: float, low: np.ndarray, high: np.ndarray,
                 noise: float) -> tuple[np.ndarray, float, np.ndarray] | None:
    """Backtracking (Armijo) along ``step`` clipped to the box: the accepted point, its value
    and gradient, or None if nothing decreases by more than the rounding ``noise``."""
    t = 1.0
    for _ in range(40):
        trial = x.copy()
        trial[index] = np.clip(x[index] + t * step, low[index], high[index])
        trial_value, trial_grad = value_grad(trial)
        if math.isfinite(trial_value) and trial_value <= value - 1e-4 * t * decrease and \
                trial_value < value - noise:
            return trial, trial_value, trial_grad
        # below the rounding of the value, the slope decides (Wolfe's curvature condition):
        # the analytic gradient stays accurate where differences of -2 log L are noise
        slope = float(trial_grad[index] @ (trial[index] - x[index]))
        if math.isfinite(trial_value) and trial_value <= value + noise and \
                abs(slope) <= 0.9 * t * decrease:
            return trial, trial_value, trial_grad
        t *= 0.5
    return None


_MINUIT_EDM = 2e-4
"""MINUIT's convergence goal on ``-2 log L`` as pyhf runs it (0.002 x tolerance 0.1 x errordef
1): a fit that has not met :func:`minimize`'s own 1e-10 is converged below this."""


def minimize(likelihood: WorkspaceLikelihood, data: np.ndarray | Sequence[float], *,
             init: np.ndarray | None = None, bounds: np.ndarray | None = None,
             fixed: np.ndarray | None = None, uncertainties: bool = False,
             anchor: Anchor | None = None, tolerance: float = 1e-10,
             max_newton: int = 50) -> FitResult:
    """Minimise ``-2 log L`` over the free parameters with bounded Fisher-scoring steps.

    Each iteration solves ``I d = -g`` on the free parameters that are not held at a bound
    (a parameter at its bound whose gradient points outwards), with ``I`` the expected
    information (:meth:`WorkspaceLikelihood.twice_nll_grad_information`, analytic; damped
    (Levenberg) where it is singular), and backtracks along the step, clipped to the box,
    until ``-2 log L`` decreases. It stops when the predicted decrease ``g.d`` (from the analytic gradient) is
    below ``tolerance`` (in units of ``-2 log L``; 1e-10 puts each parameter within 1e-5 of
    its uncertainty of the minimum), or when no step decreases ``-2 log L`` by more than its
    rounding (1e-12 of the number of events: it is a small difference of terms that large).

    With an ``anchor`` (a nearby minimum and its curvature, e.g. the best fit to the same
    data), the fit starts where that Hessian's quadratic model puts the minimum with this
    fit's fixed parameters at their values: the parameters that are still free move along
    the anchor's correlations (``d_free = -H_ff^-1 (g_f + H_fx d_fixed)``). Moving only the
    fixed parameter (mu in a scan or a limit, one nuisance in an impact) starts far up the
    valley of a model whose data fix every bin's total to 1e-3 while its priors are O(1);
    this start is where the fit ends, to the model's curvature.

    On the demo's workspaces (19 parameters, condition 1e10, tt+bb at its bound when mu is
    fixed far above mu-hat) the exact Hessian is indefinite far from the minimum and costs an
    autograd pass (50 ms); Fisher scoring needs 2-23 steps of 1 ms there, and reaches the same
    minimum (to 1e-7 in ``-2 log L``). The exact autograd Hessian is computed once, for
    ``uncertainties``.

    Args:
        likelihood: the model.
        data: ``(n_main + n_aux,)`` main then auxiliary data.
        init: ``(n_parameters,)`` start (fixed parameters keep these values); default
            ``likelihood.init``, clipped into the bounds.
        bounds: ``(n_parameters, 2)``; default ``likelihood.bounds``.
        fixed: ``(n_parameters,)`` bool; default ``likelihood.fixed``.
        uncertainties: also compute the parabolic uncertainties at the minimum.
        anchor: ``(pars (n_parameters,), curvature (n_parameters, n_parameters))``: a nearby
            minimum and the Hessian or information of ``-2 log L`` there
            (:attr:`FitResult.anchor`).
        tolerance: convergence threshold on the predicted decrease of ``-2 log L``.
        max_newton: Fisher-scoring steps before L-BFGS-B takes over (then up to 10 more to
            polish).

    Returns:
        :class:`FitResult`.

    Raises:
        FitError: the likelihood is not finite at the start.
    """
    bounds = likelihood.bounds if bounds is None else np.asarray(bounds, dtype=np.float64)
    fixed_mask = likelihood.fixed if fixed is None else np.asarray(fixed, dtype=bool)
    start = likelihood.init if init is None else np.asarray(init, dtype=np.float64)
    low, high = bounds[:, 0], bounds[:, 1]
    x = np.clip(start, low, high)
    data_t = torch.as_tensor(np.asarray(data, dtype=np.float64))
    free = ~fixed_mask

    data_np = data_t.numpy()

    def objective(p: torch.Tensor) -> torch.Tensor:
        return likelihood.twice_nll(p, data_t)

    def value_grad(p: np.ndarray) -> tuple[float, np.ndarray]:
        return likelihood.twice_nll_and_grad(p, data_np)

    value, _ = value_grad(x)
    if not math.isfinite(value):
        raise FitError(f"minimize: -2 log L is {value} at the start point")
    # -2 log L is a small difference of terms as large as the event counts (n log lambda):
    # below this its changes are rounding, and no step can be told from another
    noise = 1e-12 * max(1.0, float(np.abs(data_np[:likelihood.n_main]).sum()))
    iterations, converged, curvature = 0, False, None
    if anchor is not None:
        predicted = _anchored_start(value_grad, np.asarray(anchor[0]), np.asarray(anchor[1]),
                                    x, free, low, high)
        if predicted is not None:
            predicted_value = value_grad(predicted)[0]
            if math.isfinite(predicted_value) and predicted_value < value:
                x, value = predicted, predicted_value
    for round_, limit in enumerate((max_newton, _POLISH_ITERATIONS)):
        for _ in range(limit):
            iterations += 1
            value, grad, curvature = likelihood.twice_nll_grad_information(x, data_np)
            index = _active(x, grad, free, low, high)
            if len(index) == 0:
                converged = True
                break
            g = grad[index]
            # Fisher scoring: its matrix is positive semi-definite everywhere, so its steps
            # descend also where the exact Hessian is indefinite (mu fixed far from mu-hat,
            # extreme normsys factors), and it costs a tenth of an autograd Hessian; at a
            # minimum that fits the data it is the Hessian
            step = _newton_step(g, curvature[np.ix_(index, index)])
            decrease = -float(g @ step)
            if decrease < tolerance:
                converged = True
                break
            accepted = _line_search(value_grad, x, value, index, step, decrease, low, high,
                                    noise)
            if accepted is None:
                converged = True
                break
            x = accepted[0]
        if converged:
            break
        if round_ == 0:
            # a valley too curved for either quadratic model: L-BFGS-B's line searches cross
            # it, then Newton polishes
            x = _lbfgsb(value_grad, x, free, low, high, noise, curvature)
    if not converged:
        # MINUIT's own criterion, EDM = g I^-1 g / 2 < 0.002 x tolerance 0.1 (pyhf's setting,
        # -2 log L with errordef 1): Fisher scoring converges linearly where the model cannot
        # describe the data (mu fixed far above mu-hat in a limit search), and stops above 1e-10
        value, grad, curvature = likelihood.twice_nll_grad_information(x, data_np)
        index = _active(x, grad, free, low, high)
        edm = (0.0 if len(index) == 0 else
               0.5 * -float(grad[index] @ _newton_step(grad[index],
                                                      curvature[np.ix_(index, index)])))
        converged = edm < _MINUIT_EDM
    if not converged:
        # the best point found, marked
        log.debug("minimize: not converged after %d Newton steps, L-BFGS-B and %d more "
                  "(-2 log L = %.6f)", max_newton, _POLISH_ITERATIONS, value)
    errors = np.full(likelihood.n_parameters, np.nan)
    if uncertainties:
        _, curvature, _ = _grad_hessian(objective, torch.as_tensor(x))
        index = np.flatnonzero(free)
        try:  # Hesse of -log L: half the Hessian of -2 log L
            covariance = np.linalg.inv(0.5 * curvature[np.ix_(index, index)])
            np.linalg.cholesky(covariance)  # positive definite, or the errors stay NaN
            errors[index] = np.sqrt(np.diagonal(covariance))
        except np.linalg.LinAlgError:
            pass
        errors[fixed_mask] = 0.0
    return FitResult(x.copy(), errors, value_grad(x)[0], iterations, curvature, converged)


def _anchored_start(value_grad: Any, anchor: np.ndarray, hessian: np.ndarray, x: np.ndarray,
                    free: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray | None:
    """The minimum of the anchor's quadratic model with the parameters held in this fit at
    their values in ``x`` (None where the free block of the Hessian is not positive
    definite), clipped to the box."""
    _, grad = value_grad(anchor)
    held = np.flatnonzero(~free)
    index = np.flatnonzero(free)
    shift = x[held] - anchor[held]
    try:
        cholesky = np.linalg.cholesky(hessian[np.ix_(index, index)])
    except np.linalg.LinAlgError:
        return None
    rhs = grad[index] + hessian[np.ix_(index, held)] @ shift
    start = x.copy()
    start[index] = anchor[index] - np.linalg.solve(cholesky.T, np.linalg.solve(cholesky, rhs))
    return np.clip(start, low, high)


_POLISH_ITERATIONS = 10


def _lbfgsb(value_grad: Any, x: np.ndarray, free: np.ndarray, low: np.ndarray,
            high: np.ndarray, noise: float, hessian: np.ndarray | None) -> np.ndarray:
    """scipy's L-BFGS-B on the free parameters, each scaled by its curvature ``sqrt(H_ii)``
    (so that the steps are in units of the parameters' widths), from ``x``."""
    from scipy.optimize import minimize as scipy_minimize

    index = np.flatnonzero(free)
    curvature = np.abs(np.diagonal(hessian)[index]) if hessian is not None else np.ones(len(index))
    scale = 1.0 / np.sqrt(np.maximum(curvature, 1e-12))

    def scaled(u: np.ndarray) -> tuple[float, np.ndarray]:
        full = x.copy()
        full[index] = u * scale
        value, grad = value_grad(full)
        return value, grad[index] * scale

    start = x[index] / scale
    result = scipy_minimize(scaled, start, jac=True, method="L-BFGS-B",
                            bounds=list(zip(low[index] / scale, high[index] / scale)),
                            options={"maxiter": 500, "ftol": 1e-15, "gtol": 1e-9,
                                     "maxcor": 30})
    out = x.copy()
    if np.isfinite(result.fun) and result.fun <= value_grad(x)[0] + noise:
        out[index] = np.clip(result.x * scale, low[index], high[index])
    return out


def _newton_step(g: np.ndarray, h: np.ndarray) -> np.ndarray:
    """``-H^-1 g``, Levenberg-damped until ``H + lambda diag(H)`` is positive definite."""
    scale = np.maximum(np.abs(np.diagonal(h)), 1e-12)
    damping = 0.0
    for _ in range(30):
        try:
            cholesky = np.linalg.cholesky(h + damping * np.diag(scale))
        except np.linalg.LinAlgError:
            damping = 1e-6 if damping == 0.0 else damping * 10.0
            continue
        return -np.linalg.solve(cholesky.T, np.linalg.solve(cholesky, g))
    return -g / scale  # a scaled gradient step: still a descent direction
