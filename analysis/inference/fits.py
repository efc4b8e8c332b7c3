"""Fits of a pyhf workspace: mu-hat, significance, CLs limits, a likelihood scan, pulls, impacts.

Everything runs in pyhf (numpy backend, MINUIT for the uncertainties) on two datasets:

- **Asimov**: the expected data at ``mu = 1`` with all nuisances nominal; it gives the *expected*
  results (sigma_mu stat only and total, significance, the impacts of each nuisance);
- **pseudo-data**: the workspace's observations; it gives the "observed" results (mu-hat, the
  observed significance and limit, pulls).

The significance is ``Z = sqrt(q0)`` (asymptotic formulae, arXiv:1007.1727) from the same
profile likelihood as the scan; limits are 95 % CL_s upper limits on ``mu`` with the ``qtilde`` statistic
(pyhf's default), expected as the median and the +-1, 2 sigma band. Impacts: the shift of
mu-hat when one nuisance is fixed, on each side, where its profile likelihood rises by 1 (its
post-fit uncertainty, as in the ATLAS/CMS convention, at most the prior width 1) and all else
is refitted. The crossing comes from the profile, not from MINUIT's covariance, which is not
reliable where the MC statistical uncertainty makes the likelihood flat.
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

from analysis.errors import FitError

__all__ = ["FitResults", "asimov_sigma_mu", "fit_network", "fit_workspace",
           "fit_steps", "restored_pyhf_backend", "without_staterror"]

log = logging.getLogger(__name__)


@dataclass
class FitResults:
    """What :func:`fit_workspace` measures (mu in units of the expected signal).

    Attributes:
        mu_hat, mu_uncertainty: pseudo-data fit; the uncertainty is half the width of its
            profile likelihood's ``-2 Delta ln L = 1`` interval (NaN beyond the bounds).
        asimov_mu_hat, sigma_mu, sigma_mu_stat: Asimov fit. ``sigma_mu`` is half the width of
            the ``-2 Delta ln L = 1`` interval of the profile likelihood (robust where the
            likelihood is not parabolic or MINUIT's covariance is not accurate);
            ``sigma_mu_hesse`` MINUIT's parabolic error; ``sigma_mu_stat`` with every nuisance
            fixed (one parameter: parabolic and exact for a Poisson model at mu-hat).
        expected_significance, observed_significance: discovery ``Z = sqrt(q0)`` (standard
            deviations), from the same profile likelihood as the scan.
        expected_limit: median expected 95 % CLs upper limit on mu; ``expected_band``: the
            -2, -1, 0, +1, +2 sigma expected limits; ``observed_limit``: on the pseudo-data.
        scan_mu, scan_asimov, scan_observed: ``-2 Delta ln L`` against mu.
        pulls: nuisance -> ``(theta-hat, post-fit uncertainty)`` on pseudo-data (prior 0 +- 1).
        impacts: nuisance -> ``(delta mu up, delta mu down)`` on Asimov when the nuisance is
            fixed at its best value +- its post-fit uncertainty (``impact_widths``) and the
            rest refitted, ranked by size.
        impact_widths: nuisance -> ``(up, down)`` shifts used for its impacts: where its
            profile likelihood on Asimov rises by 1 (found from the profile, not from MINUIT's
            covariance), at most the prior width 1.
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
    impacts: dict[str, tuple[float, float]] = field(default_factory=dict)
    impact_widths: dict[str, tuple[float, float]] = field(default_factory=dict)

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


# MINUIT settings tried in turn when a minimisation fails (tiny or degenerate models)
_OPTIMIZERS = ({"tolerance": 0.01, "strategy": 1}, {"tolerance": 0.1, "strategy": 2},
               {"tolerance": 1.0, "strategy": 2})


def _use_optimizer(attempt: int) -> None:
    import pyhf

    if attempt < len(_OPTIMIZERS):
        pyhf.set_backend("numpy", pyhf.optimize.minuit_optimizer(**_OPTIMIZERS[attempt]))
    else:  # SLSQP: no uncertainties, but no EDM or Hesse requirement either
        pyhf.set_backend("numpy", pyhf.optimize.scipy_optimizer())


@contextmanager
def restored_pyhf_backend() -> Iterator[None]:
    """Run a block with pyhf's backend free to change, and restore the caller's afterwards.

    pyhf keeps its tensor library and optimiser in process-wide state; the fits below switch
    optimisers between retries, and a caller's own choice must survive them.
    """
    import pyhf

    tensorlib, optimizer = pyhf.get_backend()
    try:
        yield
    finally:
        pyhf.set_backend(tensorlib, optimizer)


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


def _robust(call: Callable[[], Any], needs_uncertainties: bool = False) -> Any:
    """``call()`` under each MINUIT setting of ``_OPTIMIZERS`` until one converges, then (for
    calls that need no uncertainties) with scipy's SLSQP.

    Raises:
        FitError: if none converges.
    """
    import pyhf

    error: Exception | None = None
    with _quiet_pyhf_retries():
        for attempt in range(len(_OPTIMIZERS) + (not needs_uncertainties)):
            _use_optimizer(attempt)
            try:
                result = call()
                if attempt:
                    log.info("fit_workspace: converged at attempt %d", attempt + 1)
                return result
            except pyhf.exceptions.FailedMinimization as err:
                error = err
    raise FitError(f"fit_workspace: the fit did not converge with any of the MINUIT settings "
                   f"{_OPTIMIZERS}: {str(error).splitlines()[0]}")


def _upper_limits(data: np.ndarray, model: Any, limit_max: float, n_points: int
                  ) -> tuple[float, list[float]]:
    """Observed and expected (-2..+2 sigma) 95 % CLs limits on mu in [0, limit_max].

    CLs (pyhf ``hypotest``, ``qtilde``) on a grid brackets each 0.05 crossing; Brent's method
    then finds it to 1e-3 of ``limit_max``. A curve that does not fall below 0.05 within the
    grid gives NaN (the limit is beyond ``limit_max``).
    """
    import pyhf
    from scipy.optimize import brentq

    bounds = model.config.suggested_bounds()
    bounds[model.config.poi_index] = (0.0, limit_max)
    cache: dict[float, list[float]] = {}

    def cls(mu: float) -> list[float]:
        if mu not in cache:
            observed, expected = _robust(lambda: pyhf.infer.hypotest(
                float(mu), data, model, test_stat="qtilde", return_expected_set=True,
                par_bounds=bounds))
            cache[mu] = [float(observed), *(float(x) for x in expected)]
        return cache[mu]

    grid = np.linspace(0.0, limit_max, n_points)[1:]  # CLs(0) is 1 by construction
    values = np.array([cls(float(mu)) for mu in grid])  # (n_points - 1, 6)
    limits = []
    for k in range(values.shape[1]):
        below = np.nonzero(values[:, k] < 0.05)[0]
        if len(below) == 0:
            limits.append(math.nan)
            continue
        upper = float(grid[below[0]])
        lower = float(grid[below[0] - 1]) if below[0] > 0 else 1e-6 * limit_max
        if cls(lower)[k] < 0.05:  # already excluded at the bottom of the range
            limits.append(lower)
            continue
        limits.append(float(brentq(lambda mu, k=k: cls(mu)[k] - 0.05, lower, upper,
                                   xtol=1e-3 * limit_max)))
    if any(math.isnan(x) for x in limits):
        log.warning("fit_workspace: a CLs limit lies beyond mu = %g: NaN", limit_max)
    return limits[0], limits[1:]


def _profile_sigma(data: np.ndarray, model: Any, mu_hat: float, guess: float,
                   init: np.ndarray, bounds: list[tuple[float, float]]) -> float:
    """Half the width of ``{mu: -2 Delta ln L(mu) <= 1}`` around ``mu_hat`` on ``data``.

    Each side is bracketed by stepping out from ``mu_hat`` by ``guess`` (doubling) and then
    solved with Brent's method; a side that runs into the POI bounds makes the result NaN.
    """
    import pyhf
    from scipy.optimize import brentq

    poi = model.config.poi_index
    low_bound, high_bound = bounds[poi]
    nll_best = float(_robust(lambda: pyhf.infer.mle.fit(
        data, model, init_pars=init.tolist(), par_bounds=bounds, return_fitted_val=True))[1])

    def q(mu: float) -> float:
        _, twice_nll = _robust(lambda: pyhf.infer.mle.fixed_poi_fit(
            mu, data, model, init_pars=init.tolist(), par_bounds=bounds,
            return_fitted_val=True))
        return float(twice_nll) - nll_best - 1.0

    ends = []
    step = guess if math.isfinite(guess) and guess > 0 else 1.0
    for sign, limit in ((+1.0, high_bound), (-1.0, low_bound)):
        width = step
        while True:
            edge = mu_hat + sign * width
            if (edge - limit) * sign >= 0:
                return math.nan  # the interval reaches the POI bound
            if q(edge) > 0:
                break
            width *= 2.0
        ends.append(brentq(q, mu_hat, edge, xtol=1e-4 * step) if sign > 0
                    else brentq(q, edge, mu_hat, xtol=1e-4 * step))
    return 0.5 * (ends[0] - ends[1])


def without_staterror(spec: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of the workspace without its staterror modifiers: the result as if the
    simulated samples were infinitely large (the MC statistical uncertainty removed)."""
    out = json.loads(json.dumps(spec))
    for channel in out["channels"]:
        for sample in channel["samples"]:
            sample["modifiers"] = [m for m in sample["modifiers"] if m["type"] != "staterror"]
    return out


def asimov_sigma_mu(spec: Mapping[str, Any]) -> float:
    """Expected sigma_mu of a workspace: half the width of the profile likelihood's
    ``-2 Delta ln L = 1`` interval on Asimov data at mu = 1 (POI units; NaN beyond the bounds)."""
    import pyhf

    with np.errstate(divide="ignore", invalid="ignore"), restored_pyhf_backend():
        _use_optimizer(0)
        model = pyhf.Workspace(dict(spec)).model()
        init = np.asarray(model.config.suggested_init(), dtype=float)
        init[model.config.poi_index] = 1.0
        asimov = np.asarray(model.expected_data(init))
        bounds = model.config.suggested_bounds()
        pars = np.asarray(_robust(lambda: pyhf.infer.mle.fit(
            asimov, model, init_pars=init.tolist(), par_bounds=bounds,
            return_uncertainties=True), needs_uncertainties=True))
        poi = model.config.poi_index
        return _profile_sigma(asimov, model, float(pars[poi, 0]), float(pars[poi, 1]), init,
                              bounds)


def fit_workspace(spec: Mapping[str, Any], *, scan_points: int = 21, scan_max: float = 3.0,
                  limit_max: float = 10.0, limit_points: int = 41,
                  progress: Callable[[int], None] | None = None) -> FitResults:
    """Every fit of the module docstring on the workspace ``spec``.

    Args:
        spec: a pyhf workspace specification (e.g. from
            :func:`~analysis.inference.workspace.build_workspace`).
        scan_points: points of the likelihood scan in ``[0, max(scan_max, 1 + 3 sigma_mu)]``
            (at most the upper bound of mu).
        scan_max: smallest upper end of the scan (mu).
        limit_max: upper end of the search for the CLs limit (mu); a limit beyond it is NaN.
        limit_points: grid points in ``[0, limit_max]`` at which CLs is computed.
        progress: called with the number of completed steps (of ``5 + 2 * n_nuisances``).

    Returns:
        :class:`FitResults`.

    Raises:
        FitError: a fit that does not converge.
    """
    # CLs and test statistics divide by quantities that vanish for hopeless models (CLs = 0/0):
    # those points give NaN, which the limit search and the report handle
    with np.errstate(divide="ignore", invalid="ignore"), restored_pyhf_backend():
        return _fit_workspace(spec, scan_points, scan_max, limit_max, limit_points, progress)


def _fit_workspace(spec: Mapping[str, Any], scan_points: int, scan_max: float, limit_max: float,
                   limit_points: int, progress: Callable[[int], None] | None) -> FitResults:
    import pyhf

    _use_optimizer(0)
    workspace = pyhf.Workspace(dict(spec))
    model = workspace.model()
    config = model.config
    poi = config.poi_index
    init = np.asarray(config.suggested_init(), dtype=float)
    bounds = config.suggested_bounds()
    fixed_default = list(config.suggested_fixed())
    asimov_pars = init.copy()
    asimov_pars[poi] = 1.0
    asimov = np.asarray(model.expected_data(asimov_pars))
    background_pars = init.copy()
    background_pars[poi] = 0.0
    background_asimov = np.asarray(model.expected_data(background_pars))
    observed = np.asarray(workspace.data(model))
    nuisances = [name for name in config.par_order if name != config.poi_name
                 and not name.startswith("staterror")]
    done = 0

    def step() -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done)

    def fit(data: np.ndarray, fixed: list[bool] | None = None, start: np.ndarray | None = None,
            uncertainties: bool = True) -> tuple[np.ndarray, np.ndarray]:
        pars = np.asarray(_robust(lambda: pyhf.infer.mle.fit(
            data, model, init_pars=(start if start is not None else init).tolist(),
            par_bounds=bounds, fixed_params=fixed or fixed_default,
            return_uncertainties=uncertainties), needs_uncertainties=uncertainties))
        if not uncertainties:
            return pars, np.full_like(pars, np.nan)
        return pars[:, 0], pars[:, 1]

    best_asimov, err_asimov = fit(asimov)
    stat_fixed = [True] * len(init)
    stat_fixed[poi] = False
    _, err_stat = fit(asimov, stat_fixed)
    best_obs, err_obs = fit(observed)
    step()

    def twice_nll_at(mu: float, data: np.ndarray) -> float:
        return float(_robust(lambda: pyhf.infer.mle.fixed_poi_fit(
            mu, data, model, init_pars=init.tolist(), par_bounds=bounds,
            return_fitted_val=True))[1])

    # q0 = -2 ln L(0) / L(mu-hat) from the same profile as the scan and sigma_mu: on Asimov
    # data the minimum is at the generating parameters exactly; the smallest value found is
    # kept, so that a minimisation stopping early cannot invent a significance
    nll_min_asimov = min(float(pyhf.infer.mle.twice_nll(asimov_pars, asimov, model)[0]),
                         float(pyhf.infer.mle.twice_nll(best_asimov, asimov, model)[0]))
    nll_min_observed = float(pyhf.infer.mle.twice_nll(best_obs, observed, model)[0])
    q0_expected = max(twice_nll_at(0.0, asimov) - nll_min_asimov, 0.0)
    q0_observed = (max(twice_nll_at(0.0, observed) - nll_min_observed, 0.0)
                   if best_obs[poi] > 0 else 0.0)
    step()
    limit, _ = _upper_limits(observed, model, limit_max, limit_points)
    # expected limits: on background-only Asimov data (no signal injected, nominal nuisances)
    _, band = _upper_limits(background_asimov, model, limit_max, limit_points)
    step()
    sigma_profile = _profile_sigma(asimov, model, float(best_asimov[poi]),
                                   float(err_asimov[poi]), init, bounds)
    # the scan shows the interval: at least to scan_max, else to 1 + 3 sigma_mu (the POI's
    # upper bound when sigma_mu is beyond it)
    reach = 1.0 + 3.0 * sigma_profile if math.isfinite(sigma_profile) else math.inf
    scan_mu = np.linspace(0.0, min(max(scan_max, reach), bounds[poi][1]), scan_points)
    scans = []
    for data, best in ((asimov, best_asimov), (observed, best_obs)):
        nll_best = float(pyhf.infer.mle.twice_nll(best, data, model)[0])
        values = []
        for mu in scan_mu:
            _, twice_nll = _robust(lambda mu=mu, data=data: pyhf.infer.mle.fixed_poi_fit(
                mu, data, model, init_pars=init.tolist(), par_bounds=bounds,
                return_fitted_val=True))
            values.append(max(float(twice_nll) - nll_best, 0.0))
        scans.append(values)
    sigma_observed = _profile_sigma(observed, model, float(best_obs[poi]), float(err_obs[poi]),
                                    init, bounds)
    step()
    pulls = {}
    for name in nuisances:
        index = config.par_slice(name).start
        pulls[name] = (float(best_obs[index]), float(err_obs[index]))
    impacts, widths = {}, {}
    for name in nuisances:
        index = config.par_slice(name).start
        fixed = list(fixed_default)
        fixed[index] = True

        def refit(theta: float) -> tuple[float, float]:
            """mu-hat and -2 Delta ln L on Asimov with this nuisance fixed at ``theta``."""
            start = best_asimov.copy()
            start[index] = theta
            best, _ = fit(asimov, fixed, start, uncertainties=False)
            twice_nll = float(pyhf.infer.mle.twice_nll(best, asimov, model)[0])
            return float(best[poi]), max(twice_nll - nll_min_asimov, 0.0)

        # post-fit impacts (as CMS's): the nuisance fixed where its profile likelihood rises
        # by 1, each side on its own. MINUIT's Hesse errors are no guide here: where the MC
        # statistical uncertainty makes the likelihood flat they came out 10-100x too small
        # (sigma_mu Hesse 0.56 against 34 from the profile). The crossing is found from the
        # profile itself: a parabola through its value at the prior width 1, then at most two
        # more (2 to 6 fits per nuisance instead of 2).
        shifted, side_widths = [], []
        for sign in (+1.0, -1.0):
            width = 1.0
            mu, rise = refit(best_asimov[index] + sign * width)
            for _ in range(2):
                if abs(rise - 1.0) <= 0.25 or (width >= 1.0 and rise < 1.0) or rise <= 1e-9:
                    break
                width = min(width / math.sqrt(rise), 1.0)
                mu, rise = refit(best_asimov[index] + sign * width)
            if abs(rise - 1.0) > 0.25 and width < 1.0:
                log.warning("fit_workspace: the profile of %s rises by %.2f, not 1, at the "
                            "width %.3g used for its impact (far from a parabola)", name, rise,
                            width)
            shifted.append(mu - float(best_asimov[poi]))
            side_widths.append(width)
            step()
        widths[name] = (side_widths[0], side_widths[1])
        impacts[name] = (shifted[0], shifted[1])
    ranked = dict(sorted(impacts.items(), key=lambda kv: -max(abs(kv[1][0]), abs(kv[1][1]))))
    step()
    return FitResults(
        mu_hat=float(best_obs[poi]), mu_uncertainty=sigma_observed,
        asimov_mu_hat=float(best_asimov[poi]), sigma_mu=sigma_profile,
        sigma_mu_hesse=float(err_asimov[poi]),
        sigma_mu_stat=float(err_stat[poi]),
        expected_significance=math.sqrt(q0_expected),
        observed_significance=math.sqrt(q0_observed), expected_limit=band[2], expected_band=band,
        observed_limit=limit, scan_mu=scan_mu.tolist(), scan_asimov=scans[0],
        scan_observed=scans[1], pulls=pulls, impacts=ranked, impact_widths=widths)


def fit_network(spec: Mapping[str, Any], fold_specs: Sequence[Mapping[str, Any]], *,
                scan_points: int, scan_max: float, limit_max: float, limit_points: int,
                progress: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Every result of one network's workspace, and sigma_mu per fold and without MC stat.

    Args:
        spec: the network's workspace (all events).
        fold_specs: one workspace per fold (its own network's events at the full
            luminosity): the spread of their sigma_mu is what the finite simulated sample
            alone makes of a difference between networks.
        scan_points, scan_max, limit_max, limit_points: as :func:`fit_workspace`.
        progress: called with completed steps of :func:`fit_workspace`.

    Returns:
        :meth:`FitResults.as_dict` plus ``sigma_mu_folds`` (per fold), ``sigma_mu_no_mcstat``
        and ``sigma_mu_no_mcstat_folds``: the same without the staterror modifiers, what
        the result would be with simulated samples much larger than the data.
    """
    results = fit_workspace(spec, scan_points=scan_points, scan_max=scan_max,
                            limit_max=limit_max, limit_points=limit_points, progress=progress)
    return {**results.as_dict(),
            "sigma_mu_folds": [asimov_sigma_mu(fold) for fold in fold_specs],
            "sigma_mu_no_mcstat": asimov_sigma_mu(without_staterror(spec)),
            "sigma_mu_no_mcstat_folds": [asimov_sigma_mu(without_staterror(fold))
                                         for fold in fold_specs]}


def fit_steps(spec: Mapping[str, Any]) -> int:
    """How many steps :func:`fit_workspace` reports to ``progress`` for ``spec``."""
    nuisances = {m["name"] for channel in spec["channels"] for sample in channel["samples"]
                 for m in sample["modifiers"] if m["type"] in ("normsys", "histosys")}
    return 5 + 2 * len(nuisances)
