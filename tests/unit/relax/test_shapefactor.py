"""pyhf's shapefactor (a free factor per bin, shared by name) in the torch HistFactory likelihood:
NLL against pyhf, Fisher information against the autograd Hessian, sigma_mu with and without a
control channel that constrains the shape."""

from __future__ import annotations

import json

import numpy as np
import pyhf  # type: ignore[import-untyped]
import pytest
import torch

from analysis.errors import FitError, InputDataError
from analysis.relax.histfactory import (
    BinnedModel,
    Channel,
    Modifier,
    Sample,
    data_from_pyhf,
    parameters_from_pyhf,
    to_pyhf_workspace,
)
from analysis.relax.likelihood import (
    asimov_data,
    fisher_information,
    nll,
    nominal_parameters,
    sigma_mu,
)

NLL_RTOL = 1e-9
SIGMA_RTOL = 0.01  # minuit's Hesse against the exact inverse Fisher information
POI_BOUNDS = (-50.0, 50.0)
MODIFIER_SETTINGS = {"normsys": {"interpcode": "code4"}, "histosys": {"interpcode": "code4p"}}
SEEDS = list(range(5))
PYHF_SCHEMA_WARNING = pytest.mark.filterwarnings(
    "ignore:jsonschema.RefResolver is deprecated:DeprecationWarning:pyhf.schema.validator")


def _t(x: np.ndarray) -> torch.Tensor:
    return torch.tensor(x, dtype=torch.float64)


def _model(seed: int, control: bool = True) -> BinnedModel:
    """A signal region and (optionally) a ttbb control region of one bin count: the signal with
    mu, ttbb with the shared shapefactor ``shape_ttbb``, ttcc with a free normfactor in both
    regions, normsys, histosys, staterror and lumi."""
    rng = np.random.default_rng(seed)
    n_bins = int(rng.integers(2, 6))
    regions = {"sr": (rng.uniform(5, 20, n_bins), rng.uniform(50, 150, n_bins)),
               "cr_ttbb": (rng.uniform(0.1, 1.0, n_bins), rng.uniform(300, 800, n_bins))}
    channels = []
    for name, (signal, ttbb) in regions.items():
        if name != "sr" and not control:
            continue
        ttcc = rng.uniform(30, 90, n_bins)
        stat = [Modifier.staterror(f"staterror_{name}", _t(x * rng.uniform(0.01, 0.05, n_bins)))
                for x in (signal, ttbb, ttcc)]
        shape = (Modifier.shapefactor("shape_ttbb"),)
        samples = (
            Sample("signal", _t(signal), (Modifier.normfactor("mu"), Modifier.lumi(), stat[0])),
            Sample("ttbb", _t(ttbb), shape + (
                Modifier.normsys("btag", 1 + rng.uniform(0.02, 0.2), 1 - rng.uniform(0.02, 0.2)),
                Modifier.histosys("jes", _t(ttbb * rng.uniform(0.9, 1.15, n_bins)),
                                  _t(ttbb * rng.uniform(0.85, 1.1, n_bins))), stat[1])),
            Sample("ttcc", _t(ttcc), (
                Modifier.normfactor("norm_ttcc"), Modifier.lumi(),
                Modifier.normsys("btag", 1 + rng.uniform(0.02, 0.2), 1 - rng.uniform(0.02, 0.2)),
                stat[2])))
        channels.append(Channel(name, samples))
    return BinnedModel(tuple(channels), lumi_sigma=0.02)


def _pyhf_model(model: BinnedModel) -> pyhf.pdf.Model:
    spec = json.loads(json.dumps(to_pyhf_workspace(model, poi_bounds=POI_BOUNDS)))
    return pyhf.Workspace(spec).model(modifier_settings=MODIFIER_SETTINGS)


def test_shapefactor_is_a_free_factor_per_bin_shared_by_name() -> None:
    model = _model(0)
    n_bins = model.channels[0].n_bins
    shape = model.parameter("shape_ttbb")
    assert shape.kind == "shapefactor" and shape.aux_index is None  # no constraint term
    assert shape.index.stop - shape.index.start == n_bins  # one parameter for both regions
    assert nominal_parameters(model)[shape.index].tolist() == [1.0] * n_bins
    spec = to_pyhf_workspace(model)
    modifiers = [m for c in spec["channels"] for s in c["samples"] for m in s["modifiers"]
                 if m["type"] == "shapefactor"]
    assert len(modifiers) == 2 and all(m["data"] is None for m in modifiers)
    paramset = _pyhf_model(model).config.param_set("shape_ttbb")
    assert not paramset.constrained and paramset.n_parameters == n_bins
    assert paramset.suggested_bounds == [(0, 10)] * n_bins
    assert paramset.suggested_init == [1.0] * n_bins
    # doubling one bin's factor doubles ttbb there, in both regions
    pars = nominal_parameters(model)
    pars[shape.index.start + 1] = 2.0
    rates = asimov_data(model, pars)[: model.n_main] - asimov_data(model)[: model.n_main]
    ttbb = torch.cat([c.samples[1].nominal for c in model.channels])
    expected = torch.zeros_like(ttbb)
    expected[[1, n_bins + 1]] = ttbb[[1, n_bins + 1]]
    torch.testing.assert_close(rates, expected, rtol=1e-12, atol=1e-12)


