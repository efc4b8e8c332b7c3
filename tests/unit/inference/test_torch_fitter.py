"""The torch fitter against pyhf + MINUIT: the same NLL, and the same fit results at 1e-4.

The workspaces are demo-shaped (:mod:`analysis.validation.demo_histograms` through
``build_workspace``: 10 score bins, five processes, normsys, histosys, staterror and a lumi
normsys), made two-channel and given a free tt+bb normalisation, as issue 16's model has.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import numpy as np
import pytest
import torch

from analysis.config import AnalysisConfig, load_config
from analysis.errors import FitError, InputDataError
from analysis.inference.fits import (
    PyhfEngine,
    TorchEngine,
    _engine,
    asimov_sigma_mu,
    fit_workspace,
    impact_parameters,
)
from analysis.inference.torch_fitter import WorkspaceLikelihood, _grad_hessian, minimize
from analysis.inference.workspace import build_workspace
from analysis.validation.demo_histograms import demo_like_histograms
from tests.unit.inference.workspace_edits import scale_sample

RELATIVE = 1e-4  # issue 16: torch vs pyhf + MINUIT


@pytest.fixture(scope="module")
def demo_config() -> AnalysisConfig:
    return load_config("tth_bb")


def _two_channels_free_ttbb(spec: dict[str, Any]) -> dict[str, Any]:
    """A second channel (a copy with a third of the signal and twice the tt+bb) and tt+bb's
    cross-section normsys replaced by a free normfactor in both."""
    out = copy.deepcopy(spec)
    second = copy.deepcopy(out["channels"][0])
    second["name"] = "control"
    for sample in second["samples"]:
        scale_sample(sample, {"tth_bb": 1 / 3, "tt_bb": 2.0}.get(sample["name"], 1.0))
        for modifier in sample["modifiers"]:
            if modifier["type"] == "staterror":
                modifier["name"] = "staterror_control"
    out["channels"].append(second)
    for channel in out["channels"]:
        for sample in channel["samples"]:
            if sample["name"] == "tt_bb":
                sample["modifiers"] = [m for m in sample["modifiers"] if m["name"] != "xsec_tt_bb"]
                sample["modifiers"].append({"name": "norm_tt_bb", "type": "normfactor",
                                            "data": None})
    # pseudo-data with three times the signal: a mu-hat far from 0 makes a relative comparison
    # meaningful (MINUIT's precision is absolute, about 1e-4 sigma at tolerance 1e-6)
    expected = [np.sum([(3.0 if s["name"] == "tth_bb" else 1.0) * np.asarray(s["data"])
                        for s in c["samples"]], axis=0) for c in out["channels"]]
    rng = np.random.default_rng(3)
    out["observations"] = [{"name": c["name"], "data": rng.poisson(e).astype(float).tolist()}
                           for c, e in zip(out["channels"], expected)]
    return out


@pytest.fixture(scope="module")
def workspace(demo_config: AnalysisConfig) -> dict[str, Any]:
    spec = build_workspace(demo_like_histograms(demo_config, n_bins=10, seed=1), demo_config,
                           pseudo_data_seed=7, prune_shape_chi2=None)
    return _two_channels_free_ttbb(spec)


def test_nll_equals_pyhf_logpdf(workspace: dict[str, Any]) -> None:
    likelihood = WorkspaceLikelihood(workspace)
    model = likelihood.pyhf_model
    assert len(model.config.channels) == 2 and "norm_tt_bb" in model.config.par_order
    rng = np.random.default_rng(11)
    low, high = likelihood.bounds[:, 0], likelihood.bounds[:, 1]
    for _ in range(6):
        pars = np.clip(likelihood.init + rng.normal(0.0, 0.4, likelihood.n_parameters),
                       np.maximum(low, 0.05 * np.abs(low) + 1e-3), high)
        for data in (likelihood.observed, np.asarray(model.expected_data(pars))):
            ours = float(likelihood.twice_nll(torch.as_tensor(pars), torch.as_tensor(data)))
            theirs = -2.0 * float(model.logpdf(pars, data)[0])
            assert ours == pytest.approx(theirs, rel=1e-10)
        assert likelihood.expected_data(pars) == pytest.approx(
            np.asarray(model.expected_data(pars)), rel=1e-12)


def _numerical_hessian(engine: TorchEngine, pars: np.ndarray, step: float = 1e-4
                       ) -> np.ndarray:
    """Central-difference Hessian of -2 log L over the free parameters."""
    free = np.flatnonzero(~engine.fixed)

    def f(shift: np.ndarray) -> float:
        x = pars.copy()
        x[free] += shift
        return engine.twice_nll(x, engine.observed)

    n = len(free)
    hessian = np.empty((n, n))
    unit = np.eye(n) * step
    for i in range(n):
        for j in range(i, n):
            hessian[i, j] = hessian[j, i] = (
                f(unit[i] + unit[j]) - f(unit[i] - unit[j]) - f(-unit[i] + unit[j])
                + f(-unit[i] - unit[j])) / (4 * step**2)
    return hessian


def test_analytic_gradient_equals_autograd(workspace: dict[str, Any]) -> None:
    """The numpy gradient of the fits' inner loop against torch autograd of the same NLL,
    including mu = 0 (a normfactor at zero) and alphas beyond +-1 (the extrapolated pieces)."""
    likelihood = WorkspaceLikelihood(workspace)
    rng = np.random.default_rng(5)
    data = torch.as_tensor(likelihood.observed)
    for trial in range(5):
        pars = np.clip(likelihood.init + rng.normal(0.0, 1.2, likelihood.n_parameters),
                       np.maximum(likelihood.bounds[:, 0], 0.05), likelihood.bounds[:, 1])
        if trial == 0:
            pars[likelihood.poi_index] = 0.0
        value, grad = likelihood.twice_nll_and_grad(pars, likelihood.observed)
        x = torch.as_tensor(pars).requires_grad_(True)
        reference = likelihood.twice_nll(x, data)
        (reference_grad,) = torch.autograd.grad(reference, x)
        assert value == pytest.approx(float(reference.detach()), rel=1e-12)
        assert grad == pytest.approx(reference_grad.numpy(), rel=1e-9,
                                     abs=1e-12 * np.abs(reference_grad.numpy()).max())


def test_expected_information_is_the_hessian_on_asimov_data(workspace: dict[str, Any]) -> None:
    """The Fisher-scoring matrix is the exact Hessian of -2 log L on a point's own Asimov data
    (there the terms (1 - n/lambda) d2 lambda vanish), at the nominal point and away from it,
    and positive semi-definite on the observed data, where the Hessian need not be."""
    likelihood = WorkspaceLikelihood(workspace)
    rng = np.random.default_rng(3)
    shifted = np.clip(likelihood.init + rng.normal(0.0, 0.8, likelihood.n_parameters),
                      np.maximum(likelihood.bounds[:, 0], 0.05), likelihood.bounds[:, 1])
    for pars in (likelihood.init, shifted):
        asimov = likelihood.expected_data(pars)
        _, grad, information = likelihood.twice_nll_grad_information(pars, asimov)
        reference_grad, hessian, _ = _grad_hessian(
            lambda p: likelihood.twice_nll(p, torch.as_tensor(asimov)), torch.as_tensor(pars))
        assert information == pytest.approx(hessian, rel=1e-8, abs=1e-10 * np.abs(hessian).max())
        assert grad == pytest.approx(reference_grad, abs=1e-8 * np.abs(hessian).max())
    _, _, information = likelihood.twice_nll_grad_information(shifted, likelihood.observed)
    assert np.linalg.eigvalsh(information).min() >= -1e-9 * np.abs(information).max()


def test_sigma_mu_from_one_side_where_the_other_reaches_the_bound(
        workspace: dict[str, Any]) -> None:
    """sigma_mu's lower side cut by mu's bound: the upper side's width, not NaN (a NaN would
    reach the report); both sides free: their mean."""
    free = asimov_sigma_mu(workspace)
    cut = copy.deepcopy(workspace)
    parameters = cut["measurements"][0]["config"]["parameters"]
    poi = next(p for p in parameters if p["name"] == "mu")
    poi["bounds"] = [[1.0 - 0.5 * free, poi["bounds"][0][1]]]
    one_sided = asimov_sigma_mu(cut)
    assert math.isfinite(one_sided)
    assert one_sided == pytest.approx(free, rel=0.25)  # the upper side alone
    assert one_sided != pytest.approx(free, rel=1e-6)


def test_unsupported_modifier_is_named(workspace: dict[str, Any]) -> None:
    spec = copy.deepcopy(workspace)
    sample = spec["channels"][0]["samples"][1]
    sample["modifiers"].append({"name": "extra", "type": "shapesys",
                                "data": [0.1 * x for x in sample["data"]]})
    with pytest.raises(InputDataError, match=r"channel .*sample .*'extra'.*shapesys"):
        WorkspaceLikelihood(spec)


def test_fit_results_match_pyhf_minuit(workspace: dict[str, Any]) -> None:
    """mu-hat, sigma_mu, q0, CLs and one impact: torch engine vs pyhf + MINUIT (1e-6
    tolerance), 1e-4 relative."""
    torch_engine, pyhf_engine = TorchEngine(workspace), _engine(workspace, "pyhf_strict")
    assert isinstance(pyhf_engine, PyhfEngine)
    assert torch_engine.par_names == pyhf_engine.par_names
    poi = torch_engine.poi
    # mu-hat and the free normalisation on the pseudo-data
    ours = torch_engine.fit(torch_engine.observed, uncertainties=True)
    theirs = pyhf_engine.fit(pyhf_engine.observed, uncertainties=True)
    norm = torch_engine.par_names.index("norm_tt_bb")
    assert ours.pars[poi] == pytest.approx(theirs.pars[poi], rel=RELATIVE)
    assert ours.pars[norm] == pytest.approx(theirs.pars[norm], rel=RELATIVE)
    assert ours.twice_nll == pytest.approx(theirs.twice_nll, rel=1e-9)
    # Hesse errors come from the exact autograd Hessian: entry by entry equal to central
    # differences (their rounding, ~1e-7 relative, is what the check allows). Inverted, the
    # ill-conditioned Hessian (condition ~4e5) turns such errors into 0.1 %, and MINUIT's
    # numerical Hesse differs by ~1 %: neither can check the inverse at 1e-4
    free = np.flatnonzero(~torch_engine.fixed)
    _, hessian, _ = _grad_hessian(
        lambda p: torch_engine.likelihood.twice_nll(p, torch.as_tensor(torch_engine.observed)),
        torch.as_tensor(ours.pars))
    assert hessian[np.ix_(free, free)] == pytest.approx(
        _numerical_hessian(torch_engine, ours.pars), abs=1e-6 * np.abs(hessian).max())
    assert ours.uncertainties[poi] == pytest.approx(theirs.uncertainties[poi], rel=0.02)
    # sigma_mu from the profile likelihood on Asimov data
    sigma = asimov_sigma_mu(workspace, "torch")
    assert 0.5 < sigma < 20
    assert sigma == pytest.approx(asimov_sigma_mu(workspace, "pyhf_strict"), rel=RELATIVE)
    # q0 on Asimov data: the profile at mu = 0 against the free fit
    asimov_pars = torch_engine.init.copy()
    asimov_pars[poi] = 1.0
    asimov = torch_engine.expected_data(asimov_pars)
    fixed = torch_engine.fixed.copy()
    fixed[poi] = True
    background_pars = asimov_pars.copy()
    background_pars[poi] = 0.0
    q0 = {}
    for name, engine in (("torch", torch_engine), ("pyhf", pyhf_engine)):
        free = engine.fit(asimov, init=asimov_pars)
        at_zero = engine.fit(asimov, fixed=fixed, init=background_pars)
        q0[name] = at_zero.twice_nll - free.twice_nll
    assert q0["torch"] > 0.01
    assert q0["torch"] == pytest.approx(q0["pyhf"], rel=RELATIVE)
    # CLs, observed and expected set, at mu = 2 sigma (pyhf's hypotest is the reference)
    bounds = torch_engine.bounds.copy()
    bounds[poi] = (0.0, 50.0)
    mu = 2.0 * sigma
    observed, expected = torch_engine.cls(mu, torch_engine.observed, bounds)
    observed_ref, expected_ref = pyhf_engine.cls(mu, pyhf_engine.observed, bounds)
    assert 1e-4 < observed < 0.9
    assert observed == pytest.approx(observed_ref, rel=RELATIVE)
    assert expected == pytest.approx(expected_ref, rel=RELATIVE)
    # one impact: mu-hat on Asimov with jes fixed at +1
    jes = torch_engine.par_names.index("jes")
    fixed_jes = torch_engine.fixed.copy()
    fixed_jes[jes] = True
    shifted = asimov_pars.copy()
    shifted[jes] = 1.0
    impact = [engine.fit(asimov, fixed=fixed_jes, init=shifted).pars[poi] - 1.0
              for engine in (torch_engine, pyhf_engine)]
    assert abs(impact[0]) > 1e-3
    assert impact[0] == pytest.approx(impact[1], rel=RELATIVE)


def test_free_normalisation_is_fitted_and_reported(workspace: dict[str, Any]) -> None:
    results = fit_workspace(workspace, scan_points=5, limit_max=50.0)
    value, error = results.normalisations["norm_tt_bb"]
    # pseudo-data drawn at the nominal background yields: tt+bb's normalisation near 1
    assert abs(value - 1.0) < 3 * error and 0 < error < 0.5
    assert "norm_tt_bb" in results.impacts and "norm_tt_bb" in results.pulls
    assert "norm_tt_bb" in impact_parameters(workspace) and "mu" not in impact_parameters(workspace)
    # its impact width is its own post-fit uncertainty, not a unit prior
    up, down = results.impact_widths["norm_tt_bb"]
    assert 0 < up < 0.5 and 0 < down < 0.5
    assert all(math.isfinite(x) for x in (results.sigma_mu, results.expected_limit,
                                          results.observed_limit, results.sigma_mu_stat))
    assert results.engine == "torch"


def test_limits_are_roots_of_cls(workspace: dict[str, Any]) -> None:
    """No grid: CLs at the limit is 0.05 to 1e-4."""
    results = fit_workspace(workspace, scan_points=3, limit_max=50.0)
    engine = TorchEngine(workspace)
    bounds = engine.bounds.copy()
    bounds[engine.poi] = (0.0, 50.0)
    observed, _ = engine.cls(results.observed_limit, engine.observed, bounds)
    assert observed == pytest.approx(0.05, rel=1e-4)
    background = engine.init.copy()
    background[engine.poi] = 0.0
    _, expected = engine.cls(results.expected_limit, engine.expected_data(background), bounds,
                             observed=False)
    assert expected[2] == pytest.approx(0.05, rel=1e-4)
    assert results.expected_band == sorted(results.expected_band)


def test_a_parameter_nothing_constrains_is_named(workspace: dict[str, Any]) -> None:
    spec = copy.deepcopy(workspace)
    for channel in spec["channels"]:
        for sample in channel["samples"]:
            if sample["name"] == "tt_bb":  # two free factors of one product: one is redundant
                sample["modifiers"].append({"name": "norm_twin", "type": "normfactor",
                                            "data": None})
    with pytest.raises(FitError, match=r"singular.*norm_t"):
        fit_workspace(spec, scan_points=3, limit_max=50.0)


def test_minimize_respects_bounds_and_fixed(workspace: dict[str, Any]) -> None:
    likelihood = WorkspaceLikelihood(workspace)
    poi = likelihood.poi_index
    bounds = likelihood.bounds.copy()
    bounds[poi] = (1.5, 3.0)  # the unbounded minimum lies near 1: held at the lower bound
    result = minimize(likelihood, likelihood.expected_data(likelihood.init), bounds=bounds)
    assert result.pars[poi] == 1.5
    fixed = likelihood.fixed.copy()
    jes = likelihood.parameter_index("jes")
    fixed[jes] = True
    start = likelihood.init.copy()
    start[jes] = 0.7
    assert minimize(likelihood, likelihood.observed, fixed=fixed, init=start).pars[jes] == 0.7


def test_limit_search_fits_far_above_mu_hat_converge_at_minuits_goal(
        caplog: pytest.LogCaptureFixture) -> None:
    """A real demo workspace (DNN penalty network, 3 channels, 27 parameters, written by
    BuildWorkspace in this session's demo run): with mu fixed far above mu-hat (the CLs search
    goes to mu's bound, 250) Fisher scoring approaches the minimum only linearly and misses its
    own 1e-10; those fits end at MINUIT's goal (EDM < 2e-4) at pyhf + MINUIT's minimum or below,
    and the whole Fit runs on torch (before: 17 such fits, and every fit fell back to MINUIT at
    93 s each)."""
    import json
    from pathlib import Path

    import pyhf

    from analysis.inference import torch_fitter
    from analysis.inference.fits import restored_pyhf_backend

    spec = json.loads((Path(__file__).parent / "workspaces" / "demo_dnn_penalty_workspace.json")
                      .read_text())
    engine = _engine(spec, "torch")
    model = pyhf.Workspace(spec).model()
    poi = model.config.poi_index
    background = np.asarray(model.expected_data(
        np.where(np.arange(model.config.npars) == poi, 0.0, model.config.suggested_init())))
    strict = []
    for mu in (60.0, 150.0, 240.0):
        fixed, start = engine.fixed.copy(), engine.init.copy()
        fixed[poi], start[poi] = True, mu
        ours = minimize(engine.likelihood, background, init=start, fixed=fixed)
        with pytest.MonkeyPatch.context() as patch:  # the fitter's own criterion alone
            patch.setattr(torch_fitter, "_MINUIT_EDM", 0.0)
            strict.append(minimize(engine.likelihood, background, init=start,
                                   fixed=fixed).converged)
        with restored_pyhf_backend():  # pyhf's defaults, whatever tests before left set
            pyhf.set_backend("numpy", pyhf.optimize.minuit_optimizer(tolerance=0.1,
                                                                      strategy=1))
            reference = pyhf.infer.mle.fixed_poi_fit(mu, background, model,
                                                     return_fitted_val=True)
        assert ours.converged
        assert ours.twice_nll <= float(reference[1]) + 1e-3
    assert not all(strict)  # the case exists: Fisher scoring alone stops short here
    with caplog.at_level("WARNING"):
        results = fit_workspace(spec, limit_max=250.0)
    assert math.isfinite(results.sigma_mu)
    assert "degenerate model" not in caplog.text  # no fallback to pyhf + MINUIT


def test_the_observed_best_fit_is_made_once(workspace: dict[str, Any],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLs limit search takes the observed best fit (its μ̂ inside [0, limit_max]) as
    its free fit instead of fitting the pseudo-data again in the narrower POI range; a POI
    range that does not contain μ̂ still gets its own fit."""
    free_fits: list[Any] = []
    real_fit = TorchEngine.fit

    def counting(self: TorchEngine, data: np.ndarray, **kwargs: Any) -> Any:
        if kwargs.get("fixed") is None and np.array_equal(data, self.observed):
            free_fits.append(kwargs.get("bounds"))
        return real_fit(self, data, **kwargs)

    monkeypatch.setattr(TorchEngine, "fit", counting)
    results = fit_workspace(workspace, scan_points=3, limit_max=50.0)
    assert 0.0 < results.mu_hat < 50.0 and math.isfinite(results.observed_limit)
    assert free_fits == [None]  # the best fit alone, in the engine's own bounds
    engine = TorchEngine(workspace)
    best = engine.fit(engine.observed, uncertainties=True)
    outside = engine.bounds.copy()
    outside[engine.poi] = (best.pars[engine.poi] + 1.0, 50.0)
    assert not engine.reuse_best_fit(engine.observed, outside, best)
    inside = engine.bounds.copy()
    inside[engine.poi] = (0.0, 50.0)
    assert engine.reuse_best_fit(engine.observed, inside, best)
