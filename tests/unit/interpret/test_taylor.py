"""Taylor coefficients against functions whose coefficients are known analytically."""

import json

import pytest
import torch

from analysis.errors import EmptySelectionError, InputDataError
from analysis.interpret.taylor import (
    TaylorCoefficients,
    taylor_coefficients,
    write_coefficients,
)

DTYPE = torch.float64


class Function(torch.nn.Module):
    """Wraps ``fn: (batch, n_features) -> (batch,) or (batch, n_out)`` as a module."""

    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)


class SumOfSquares(torch.nn.Module):
    """f(x) = |W x + b|²: gradient 2 Wᵀ(W x + b), Hessian 2 WᵀW."""

    def __init__(self, generator: torch.Generator):
        super().__init__()
        self.linear = torch.nn.Linear(3, 4, dtype=DTYPE)
        with torch.no_grad():
            self.linear.weight.copy_(torch.randn(4, 3, generator=generator, dtype=DTYPE))
            self.linear.bias.copy_(torch.randn(4, generator=generator, dtype=DTYPE))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.linear(x) ** 2).sum(dim=1)


@pytest.fixture
def generator() -> torch.Generator:
    return torch.Generator().manual_seed(1803)


@pytest.fixture
def inputs(generator: torch.Generator) -> torch.Tensor:
    return torch.randn(50, 3, generator=generator, dtype=DTYPE)


def test_linear_first_order_is_abs_slope_and_second_order_zero(inputs):
    a = torch.tensor([2.0, -0.5, 0.0], dtype=DTYPE)
    tc = taylor_coefficients(Function(lambda x: x @ a), inputs)
    torch.testing.assert_close(tc.first, a.abs())
    torch.testing.assert_close(tc.second, torch.zeros(3, 3, dtype=DTYPE))


def test_product_first_order_is_mean_abs_of_other_and_mixed_term_one(inputs):
    tc = taylor_coefficients(Function(lambda x: x[:, 0] * x[:, 1]), inputs)
    expected = torch.stack([inputs[:, 1].abs().mean(), inputs[:, 0].abs().mean(),
                            torch.tensor(0.0, dtype=DTYPE)])
    torch.testing.assert_close(tc.first, expected)
    expected_second = torch.zeros(3, 3, dtype=DTYPE)
    expected_second[0, 1] = expected_second[1, 0] = 1.0
    torch.testing.assert_close(tc.second, expected_second)


def test_square_diagonal_carries_one_half(inputs):
    # f = x0² = t_00 Δx0² + ...: t_00 = ½ ∂²f/∂x0² = 1 (Eq. (1) of arXiv:1803.08782)
    tc = taylor_coefficients(Function(lambda x: x[:, 0] ** 2 + 3 * x[:, 1] * x[:, 2]), inputs)
    torch.testing.assert_close(tc.first[0], 2 * inputs[:, 0].abs().mean())
    torch.testing.assert_close(tc.second[0, 0], torch.tensor(1.0, dtype=DTYPE))
    torch.testing.assert_close(tc.second[1, 2], torch.tensor(3.0, dtype=DTYPE))
    torch.testing.assert_close(tc.second[1, 1], torch.tensor(0.0, dtype=DTYPE))


def test_small_module_matches_analytic_formula(generator, inputs):
    model = SumOfSquares(generator)
    weight, bias = model.linear.weight.detach(), model.linear.bias.detach()
    tc = taylor_coefficients(model, inputs)
    gradient = 2 * (inputs @ weight.T + bias) @ weight  # (n_events, 3)
    hessian = 2 * weight.T @ weight
    torch.testing.assert_close(tc.first, gradient.abs().mean(dim=0))
    expected = hessian.abs() / (1 + torch.eye(3, dtype=DTYPE))
    torch.testing.assert_close(tc.second, expected)
    assert all(p.grad is None for p in model.parameters())


def test_softmax_class_matches_autograd_hessian(generator, inputs):
    model = torch.nn.Sequential(torch.nn.Linear(3, 5, dtype=DTYPE), torch.nn.Tanh(),
                                torch.nn.Linear(5, 3, dtype=DTYPE), torch.nn.Softmax(dim=1))
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator, dtype=DTYPE))
    tc = taylor_coefficients(model, inputs, output_index=2, batch_size=16)

    def f(x: torch.Tensor) -> torch.Tensor:
        return model(x[None])[0, 2]

    gradients = torch.stack([torch.autograd.functional.jacobian(f, x) for x in inputs])
    hessians = torch.stack([torch.autograd.functional.hessian(f, x) for x in inputs])
    torch.testing.assert_close(tc.first, gradients.abs().mean(dim=0))
    torch.testing.assert_close(tc.second, hessians.abs().mean(dim=0) / (1 + torch.eye(3)))
    torch.testing.assert_close(tc.second, tc.second.T)


