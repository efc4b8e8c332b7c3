"""Fits of a pyhf workspace: mu-hat, significance, CLs limits, a likelihood scan, pulls, impacts.

Everything runs on two datasets:

- **Asimov**: the expected data at ``mu = 1`` with all nuisances nominal; it gives the *expected*
  results (sigma_mu stat only and total, significance, the impacts of each nuisance);
- **pseudo-data**: the workspace's observations; it gives the "observed" results (mu-hat, the
  observed significance and limit, pulls, the post-fit free normalisations).

Two engines run the same procedures on the same pyhf parameter vector:

- ``"torch"`` (default): :mod:`analysis.inference.torch_fitter`, the workspace as a vectorised
  torch likelihood minimised by bounded Newton steps with exact autograd Hessians (float64);
- ``"pyhf"``: pyhf's numpy backend with MINUIT (the settings the fits used before the torch
  engine), the baseline of ``benchmarks/bench_fits.py``;
- ``"pyhf_strict"``: the same with MINUIT's tolerance at 1e-6 (strategy 2), precise enough to be
  the reference the torch engine is tested against at 1e-4
  (``tests/unit/inference/test_torch_fitter.py``).

The significance is ``Z = sqrt(q0)`` (asymptotic formulae, arXiv:1007.1727) from the same
profile likelihood as the scan. Limits are 95 % CL_s upper limits on ``mu`` with the ``qtilde``
statistic (pyhf's default asymptotic calculator, reproduced by the torch engine): the observed
limit and the expected -2..+2 sigma band, each found by Brent's method on CLs(mu) - 0.05,
never on a grid. Impacts: the shift of mu-hat when one nuisance is fixed, on each side, where
its profile likelihood rises by 1 (its post-fit uncertainty, as in the ATLAS/CMS convention; at
most the prior width 1 for a constrained nuisance) and all else is refitted. The crossing comes
from the profile, not from the covariance, which is not reliable where the MC statistical
uncertainty makes the likelihood flat. Every best fit is computed once per dataset and reused.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from scipy.optimize import brentq
from scipy.stats import norm

from analysis.errors import FitError, InputDataError
from analysis.inference.torch_fitter import (
    Anchor,
    FitResult,
    WorkspaceLikelihood,
    minimize,
)

__all__ = ["ENGINES", "FitResults", "PyhfEngine", "TorchEngine", "asimov_sigma_mu", "fit_network", "fit_workspace",
           "fit_steps", "impact_parameters", "restored_pyhf_backend", "without_staterror"]

log = logging.getLogger(__name__)

ENGINES = ("torch", "pyhf", "pyhf_strict")
# unconverged torch fits (each one through Newton, L-BFGS-B and a polish) after which a
# workspace is treated as degenerate and fitted with pyhf + MINUIT instead
_MAX_UNCONVERGED = 3
_CLS_LEVEL = 0.05
_EXPECTED_SIGMAS = (2, 1, 0, -1, -2)  # pyhf's order of the expected set


@dataclass
class FitResults:
    """What :func:`fit_workspace` measures (mu in units of the expected signal).

    Attributes:
        mu_hat, mu_uncertainty: pseudo-data fit; the uncertainty is half the width of its
            profile likelihood's ``-2 Delta ln L = 1`` interval (NaN beyond the bounds).
        asimov_mu_hat, sigma_mu, sigma_mu_stat: Asimov fit. ``sigma_mu`` is half the width of
            the ``-2 Delta ln L = 1`` interval of the profile likelihood (robust where the
            likelihood is not parabolic); ``sigma_mu_hesse`` the parabolic error from the
            Hessian; ``sigma_mu_stat`` with every nuisance fixed (one parameter: parabolic and
            exact for a Poisson model at mu-hat).
        expected_significance, observed_significance: discovery ``Z = sqrt(q0)`` (standard
            deviations), from the same profile likelihood as the scan.
        expected_limit: median expected 95 % CLs upper limit on mu; ``expected_band``: the
            -2, -1, 0, +1, +2 sigma expected limits; ``observed_limit``: on the pseudo-data.
        scan_mu, scan_asimov, scan_observed: ``-2 Delta ln L`` against mu.
        pulls: nuisance -> ``(theta-hat, post-fit uncertainty)`` on pseudo-data (prior 0 +- 1;
            a free normalisation's prior is 1 without a constraint).
        normalisations: free normalisation factor (a normfactor other than the POI) ->
            ``(post-fit value, uncertainty)`` on pseudo-data, e.g. tt+bb's.
        impacts: nuisance -> ``(delta mu up, delta mu down)`` on Asimov when the nuisance is
            fixed at its best value +- its post-fit uncertainty (``impact_widths``) and the
            rest refitted, ranked by size.
        impact_widths: nuisance -> ``(up, down)`` shifts used for its impacts: where its
            profile likelihood on Asimov rises by 1 (found from the profile), at most the prior
            width 1 for a constrained nuisance.
        yields: channel -> ``{"observed": (n_bins,), "prefit": {sample: (n_bins,)},
            "postfit": {sample: (n_bins,)}}`` events: the pseudo-data and every sample at the
            nominal parameters and at the best fit to the pseudo-data.
        postfit_parameters: the best fit to the pseudo-data, pyhf's parameter order.
        engine: the engine of the fits (:data:`ENGINES`).
    """

    mu_hat: float
    mu_uncertainty: float
    asimov_mu_hat: float
    sigma_mu: float
    sigma_mu_hesse: float
    sigma_mu_stat: float
    expected_significance: float
    observed_significance: float
    expected_limit: float
    expected_band: list[float]
    observed_limit: float
    scan_mu: list[float] = field(default_factory=list)
    scan_asimov: list[float] = field(default_factory=list)
    scan_observed: list[float] = field(default_factory=list)
    pulls: dict[str, tuple[float, float]] = field(default_factory=dict)
    normalisations: dict[str, tuple[float, float]] = field(default_factory=dict)
    impacts: dict[str, tuple[float, float]] = field(default_factory=dict)
    impact_widths: dict[str, tuple[float, float]] = field(default_factory=dict)
    yields: dict[str, dict[str, Any]] = field(default_factory=dict)
    postfit_parameters: list[float] = field(default_factory=list)
    engine: str = "torch"

    @property
    def sigma_mu_syst(self) -> float:
        """``sqrt(sigma_mu^2 - sigma_mu_stat^2)`` (0 if rounding makes it negative): every
        nuisance, the MC statistical one included (the report splits the two)."""
        return math.sqrt(max(self.sigma_mu**2 - self.sigma_mu_stat**2, 0.0))

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form, with ``sigma_mu_syst`` and ``impact_ranking`` (nuisance names,
        largest impact first: JSON objects written with sorted keys lose the order)."""
        return {**asdict(self), "sigma_mu_syst": self.sigma_mu_syst,
                "impact_ranking": list(self.impacts)}


# -- engines -----------------------------------------------------------------------------------

# MINUIT settings tried in turn when a minimisation fails (tiny or degenerate models)
_OPTIMIZERS = ({"tolerance": 0.01, "strategy": 1}, {"tolerance": 0.1, "strategy": 2},
               {"tolerance": 1.0, "strategy": 2})


def _use_optimizer(attempt: int, settings: Sequence[Mapping[str, Any]] = _OPTIMIZERS) -> None:
    import pyhf

    if attempt < len(settings):
        pyhf.set_backend("numpy", pyhf.optimize.minuit_optimizer(**settings[attempt]))
    else:  # SLSQP: no uncertainties, but no EDM or Hesse requirement either
        pyhf.set_backend("numpy", pyhf.optimize.scipy_optimizer())


@contextmanager
def restored_pyhf_backend() -> Iterator[None]:
    """Run a block with pyhf's backend free to change, and restore the caller's afterwards.

    pyhf keeps its tensor library and optimiser in process-wide state; the pyhf engine switches
    optimisers between retries, and a caller's own choice must survive them.
    """
    import pyhf

    tensorlib, optimizer = pyhf.get_backend()
    try:
        yield
    finally:
        pyhf.set_backend(tensorlib, optimizer)


@contextmanager
def _numpy_backend() -> Iterator[None]:
    """Run a block on pyhf's numpy backend (the optimiser kept), the caller's backend restored
    afterwards: the pyhf engine's evaluations outside a fit."""
    import pyhf

    with restored_pyhf_backend():
        tensorlib, optimizer = pyhf.get_backend()
        if tensorlib.name != "numpy":
            pyhf.set_backend("numpy", optimizer)
        yield


class _Degenerate(Exception):
    """The torch engine's best fit did not converge: the model is degenerate (far more
    parameters than bins); its fits go to pyhf + MINUIT, whose looser criteria stop sooner."""


class _DropRecords(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return False


@contextmanager
def _quiet_pyhf_retries() -> Iterator[None]:
    # pyhf logs every failed minimisation with its full covariance table: hide those records
    # while we retry, without touching the logger's level (a filter, removed afterwards)
    pyhf_log = logging.getLogger("pyhf.optimize.mixins")
    drop = _DropRecords()
    pyhf_log.addFilter(drop)
    try:
        yield
    finally:
        pyhf_log.removeFilter(drop)


def _robust(call: Callable[[], Any], needs_uncertainties: bool = False,
            settings: Sequence[Mapping[str, Any]] = _OPTIMIZERS) -> Any:
    """``call()`` under each MINUIT setting of ``settings`` until one converges, then (for
    calls that need no uncertainties) with scipy's SLSQP.

    Raises:
        FitError: if none converges.
    """
    import pyhf

    error: Exception | None = None
    with _quiet_pyhf_retries():
        for attempt in range(len(settings) + (not needs_uncertainties)):
            _use_optimizer(attempt, settings)
            try:
                result = call()
                if attempt:
                    log.info("fit_workspace: converged at attempt %d", attempt + 1)
                return result
            except pyhf.exceptions.FailedMinimization as err:
                error = err
    raise FitError(f"fit_workspace: the fit did not converge with any of the MINUIT settings "
                   f"{list(settings)}: {str(error).splitlines()[0]}")


class TorchEngine:
    """The fits' operations on :class:`~analysis.inference.torch_fitter.WorkspaceLikelihood`.

    Args:
        spec: a pyhf workspace specification.
        validate: check it against pyhf's schema (False: derived from a checked one).

    Attributes:
        poi: index of the POI; ``par_names``: scalar name of every entry of the parameter
            vector (``name[k]`` for per-bin sets); ``init``, ``bounds`` ``(n, 2)``, ``fixed``:
            pyhf's suggestions; ``observed``: ``(n_main + n_aux,)`` the workspace's data.
    """

    name = "torch"

    def __init__(self, spec: Mapping[str, Any], validate: bool = True) -> None:
        self.likelihood = WorkspaceLikelihood(spec, validate=validate)
        lik = self.likelihood
        self.config = lik.pyhf_model.config
        self.poi, self.par_names = lik.poi_index, lik.par_names
        self.init, self.bounds, self.fixed = lik.init, lik.bounds, lik.fixed
        self.observed = lik.observed
        self._free_fits: dict[Any, FitResult] = {}
        # per dataset: the converged fits with an exact Hessian, starts of the fits near them
        self._anchors: dict[bytes, list[Anchor]] = {}
        self.unconverged = 0

    def fit(self, data: np.ndarray, *, fixed: np.ndarray | None = None,
            init: np.ndarray | None = None, bounds: np.ndarray | None = None,
            uncertainties: bool = False) -> FitResult:
        """Minimise ``-2 log L`` on ``data`` (:func:`~analysis.inference.torch_fitter.minimize`;
        arguments default to pyhf's suggestions). Every converged fit with an exact Hessian on
        a dataset (its best fit first) anchors the later fits to it: each starts from the
        anchor nearest its fixed parameters' values (scans, limits and impacts all start next
        to one)."""
        key = np.asarray(data, dtype=np.float64).tobytes()
        anchors = self._anchors.setdefault(key, [])
        start = None if init is None else np.asarray(init, dtype=np.float64)
        result = minimize(self.likelihood, data, init=init, bounds=bounds, fixed=fixed,
                          uncertainties=uncertainties,
                          anchor=_nearest(anchors, start, fixed if fixed is not None
                                          else self.fixed))
        if result.converged and result.anchor is not None:
            anchors.append(result.anchor)
        if not result.converged:
            self.unconverged += 1
            if self.unconverged > _MAX_UNCONVERGED:
                raise _Degenerate()
        return result

    def twice_nll(self, pars: np.ndarray, data: np.ndarray) -> float:
        """``-2 log L(pars | data)``, as ``pyhf.infer.mle.twice_nll``."""
        with torch.no_grad():
            return float(self.likelihood.twice_nll(torch.as_tensor(pars, dtype=torch.float64),
                                                   torch.as_tensor(data, dtype=torch.float64)))

    def expected_data(self, pars: np.ndarray) -> np.ndarray:
        """``(n_main + n_aux,)`` Asimov data of ``pars``."""
        return self.likelihood.expected_data(pars)

    def _free_fit(self, data: np.ndarray, bounds: np.ndarray) -> FitResult:
        key = (data.tobytes(), bounds.tobytes())
        if key not in self._free_fits:  # the same best fit serves every mu of a limit search
            self._free_fits[key] = self.fit(data, bounds=bounds)
        return self._free_fits[key]

    def reuse_best_fit(self, data: np.ndarray, bounds: np.ndarray, best: FitResult) -> bool:
        """Let ``best``, the converged free fit to ``data`` within the engine's own bounds,
        serve as the free fit within ``bounds`` too (the CLs limits' ``[0, limit_max]`` on the
        POI): where ``bounds`` narrow only the POI's range and ``best``'s POI lies inside it,
        the minimum over the narrower range is ``best`` itself, so the best fit is not
        computed twice.

        Returns:
            True if it was taken, else False (the limit search fits within ``bounds`` itself).
        """
        others = np.arange(len(bounds)) != self.poi
        low, high = bounds[self.poi]
        nested = (np.array_equal(bounds[others], self.bounds[others])
                  and self.bounds[self.poi][0] <= low and high <= self.bounds[self.poi][1])
        if not (best.converged and nested and low <= best.pars[self.poi] <= high):
            return False
        self._free_fits[(data.tobytes(), bounds.tobytes())] = best
        return True

    def cls(self, mu: float, data: np.ndarray, bounds: np.ndarray,
            observed: bool = True) -> tuple[float, list[float]]:
        """Observed CLs and the expected set (-2..+2 sigma order of pyhf) at ``mu``: pyhf's
        asymptotic ``qtilde`` calculator (arXiv:1007.1727, Eqs. 16, 65-66), reproduced.

        The free fit to ``data``, the background-only Asimov data built from the ``mu = 0`` fit
        to ``data`` and the free fit to them are computed once and cached."""
        free = self._free_fit(data, bounds)
        asimov_key = (b"asimov", data.tobytes(), bounds.tobytes())
        if asimov_key not in self._free_fits:
            start = free.pars.copy()
            start[self.poi] = 0.0
            background = self.fit(data, fixed=self._with_poi_fixed(), init=start, bounds=bounds)
            self._free_fits[asimov_key] = background
        asimov = self.expected_data(self._free_fits[asimov_key].pars)
        free_asimov = self._free_fit(asimov, bounds)

        def qtilde(dataset: np.ndarray, best: FitResult) -> float:
            if best.pars[self.poi] > mu:
                return 0.0
            start = best.pars.copy()
            start[self.poi] = mu
            fixed_fit = self.fit(dataset, fixed=self._with_poi_fixed(), init=start,
                                 bounds=bounds)
            return max(fixed_fit.twice_nll - best.twice_nll, 0.0)

        sqrt_qa = math.sqrt(qtilde(asimov, free_asimov))
        expected = [float(norm.sf(n + sqrt_qa) / norm.sf(n)) for n in _EXPECTED_SIGMAS]
        if not observed:
            return math.nan, expected
        q = np.float64(qtilde(data, free))
        sqrt_q = np.sqrt(q)
        if sqrt_q <= sqrt_qa:
            statistic = sqrt_q - sqrt_qa
        else:  # numpy division, as pyhf's: q_A = 0 gives inf and then CLs = 0/0 = NaN
            statistic = (q - np.float64(sqrt_qa) ** 2) / (2.0 * np.float64(sqrt_qa))
        return float(norm.sf(statistic + sqrt_qa) / norm.sf(statistic)), expected

    def _with_poi_fixed(self) -> np.ndarray:
        fixed = self.fixed.copy()
        fixed[self.poi] = True
        return fixed


def _nearest(anchors: Sequence[Anchor], init: np.ndarray | None, fixed: np.ndarray
             ) -> Anchor | None:
    """The anchor nearest ``init`` in the fixed parameters, in units of the anchor's
    curvature (``sum_i H_ii (init_i - anchor_i)^2``); None without anchors."""
    if not anchors:
        return None
    if init is None:
        return anchors[0]
    held = np.flatnonzero(fixed)

    def distance(anchor: Anchor) -> float:
        pars, hessian = anchor
        shift = init[held] - pars[held]
        return float((np.abs(np.diagonal(hessian)[held]) * shift**2).sum())

    return min(anchors, key=distance)


class PyhfEngine:
    """The same operations in pyhf (numpy backend, MINUIT): the reference of the torch engine.

    Every method leaves pyhf's process-wide backend (tensor library and optimiser) as the caller
    had it, although the fits switch optimisers between retries.

    Args:
        spec: a pyhf workspace specification.
        minuit_settings: MINUIT ``tolerance``/``strategy`` settings tried in turn until a fit
            converges (then scipy's SLSQP where no uncertainties are needed); default the
            robust sequence the fits used before the torch engine. A tight tolerance (1e-6)
            makes MINUIT precise enough to compare with the torch engine at 1e-4.
    """

    name = "pyhf"

    def __init__(self, spec: Mapping[str, Any],
                 minuit_settings: Sequence[Mapping[str, Any]] = _OPTIMIZERS) -> None:
        import pyhf

        self.settings = tuple(minuit_settings)
        workspace = pyhf.Workspace(dict(spec))
        self.model = workspace.model()
        self.config = self.model.config
        self.poi = int(self.config.poi_index)
        self.par_names = WorkspaceLikelihood._expanded_names(self.config)
        self.init = np.asarray(self.config.suggested_init(), dtype=np.float64)
        self.bounds = np.asarray(self.config.suggested_bounds(), dtype=np.float64)
        self.fixed = np.asarray(self.config.suggested_fixed(), dtype=bool)
        self.observed = np.asarray(workspace.data(self.model), dtype=np.float64)

    def fit(self, data: np.ndarray, *, fixed: np.ndarray | None = None,
            init: np.ndarray | None = None, bounds: np.ndarray | None = None,
            uncertainties: bool = False) -> FitResult:
        import pyhf

        start = self.init if init is None else init
        bounds = self.bounds if bounds is None else bounds
        fixed = self.fixed if fixed is None else fixed
        with restored_pyhf_backend():  # _robust switches optimisers: the caller's survives
            pars, twice_nll = _robust(lambda: pyhf.infer.mle.fit(
                data, self.model, init_pars=np.clip(start, bounds[:, 0], bounds[:, 1]).tolist(),
                par_bounds=[tuple(b) for b in bounds.tolist()],
                fixed_params=list(map(bool, fixed)), return_uncertainties=uncertainties,
                return_fitted_val=True), uncertainties, self.settings)
        pars = np.asarray(pars, dtype=np.float64)
        if uncertainties:
            return FitResult(pars[:, 0], pars[:, 1], float(twice_nll), 0)
        return FitResult(pars, np.full(len(pars), np.nan), float(twice_nll), 0)

    def twice_nll(self, pars: np.ndarray, data: np.ndarray) -> float:
        import pyhf

        with _numpy_backend():
            return float(pyhf.infer.mle.twice_nll(pars, data, self.model)[0])

    def expected_data(self, pars: np.ndarray) -> np.ndarray:
        with _numpy_backend():
            return np.asarray(self.model.expected_data(pars), dtype=np.float64)

    def reuse_best_fit(self, data: np.ndarray, bounds: np.ndarray, best: FitResult) -> bool:
        """False: pyhf's ``hypotest`` makes its own fits (the reference is left as pyhf
        computes it)."""
        return False

    def cls(self, mu: float, data: np.ndarray, bounds: np.ndarray,
            observed: bool = True) -> tuple[float, list[float]]:
        """pyhf's own ``hypotest`` (asymptotics, ``qtilde``) at ``mu``."""
        import pyhf

        with restored_pyhf_backend():  # _robust switches optimisers: the caller's survives
            observed_cls, expected = _robust(lambda: pyhf.infer.hypotest(
                float(mu), data, self.model, test_stat="qtilde", return_expected_set=True,
                par_bounds=[tuple(b) for b in bounds.tolist()]), settings=self.settings)
        return float(observed_cls), [float(x) for x in expected]


_STRICT_MINUIT = ({"tolerance": 1e-6, "strategy": 2}, *_OPTIMIZERS)


def _engine(spec: Mapping[str, Any], engine: str, validate: bool = True
            ) -> TorchEngine | PyhfEngine:
    if engine not in ENGINES:
        raise InputDataError(f"fit_workspace: engine {engine!r} is not one of {ENGINES}")
    if engine == "torch":
        return TorchEngine(spec, validate=validate)
    return PyhfEngine(spec, _STRICT_MINUIT if engine == "pyhf_strict" else _OPTIMIZERS)


# -- procedures ----------------------------------------------------------------------------------

def _upper_limits(engine: TorchEngine | PyhfEngine, data: np.ndarray, limit_max: float,
                  observed: bool, best: FitResult | None = None) -> tuple[float, list[float]]:
    """The observed or the expected (-2..+2 sigma) 95 % CLs limits on mu in ``[0, limit_max]``.

    Each limit is the root of ``CLs(mu) - 0.05`` (Brent's method, to 1e-4 of the limit),
    bracketed by doubling ``mu`` from ``limit_max / 256``. A curve that does not fall below
    0.05 by ``limit_max`` gives NaN (the limit is beyond the search range). Only the asked
    roots are solved: the expected band comes from background-only Asimov data, not from the
    observed data's CLs set.

    ``best``: the free fit to ``data`` already made (within the engine's bounds), reused for
    the limits' POI range where it lies inside it (:meth:`TorchEngine.reuse_best_fit`).

    Returns:
        ``(observed limit, [])`` with ``observed``, else ``(NaN, [5 expected limits])``.
    """
    bounds = engine.bounds.copy()
    bounds[engine.poi] = (0.0, limit_max)
    if best is not None:
        engine.reuse_best_fit(data, bounds, best)
    cache: dict[float, list[float]] = {}

    def values(mu: float) -> list[float]:
        if mu not in cache:
            obs, expected = engine.cls(mu, data, bounds, observed=observed)
            cache[mu] = [obs, *expected]
        return cache[mu]

    limits = []
    for k in (range(0, 1) if observed else range(1, 6)):
        low, high = 0.0, limit_max / 256.0
        while values(high)[k] >= _CLS_LEVEL and high < limit_max:
            low, high = high, min(2.0 * high, limit_max)
        if not values(high)[k] < _CLS_LEVEL:  # also NaN: CLs = 0/0 for a hopeless model
            limits.append(math.nan)
            continue
        if low == 0.0:  # CLs(0) = 1: bracket from just above 0
            low = high * 1e-3
            if not values(low)[k] >= _CLS_LEVEL:  # excluded at the bottom of the range
                limits.append(low)
                continue
        limits.append(float(brentq(lambda mu, k=k: values(mu)[k] - _CLS_LEVEL, low, high,
                                   xtol=1e-6 * limit_max, rtol=1e-6)))
    if any(math.isnan(x) for x in limits):
        log.warning("fit_workspace: a CLs limit lies beyond mu = %g: NaN", limit_max)
    if not observed:
        return math.nan, limits
    return limits[0], []


def _fixed_poi(engine: TorchEngine | PyhfEngine) -> np.ndarray:
    fixed = engine.fixed.copy()
    fixed[engine.poi] = True
    return fixed


def _profile(engine: TorchEngine | PyhfEngine, data: np.ndarray, best: FitResult
             ) -> Callable[[float], float]:
    """``mu -> -2 Delta ln L(mu)`` on ``data`` (profiled, >= 0), warm-started from ``best``."""
    fixed = _fixed_poi(engine)

    def rise(mu: float) -> float:
        start = best.pars.copy()
        start[engine.poi] = mu
        return max(engine.fit(data, fixed=fixed, init=start).twice_nll - best.twice_nll, 0.0)

    return rise


def _profile_sigma(engine: TorchEngine | PyhfEngine, data: np.ndarray, best: FitResult,
                   guess: float) -> float:
    """Half the width of ``{mu: -2 Delta ln L(mu) <= 1}`` around the best fit on ``data``.

    Each side is bracketed by stepping out from mu-hat by ``guess`` (doubling) and then solved
    with Brent's method. Where one side runs into the POI's bounds (a workspace whose
    sigma_mu is as large as the distance from mu-hat to the positivity bound of mu), the other
    side's width is the result; NaN only if both do.
    """
    rise = _profile(engine, data, best)
    mu_hat = float(best.pars[engine.poi])
    low_bound, high_bound = engine.bounds[engine.poi]
    step = guess if math.isfinite(guess) and guess > 0 else 1.0
    widths = []
    for sign, limit in ((+1.0, high_bound), (-1.0, low_bound)):
        width = step
        while (mu_hat + sign * width - limit) * sign < 0 and rise(mu_hat + sign * width) <= 1.0:
            width *= 2.0
        edge = mu_hat + sign * width
        if (edge - limit) * sign >= 0:
            log.warning("fit_workspace: the -2 Delta ln L = 1 interval of mu reaches its bound "
                        "%g: sigma_mu from the other side", limit)
            continue
        end = brentq(lambda mu: rise(mu) - 1.0, *sorted((mu_hat, edge)), xtol=1e-6 * step,
                     rtol=1e-8, maxiter=60, disp=False)
        widths.append(abs(end - mu_hat))
    return 0.5 * sum(widths) if len(widths) == 2 else widths[0] if widths else math.nan


def impact_parameters(spec: Mapping[str, Any]) -> list[str]:
    """Scalar parameters of ``spec`` that get pulls and impacts: every normsys, histosys and
    lumi, and every normfactor but the POI (free normalisations), sorted by name."""
    poi = spec["measurements"][0]["config"]["poi"]
    return sorted({m["name"] for channel in spec["channels"] for sample in channel["samples"]
                   for m in sample["modifiers"]
                   if m["type"] in ("normsys", "histosys", "lumi", "normfactor")
                   and m["name"] != poi})


def without_staterror(spec: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of the workspace without its staterror modifiers: the result as if the
    simulated samples were infinitely large (the MC statistical uncertainty removed)."""
    out = json.loads(json.dumps(spec))
    for channel in out["channels"]:
        for sample in channel["samples"]:
            sample["modifiers"] = [m for m in sample["modifiers"] if m["type"] != "staterror"]
    return out


def _prior_width(paramset: Any) -> float | None:
    """Width of a scalar parameter's Gaussian constraint (1 for normsys and histosys, sigma
    for lumi), None for an unconstrained one (a normfactor)."""
    if getattr(paramset, "pdf_type", None) is None:
        return None
    sigmas = getattr(paramset, "sigmas", None)
    return float(sigmas[0]) if sigmas else 1.0


def _asimov(engine: TorchEngine | PyhfEngine, mu: float) -> tuple[np.ndarray, np.ndarray]:
    pars = engine.init.copy()
    pars[engine.poi] = mu
    return pars, engine.expected_data(pars)


def _best_fit(engine: TorchEngine | PyhfEngine, data: np.ndarray,
              start: np.ndarray | None = None) -> FitResult:
    """Free fit with uncertainties. A singular Hessian at a converged minimum stops with the
    parameters along its flat direction (no NaN reaches the report); an unconverged fit of a
    degenerate model keeps NaN uncertainties, with a warning."""
    best = engine.fit(data, init=start, uncertainties=True)
    free = np.flatnonzero(~engine.fixed)
    if np.isfinite(best.uncertainties[free]).all():
        return best
    if best.converged and best.hessian is not None:
        values, vectors = np.linalg.eigh(best.hessian[np.ix_(free, free)])
        if abs(values[0]) <= 1e-10 * max(values[-1], 1e-300):
            flat = [engine.par_names[free[i]] for i in np.flatnonzero(
                np.abs(vectors[:, 0]) > 0.3)]
            raise FitError(f"fit_workspace: the Hessian at the best fit is singular; nothing in "
                           f"the workspace constrains {flat} along one direction (a free "
                           f"normalisation without a category that selects its process, or "
                           f"two parameters that act alike?)")
    log.warning("fit_workspace: no positive-definite Hessian at the best fit (converged: %s): "
                "the parabolic uncertainties are NaN; the profile-likelihood ones stand",
                best.converged)
    return best


def asimov_sigma_mu(spec: Mapping[str, Any], engine: str = "torch",
                    validate: bool = True) -> float:
    """Expected sigma_mu of a workspace: half the width of the profile likelihood's
    ``-2 Delta ln L = 1`` interval on Asimov data at mu = 1 (POI units; NaN beyond the bounds).

    Args:
        spec: a pyhf workspace specification.
        engine: one of :data:`ENGINES`.
        validate: check ``spec`` against pyhf's schema (torch engine; False for a spec derived
            from one already checked, e.g. :func:`without_staterror` of it).
    """
    with np.errstate(divide="ignore", invalid="ignore"), restored_pyhf_backend():
        fitter = _engine(spec, engine, validate)
        pars, asimov = _asimov(fitter, 1.0)
        try:
            best = _best_fit(fitter, asimov, pars)
            if not best.converged:
                raise _Degenerate()
            return _profile_sigma(fitter, asimov, best, float(best.uncertainties[fitter.poi]))
        except _Degenerate:
            log.warning("asimov_sigma_mu: degenerate model (torch fits that do not converge): "
                        "pyhf + MINUIT instead")
            return asimov_sigma_mu(spec, "pyhf")


def fit_workspace(spec: Mapping[str, Any], *, scan_points: int = 21, scan_max: float = 3.0,
                  limit_max: float = 10.0, engine: str = "torch",
                  progress: Callable[[int], None] | None = None) -> FitResults:
    """Every fit of the module docstring on the workspace ``spec``.

    Args:
        spec: a pyhf workspace specification (e.g. from
            :func:`~analysis.inference.workspace.build_workspace`).
        scan_points: points of the likelihood scan in ``[0, max(scan_max, 1 + 3 sigma_mu)]``
            (at most the upper bound of mu).
        scan_max: smallest upper end of the scan (mu).
        limit_max: upper end of the search for the CLs limit (mu); a limit beyond it is NaN.
        engine: one of :data:`ENGINES`.
        progress: called with the number of completed steps (of :func:`fit_steps`).

    Returns:
        :class:`FitResults`.

    Raises:
        FitError: a fit that does not converge, or a parameter nothing constrains.
        InputDataError: an unknown engine, or a workspace the torch engine cannot express.
    """
    # CLs and test statistics divide by quantities that vanish for hopeless models (CLs = 0/0):
    # those points give NaN, which the limit search and the report handle
    with np.errstate(divide="ignore", invalid="ignore"), restored_pyhf_backend():
        fitter = _engine(spec, engine)
        try:
            results = _fit_workspace(fitter, impact_parameters(spec), scan_points, scan_max,
                                     limit_max, progress)
        except _Degenerate:
            log.warning("fit_workspace: degenerate model (torch fits that do not converge): "
                        "every fit with pyhf + MINUIT instead")
            fitter = _engine(spec, "pyhf")
            results = _fit_workspace(fitter, impact_parameters(spec), scan_points, scan_max,
                                     limit_max, progress)
        likelihood = (fitter.likelihood if isinstance(fitter, TorchEngine)
                      else WorkspaceLikelihood(spec))
        prefit = likelihood.expected_by_sample(likelihood.init)
        postfit = likelihood.expected_by_sample(np.asarray(results.postfit_parameters))
        results.yields = {channel: {"observed": observed, "prefit": prefit[channel],
                                    "postfit": postfit[channel]}
                          for channel, observed in likelihood.observed_by_channel().items()}
        return results


def _fit_workspace(fitter: TorchEngine | PyhfEngine, nuisances: Sequence[str],
                   scan_points: int, scan_max: float, limit_max: float,
                   progress: Callable[[int], None] | None) -> FitResults:
    poi = fitter.poi
    asimov_pars, asimov = _asimov(fitter, 1.0)
    _, background_asimov = _asimov(fitter, 0.0)
    observed = fitter.observed
    done = 0

    def step() -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done)

    best_asimov = _best_fit(fitter, asimov, asimov_pars)
    stat_fixed = np.ones(len(fitter.init), dtype=bool)
    stat_fixed[poi] = False
    stat = fitter.fit(asimov, fixed=stat_fixed, init=asimov_pars, uncertainties=True)
    best_obs = _best_fit(fitter, observed)
    if not (best_asimov.converged and best_obs.converged and stat.converged):
        raise _Degenerate()
    step()
    # on Asimov data the minimum is at the generating parameters exactly; the smaller value is
    # kept, so that a minimisation stopping early cannot invent a significance
    nll_min_asimov = min(fitter.twice_nll(asimov_pars, asimov), best_asimov.twice_nll)
    asimov_rise = _profile(fitter, asimov, FitResult(best_asimov.pars, best_asimov.uncertainties,
                                                     nll_min_asimov, 0))
    observed_rise = _profile(fitter, observed, best_obs)
    # q0 = -2 ln L(0) / L(mu-hat) from the same profile as the scan and sigma_mu
    q0_expected = asimov_rise(0.0)
    q0_observed = observed_rise(0.0) if best_obs.pars[poi] > 0 else 0.0
    step()
    limit, _ = _upper_limits(fitter, observed, limit_max, observed=True, best=best_obs)
    # expected limits: on background-only Asimov data (no signal injected, nominal nuisances)
    _, band = _upper_limits(fitter, background_asimov, limit_max, observed=False)
    step()
    sigma_profile = _profile_sigma(fitter, asimov, best_asimov,
                                   float(best_asimov.uncertainties[poi]))
    # the scan shows the interval: at least to scan_max, else to 1 + 3 sigma_mu (the POI's
    # upper bound when sigma_mu is beyond it)
    reach = 1.0 + 3.0 * sigma_profile if math.isfinite(sigma_profile) else math.inf
    scan_mu = np.linspace(0.0, min(max(scan_max, reach), fitter.bounds[poi][1]), scan_points)
    scans = [[asimov_rise(float(mu)) for mu in scan_mu],
             [observed_rise(float(mu)) for mu in scan_mu]]
    sigma_observed = _profile_sigma(fitter, observed, best_obs,
                                    float(best_obs.uncertainties[poi]))
    step()
    indices = {name: fitter.par_names.index(name) for name in nuisances}
    pulls = {name: (float(best_obs.pars[i]), float(best_obs.uncertainties[i]))
             for name, i in indices.items()}
    # a parameter without a constraint term is a free normalisation (pyhf's pdf_type None)
    prior_width = {name: _prior_width(fitter.config.param_set(name)) for name in nuisances}
    normalisations = {name: pulls[name] for name in nuisances if prior_width[name] is None}
    impacts, widths = {}, {}
    for name, index in indices.items():
        fixed = fitter.fixed.copy()
        fixed[index] = True

        def refit(theta: float, index: int = index, fixed: np.ndarray = fixed
                  ) -> tuple[float, float]:
            """mu-hat and -2 Delta ln L on Asimov with this nuisance fixed at ``theta``."""
            start = best_asimov.pars.copy()
            start[index] = theta
            result = fitter.fit(asimov, fixed=fixed, init=start)
            return float(result.pars[poi]), max(result.twice_nll - nll_min_asimov, 0.0)

        # post-fit impacts (as CMS's): the nuisance fixed where its profile likelihood rises
        # by 1, each side on its own. Hesse errors are no guide where the MC statistical
        # uncertainty makes the likelihood flat, so the crossing is found from the profile:
        # a parabola through its value at the first width (the prior width 1, or a free
        # normalisation's Hesse error), then at most two more (2 to 6 fits per nuisance)
        width_prior = prior_width[name]
        first = width_prior or float(best_asimov.uncertainties[index])
        cap = width_prior or math.inf
        shifted, side_widths = [], []
        for sign in (+1.0, -1.0):
            width = first
            mu, rise = refit(best_asimov.pars[index] + sign * width)
            for _ in range(2):
                if abs(rise - 1.0) <= 0.25 or (width >= cap and rise < 1.0) or rise <= 1e-9:
                    break
                width = min(width / math.sqrt(rise), cap)
                mu, rise = refit(best_asimov.pars[index] + sign * width)
            if abs(rise - 1.0) > 0.25 and width < cap:
                log.warning("fit_workspace: the profile of %s rises by %.2f, not 1, at the "
                            "width %.3g used for its impact (far from a parabola)", name, rise,
                            width)
            shifted.append(mu - float(best_asimov.pars[poi]))
            side_widths.append(width)
            step()
        widths[name] = (side_widths[0], side_widths[1])
        impacts[name] = (shifted[0], shifted[1])
    ranked = dict(sorted(impacts.items(), key=lambda kv: -max(abs(kv[1][0]), abs(kv[1][1]))))
    step()
    return FitResults(
        mu_hat=float(best_obs.pars[poi]), mu_uncertainty=sigma_observed,
        asimov_mu_hat=float(best_asimov.pars[poi]), sigma_mu=sigma_profile,
        sigma_mu_hesse=float(best_asimov.uncertainties[poi]),
        sigma_mu_stat=float(stat.uncertainties[poi]),
        expected_significance=math.sqrt(q0_expected),
        observed_significance=math.sqrt(q0_observed), expected_limit=band[2], expected_band=band,
        observed_limit=limit, scan_mu=scan_mu.tolist(), scan_asimov=scans[0],
        scan_observed=scans[1], pulls=pulls, normalisations=normalisations, impacts=ranked,
        impact_widths=widths, postfit_parameters=best_obs.pars.tolist(), engine=fitter.name)


def fit_network(spec: Mapping[str, Any], fold_specs: Sequence[Mapping[str, Any] | None], *,
                scan_points: int, scan_max: float, limit_max: float, engine: str = "torch",
                progress: Callable[[int], None] | None = None,
                fold_labels: Sequence[Sequence[int]] | None = None) -> dict[str, Any]:
    """Every result of one network's workspace, and sigma_mu per fold and without MC stat.

    Args:
        spec: the network's workspace (all events).
        fold_specs: one workspace per (seed index, fold) network (its held-out events at the
            full luminosity): the spread of their sigma_mu is what the seed and the finite
            simulated sample alone make of a difference between networks. Only their Asimov
            sigma_mu is fitted (two fits each), not the full set of :func:`fit_workspace`; None
            (an empty category) gives NaN.
        scan_points, scan_max, limit_max, engine: as :func:`fit_workspace`.
        progress: called with completed steps of :func:`fit_workspace`.
        fold_labels: ``(seed index, fold)`` of each of ``fold_specs``; default: seed index 0
            and the fold its position.

    Returns:
        :meth:`FitResults.as_dict` plus ``sigma_mu_folds`` (per fold workspace),
        ``sigma_mu_no_mcstat`` and ``sigma_mu_no_mcstat_folds``: the same without the
        staterror modifiers, what the result would be with simulated samples much larger than
        the data; ``fold_labels``: ``[seed index, fold]`` of each entry of the ``_folds`` lists.

    Raises:
        InputDataError: ``fold_labels`` and ``fold_specs`` differ in length.
    """
    labels = [[int(s), int(k)] for s, k in fold_labels] if fold_labels is not None else [
        [0, k] for k in range(len(fold_specs))]
    if len(labels) != len(fold_specs):
        raise InputDataError(f"fit_network: {len(labels)} fold labels for {len(fold_specs)} "
                             f"fold workspaces")
    results = fit_workspace(spec, scan_points=scan_points, scan_max=scan_max,
                            limit_max=limit_max, engine=engine, progress=progress)

    def fold_sigma(fold: Mapping[str, Any] | None, label: Sequence[int], what: str,
                   validate: bool = True) -> float:
        # a fold holds a fraction of the simulated events: where its model is degenerate (a
        # singular Hessian) or has no workspace (an empty category), its sigma_mu is
        # undetermined (NaN, as the report shows it)
        if fold is None:
            return math.nan
        try:
            return asimov_sigma_mu(fold, engine, validate)
        except FitError as err:
            log.warning("fit_network: seed %d, fold %d%s: sigma_mu undetermined (%s)",
                        label[0], label[1], what, err)
            return math.nan

    return {**results.as_dict(),
            "sigma_mu_folds": [fold_sigma(f, k, "") for f, k in zip(fold_specs, labels)],
            # the copies without staterror come from specs validated by their own fits above
            "sigma_mu_no_mcstat": asimov_sigma_mu(without_staterror(spec), engine,
                                                  validate=False),
            "sigma_mu_no_mcstat_folds": [
                fold_sigma(None if f is None else without_staterror(f), k, " without MC stat.",
                           validate=False)
                for f, k in zip(fold_specs, labels)],
            "fold_labels": labels}


def fit_steps(spec: Mapping[str, Any]) -> int:
    """How many steps :func:`fit_workspace` reports to ``progress`` for ``spec``."""
    return 5 + 2 * len(impact_parameters(spec))
