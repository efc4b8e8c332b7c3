"""Profiled q0 / Z0 against pyhf's asymptotics, envelope-theorem gradients, neos's one-bin case."""

from __future__ import annotations

import json
from collections.abc import Iterator

import numpy as np
import pyhf  # type: ignore[import-untyped]
import pytest
import torch
from scipy.stats import norm  # type: ignore[import-untyped]

from analysis.errors import FitError, InputDataError
from analysis.relax.histfactory import (
    BinnedModel,
    Channel,
    Modifier,
    Sample,
    data_from_pyhf,
    to_pyhf_workspace,
)
from analysis.relax.likelihood import asimov_data, nll, nominal_parameters
from analysis.relax.significance import (
    discovery_significance,
    p0,
    p_value,
    profile_fit,
    q0,
    q_mu,
)
from analysis.relax.simplemodels import uncorrelated_background

Z0_RTOL = 0.01
GRAD_RTOL = 1e-4
PHI_OPTIMUM, P0_OPTIMUM = 4.64, 3.08e-3  # neos / relaxed one-bin example
MODIFIER_SETTINGS = {"normsys": {"interpcode": "code4"}, "histosys": {"interpcode": "code4p"}}
PYHF_SCHEMA_WARNING = pytest.mark.filterwarnings(
    "ignore:jsonschema.RefResolver is deprecated:DeprecationWarning:pyhf.schema.validator")


def _t(x: np.ndarray | float) -> torch.Tensor:
    return torch.tensor(x, dtype=torch.float64)


def _random_model(seed: int, signal: torch.Tensor | None = None) -> BinnedModel:
    """1-2 channels of 1-3 bins: signal (mu, lumi, normsys) and two backgrounds with all kinds."""
    rng = np.random.default_rng(seed)
    channels = []
    for c_name in ("sr", "cr")[:rng.integers(1, 3)]:
        n = int(rng.integers(1, 4))
        sig = signal if signal is not None and c_name == "sr" else _t(rng.uniform(5, 20, n))
        n = int(sig.shape[0])
        samples = [Sample("signal", sig, (Modifier.normfactor("mu"), Modifier.lumi(),
                                          Modifier.normsys("xsec_sig", 1.1, 0.9)))]
        for b_name in ("ttbb", "ttlf"):
            nom = rng.uniform(30, 150, n)
            samples.append(Sample(b_name, _t(nom), (
                Modifier.lumi(),
                Modifier.normsys(f"xsec_{b_name}", 1 + rng.uniform(0.05, 0.3),
                                 1 - rng.uniform(0.05, 0.3)),
                Modifier.histosys("jes", _t(nom * rng.uniform(0.9, 1.15, n)),
                                  _t(nom * rng.uniform(0.85, 1.1, n))),
                Modifier.staterror(f"stat_{c_name}", _t(nom * rng.uniform(0.02, 0.08, n))),
                Modifier.shapesys(f"shape_{c_name}_{b_name}", _t(nom * rng.uniform(0.03, 0.1, n))),
            )))
        channels.append(Channel(c_name, tuple(samples)))
    return BinnedModel(tuple(channels), lumi_sigma=0.02)


def _one_bin(phi: torch.Tensor) -> BinnedModel:
    """neos example: s = 15 + phi, b = 45 - 2 phi, sigma_b = 0.5 + 0.1 phi^2 (shapesys)."""
    return uncorrelated_background(15 + phi, 45 - 2 * phi, 0.5 + 0.1 * phi**2)


def _pyhf_p0_one_bin(phi: float) -> float:
    pdf = pyhf.simplemodels.uncorrelated_background([15 + phi], [45 - 2 * phi],
                                                    [0.5 + 0.1 * phi**2])
    data = pdf.expected_data(pdf.config.suggested_init())  # Asimov at mu = 1
    return float(pyhf.infer.hypotest(0.0, data, pdf, test_stat="q0"))


@pytest.fixture(scope="module", autouse=True)
def numpy_backend() -> Iterator[None]:
    previous = pyhf.get_backend()
    pyhf.set_backend("numpy", "scipy")
    yield
    pyhf.set_backend(*previous)


@PYHF_SCHEMA_WARNING
@pytest.mark.parametrize(("seed", "mu"), [(4, 1.8), (5, 2.5), (6, 0.4)])
def test_q_mu_matches_pyhf(seed: int, mu: float) -> None:
    """One-sided q_mu (Cowan et al., Eq. 14) against pyhf's qmu on the same Asimov data."""
    model = _random_model(seed)
    spec = json.loads(json.dumps(to_pyhf_workspace(model)))
    pdf = pyhf.Workspace(spec).model(modifier_settings=MODIFIER_SETTINGS)
    pyhf_data = pdf.expected_data(pdf.config.suggested_init())
    ours = q_mu(model, data_from_pyhf(model, pyhf_data, pdf.config), mu).item()
    theirs = float(pyhf.infer.test_statistics.qmu(
        mu, pyhf_data, pdf, pdf.config.suggested_init(), pdf.config.suggested_bounds(),
        pdf.config.suggested_fixed()))
    assert ours == pytest.approx(theirs, rel=Z0_RTOL, abs=1e-9)


