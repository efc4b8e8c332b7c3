"""Samples and nuisances of a training: logits, classes, tensors, variations, batches."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from analysis.errors import ConfigError, InputDataError
from analysis.training.samples import (
    Nuisance,
    classifier_logits,
    prepare_samples,
    signal_score,
    varied_scores,
)


def _linear(n_out: int, dtype: torch.dtype = torch.float32) -> torch.nn.Module:
    model = torch.nn.Linear(2, n_out).to(dtype)
    with torch.no_grad():  # fixed weights: outputs known by hand
        model.weight.copy_(torch.arange(2 * n_out, dtype=dtype).reshape(n_out, 2) / 10)
        model.bias.zero_()
    return model


def _samples() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    return {"signal": (np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([0.5, 0.5])),
            "background": (np.array([[2.0, 2.0], [1.0, 1.0], [0.0, 0.0]]),
                           np.array([1.0, 2.0, 3.0]))}


def test_one_logit_becomes_two_columns() -> None:
    x = torch.tensor([[1.0, 2.0]])
    logits = classifier_logits(_linear(1), x)  # 0.0 * 1 + 0.1 * 2
    assert torch.allclose(logits, torch.tensor([[0.0, 0.2]]))
    assert torch.allclose(signal_score(_linear(1), x, 1), torch.sigmoid(torch.tensor([0.2])))
    with pytest.raises(InputDataError, match="expected \\(n_events, n_classes\\) logits for 1"):
        classifier_logits(lambda t: torch.zeros(3, 2), x)  # type: ignore[arg-type]


@pytest.mark.parametrize(("n_out", "classes", "signal_class"),
                         [(1, {"signal": 1, "background": 0}, 1),
                          (2, {"signal": 1, "background": 0}, 1),
                          ])
def test_classes_follow_the_model_outputs(n_out: int, classes: dict, signal_class: int) -> None:
    data = prepare_samples(_linear(n_out), _samples(), [], "signal", None)
    assert data.classes == classes and data.signal_class == signal_class


def test_one_class_per_sample_in_the_order_given() -> None:
    samples = {**_samples(), "other": (np.zeros((2, 2)), np.ones(2))}
    data = prepare_samples(_linear(3), samples, [], "background", None)
    assert data.classes == {"signal": 0, "background": 1, "other": 2}
    assert data.signal_class == 1
    with pytest.raises(ConfigError, match="the model has 3 outputs"):
        prepare_samples(_linear(3), _samples(), [], "signal", None)


def test_tensors_take_the_model_dtype_and_are_checked() -> None:
    data = prepare_samples(_linear(1, torch.float64), _samples(), [], "signal", None)
    assert data.x["background"].dtype == torch.float64 and data.w["signal"].dtype == torch.float64
    assert torch.equal(data.w["background"], torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64))
    bad = {**_samples(), "background": (np.array([[np.nan, 0.0]]), np.ones(1))}
    with pytest.raises(InputDataError, match="sample 'background': inputs and weights must be"):
        prepare_samples(_linear(1), bad, [], "signal", None)
    wide = {**_samples(), "background": (np.zeros((2, 3)), np.ones(2))}
    with pytest.raises(InputDataError, match="inputs differ in n_features: \\[2, 3\\]"):
        prepare_samples(_linear(1), wide, [], "signal", None)
    with pytest.raises(ConfigError, match="signal = 'tth': not among the samples"):
        prepare_samples(_linear(1), _samples(), [], "tth", None)
    with pytest.raises(InputDataError, match="samples is empty"):
        prepare_samples(_linear(1), {}, [], "signal", None)
    with pytest.raises(ConfigError, match="normsys 'scale': name is already a nuisance"):
        shift = Nuisance.shift("scale", lambda x: x, lambda x: x)
        prepare_samples(_linear(1), _samples(), [shift], "signal", {"scale": {}})


def test_variations_are_evaluated_once_per_affected_sample() -> None:
    shift = Nuisance.shift("scale", lambda x: 2 * x, lambda x: 0 * x, ["background"])
    weight = Nuisance.weight("norm", lambda x, w: 1.1 * w, lambda x, w: 0.9 * w)
    data = prepare_samples(_linear(1), _samples(), [shift, weight], "signal", None)
    assert set(data.varied["scale"]) == {"background"}
    assert set(data.varied["norm"]) == {"signal", "background"}
    (x_up, w_up), (x_down, _) = data.varied["scale"]["background"]
    assert torch.equal(x_up, 2 * data.x["background"]) and torch.equal(x_down.abs().sum(),
                                                                          torch.tensor(0.0))
    assert torch.equal(w_up, data.w["background"])
    assert torch.allclose(data.varied["norm"]["signal"][1][1], 0.9 * data.w["signal"])
    broken = Nuisance("jes", "precomputed", None, None, ("background",), None)
    with pytest.raises(ConfigError, match="'jes': precomputed without varied samples"):
        prepare_samples(_linear(1), _samples(), [broken], "signal", None)


def test_varied_scores_follow_the_batch_except_for_precomputed_events() -> None:
    x, w = _samples()["background"]
    other = Nuisance.precomputed("jer", {"background": ((x[:1], w[:1]), (x, w))})
    norm = Nuisance.weight("norm", lambda x, w: 1.1 * w, lambda x, w: 0.9 * w, ["background"])
    model = _linear(1)
    data = prepare_samples(model, _samples(), [other, norm], "signal", None)
    index = {"signal": torch.tensor([1]), "background": torch.tensor([2, 0])}
    scale = {"signal": 2.0, "background": 1.5}
    with torch.no_grad():
        scores = varied_scores(model, data, index, scale)
    up_scores, up_weights = scores["norm"]["background"][0]
    assert torch.allclose(up_weights, 1.1 * torch.tensor([3.0, 1.0]) * 1.5)
    assert torch.allclose(up_scores, signal_score(model, data.x["background"][[2, 0]], 1))
    jer_up, jer_down = scores["jer"]["background"]
    assert jer_up[0].shape == (1,) and jer_down[0].shape == (3,)  # all their own events
    assert torch.equal(jer_down[1], data.w["background"])  # no batch scale
    with torch.no_grad():
        halved = varied_scores(model, data, index, scale, lambda t: torch.full((len(t),), 0.5))
    assert torch.allclose(halved["jer"]["background"][1][1], 0.5 * data.w["background"])
