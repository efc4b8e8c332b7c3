"""Tests of analysis.validation.gaussian_toy and the reduced-size reproduction of arXiv:2003.07186's toy."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from analysis.errors import ConfigError, InputDataError
from analysis.validation.gaussian_toy import (
    PAPER_TOY,
    GaussianToy,
    background_density,
    event_weights,
    generate_toy,
    optimal_sigma_mu,
    run,
    signal_density,
    unbinned_fisher_information,
)

FAR = GaussianToy(signal_mean=(-40.0, 0.0))  # signal and background do not overlap
N_SIGMA = 5.0  # statistical tolerance, in standard deviations, of every sampled quantity


def test_generate_toy_means_and_shifted_copies() -> None:
    n = 20_000
    x = generate_toy(PAPER_TOY, n, torch.Generator().manual_seed(3), dtype=torch.float64)
    assert set(x) == {"signal", "background", "background_up", "background_down"}
    assert all(v.shape == (n, 2) for v in x.values())
    tolerance = N_SIGMA / math.sqrt(n)  # unit variance per coordinate
    for name, mean in (("signal", PAPER_TOY.signal_mean),
                       ("background", PAPER_TOY.background_mean)):
        expected = torch.tensor(mean, dtype=torch.float64)
        assert torch.allclose(x[name].mean(0), expected, atol=tolerance), name
    shift = torch.tensor(PAPER_TOY.shift, dtype=torch.float64)
    assert torch.allclose(x["background_up"] - x["background"], shift.expand(n, 2))
    assert torch.allclose(x["background"] - x["background_down"], shift.expand(n, 2))


def test_generate_toy_is_reproducible() -> None:
    a = generate_toy(PAPER_TOY, 10, torch.Generator().manual_seed(5))
    b = generate_toy(PAPER_TOY, 10, torch.Generator().manual_seed(5))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_event_weights_sum_to_expected_yields() -> None:
    w = event_weights(PAPER_TOY, 400, dtype=torch.float64)
    assert w["signal"].sum().item() == pytest.approx(PAPER_TOY.n_signal)
    for name in ("background", "background_up", "background_down"):
        assert w[name].sum().item() == pytest.approx(PAPER_TOY.n_background)


def test_densities_are_normalised() -> None:
    step = 0.05
    axis = np.arange(-10.0, 11.0, step) + step / 2
    grid = np.stack(np.meshgrid(axis, axis, indexing="ij"), axis=-1)
    assert signal_density(PAPER_TOY, grid).sum() * step**2 == pytest.approx(1.0, rel=1e-9)
    for theta in (-1.0, 0.0, 0.7):
        total = background_density(PAPER_TOY, grid, theta).sum() * step**2
        assert total == pytest.approx(1.0, rel=1e-9)


def test_fisher_of_identical_shapes_is_counting_experiment() -> None:
    """s = b: only the total count informs mu, sigma = sqrt(S + B) / S; the shape nuisance is
    uncorrelated with mu (its derivative integrates to zero), so the systematic changes nothing."""
    same = GaussianToy(signal_mean=PAPER_TOY.background_mean)
    expected = math.sqrt(same.n_signal + same.n_background) / same.n_signal
    for interpolation in ("histosys", "shift"):
        for include in (False, True):
            assert optimal_sigma_mu(same, include, interpolation) == pytest.approx(expected,
                                                                                   rel=1e-9)


def test_fisher_of_separated_processes_has_closed_form() -> None:
    """No overlap: I_mu,mu = S (sigma = 1 / sqrt(S)); I_theta,theta = B |delta|^2 + 1 for the
    continuous shift and B sinh(|delta|^2) + 1 for histosys, from
    int N(x; m + a) N(x; m + c) / N(x; m) dx = exp(a . c) for unit covariance."""
    shift_sq = float(np.dot(FAR.shift, FAR.shift))
    for interpolation, i_theta in (("shift", FAR.n_background * shift_sq),
                                   ("histosys", FAR.n_background * math.sinh(shift_sq))):
        info = unbinned_fisher_information(FAR, True, interpolation)
        np.testing.assert_allclose(info, [[FAR.n_signal, 0.0], [0.0, i_theta + 1.0]],
                                   rtol=1e-9, atol=1e-9)
    assert optimal_sigma_mu(FAR) == pytest.approx(1 / math.sqrt(FAR.n_signal), rel=1e-9)


def test_fisher_grid_has_converged() -> None:
    reference = optimal_sigma_mu(PAPER_TOY)
    assert optimal_sigma_mu(PAPER_TOY, step=0.01) == pytest.approx(reference, rel=1e-9)
    assert optimal_sigma_mu(PAPER_TOY, half_width=12.0) == pytest.approx(reference, rel=1e-9)


def test_fisher_grid_agrees_with_monte_carlo() -> None:
    """I_jk = N_tot E[g_j g_k / lambda^2] over x ~ lambda / N_tot, estimated with n points;
    the tolerance is N_SIGMA standard errors of that mean."""
    n = 400_000
    rng = np.random.default_rng(11)
    n_tot = PAPER_TOY.n_signal + PAPER_TOY.n_background
    is_signal = rng.random(n) < PAPER_TOY.n_signal / n_tot
    means = np.where(is_signal[:, None], PAPER_TOY.signal_mean, PAPER_TOY.background_mean)
    x = means + rng.standard_normal((n, 2))
    d_mu = PAPER_TOY.n_signal * signal_density(PAPER_TOY, x)
    rate = d_mu + PAPER_TOY.n_background * background_density(PAPER_TOY, x)
    d_theta = 0.5 * PAPER_TOY.n_background * (background_density(PAPER_TOY, x, 1.0)
                                              - background_density(PAPER_TOY, x, -1.0))
    grid = unbinned_fisher_information(PAPER_TOY)
    for (j, k), g in (((0, 0), d_mu * d_mu), ((0, 1), d_mu * d_theta), ((1, 1), d_theta**2)):
        terms = n_tot * g / rate**2
        mc = terms.mean() + (1.0 if (j, k) == (1, 1) else 0.0)
        assert abs(mc - grid[j, k]) < N_SIGMA * terms.std() / math.sqrt(n)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"n_signal": 0.0}, "n_signal"),
    ({"n_background": float("nan")}, "n_background"),
    ({"shift": (0.0, 1.0, 2.0)}, "shift"),
])
def test_bad_toy_parameters_raise(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        GaussianToy(**kwargs)  # type: ignore[arg-type]


def test_bad_arguments_raise() -> None:
    with pytest.raises(ConfigError, match="interpolation"):
        optimal_sigma_mu(PAPER_TOY, interpolation="linear")
    with pytest.raises(ConfigError, match="step"):
        unbinned_fisher_information(PAPER_TOY, step=0.0)
    with pytest.raises(InputDataError, match="n_per_process"):
        generate_toy(PAPER_TOY, 0, torch.Generator())
    with pytest.raises(InputDataError, match="n_per_process"):
        event_weights(PAPER_TOY, 0)


N_TRAIN = 5_000  # reduced size: training events per process (full benchmark: 50 000)
N_TEST = 100_000  # test events per process; evaluation only, cheap
REDUCED_STEPS = 300  # Adam steps per training (full benchmark: 600)
# Reduced size: the full benchmark reaches about +3 % above the bound; 5 000 training events per
# process and half the steps leave a network farther from its optimum (measured about +5 %), so
# the 10 % tolerance is kept, less N_SIGMA test-sample standard errors.
BOUND_TOLERANCE = 0.10


@pytest.mark.slow
def test_sigma_mu_training_beats_cross_entropy_and_approaches_the_bound() -> None:
    """Reduced-size reproduction: hard-binned sigma_mu on an independent test sample."""
    results = run(PAPER_TOY, N_TRAIN, N_TEST, seed=1, ce_steps=REDUCED_STEPS,
                  sigma_mu_steps=REDUCED_STEPS, train_stat_only=False)
    e_ce, e_inf = results["cross entropy"], results["sigma_mu, with syst."]
    error = math.hypot(e_ce.with_syst_error, e_inf.with_syst_error)
    assert e_inf.with_syst < e_ce.with_syst - N_SIGMA * error, (e_inf, e_ce)
    bound = optimal_sigma_mu(PAPER_TOY, include_systematic=True)
    assert e_inf.with_syst < (1 + BOUND_TOLERANCE) * bound - N_SIGMA * e_inf.with_syst_error
    assert e_inf.with_syst > bound  # no binned summary beats the unbinned information
