"""Tests of analysis.relax.cuts: soft -> hard limit, gradients, initialisation, anti-drift."""

import math

import numpy as np
import pytest
import torch

from analysis.errors import ConfigError, EmptySelectionError, InputDataError
from analysis.relax.cuts import (
    DIRECTIONS,
    RELAXATIONS,
    LearnableCuts,
    slope_schedule,
    soft_cut_weight,
)

HARD_SLOPE = 1e6  # with values >= 1e-3 scale units from the threshold, |z| >= 1000
MIN_DISTANCE = 1e-3


@pytest.fixture()
def gen() -> torch.Generator:
    return torch.Generator().manual_seed(31415)


def _events(gen: torch.Generator, n: int = 2000) -> tuple[torch.Tensor, torch.Tensor]:
    """Features (pt in GeV, eta, a pt-correlated score) and positive weights, float64."""
    pt = 30.0 + 40.0 * torch.rand(n, generator=gen, dtype=torch.float64) ** 2
    eta = 2.4 * (2 * torch.rand(n, generator=gen, dtype=torch.float64) - 1)
    score = (pt - 50.0) / 20.0 + 0.5 * torch.randn(n, generator=gen, dtype=torch.float64)
    weights = 0.5 + torch.rand(n, generator=gen, dtype=torch.float64)
    return torch.stack([pt, eta, score], dim=1), weights


def test_slope_schedule_is_geometric() -> None:
    slopes = slope_schedule(0.5, 500.0, 7)
    assert slopes.shape == (7,) and slopes.dtype == np.float64
    np.testing.assert_allclose(slopes[[0, -1]], [0.5, 500.0], rtol=1e-14)
    np.testing.assert_allclose(slopes[1:] / slopes[:-1], 10.0 ** 0.5, rtol=1e-12)
    np.testing.assert_array_equal(slope_schedule(2.0, 8.0, 1), [2.0])


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("relaxation", RELAXATIONS)
@pytest.mark.parametrize("direction", DIRECTIONS)
def test_large_slope_equals_hard_cut_exactly(gen: torch.Generator, direction: str,
                                             relaxation: str, dtype: torch.dtype) -> None:
    threshold, scale = 0.3, 1.0
    values = torch.randn(5000, generator=gen, dtype=torch.float64)
    values = values[(values - threshold).abs() > MIN_DISTANCE * scale].to(dtype)
    soft = soft_cut_weight(values, threshold, HARD_SLOPE, direction, relaxation, scale)
    hard = (values > threshold if direction == ">" else values < threshold).to(dtype)
    assert soft.dtype == dtype
    assert torch.equal(soft, hard)


@pytest.mark.parametrize("relaxation", RELAXATIONS)
def test_module_large_slope_equals_hard(gen: torch.Generator, relaxation: str) -> None:
    x, weights = _events(gen)
    cuts = LearnableCuts([0, 1, 1], [">", ">", "<"], relaxation, slope=HARD_SLOPE)
    cuts.init_from_quantiles(x, weights, [0.4, 0.1, 0.9])
    margin = (x[:, cuts.feature_index] - cuts.thresholds.detach().double()).abs() / cuts.scales
    x = x[(margin > MIN_DISTANCE).all(dim=1)]
    assert torch.equal(cuts(x), cuts.hard(x))
    assert 0 < cuts.hard(x).mean().item() < 1


@pytest.mark.parametrize("relaxation", RELAXATIONS)
def test_relaxations_share_slope_at_threshold(relaxation: str) -> None:
    threshold = torch.tensor(2.0, dtype=torch.float64, requires_grad=True)
    weight = soft_cut_weight(torch.tensor(2.0, dtype=torch.float64), threshold, 3.0, ">",
                             relaxation, scale=0.5)
    (gradient,) = torch.autograd.grad(weight, threshold)
    assert weight.item() == 0.5
    assert math.isclose(gradient.item(), -3.0 / 4 / 0.5, rel_tol=1e-12)


