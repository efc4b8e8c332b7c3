"""The torch HistFactory likelihood against pyhf (numpy backend) on random workspaces."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator

import numpy as np
import pyhf  # type: ignore[import-untyped]
import pytest
import torch

from analysis.errors import InputDataError
from analysis.relax.histfactory import (
    MODIFIER_KINDS,
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
    covariance,
    fisher_information,
    nll,
    nominal_parameters,
    sigma_mu,
)

N_WORKSPACES = 20
N_POINTS = 3
NLL_RTOL = 1e-8
SIGMA_RTOL = 0.01
# minuit's Hesse works in bounded internal coordinates (a sine map): with sigma_mu ~ 4 and bounds
# (-10, 10) that map bends within one sigma and Hesse is 3 % off; (-50, 50) keeps it below 0.2 %
POI_BOUNDS = (-50.0, 50.0)
MODIFIER_SETTINGS = {"normsys": {"interpcode": "code4"}, "histosys": {"interpcode": "code4p"}}
CHANNELS = ("sr", "cr_ttbb", "cr_ttcc")  # pyhf sorts them: exercises the reordering
SAMPLES = ("signal", "ttbb", "ttcc", "ttlf")
NORMSYS = ("xsec_ttbb", "xsec_ttcc", "btag")
HISTOSYS = ("jes", "jer")
# pyhf 0.7.6 validates workspaces with jsonschema's deprecated RefResolver: not ours to fix
PYHF_SCHEMA_WARNING = pytest.mark.filterwarnings(
    "ignore:jsonschema.RefResolver is deprecated:DeprecationWarning:pyhf.schema.validator")


def _t(x: np.ndarray) -> torch.Tensor:
    return torch.tensor(x, dtype=torch.float64)


def _random_model(seed: int) -> BinnedModel:
    """1-3 channels, 1-5 bins, 2-4 samples; random subsets of every modifier kind."""
    rng = np.random.default_rng(seed)
    use = {k: rng.random() < 0.7 for k in ("normsys", "histosys", "staterror", "shapesys", "lumi")}
    channels = []
    for c_name in CHANNELS[:rng.integers(1, 4)]:
        n_bins = int(rng.integers(1, 6))
        samples = []
        for i, s_name in enumerate(SAMPLES[:rng.integers(2, 5)]):
            low, high = (2.0, 20.0) if i == 0 else (20.0, 200.0)  # signal, backgrounds
            nominal = rng.uniform(low, high, n_bins)
            mods = [Modifier.normfactor("mu")] if i == 0 else []
            if use["normsys"]:
                for name in rng.permutation(NORMSYS)[:rng.integers(0, 3)]:  # shared names
                    mods.append(Modifier.normsys(str(name), 1 + rng.uniform(0.02, 0.3),
                                                 1 - rng.uniform(-0.05, 0.3)))
            if use["histosys"]:
                for name in rng.permutation(HISTOSYS)[:rng.integers(0, 3)]:
                    mods.append(Modifier.histosys(str(name),
                                                  _t(nominal * rng.uniform(0.85, 1.2, n_bins)),
                                                  _t(nominal * rng.uniform(0.8, 1.15, n_bins))))
            if use["staterror"] and rng.random() < 0.8:  # shared by the channel's samples
                mods.append(Modifier.staterror(f"staterror_{c_name}",
                                               _t(nominal * rng.uniform(0.01, 0.1, n_bins))))
            if use["shapesys"] and rng.random() < 0.4:  # one per sample
                mods.append(Modifier.shapesys(f"shape_{c_name}_{s_name}",
                                              _t(nominal * rng.uniform(0.03, 0.15, n_bins))))
            if use["lumi"] and i < 3:
                mods.append(Modifier.lumi())
            samples.append(Sample(s_name, _t(nominal), tuple(mods)))
        channels.append(Channel(c_name, tuple(samples)))
    return BinnedModel(tuple(channels), lumi_sigma=float(rng.uniform(0.01, 0.05)))


def _pyhf_model(model: BinnedModel) -> pyhf.pdf.Model:
    spec = json.loads(json.dumps(to_pyhf_workspace(model, poi_bounds=POI_BOUNDS)))  # plain JSON
    return pyhf.Workspace(spec).model(modifier_settings=MODIFIER_SETTINGS)  # schema-validated


def _random_pyhf_pars(pdf: pyhf.pdf.Model, rng: np.random.Generator) -> np.ndarray:
    """Random point: mu in [0.5, 2], alphas in [-2, 2] (inside and outside ±1), gammas ±15 %."""
    pars = np.array(pdf.config.suggested_init(), dtype=float)
    for name in pdf.config.par_order:
        sl = pdf.config.par_slice(name)
        if name == "mu":
            pars[sl] = rng.uniform(0.5, 2.0)
        elif pdf.config.param_set(name).suggested_init[0] == 0.0:
            pars[sl] = rng.uniform(-2.0, 2.0, sl.stop - sl.start)
        else:
            pars[sl] *= rng.uniform(0.85, 1.15, sl.stop - sl.start)
    return pars


@pytest.fixture(scope="module")
def numpy_minuit() -> Iterator[None]:
    """pyhf on numpy with minuit (for Hesse uncertainties); the previous backend restored."""
    previous = pyhf.get_backend()
    pyhf.set_backend("numpy", pyhf.optimize.minuit_optimizer(tolerance=1e-6))
    yield
    pyhf.set_backend(*previous)


SEEDS = list(range(N_WORKSPACES))


def test_generator_covers_all_modifier_kinds() -> None:
    kinds = {m.kind for seed in SEEDS for c in _random_model(seed).channels
             for s in c.samples for m in s.modifiers}
    multi_channel = [seed for seed in SEEDS if len(_random_model(seed).channels) > 1]
    # shapefactor (free per bin) needs a control channel to keep sigma_mu finite: its own
    # random workspaces are in test_shapefactor.py
    assert kinds == set(MODIFIER_KINDS) - {"shapefactor"}
    assert len(multi_channel) >= N_WORKSPACES // 3  # names shared across channels


@PYHF_SCHEMA_WARNING
@pytest.mark.parametrize("seed", SEEDS)
def test_nll_equals_pyhf_logpdf(seed: int, numpy_minuit: None) -> None:
    model = _random_model(seed)
    pdf = _pyhf_model(model)
    rng = np.random.default_rng(10_000 + seed)
    assert pdf.config.poi_name == model.poi
    for _ in range(N_POINTS):
        pyhf_pars = _random_pyhf_pars(pdf, rng)
        data = np.asarray(pdf.expected_data(_random_pyhf_pars(pdf, rng)))
        data[: pdf.config.nmaindata] *= rng.uniform(0.7, 1.3, pdf.config.nmaindata)
        data[rng.integers(pdf.config.nmaindata)] = 0.0  # an empty bin: xlogy(0, rate)
        pars = parameters_from_pyhf(model, pyhf_pars, pdf.config)
        expected = data_from_pyhf(model, pdf.expected_data(pyhf_pars), pdf.config)
        torch.testing.assert_close(asimov_data(model, pars), expected, rtol=1e-12, atol=0.0)
        ours = nll(model, pars, data_from_pyhf(model, data, pdf.config)).item()
        assert ours == pytest.approx(-float(pdf.logpdf(pyhf_pars, data)[0]), rel=NLL_RTOL)
        main = data_from_pyhf(model, data, pdf.config)[: model.n_main]
        theirs = -float(pdf.main_model.logpdf(data[: pdf.config.nmaindata], pyhf_pars))
        assert nll(model, pars, main, include_constraints=False).item() == pytest.approx(
            theirs, rel=NLL_RTOL)


@PYHF_SCHEMA_WARNING
@pytest.mark.parametrize("seed", SEEDS)
def test_sigma_mu_equals_pyhf_hesse(seed: int, numpy_minuit: None) -> None:
    model = _random_model(seed)
    pdf = _pyhf_model(model)
    asimov = np.asarray(pdf.expected_data(pdf.config.suggested_init()))
    torch.testing.assert_close(asimov_data(model), data_from_pyhf(model, asimov, pdf.config))
    fit = pyhf.infer.mle.fit(asimov, pdf, return_uncertainties=True)
    expected = float(fit[pdf.config.poi_index, 1])
    assert sigma_mu(model).item() == pytest.approx(expected, rel=SIGMA_RTOL)


def _with_signal(model: BinnedModel, nominal: torch.Tensor) -> BinnedModel:
    """``model`` with the first channel's signal nominal replaced."""
    first = model.channels[0]
    signal = dataclasses.replace(first.samples[0], nominal=nominal)
    channel = dataclasses.replace(first, samples=(signal,) + first.samples[1:])
    return dataclasses.replace(model, channels=(channel,) + model.channels[1:])


