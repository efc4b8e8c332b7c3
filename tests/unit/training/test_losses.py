"""Tests of analysis.training.losses: CE, systematic penalty, inference-aware sigma_mu."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from analysis.errors import ConfigError, InputDataError
from analysis.inference.mcstat import mc_stat_variance
from analysis.relax.likelihood import covariance, sigma_mu
from analysis.training.losses import (
    binned_model_from_scores,
    cross_entropy_loss,
    inference_loss,
    penalised_loss,
    systematic_penalty,
)

F64 = torch.float64
EDGES = [0.0, 0.5, 1.0]
BANDWIDTH = 0.1


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _samples() -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    g = _gen(1)
    scores = {"sig": 0.6 + 0.3 * torch.rand(6, generator=g, dtype=F64),
              "bkg": 0.1 + 0.5 * torch.rand(8, generator=g, dtype=F64)}
    weights = {"sig": torch.full((6,), 2.0, dtype=F64), "bkg": torch.full((8,), 10.0, dtype=F64)}
    return scores, weights


def test_cross_entropy_matches_torch_for_unit_weights() -> None:
    g = _gen()
    logits = torch.randn(20, 3, generator=g, dtype=F64)
    labels = torch.randint(0, 3, (20,), generator=g)
    ours = cross_entropy_loss(logits, labels, torch.ones(20, dtype=F64))
    assert torch.allclose(ours, torch.nn.functional.cross_entropy(logits, labels), atol=1e-12)


def test_cross_entropy_weights_act_as_repetition() -> None:
    logits = torch.tensor([[1.0, 0.0], [0.0, 2.0]], dtype=F64)
    labels = torch.tensor([0, 1])
    repeated = torch.nn.functional.cross_entropy(logits[[0, 0, 1]], labels[[0, 0, 1]])
    ours = cross_entropy_loss(logits, labels, torch.tensor([2.0, 1.0], dtype=F64))
    assert torch.allclose(ours, repeated, atol=1e-12)


@pytest.mark.parametrize("labels, weights, match", [
    (torch.tensor([0, 1, 2]), torch.ones(3), "labels and weights"),
    (torch.tensor([0, 5]), torch.ones(2), "labels outside"),
    (torch.tensor([0.0, 1.0]), torch.ones(2), "integer"),
    (torch.tensor([0, 1]), torch.zeros(2), "sum to zero"),
])
def test_cross_entropy_bad_input(labels: torch.Tensor, weights: torch.Tensor, match: str) -> None:
    with pytest.raises(InputDataError, match=match):
        cross_entropy_loss(torch.zeros(2, 2), labels, weights)


def test_penalty_zero_for_identical_and_grows_with_shift() -> None:
    x = torch.linspace(0.05, 0.95, 30, dtype=F64)
    w = torch.ones(30, dtype=F64)
    assert systematic_penalty(x, w, [(x, w), (x.clone(), w.clone())], EDGES, BANDWIDTH) == 0
    penalties = [systematic_penalty(x, w, [((x + d).clamp(0, 1), w)], EDGES, BANDWIDTH).item()
                 for d in (0.02, 0.05, 0.1)]
    assert 0 < penalties[0] < penalties[1] < penalties[2]
    weight_shift = [systematic_penalty(x, w, [(x, w * (1 + x * d))], EDGES, BANDWIDTH).item()
                    for d in (0.1, 0.2)]
    assert 0 < weight_shift[0] < weight_shift[1]
    assert systematic_penalty(x, w, [], EDGES, BANDWIDTH) == 0


def test_penalised_loss_is_ce_plus_lambda_penalty() -> None:
    g = _gen(2)
    logits = torch.randn(10, 2, generator=g, dtype=F64)
    labels = torch.randint(0, 2, (10,), generator=g)
    w = torch.ones(10, dtype=F64)
    x = torch.softmax(logits, dim=1)[:, 1]
    shifted = [(x, 1.2 * w)]
    expected = (cross_entropy_loss(logits, labels, w)
                + 3.0 * systematic_penalty(x, w, shifted, EDGES, BANDWIDTH))
    loss = penalised_loss(logits, labels, w, x, w, shifted, EDGES, BANDWIDTH, 3.0)
    assert torch.allclose(loss, expected, atol=1e-12)
    with pytest.raises(ConfigError, match="lambda"):
        penalised_loss(logits, labels, w, x, w, shifted, EDGES, BANDWIDTH, -1.0)


def test_penalty_bad_input() -> None:
    x, w = torch.tensor([0.2, 0.7], dtype=F64), torch.ones(2, dtype=F64)
    with pytest.raises(InputDataError, match=r"shifted\[0\]"):
        systematic_penalty(x, w, [(x, torch.ones(3, dtype=F64))], EDGES, BANDWIDTH)
    with pytest.raises(InputDataError, match="nominal"):
        systematic_penalty(x, w[:1], [], EDGES, BANDWIDTH)
    with pytest.raises(InputDataError, match="> 0 in at least one bin"):
        systematic_penalty(x, torch.zeros(2, dtype=F64), [], EDGES, 1e-3)


def test_penalty_leaves_out_bins_the_nominal_does_not_reach() -> None:
    """A bin empty in the nominal histogram (early in training, the soft kernel's tail
    underflows) has no relative variation: it adds nothing, the filled bins count as before."""
    x, w = torch.tensor([0.2, 0.7], dtype=F64), torch.tensor([1.0, 0.0], dtype=F64)
    shifted = [(x, torch.tensor([1.5, 3.0], dtype=F64))]  # +50 % in the first bin
    penalty = systematic_penalty(x, w, shifted, [0.0, 0.5, 1.0], 1e-3)
    assert float(penalty) == pytest.approx(0.25, rel=1e-6)


def test_penalty_gradcheck() -> None:
    x = torch.tensor([0.2, 0.45, 0.7], dtype=F64, requires_grad=True)
    w = torch.tensor([1.0, 2.0, 1.5], dtype=F64)

    def penalty(scores: torch.Tensor) -> torch.Tensor:
        return systematic_penalty(scores, w, [(scores + 0.05, w), (scores - 0.03, w)], EDGES,
                                  BANDWIDTH)

    assert torch.autograd.gradcheck(penalty, (x,))
    x.grad = None
    penalty(x).backward()
    assert x.grad is not None and bool(torch.isfinite(x.grad).all())


def test_inference_loss_one_bin_stat_only_is_analytic() -> None:
    scores, weights = _samples()
    s, b = weights["sig"].sum().item(), weights["bkg"].sum().item()
    loss = inference_loss(scores, weights, None, [0.0, 1.0], BANDWIDTH, signal="sig")
    assert abs(loss.item() - math.sqrt(s + b) / s) < 1e-6


def _shifted(scores: dict[str, torch.Tensor], weights: dict[str, torch.Tensor],
             delta: float) -> dict[str, dict[str, tuple[tuple[torch.Tensor, torch.Tensor], ...]]]:
    up = ((scores["bkg"] + delta).clamp(0, 1), weights["bkg"])
    down = ((scores["bkg"] - delta).clamp(0, 1), weights["bkg"])
    return {"jes": {"bkg": (up, down)}}


def test_histosys_and_normsys_increase_sigma_mu() -> None:
    scores, weights = _samples()
    stat_only = inference_loss(scores, weights, None, EDGES, BANDWIDTH, signal="sig")
    with_shape = inference_loss(scores, weights, _shifted(scores, weights, 0.15), EDGES,
                                BANDWIDTH, signal="sig")
    with_both = inference_loss(scores, weights, _shifted(scores, weights, 0.15), EDGES, BANDWIDTH,
                               signal="sig", normsys={"xsec": {"bkg": (1.1, 0.9)}})
    with_stat = inference_loss(scores, weights, None, EDGES, BANDWIDTH, signal="sig",
                               staterror=True)
    assert stat_only < with_shape < with_both
    assert stat_only < with_stat


def test_inference_loss_targets_any_covariance_element() -> None:
    scores, weights = _samples()
    shifted = _shifted(scores, weights, 0.15)
    model = binned_model_from_scores(scores, weights, EDGES, BANDWIDTH, "sig", shifted=shifted)
    cov = covariance(model)
    jes = model.parameter("jes").index.start
    sigma_jes = inference_loss(scores, weights, shifted, EDGES, BANDWIDTH, "sig", target="jes")
    cross = inference_loss(scores, weights, shifted, EDGES, BANDWIDTH, "sig",
                           target=("mu", "jes"))
    torch.testing.assert_close(sigma_jes, cov[jes, jes].sqrt())
    torch.testing.assert_close(cross, cov[0, jes])
    assert sigma_jes.item() < 1.0  # the data constrain the nuisance beyond its prior
    with pytest.raises(ConfigError, match="'lumi' not in the model"):
        inference_loss(scores, weights, shifted, EDGES, BANDWIDTH, "sig", target="lumi")


def test_likelihood_runs_in_float64_for_float32_networks() -> None:
    scores, weights = _samples()
    single = {k: v.float() for k, v in scores.items()}
    single_w = {k: v.float() for k, v in weights.items()}
    model = binned_model_from_scores(single, single_w, EDGES, BANDWIDTH, "sig")
    assert model.dtype == torch.float64
    loss = inference_loss(single, single_w, None, EDGES, BANDWIDTH, "sig")
    assert loss.dtype == torch.float64


def test_inference_loss_gradcheck() -> None:
    scores, weights = _samples()
    sig = scores["sig"][:3].clone().requires_grad_(True)
    bkg = scores["bkg"][:4].clone().requires_grad_(True)
    w_sig, w_bkg = weights["sig"][:3], weights["bkg"][:4]

    def loss(s: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        shifted = {"jes": {"bkg": ((b + 0.1, w_bkg), (b - 0.1, w_bkg))}}
        return inference_loss({"sig": s, "bkg": b}, {"sig": w_sig, "bkg": w_bkg}, shifted, EDGES,
                              BANDWIDTH, signal="sig", staterror=True)

    assert torch.autograd.gradcheck(loss, (sig, bkg))
    loss(sig, bkg).backward()
    assert sig.grad is not None and bkg.grad is not None
    assert bool(torch.isfinite(sig.grad).all()) and bool(torch.isfinite(bkg.grad).all())


def test_hard_and_straight_through_models_agree_forward() -> None:
    scores, weights = _samples()
    shifted = _shifted(scores, weights, 0.15)
    hard = binned_model_from_scores(scores, weights, EDGES, BANDWIDTH, "sig", shifted=shifted,
                                    histogram="hard")
    st = binned_model_from_scores(scores, weights, EDGES, BANDWIDTH, "sig", shifted=shifted,
                                  histogram="straight_through")
    for a, b in zip(hard.channels[0].samples, st.channels[0].samples, strict=True):
        assert torch.equal(a.nominal, b.nominal.detach())
    assert torch.allclose(sigma_mu(hard), sigma_mu(st).detach())
    assert [m.kind for m in hard.channels[0].samples[1].modifiers] == ["histosys"]


@pytest.mark.parametrize("histogram", ["hard", "straight_through"])
def test_staterror_counts_the_replicas_of_one_event_together(histogram: str) -> None:
    """With event groups, the staterror is the workspace's sum_events (sum_replicas w)^2."""
    scores, weights = _samples()
    # background rows in replica pairs (events 0-3), the signal's rows each their own event
    groups = {"bkg": torch.arange(8) // 2, "sig": torch.arange(6)}
    model = binned_model_from_scores(scores, weights, EDGES, BANDWIDTH, "sig", staterror=True,
                                     histogram=histogram, event_groups=groups)
    plain = binned_model_from_scores(scores, weights, EDGES, BANDWIDTH, "sig", staterror=True,
                                     histogram=histogram)
    for sample, reference in zip(model.channels[0].samples, plain.channels[0].samples,
                                 strict=True):
        name = sample.name
        bins = np.digitize(scores[name].numpy(), EDGES[1:-1])
        expected = mc_stat_variance(bins, weights[name].numpy(), groups[name].numpy(), 2)
        (error,) = [m.uncertainty for m in sample.modifiers if m.kind == "staterror"]
        assert error.detach().numpy() ** 2 == pytest.approx(expected, rel=1e-12)
        (alone,) = [m.uncertainty for m in reference.modifiers if m.kind == "staterror"]
        if name == "bkg":  # replicas in one bin: the cross terms add to sum w^2
            assert float((error**2).sum()) > 1.2 * float((alone**2).sum())
        else:
            assert torch.allclose(error, alone)


def test_binned_model_bad_input() -> None:
    scores, weights = _samples()
    with pytest.raises(ConfigError, match="signal"):
        inference_loss(scores, weights, None, EDGES, BANDWIDTH, signal="ttH")
    with pytest.raises(ConfigError, match="histogram"):
        binned_model_from_scores(scores, weights, EDGES, BANDWIDTH, "sig", histogram="kde")
    with pytest.raises(ConfigError, match="unknown samples"):
        inference_loss(scores, weights, {"jes": {"qcd": ((scores["bkg"], weights["bkg"]),) * 2}},
                       EDGES, BANDWIDTH, signal="sig")
    with pytest.raises(InputDataError, match="weights_by_sample"):
        inference_loss(scores, {"sig": weights["sig"]}, None, EDGES, BANDWIDTH, signal="sig")
    bad = dict(weights, bkg=weights["bkg"][:3])
    with pytest.raises(InputDataError, match="'bkg'"):
        inference_loss(scores, bad, None, EDGES, BANDWIDTH, signal="sig")
    with pytest.raises(InputDataError, match="up"):
        inference_loss(scores, weights, {"jes": {"bkg": (scores["bkg"], weights["bkg"])}}, EDGES,
                       BANDWIDTH, signal="sig")
    with pytest.raises(InputDataError, match="jes up"):
        inference_loss(scores, weights,
                       {"jes": {"bkg": ((scores["bkg"], weights["sig"]),
                                        (scores["bkg"], weights["bkg"]))}},
                       EDGES, BANDWIDTH, signal="sig")