@pytest.mark.parametrize("relaxation", RELAXATIONS)
@pytest.mark.parametrize("direction", DIRECTIONS)
def test_soft_cut_weight_gradcheck(gen: torch.Generator, direction: str, relaxation: str) -> None:
    values = torch.randn(20, generator=gen, dtype=torch.float64, requires_grad=True)
    threshold = torch.tensor(0.2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda v, t: soft_cut_weight(v, t, 2.0, direction, relaxation, scale=0.7),
        (values, threshold))


@pytest.mark.parametrize("relaxation", RELAXATIONS)
def test_threshold_gradient_matches_finite_differences(gen: torch.Generator,
                                                       relaxation: str) -> None:
    x, weights = _events(gen, n=500)
    cuts = LearnableCuts([0, 1, 2], [">", "<", ">"], relaxation, slope=3.0).double()
    cuts.init_from_quantiles(x, weights, [0.3, 0.8, 0.2])
    (weights * cuts(x) * x[:, 2]).sum().backward()
    assert cuts.thresholds.grad is not None
    analytic = cuts.thresholds.grad.clone()
    step = 1e-6
    numeric = torch.zeros_like(analytic)
    start = cuts.thresholds.detach().clone()
    with torch.no_grad():
        for k in range(len(start)):
            values = []
            for sign in (1.0, -1.0):
                cuts.thresholds.copy_(start)
                cuts.thresholds[k] += sign * step
                values.append((weights * cuts(x) * x[:, 2]).sum())
            numeric[k] = (values[0] - values[1]) / (2 * step)
    torch.testing.assert_close(analytic, numeric, rtol=1e-6, atol=1e-8)


def test_threshold_outside_data_has_no_gradient_quantile_init_does(gen: torch.Generator) -> None:
    x, weights = _events(gen)
    cuts = LearnableCuts([0], ">", slope=5.0).double()
    cuts.init_from_quantiles(x, weights, 0.5)
    gradients = []
    for threshold in (500.0, cuts.thresholds.item()):  # 500 GeV: beyond every pt in the sample
        with torch.no_grad():
            cuts.thresholds.fill_(threshold)
        cuts.zero_grad()
        (weights * cuts(x)).sum().backward()
        assert cuts.thresholds.grad is not None
        gradients.append(abs(cuts.thresholds.grad.item()))
    assert gradients[0] < 1e-30 * gradients[1]
    assert gradients[1] > 1.0


def _train_against_shape_loss(x: torch.Tensor, weights: torch.Tensor,
                              anchor_strength: float) -> tuple[float, float]:
    """Adam on a normalisation-blind loss; return (threshold shift / scale, hard efficiency).

    The cut is on pt; the loss is the mean of the normalised (selected) score shape, which grows
    with the pt cut whatever the yield, so nothing stops the threshold but the anchor.
    """
    cuts = LearnableCuts([0], ">", slope=4.0, anchor_strength=anchor_strength).double()
    cuts.init_from_quantiles(x, weights, 0.5)
    start, scale = cuts.thresholds.item(), cuts.scales.item()
    optimiser = torch.optim.Adam(cuts.parameters(), lr=0.05 * scale)  # Adam steps in GeV
    for _ in range(200):
        optimiser.zero_grad()
        selected = weights * cuts(x)
        shape_loss = -(selected * x[:, 2]).sum() / selected.sum()  # mean of a normalised shape
        (shape_loss + cuts.anchor_penalty(x, weights)).backward()
        optimiser.step()
    efficiency = ((weights * cuts.hard(x)).sum() / weights.sum()).item()
    return (cuts.thresholds.item() - start) / scale, efficiency


def test_anchor_penalty_stops_drift_under_normalisation_blind_loss(gen: torch.Generator) -> None:
    x, weights = _events(gen, n=1000)
    free_shift, free_efficiency = _train_against_shape_loss(x, weights, anchor_strength=0.0)
    held_shift, held_efficiency = _train_against_shape_loss(x, weights, anchor_strength=100.0)
    assert free_shift > 1.0 and free_efficiency < 0.05  # runs towards selecting nothing
    assert abs(held_shift) < 0.05 and abs(held_efficiency - 0.5) < 0.05