@pytest.mark.parametrize("seed", SEEDS)
def test_sigma_mu_gradient_matches_finite_differences(seed: int) -> None:
    model = _random_model(seed)
    nominal = model.channels[0].samples[0].nominal.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(sigma_mu(_with_signal(model, nominal)), nominal)
    assert bool(torch.isfinite(grad).all()) and bool((grad != 0).all())
    assert torch.autograd.gradcheck(lambda x: sigma_mu(_with_signal(model, x)), (nominal,),
                                    eps=1e-6, atol=1e-9, rtol=1e-5)


def test_covariance_is_symmetric_inverse_of_fisher() -> None:
    model = _random_model(0)
    cov = covariance(model, nominal_parameters(model), create_graph=False)
    fisher = fisher_information(model, create_graph=False)
    torch.testing.assert_close(cov @ fisher, torch.eye(model.n_parameters, dtype=torch.float64))
    torch.testing.assert_close(cov, cov.T)
    assert bool((torch.linalg.eigvalsh(cov) > 0).all())


@pytest.mark.parametrize("seed", [0, 3])
def test_fisher_information_equals_autograd_hessian_on_asimov(seed: int) -> None:
    """J^T diag(1/lambda) J + constraints is the NLL's Hessian on the point's own Asimov data,
    at the nominal point and away from it (shapesys tau / gamma, code-4 polynomial and
    exponential regions), and so is its gradient in the histograms (what training uses)."""
    model = _random_model(seed)
    generator = torch.Generator().manual_seed(seed)
    nominal = nominal_parameters(model)
    shifted = nominal + 0.3 * torch.randn(nominal.shape, generator=generator,
                                          dtype=torch.float64)
    shifted = torch.where(nominal == 1.0, shifted.abs() + 0.5, shifted)  # gammas, mu > 0

    def autograd_hessian(m: BinnedModel, pars: torch.Tensor) -> torch.Tensor:
        data = asimov_data(m, pars)
        return torch.autograd.functional.hessian(lambda p: nll(m, p, data), pars,
                                                 create_graph=True, vectorize=True)

    for pars in (nominal, shifted):
        torch.testing.assert_close(fisher_information(model, pars, create_graph=False),
                                   autograd_hessian(model, pars).detach(), rtol=1e-9,
                                   atol=1e-9)
    histogram = model.channels[0].samples[0].nominal.clone().requires_grad_(True)

    def poi_variance(hessian_of: object) -> torch.Tensor:
        varied = _with_signal(model, histogram)
        return torch.linalg.inv(hessian_of(varied, nominal_parameters(varied)))[0, 0]  # type: ignore[operator]

    (analytic,) = torch.autograd.grad(poi_variance(fisher_information), histogram)
    (reference,) = torch.autograd.grad(poi_variance(autograd_hessian), histogram)
    torch.testing.assert_close(analytic, reference, rtol=1e-8, atol=1e-12)
    assert bool((analytic != 0).any())