@PYHF_SCHEMA_WARNING
@pytest.mark.parametrize("seed", SEEDS)
def test_nll_equals_pyhf_logpdf_with_shapefactor(seed: int) -> None:
    model = _model(seed)
    pdf = _pyhf_model(model)
    kinds = {pdf.config.param_set(n).__class__.__name__ for n in pdf.config.par_order}
    assert {"unconstrained", "constrained_by_normal"} <= kinds
    rng = np.random.default_rng(100 + seed)
    for _ in range(5):
        pyhf_pars = np.array(pdf.config.suggested_init(), dtype=float)
        for name in pdf.config.par_order:
            sl = pdf.config.par_slice(name)
            init = pdf.config.param_set(name).suggested_init[0]
            size = sl.stop - sl.start
            pyhf_pars[sl] = (rng.uniform(-2.0, 2.0, size) if init == 0.0
                             else rng.uniform(0.3, 2.5, size) if name.startswith(("shape", "norm",
                                                                                  "mu"))
                             else rng.uniform(0.85, 1.15, size))
        data = np.asarray(pdf.expected_data(pyhf_pars))
        data[: pdf.config.nmaindata] *= rng.uniform(0.7, 1.3, pdf.config.nmaindata)
        pars = parameters_from_pyhf(model, pyhf_pars, pdf.config)
        ours = nll(model, pars, data_from_pyhf(model, data, pdf.config)).item()
        assert ours == pytest.approx(-float(pdf.logpdf(pyhf_pars, data)[0]), rel=NLL_RTOL)
        torch.testing.assert_close(asimov_data(model, pars), data_from_pyhf(
            model, pdf.expected_data(pyhf_pars), pdf.config), rtol=1e-12, atol=0.0)


@pytest.mark.parametrize("seed", SEEDS[:2])
def test_fisher_information_equals_autograd_hessian_with_shapefactor(seed: int) -> None:
    """J^T diag(1/lambda) J has no constraint term for the shapefactor: still the exact
    Hessian on the point's own Asimov data, and its gradient in the histograms too."""
    model = _model(seed)
    generator = torch.Generator().manual_seed(seed)
    nominal = nominal_parameters(model)
    shifted = nominal + 0.3 * torch.randn(nominal.shape, generator=generator,
                                          dtype=torch.float64)
    shifted = torch.where(nominal == 1.0, shifted.abs() + 0.5, shifted)

    def autograd_hessian(m: BinnedModel, pars: torch.Tensor) -> torch.Tensor:
        data = asimov_data(m, pars)
        return torch.autograd.functional.hessian(lambda p: nll(m, p, data), pars,
                                                 create_graph=True, vectorize=True)

    for pars in (nominal, shifted):
        torch.testing.assert_close(fisher_information(model, pars, create_graph=False),
                                   autograd_hessian(model, pars).detach(), rtol=1e-9, atol=1e-9)
    shape = model.parameter("shape_ttbb").index
    fisher = fisher_information(model, create_graph=False)
    # the shape's diagonal is the Poisson information alone: sum over regions of t_b^2 / lambda_b
    lam = asimov_data(model)[: model.n_main]
    ttbb = torch.cat([c.samples[1].nominal for c in model.channels])
    n_bins = model.channels[0].n_bins
    expected = (ttbb**2 / lam).reshape(2, n_bins).sum(0)
    torch.testing.assert_close(torch.diagonal(fisher)[shape], expected, rtol=1e-12, atol=0.0)
    histogram = model.channels[1].samples[1].nominal.clone().requires_grad_(True)

    def poi_variance(hessian_of: object) -> torch.Tensor:
        cr = model.channels[1]
        varied = BinnedModel((model.channels[0], Channel(cr.name, (
            cr.samples[0], Sample("ttbb", histogram, cr.samples[1].modifiers), cr.samples[2]))),
            lumi_sigma=model.lumi_sigma)
        return torch.linalg.inv(hessian_of(varied, nominal_parameters(varied)))[0, 0]  # type: ignore[operator]

    (analytic,) = torch.autograd.grad(poi_variance(fisher_information), histogram)
    (reference,) = torch.autograd.grad(poi_variance(autograd_hessian), histogram)
    torch.testing.assert_close(analytic, reference, rtol=1e-8, atol=1e-12)
    assert bool((analytic != 0).any())


@PYHF_SCHEMA_WARNING
def test_sigma_mu_with_a_control_region_equals_pyhf_hesse() -> None:
    model = _model(1)
    pdf = _pyhf_model(model)
    previous = pyhf.get_backend()
    pyhf.set_backend("numpy", pyhf.optimize.minuit_optimizer(tolerance=1e-6))
    try:
        asimov = np.asarray(pdf.expected_data(pdf.config.suggested_init()))
        fit = pyhf.infer.mle.fit(asimov, pdf, return_uncertainties=True)
    finally:
        pyhf.set_backend(*previous)
    value = sigma_mu(model).item()
    assert np.isfinite(value) and value == pytest.approx(float(fit[pdf.config.poi_index, 1]),
                                                         rel=SIGMA_RTOL)


@pytest.mark.parametrize("seed", range(20))
def test_sigma_mu_without_a_control_region_is_a_fit_error(seed: int) -> None:
    """One free factor per bin on ttbb and a free mu in one region: n_bins + 1 free
    directions for n_bins bins, the Fisher information is singular (not a rounding-error
    pivot and sigma_mu ~ 1e7, as an unequilibrated Cholesky decomposition gave for 4 of 20)."""
    with pytest.raises(FitError, match="not positive definite"):
        sigma_mu(_model(seed, control=False))


def test_shapefactor_shared_across_bin_counts_is_rejected() -> None:
    model = _model(3)
    sr, cr = model.channels
    shorter = Channel(cr.name, tuple(Sample(s.name, s.nominal[:-1], tuple(
        m for m in s.modifiers if m.kind in ("shapefactor", "normfactor"))) for s in cr.samples))
    with pytest.raises(InputDataError, match="shapefactor 'shape_ttbb' has .* bins in channel "
                                             "'sr'"):
        BinnedModel((sr, shorter), lumi_sigma=0.02)