def test_anchor_holds_the_yield_but_lets_a_window_slide(gen: torch.Generator) -> None:
    """Two cuts (a window in eta): a loss that prefers positive eta moves the window while the
    anchor pins only the overall efficiency, the yield-blind direction."""
    x, weights = _events(gen, n=4000)
    results = {}
    for strength in (0.0, 100.0):
        cuts = LearnableCuts([1, 1], [">", "<"], slope=4.0, anchor_strength=strength).double()
        cuts.init_from_quantiles(x, weights, [0.25, 0.75])
        start, scale = cuts.thresholds.detach().clone(), cuts.scales.detach().clone()
        optimiser = torch.optim.Adam(cuts.parameters(), lr=0.02)
        for _ in range(300):
            optimiser.zero_grad()
            selected = weights * cuts(x)
            mean_eta = (selected * x[:, 1]).sum() / selected.sum()  # blind to the yield
            (-mean_eta + cuts.anchor_penalty(x, weights)).backward()
            optimiser.step()
        moved = ((cuts.thresholds.detach() - start) / scale).tolist()
        efficiency = ((weights * cuts.hard(x)).sum() / weights.sum()).item()
        results[strength] = (moved, efficiency)
    (free_lo, free_hi), free_efficiency = results[0.0]
    (held_lo, held_hi), held_efficiency = results[100.0]
    assert free_efficiency < 0.2  # unanchored, the window closes on the largest eta
    assert abs(held_efficiency - 0.5) < 0.05  # anchored, the yield stays
    assert held_lo > 0.2 and held_hi > 0.2  # ... and both edges still move towards positive eta


def test_anchor_penalty_is_zero_at_initialisation_and_needs_an_anchor(gen: torch.Generator) -> None:
    x, weights = _events(gen)
    cuts = LearnableCuts([2], "<", slope=HARD_SLOPE, anchor_strength=1.0).double()
    with pytest.raises(InputDataError, match="call init_from_quantiles first"):
        cuts.anchor_penalty(x, weights)
    cuts.init_from_quantiles(x, weights, 0.3)
    for slope in slope_schedule(0.5, HARD_SLOPE, 4):
        cuts.slope = slope
        assert cuts.anchor_penalty(x, weights).item() == 0.0
    torch.testing.assert_close(cuts.anchor_thresholds, cuts.thresholds.detach())
    efficiency = (weights * cuts.hard(x)).sum() / weights.sum()
    assert math.isclose(efficiency.item(), 0.3, abs_tol=0.01)
    assert set(cuts.state_dict()) >= {"thresholds", "scales", "anchor_thresholds"}


def test_scales_make_slope_unit_free(gen: torch.Generator) -> None:
    x, weights = _events(gen)
    x_mev = x.clone()
    x_mev[:, 0] *= 1000.0  # pt in MeV instead of GeV
    soft = []
    for features in (x, x_mev):
        cuts = LearnableCuts([0], ">", slope=2.0).double()
        cuts.init_from_quantiles(features, weights, 0.5)
        soft.append(cuts(features))
    torch.testing.assert_close(soft[0], soft[1], rtol=1e-9, atol=1e-12)


def test_named_features_and_dtype_follow_input(gen: torch.Generator) -> None:
    x, weights = _events(gen, n=300)
    named = LearnableCuts(["pt", "eta"], [">", "<"], columns=["pt", "eta", "score"])
    indexed = LearnableCuts([0, 1], [">", "<"])
    named.init_from_quantiles(x, weights, 0.5)
    indexed.init_from_quantiles(x, weights, 0.5)
    torch.testing.assert_close(named(x), indexed(x))
    assert named(x).dtype == torch.float64 and named(x.float()).dtype == torch.float32
    assert "pt >" in repr(named)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"features": [0], "directions": ["=>"]}, ConfigError, "direction = '=>'"),
        ({"features": [0], "directions": ">", "relaxation": "tanh"}, ConfigError, "relaxation"),
        ({"features": [0, 1], "directions": [">"]}, ConfigError, "2 features, 1 directions"),
        ({"features": [], "directions": []}, ConfigError, "at least one cut"),
        ({"features": ["pt"], "directions": ">"}, ConfigError, "need columns"),
        ({"features": [0, "pt"], "directions": ">"}, ConfigError, "all indices or names"),
        ({"features": ["mass"], "directions": ">", "columns": ["pt"]}, ConfigError, "mass"),
        ({"features": [-1], "directions": ">"}, ConfigError, "out of range"),
        ({"features": [0], "directions": ">", "slope": 0.0}, InputDataError, "slope = 0.0"),
        ({"features": [0], "directions": ">", "slope": -2.0}, InputDataError, "must be finite"),
        ({"features": [0], "directions": ">", "anchor_strength": -1.0}, InputDataError, "anchor"),
    ],
)
def test_bad_configuration_raises(kwargs: dict[str, object], error: type[Exception],
                                  match: str) -> None:
    with pytest.raises(error, match=match):
        LearnableCuts(**kwargs)  # type: ignore[arg-type]