def _replace_sample(model: BinnedModel, **changes: object) -> BinnedModel:
    first = model.channels[0]
    sample = dataclasses.replace(first.samples[-1], **changes)  # type: ignore[arg-type]
    channel = dataclasses.replace(first, samples=first.samples[:-1] + (sample,))
    return dataclasses.replace(model, channels=(channel,) + model.channels[1:])


@pytest.mark.parametrize("case", ["negative", "bins", "unknown_modifier", "histosys_bins",
                                  "dtype"])
def test_bad_input_names_channel_and_sample(case: str) -> None:
    model = _random_model(1)
    bad = model.channels[0].samples[-1]
    n_bins = model.channels[0].n_bins
    changes: dict[str, dict[str, object]] = {
        "negative": {"nominal": torch.cat([-bad.nominal[:1], bad.nominal[1:]])},
        "bins": {"nominal": torch.ones(n_bins + 1, dtype=torch.float64)},
        "unknown_modifier": {"modifiers": bad.modifiers + (Modifier("shapefactr", "sf"),)},
        "histosys_bins": {"modifiers": bad.modifiers + (Modifier.histosys(
            "jes_bad", torch.ones(n_bins + 2, dtype=torch.float64),
            torch.ones(n_bins + 2, dtype=torch.float64)),)},
        "dtype": {"nominal": bad.nominal.float()},
    }
    match = f"channel '{model.channels[0].name}', sample '{bad.name}'"
    with pytest.raises(InputDataError, match=match):
        _replace_sample(model, **changes[case])


def test_wrong_parameter_and_data_shapes_raise() -> None:
    model = _random_model(2)
    pars = nominal_parameters(model)
    with pytest.raises(InputDataError, match="pars"):
        nll(model, pars[:-1], asimov_data(model))
    with pytest.raises(InputDataError, match="data"):
        nll(model, pars, asimov_data(model)[:-1])
