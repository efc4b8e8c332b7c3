"""Tests of analysis.relax.histograms against numpy.histogram and finite differences."""

from collections.abc import Callable

import numpy as np
import pytest
import torch

from analysis.errors import ConfigError, InputDataError
from analysis.relax.histograms import (
    FLOWS,
    KERNELS,
    hard_histogram,
    soft_histogram,
    straight_through_histogram,
)

EDGES = np.array([-1.5, -0.7, 0.0, 0.2, 0.9, 1.6])  # uneven bins
MIN_EDGE_DISTANCE = 1e-3  # values kept this far from every edge for the bandwidth -> 0 checks


@pytest.fixture()
def gen() -> torch.Generator:
    return torch.Generator().manual_seed(20240617)


def _sample(gen: torch.Generator, n: int = 400, dtype: torch.dtype = torch.float64
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """Values spilling beyond the edges (kept off them) and positive/negative weights."""
    values = 1.3 * torch.randn(n, generator=gen, dtype=torch.float64)
    distance = (values[:, None] - torch.as_tensor(EDGES)[None, :]).abs().min(dim=1).values
    values = values[distance > MIN_EDGE_DISTANCE]
    weights = torch.rand(values.shape, generator=gen, dtype=torch.float64) * 2 - 0.3
    return values.to(dtype), weights.to(dtype)


def _numpy_reference(values: torch.Tensor, weights: torch.Tensor, flow: str) -> np.ndarray:
    x = values.detach().numpy()
    if flow == "clip":
        x = np.clip(x, EDGES[0], EDGES[-1])
    return np.histogram(x, bins=EDGES, weights=weights.detach().numpy())[0]


@pytest.mark.parametrize("flow", FLOWS)
@pytest.mark.parametrize("kernel", KERNELS)
def test_soft_histogram_tiny_bandwidth_equals_numpy(gen: torch.Generator, kernel: str,
                                                    flow: str) -> None:
    values, weights = _sample(gen)
    hist = soft_histogram(values, weights, torch.as_tensor(EDGES), 1e-6, kernel, flow)
    np.testing.assert_allclose(hist.numpy(), _numpy_reference(values, weights, flow), rtol=1e-12)


@pytest.mark.parametrize("bandwidth", [1e-6, 0.3, 10.0])
@pytest.mark.parametrize("flow", FLOWS)
def test_straight_through_equals_numpy_at_any_bandwidth(gen: torch.Generator, flow: str,
                                                        bandwidth: float) -> None:
    values, weights = _sample(gen)
    values = torch.cat([values, torch.as_tensor(EDGES)])  # exactly on every edge, too
    weights = torch.cat([weights, torch.linspace(0.5, 1.5, len(EDGES), dtype=torch.float64)])
    values.requires_grad_(True)
    hist = straight_through_histogram(values, weights, EDGES, bandwidth, flow=flow)
    reference = _numpy_reference(values, weights, flow)
    np.testing.assert_allclose(hist.detach().numpy(), reference, rtol=1e-12)
    np.testing.assert_allclose(hard_histogram(values, weights, EDGES, flow).numpy(), reference,
                               rtol=1e-12)


def test_edge_convention_left_closed_last_bin_closed() -> None:
    values = torch.tensor([0.0, 1.0, 2.0, 3.0, 3.0 + 1e-12, -1e-12], dtype=torch.float64)
    ones = torch.ones_like(values)
    edges = [0.0, 1.0, 2.0, 3.0]
    np.testing.assert_array_equal(hard_histogram(values, ones, edges).numpy(), [1.0, 1.0, 2.0])
    np.testing.assert_array_equal(hard_histogram(values, ones, edges, "clip").numpy(),
                                  [2.0, 1.0, 3.0])
    np.testing.assert_array_equal(hard_histogram(values, ones, edges).numpy(),
                                  np.histogram(values.numpy(), bins=edges)[0])


def test_clip_keeps_total_weight_and_drop_loses_outside(gen: torch.Generator) -> None:
    values, weights = _sample(gen)
    clipped = soft_histogram(values, weights, EDGES, 0.2, flow="clip")
    dropped = soft_histogram(values, weights, EDGES, 0.2, flow="drop")
    torch.testing.assert_close(clipped.sum(), weights.sum(), rtol=1e-12, atol=1e-12)
    assert float(dropped.sum()) < float(clipped.sum())


@pytest.mark.parametrize("kernel", KERNELS)
def test_float32_follows_input_dtype(gen: torch.Generator, kernel: str) -> None:
    values, weights = _sample(gen, dtype=torch.float32)
    weights = weights.abs()
    for hist in (soft_histogram(values, weights, EDGES, 1e-6, kernel),
                 straight_through_histogram(values, weights, EDGES, 0.1, kernel)):
        assert hist.dtype == torch.float32 and hist.device == values.device
        np.testing.assert_allclose(hist.numpy(), _numpy_reference(values, weights, "drop"),
                                   rtol=1e-5)


@pytest.mark.parametrize("flow", FLOWS)
@pytest.mark.parametrize("kernel", KERNELS)
def test_soft_histogram_gradcheck(gen: torch.Generator, kernel: str, flow: str) -> None:
    values, weights = _sample(gen, n=12)
    values.requires_grad_(True)
    weights.requires_grad_(True)
    edges = torch.as_tensor(EDGES, dtype=torch.float64).requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda v, w, e: soft_histogram(v, w, e, 0.25, kernel, flow), (values, weights, edges))