def test_bad_input_raises_input_data_error(gen: torch.Generator) -> None:
    x, weights = _events(gen, n=50)
    cuts = LearnableCuts([0, 2], ">")
    with pytest.raises(InputDataError, match=r"slope = -1"):
        cuts.slope = -1.0
    with pytest.raises(InputDataError, match=r"\(n_events, n_features\)"):
        cuts(x[:, 0])
    with pytest.raises(InputDataError, match="at least 3"):
        cuts(x[:, :2])
    with pytest.raises(InputDataError, match=r"weights must be \(50,\)"):
        cuts.init_from_quantiles(x, weights[:10])
    with pytest.raises(InputDataError, match="positive sum"):
        cuts.init_from_quantiles(x, -weights)
    with pytest.raises(InputDataError, match="NaN-free"):
        cuts.init_from_quantiles(torch.where(x > 60, torch.nan, x), weights)
    with pytest.raises(InputDataError, match="quantile"):
        cuts.init_from_quantiles(x, weights, 1.0)
    with pytest.raises(InputDataError, match="quantile"):
        cuts.init_from_quantiles(x, weights, [0.5])
    constant = x.clone()
    constant[:, 2] = 1.0
    with pytest.raises(InputDataError, match="constant"):
        cuts.init_from_quantiles(constant, weights)
    window = LearnableCuts([0, 0], [">", "<"])
    with pytest.raises(EmptySelectionError, match="no weight passes"):
        window.init_from_quantiles(x, weights, [0.9, 0.1])
    assert torch.isnan(window.anchor_thresholds).all()  # nothing half-initialised is left
    assert torch.equal(window.scales, torch.ones(2))
    with pytest.raises(InputDataError, match="slope = 0"):
        soft_cut_weight(x[:, 0], 40.0, 0, ">")
    with pytest.raises(ConfigError, match="direction = 'above'"):
        soft_cut_weight(x[:, 0], 40.0, 1.0, "above")
    with pytest.raises(InputDataError, match="do not broadcast"):
        soft_cut_weight(x[:, 0], torch.zeros(3), 1.0)
    with pytest.raises(InputDataError, match="scale must be > 0"):
        soft_cut_weight(x[:, 0], 40.0, 1.0, scale=0.0)
    with pytest.raises(InputDataError, match="n_steps"):
        slope_schedule(1.0, 10.0, 0)
    with pytest.raises(InputDataError, match="slope = 0"):
        slope_schedule(0.0, 10.0, 5)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_cuda_matches_cpu(gen: torch.Generator, dtype: torch.dtype) -> None:
    x, weights = _events(gen, n=500)
    x, weights = x.to(dtype), weights.to(dtype)
    cuts = LearnableCuts([0, 1], [">", "<"], "erf", slope=3.0, anchor_strength=1.0).to(dtype)
    cuts.init_from_quantiles(x, weights, 0.4)
    on_cpu = cuts(x), cuts.hard(x), cuts.anchor_penalty(x, weights)
    cuts.cuda()
    cuts.init_from_quantiles(x.cuda(), weights.cuda(), 0.4)
    on_gpu = cuts(x.cuda()), cuts.hard(x.cuda()), cuts.anchor_penalty(x.cuda(), weights.cuda())
    for gpu_value, cpu_value in zip(on_gpu, on_cpu, strict=True):
        assert gpu_value.device.type == "cuda"
        torch.testing.assert_close(gpu_value.cpu(), cpu_value)