def test_multi_output_model_expands_the_chosen_output(inputs):
    model = Function(lambda x: torch.stack([x[:, 0] * x[:, 1], 4 * x[:, 2]], dim=1))
    product = taylor_coefficients(model, inputs, output_index=0)
    linear = taylor_coefficients(model, inputs, output_index=1)
    assert float(product.second[0, 1]) == pytest.approx(1.0)
    torch.testing.assert_close(linear.first, torch.tensor([0.0, 0.0, 4.0], dtype=DTYPE))
    assert linear.output_index == 1


def test_ranking_order_and_labels():
    model = Function(lambda x: 5 * x[:, 0] + 0.1 * x[:, 1] + 2 * x[:, 1] * x[:, 2])
    names = ["pt", "eta", "phi"]
    tc = taylor_coefficients(model, torch.ones(4, 3, dtype=DTYPE), feature_names=names)
    labels, values = zip(*tc.ranked())
    assert labels == ("t_pt", "t_eta", "t_phi", "t_eta,phi",
                      "t_pt,pt", "t_pt,eta", "t_pt,phi", "t_eta,eta", "t_phi,phi")
    assert values == pytest.approx([5.0, 2.1, 2.0, 2.0, 0.0, 0.0, 0.0, 0.0, 0.0])


def test_weighted_means(inputs):
    weights = torch.linspace(0.1, 3.0, inputs.shape[0], dtype=DTYPE)
    tc = taylor_coefficients(Function(lambda x: x[:, 0] * x[:, 1]), inputs, weights=weights)
    expected = (weights * inputs[:, 1].abs()).sum() / weights.sum()
    torch.testing.assert_close(tc.first[0], expected)
    torch.testing.assert_close(tc.second[0, 1], torch.tensor(1.0, dtype=DTYPE))


def test_batch_size_independent_and_progress_reported(generator, inputs):
    model = SumOfSquares(generator)
    seen: list[int] = []
    small = taylor_coefficients(model, inputs, batch_size=7, progress=seen.append)
    large = taylor_coefficients(model, inputs, batch_size=1000)
    torch.testing.assert_close(small.first, large.first)
    torch.testing.assert_close(small.second, large.second)
    assert seen == [7, 14, 21, 28, 35, 42, 49, 50]


def test_eval_mode_is_used_and_restored(inputs):
    model = torch.nn.Sequential(torch.nn.Linear(3, 1, dtype=DTYPE), torch.nn.Dropout(0.5))
    model.train()
    first = taylor_coefficients(model, inputs).first
    assert model.training
    torch.testing.assert_close(first, model[0].weight.detach().abs()[0])
    with pytest.raises(InputDataError):
        taylor_coefficients(model, inputs, output_index=1)
    assert model.training


def test_to_dict_and_write_round_trip(tmp_path, inputs):
    tc = taylor_coefficients(Function(lambda x: x[:, 0] * x[:, 1]), inputs,
                             feature_names=["pt", "eta", "phi"])
    path = tmp_path / "taylor.json"
    write_coefficients(path, tc, provenance={"seed": 1803})
    payload = json.loads(path.read_text())
    assert payload["feature_names"] == ["pt", "eta", "phi"]
    assert payload["ranked"] == [list(item) for item in tc.ranked()]
    assert payload["provenance"] == {"seed": 1803}
    assert [p.name for p in tmp_path.iterdir()] == ["taylor.json"]
    assert isinstance(tc, TaylorCoefficients)


@pytest.mark.parametrize(
    ("shape", "kwargs", "match"),
    [
        ((6,), {}, "n_events, n_features"),
        ((2, 3, 2), {}, "n_events, n_features"),
        ((6, 2), {"weights": torch.ones(5, dtype=DTYPE)}, "weights must have shape"),
        ((6, 2), {"weights": torch.zeros(6, dtype=DTYPE)}, "sum > 0"),
        ((6, 2), {"feature_names": ["pt"]}, "feature_names"),
        ((6, 2), {"batch_size": 0}, "batch_size"),
        ((6, 2), {"output_index": 3}, "output_index = 3"),
    ],
)
def test_bad_input_raises(shape, kwargs, match):
    model = Function(lambda x: x.sum(dim=-1))
    with pytest.raises(InputDataError, match=match):
        taylor_coefficients(model, torch.ones(shape, dtype=DTYPE), **kwargs)


def test_bad_values_and_outputs_raise(inputs):
    broken = inputs.clone()
    broken[3, 1] = float("nan")
    with pytest.raises(InputDataError, match="NaN"):
        taylor_coefficients(Function(lambda x: x.sum(dim=1)), broken)
    with pytest.raises(EmptySelectionError, match="no events"):
        taylor_coefficients(Function(lambda x: x.sum(dim=1)), inputs[:0])
    with pytest.raises(InputDataError, match="choose one with output_index"):
        taylor_coefficients(Function(lambda x: x), inputs)