@pytest.mark.parametrize("flow", FLOWS)
@pytest.mark.parametrize("kernel", KERNELS)
def test_straight_through_backward_is_soft_gradient(gen: torch.Generator, kernel: str,
                                                    flow: str) -> None:
    values, weights = _sample(gen, n=50)
    cotangent = torch.randn(len(EDGES) - 1, generator=gen, dtype=torch.float64)
    values.requires_grad_(True)
    weights.requires_grad_(True)
    soft = soft_histogram(values, weights, EDGES, 0.3, kernel, flow)
    straight = straight_through_histogram(values, weights, EDGES, 0.3, kernel, flow)
    soft_grads = torch.autograd.grad((soft * cotangent).sum(), (values, weights))
    straight_grads = torch.autograd.grad((straight * cotangent).sum(), (values, weights))
    for soft_grad, straight_grad in zip(soft_grads, straight_grads, strict=True):
        assert torch.count_nonzero(soft_grad) > 0
        torch.testing.assert_close(straight_grad, soft_grad, rtol=0, atol=0)


def test_soft_histogram_tends_to_hard_as_bandwidth_shrinks(gen: torch.Generator) -> None:
    values, weights = _sample(gen)
    hard = hard_histogram(values, weights, EDGES)
    errors = [float((soft_histogram(values, weights, EDGES, h) - hard).abs().max())
              for h in (1e-1, 1e-2, 1e-3)]
    assert errors[0] > errors[1] > errors[2]


@pytest.mark.parametrize("function", [soft_histogram, straight_through_histogram])
@pytest.mark.parametrize(
    ("values", "weights", "edges", "bandwidth", "match"),
    [
        (torch.zeros(3), torch.ones(4), [0.0, 1.0], 0.1, "values and weights must both be"),
        (torch.zeros(3, 2), torch.ones(3, 2), [0.0, 1.0], 0.1, "must both be"),
        (torch.zeros(3), torch.ones(3), [0.0, 1.0], 0.0, "bandwidth = 0.0"),
        (torch.zeros(3), torch.ones(3), [0.0, 1.0], -1.0, "bandwidth = -1.0"),
        (torch.zeros(3), torch.ones(3), [0.0, 1.0], float("nan"), "bandwidth = nan"),
        (torch.zeros(3), torch.ones(3), [0.0, 1.0, 1.0], 0.1, "not strictly increasing"),
        (torch.zeros(3), torch.ones(3), [1.0, 0.0], 0.1, "not strictly increasing"),
        (torch.zeros(3), torch.ones(3), [0.0], 0.1, "n_bins >= 1"),
        (torch.zeros(3), torch.ones(3), [[0.0, 1.0]], 0.1, "edges must be"),
        (torch.zeros(3), torch.ones(3), [0.0, float("inf")], 0.1, "edges are not all finite"),
        (torch.tensor([0.0, float("nan")]), torch.ones(2), [0.0, 1.0], 0.1, "NaN"),
        (torch.zeros(2), torch.tensor([1.0, float("inf")]), [0.0, 1.0], 0.1, "weights"),
    ],
)
def test_bad_input_raises_input_data_error(function: Callable[..., torch.Tensor],
                                           values: torch.Tensor, weights: torch.Tensor,
                                           edges: list[float], bandwidth: float,
                                           match: str) -> None:
    with pytest.raises(InputDataError, match=match):
        function(values, weights, edges, bandwidth)


def test_bad_options_raise_config_error() -> None:
    values, weights = torch.zeros(2), torch.ones(2)
    with pytest.raises(ConfigError, match="kernel = 'box'"):
        soft_histogram(values, weights, [0.0, 1.0], 0.1, kernel="box")
    with pytest.raises(ConfigError, match="flow = 'wrap'"):
        straight_through_histogram(values, weights, [0.0, 1.0], 0.1, flow="wrap")
    with pytest.raises(ConfigError, match="flow"):
        hard_histogram(values, weights, [0.0, 1.0], flow="overflow")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_cuda_matches_cpu(gen: torch.Generator, dtype: torch.dtype) -> None:
    values, weights = _sample(gen, dtype=dtype)
    for function in (soft_histogram, straight_through_histogram):
        on_cpu = function(values, weights, EDGES, 0.2, "gaussian", "clip")
        on_gpu = function(values.cuda(), weights.cuda(), EDGES, 0.2, "gaussian", "clip")
        assert on_gpu.device.type == "cuda" and on_gpu.dtype == dtype
        torch.testing.assert_close(on_gpu.cpu(), on_cpu)
    hard = hard_histogram(values.cuda(), weights.cuda(), torch.as_tensor(EDGES), "drop")
    np.testing.assert_allclose(hard.cpu().numpy(), _numpy_reference(values, weights, "drop"),
                               rtol=1e-5 if dtype == torch.float32 else 1e-12)