@PYHF_SCHEMA_WARNING
@pytest.mark.parametrize("seed", range(4))
def test_z0_matches_pyhf_asymptotics(seed: int) -> None:
    model = _random_model(seed)
    spec = json.loads(json.dumps(to_pyhf_workspace(model)))
    pdf = pyhf.Workspace(spec).model(modifier_settings=MODIFIER_SETTINGS)
    pyhf_data = pdf.expected_data(pdf.config.suggested_init())
    data = data_from_pyhf(model, pyhf_data, pdf.config)
    torch.testing.assert_close(data, asimov_data(model), rtol=1e-12, atol=0.0)
    p0_pyhf = float(pyhf.infer.hypotest(0.0, pyhf_data, pdf, test_stat="q0"))
    z_ours = discovery_significance(model, data).item()
    assert z_ours == pytest.approx(float(norm.isf(p0_pyhf)), rel=Z0_RTOL)
    assert p0(model, data).item() == pytest.approx(p0_pyhf, rel=5 * Z0_RTOL)


def test_gradient_is_envelope_gradient() -> None:
    base = _t([12.0, 7.0, 4.0])
    signal = base.clone().requires_grad_(True)
    model = _random_model(1, signal)
    z = discovery_significance(model, asimov_data(model))
    (grad,) = torch.autograd.grad(z, signal)
    step = 1e-3
    for i in range(3):
        shifted = [base.clone() for _ in range(2)]
        shifted[0][i] += step
        shifted[1][i] -= step
        z_pm = [discovery_significance(m, asimov_data(m)).item()
                for m in (_random_model(1, s) for s in shifted)]
        assert grad[i].item() == pytest.approx((z_pm[0] - z_pm[1]) / (2 * step), rel=GRAD_RTOL)


def test_profile_fit_is_stationary_and_respects_fixed() -> None:
    model = _random_model(2)
    data = asimov_data(model)
    data = torch.cat([data[:model.n_main] * 1.1, data[model.n_main:]])
    for fixed in (None, {"mu": 0.0}, {"mu": 2.0, "jes": 0.5}):
        pars = profile_fit(model, data, fixed=fixed).requires_grad_(True)
        (grad,) = torch.autograd.grad(nll(model, pars, data), pars)
        for name, value in (fixed or {}).items():
            assert pars[model.parameter(name).index].tolist() == [value]
            grad[model.parameter(name).index] = 0.0
        assert grad.abs().max().item() < 1e-5


def test_q_mu_is_one_sided_and_q0_zero_for_deficit() -> None:
    model = _random_model(0)
    data = asimov_data(model)  # mu_hat = 1
    assert q_mu(model, data, 0.5).item() == 0.0
    assert q_mu(model, data, 2.0).item() > 0.0
    assert q_mu(model, data, 0.0).item() == 0.0  # mu_hat = 1 > 0: no evidence against mu = 0
    pars = nominal_parameters(model)
    pars[model.parameter("mu").index] = -0.5
    deficit = asimov_data(model, pars)  # mu_hat = -0.5
    assert q0(model, deficit).item() == 0.0
    assert q_mu(model, deficit, 0.0).item() > 0.0
    assert p_value(torch.zeros(())).item() == 0.5


def test_invalid_inputs() -> None:
    model = _random_model(0)
    with pytest.raises(InputDataError):
        profile_fit(model, asimov_data(model), init=torch.zeros(2, dtype=torch.float64))
    with pytest.raises(InputDataError):
        profile_fit(model, asimov_data(model), fixed={"nope": 1.0})
    with pytest.raises(FitError):
        profile_fit(model, asimov_data(model) * torch.nan)


@PYHF_SCHEMA_WARNING
@pytest.mark.parametrize("start", [0.0, 8.0])
def test_one_bin_optimum_is_not_s_over_sqrt_b(start: float) -> None:
    phi = torch.tensor(start, dtype=torch.float64, requires_grad=True)
    optimiser = torch.optim.Adam([phi], lr=0.5, betas=(0.5, 0.9))  # short memory: p0 is flat
    scheduler = torch.optim.lr_scheduler.ExponentialLR(optimiser, gamma=0.97)
    for _ in range(80):
        optimiser.zero_grad()
        model = _one_bin(phi)
        p0(model, asimov_data(model)).backward()  # type: ignore[no-untyped-call]
        optimiser.step()
        scheduler.step()
    model = _one_bin(phi.detach())
    assert phi.item() == pytest.approx(PHI_OPTIMUM, abs=0.05)
    ours = p0(model, asimov_data(model)).item()
    assert ours == pytest.approx(P0_OPTIMUM, rel=0.02)
    assert _pyhf_p0_one_bin(phi.item()) == pytest.approx(ours, rel=0.01)
