"""Tests of analysis.training.loop and .metrics: stages, strategies, hard-bin sigma_mu, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from analysis.config import REFERENCE_STRATEGY, YIELD_AWARE, YIELD_BLIND
from analysis.errors import ConfigError, InputDataError
from analysis.training.loop import (
    STRATEGIES,
    EarlyStopping,
    JointCuts,
    LossSettings,
    Stage,
    train,
    train_classifier,
)
from analysis.training.metrics import binned_model_from_classifier, evaluate_sigma_mu
from analysis.training.samples import Nuisance

N_EVENTS = 120
STEPS = 15
SIGNAL_WEIGHT, BACKGROUND_WEIGHT = 0.5, 4.0
SHIFT = torch.tensor([0.5, 0.0])
WEIGHT_VARIATION = 0.1  # the weight nuisance scales the background by 1 +- 10 %


def _samples(seed: int = 3) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return {"signal": (rng.normal(1.0, 1.0, (N_EVENTS, 2)), np.full(N_EVENTS, SIGNAL_WEIGHT)),
            "background": (rng.normal(-0.5, 1.0, (N_EVENTS, 2)),
                           np.full(N_EVENTS, BACKGROUND_WEIGHT))}


def _nuisances() -> list[Nuisance]:
    return [Nuisance.shift("scale", lambda x: x + SHIFT, lambda x: x - SHIFT, ["background"]),
            Nuisance.weight("norm", lambda x, w: (1 + WEIGHT_VARIATION) * w,
                            lambda x, w: (1 - WEIGHT_VARIATION) * w, ["background"])]


def _model(seed: int = 0) -> torch.nn.Module:
    with torch.random.fork_rng(devices=[]):  # the tests leave the global generator alone
        torch.manual_seed(seed)
        return torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_each_strategy_reduces_its_own_loss(strategy: str) -> None:
    _, history = train_classifier(_model(), _samples(), strategy, _nuisances(), steps=STEPS,
                                  lr=0.05, loss=LossSettings(penalty_weight=2.0))
    assert history.strategy == strategy and len(history.loss) == STEPS
    assert all(math.isfinite(v) for v in history.loss)
    assert history.loss[-1] < history.loss[0]


def test_one_bin_sigma_mu_is_analytic() -> None:
    s, b = N_EVENTS * SIGNAL_WEIGHT, N_EVENTS * BACKGROUND_WEIGHT
    model = _model().double()  # float64 weights: 1.1 * 4.0 is exact enough in float64 only
    result = evaluate_sigma_mu(model, _samples(), _nuisances(), [0.0, 1.0])
    # stat only: sqrt(s + b) / s; a +-delta histosys adds delta^2 to the variance (Fisher
    # matrix [[s^2/n, s d/n], [s d/n, d^2/n + 1]] inverted); the shift moves nothing in one bin
    delta = WEIGHT_VARIATION * b
    assert result.stat_only == pytest.approx(math.sqrt(s + b) / s, rel=1e-10)
    assert result.total == pytest.approx(math.sqrt(s + b + delta**2) / s, rel=1e-10)
    assert result.systematic == pytest.approx(delta / s, rel=1e-8)


def test_shift_and_weight_nuisances_enter_as_histosys() -> None:
    model = _model()
    train_classifier(model, _samples(), "ce", steps=STEPS, lr=0.05)
    edges = [0.0, 0.5, 1.0]
    binned = binned_model_from_classifier(model, _samples(), _nuisances(), edges)
    by_name = {s.name: s for s in binned.channels[0].samples}
    background = by_name["background"]
    assert {(m.kind, m.name) for m in background.modifiers} == {("histosys", "scale"),
                                                                ("histosys", "norm")}
    assert [m.kind for m in by_name["signal"].modifiers] == ["normfactor"]
    for m in background.modifiers:
        assert isinstance(m.hi, torch.Tensor) and isinstance(m.lo, torch.Tensor)
        assert not torch.allclose(m.hi, background.nominal)
        assert not torch.allclose(m.lo, background.nominal)
    norm = next(m for m in background.modifiers if m.name == "norm")
    assert isinstance(norm.hi, torch.Tensor)
    assert torch.allclose(norm.hi, (1 + WEIGHT_VARIATION) * background.nominal)
    stat = binned_model_from_classifier(model, _samples(), _nuisances(), edges,
                                        with_systematics=False)
    assert all(m.kind == "normfactor" for s in stat.channels[0].samples for m in s.modifiers)


def test_invalid_strategy_raises_config_error() -> None:
    with pytest.raises(ConfigError, match="Stage 'mse': loss = 'mse'"):
        train_classifier(_model(), _samples(), "mse")


def test_nuisance_errors_name_the_nuisance() -> None:
    bad_sample = Nuisance.weight("lumi", lambda x, w: w, lambda x, w: w, ["ttbar"])
    with pytest.raises(ConfigError, match="'lumi'.*ttbar"):
        train_classifier(_model(), _samples(), "penalty", [bad_sample], steps=1)
    bad_shape = Nuisance.shift("jes", lambda x: x[:, :1], lambda x: x)
    with pytest.raises(InputDataError, match="'jes' up on sample 'signal'"):
        evaluate_sigma_mu(_model(), _samples(), [bad_shape], [0.0, 1.0])


def test_seeded_training_is_deterministic() -> None:
    def run() -> tuple[torch.nn.Module, list[float]]:
        model, history = train_classifier(_model(seed=7), _samples(), "inference", _nuisances(),
                                          steps=5, lr=0.05, batch_size=50,
                                          generator=torch.Generator().manual_seed(11))
        return model, history.loss

    (first, loss_1), (second, loss_2) = run(), run()
    assert loss_1 == loss_2
    for a, b in zip(first.state_dict().values(), second.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_empty_bins_are_left_out() -> None:
    model = _model()  # untrained: every score is near 0.5, nothing above 0.99
    binned = binned_model_from_classifier(model, _samples(), _nuisances(), [0.0, 0.5, 0.99, 1.0])
    assert binned.channels[0].n_bins == 2
    for m in binned.channels[0].samples[1].modifiers:
        assert isinstance(m.hi, torch.Tensor) and m.hi.shape == (2,)


def _as_precomputed(samples: dict[str, tuple[np.ndarray, np.ndarray]]) -> Nuisance:
    """The "scale" shift of ``_nuisances`` as precomputed varied background arrays."""
    x, w = samples["background"]
    shift = SHIFT.numpy()
    return Nuisance.precomputed("scale", {"background": ((x + shift, w), (x - shift, w))})


def test_precomputed_variation_equals_the_same_shift() -> None:
    samples = _samples()
    model, _ = train_classifier(_model().double(), samples, "ce", steps=STEPS, lr=0.05)
    edges = [0.0, 0.3, 0.6, 1.0]
    as_function = evaluate_sigma_mu(model, samples, _nuisances()[:1], edges)
    as_arrays = evaluate_sigma_mu(model, samples, [_as_precomputed(samples)], edges)
    assert as_arrays.total == pytest.approx(as_function.total, rel=1e-12)
    assert as_arrays.total > as_arrays.stat_only


def test_precomputed_variation_with_other_events_trains() -> None:
    samples = _samples()
    x, w = samples["background"]
    keep = x[:, 0] > -1.5  # the variation selects other events than nominal
    shift = SHIFT.numpy()
    varied = Nuisance.precomputed("jes", {"background": ((x[keep] + shift, w[keep]),
                                                         (x - shift, w))})
    _, history = train_classifier(_model(), samples, "inference", [varied], steps=STEPS, lr=0.05,
                                  batch_size=50)
    assert history.loss[-1] < history.loss[0]
    with pytest.raises(InputDataError, match="3 features, nominal has 2"):
        bad = Nuisance.precomputed("jes", {"background": ((np.zeros((5, 3)), np.ones(5)),
                                                          (x, w))})
        evaluate_sigma_mu(_model(), samples, [bad], [0.0, 1.0])


@pytest.mark.parametrize("strategy", ["ce", "inference"])
def test_early_stopping_keeps_the_best_validation_model(strategy: str) -> None:
    samples, validation = _samples(3), _samples(4)
    model, history = train_classifier(_model(), samples, strategy, _nuisances(), steps=60,
                                      lr=0.2, early_stopping=EarlyStopping(
                                          validation, patience=2, validate_every=5))
    steps, values = zip(*history.validation_loss)
    assert history.best_step == steps[int(np.argmin(values))]
    assert len(history.loss) == steps[-1]  # stopped at an evaluation (or ran to the end)
    if len(history.loss) < 60:  # stopped early: the last `patience` evaluations were worse
        assert all(v >= min(values) for v in values[-2:])
    from analysis.training.loop import _validation_loss
    from analysis.training.samples import prepare_samples

    used = _nuisances() if strategy != "ce" else []
    check = prepare_samples(model, validation, used, "signal", None)
    kept = _validation_loss(model, check, strategy, LossSettings(), None)
    assert kept == pytest.approx(min(values), rel=1e-6)  # the best model is the one returned


def test_cuts_trained_jointly_in_front_of_the_network() -> None:
    """A cut on feature 1 (which only the selection sees as a threshold) moves, the slope
    follows the schedule, and the inference loss falls; yield-blind losses are refused."""
    from analysis.relax.cuts import LearnableCuts, slope_schedule

    samples = _samples()
    cuts = LearnableCuts([1], ">", slope=1.0)
    x_all = torch.as_tensor(np.concatenate([x for x, _ in samples.values()]))
    cuts.init_from_quantiles(x_all.float(), quantile=0.05)
    start = cuts.thresholds.detach().clone()
    slopes = slope_schedule(1.0, 20.0, STEPS).tolist()
    with pytest.raises(ConfigError, match="yield-blind"):
        train_classifier(_model(), samples, "penalty", _nuisances(), joint_cuts=JointCuts(cuts))
    with pytest.raises(ConfigError, match="joint_cuts.slopes has 14 values for 15 steps"):
        train_classifier(_model(), samples, "inference", _nuisances(), steps=STEPS,
                         joint_cuts=JointCuts(cuts, slopes[:-1]))
    _, history = train_classifier(_model(), samples, "inference", _nuisances(), steps=STEPS,
                                  lr=0.05, joint_cuts=JointCuts(cuts, slopes, 0.1))
    assert cuts.slope == pytest.approx(20.0)
    assert not torch.allclose(cuts.thresholds.detach(), start)
    assert history.loss[-1] < history.loss[0]


def test_stages_run_in_order_on_one_model_and_one_generator() -> None:
    """Two stages equal two one-stage trainings one after the other with the same generator;
    progress counts the steps of all stages."""
    stages = [Stage("ce", 6, 0.05), Stage("inference", 4, 0.01, batch_size=60, name="sigma")]
    done: list[int] = []
    model = _model()
    histories = train(model, _samples(), stages, _nuisances(),
                      generator=torch.Generator().manual_seed(5), progress=done.append)
    assert [h.strategy for h in histories] == ["ce", "sigma"]
    assert [len(h.loss) for h in histories] == [6, 4]
    assert done == list(range(1, 11))
    generator = torch.Generator().manual_seed(5)
    by_hand = _model()
    _, first = train_classifier(by_hand, _samples(), "ce", steps=6, lr=0.05, generator=generator)
    _, second = train_classifier(by_hand, _samples(), "inference", _nuisances(), steps=4,
                                 lr=0.01, batch_size=60, generator=generator)
    assert histories[0].loss == first.loss and histories[1].loss == second.loss
    for a, b in zip(model.state_dict().values(), by_hand.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_stage_errors_name_the_field() -> None:
    with pytest.raises(ConfigError, match="stages is empty"):
        train(_model(), _samples(), [])
    with pytest.raises(ConfigError, match="Stage 'ce': steps = 0"):
        train(_model(), _samples(), [Stage("ce", 0, 0.1)])
    with pytest.raises(ConfigError, match="Stage 'ce': learning_rate = -1"):
        train(_model(), _samples(), [Stage("ce", 1, -1.0)])
    with pytest.raises(ConfigError, match="batch_size = 0"):
        train(_model(), _samples(), [Stage("ce", 1, 0.1, batch_size=0)])
    with pytest.raises(ConfigError, match="penalty_weight = -1"):
        train(_model(), _samples(), [Stage("ce", 1, 0.1)], loss=LossSettings(penalty_weight=-1))
    with pytest.raises(ConfigError, match="patience = 0"):
        train(_model(), _samples(), [Stage("ce", 1, 0.1)],
              early_stopping=EarlyStopping(_samples(4), patience=0))


def _first_step(strategy: str, device: str) -> tuple[float, list[torch.Tensor]]:
    """Loss and gradients of the first step, float64, all events (no batches, no rounding
    drift from many steps)."""
    from analysis.training.loop import _loss
    from analysis.training.samples import prepare_samples

    model = _model().double().to(device)
    used = _nuisances() if strategy != "ce" else []
    data = prepare_samples(model, _samples(), used, "signal", None)
    index = {name: torch.arange(x.shape[0], device=x.device) for name, x in data.x.items()}
    loss = _loss(model, data, strategy, index, dict.fromkeys(data.x, 1.0),
                 LossSettings(penalty_weight=2.0), None)
    grads = torch.autograd.grad(loss, list(model.parameters()))
    return float(loss), [g.cpu() for g in grads]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_the_same_training_on_cuda_as_on_the_cpu(strategy: str) -> None:
    """No code change between devices: the model's device decides; in float64 the first step's
    loss and gradients agree (a trajectory of float32 steps would not be deterministic)."""
    model, history = train_classifier(_model().cuda(), _samples(), strategy, _nuisances(),
                                      steps=2, lr=0.05, loss=LossSettings(penalty_weight=2.0))
    assert next(model.parameters()).device.type == "cuda" and len(history.loss) == 2
    cpu_loss, cpu_grads = _first_step(strategy, "cpu")
    cuda_loss, cuda_grads = _first_step(strategy, "cuda")
    assert cuda_loss == pytest.approx(cpu_loss, rel=1e-9)
    for a, b in zip(cuda_grads, cpu_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-12)


def test_event_slices_take_turns() -> None:
    """With ``slices``, step t trains on slice t mod n: at a learning rate too small to move the
    model, the losses alternate between the two slices' own losses."""
    first = _samples(3)
    second = {name: (3.0 * x, w) for name, (x, w) in _samples(11).items()}
    stage = [Stage("ce", 4, 1e-12)]
    by_slice = [train(_model(), part, stage)[0].loss[0] for part in (first, second)]
    history = train(_model(), first, stage, slices=[(first, ()), (second, ())])[0]
    np.testing.assert_allclose(history.loss, [by_slice[0], by_slice[1]] * 2, rtol=1e-6)
    assert by_slice[0] != pytest.approx(by_slice[1], rel=1e-3)


class _CountingModel(torch.nn.Module):
    """A network that counts the events it has been evaluated on."""

    def __init__(self) -> None:
        super().__init__()
        self.net = _model()
        self.rows = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.rows += x.shape[0]
        return self.net(x)


def test_a_reweighting_of_the_nominal_rows_reuses_their_outputs() -> None:
    """A precomputed variation whose inputs are the nominal array (a weight systematic of the
    skim) costs no forward pass: the penalty loss evaluates the network on the nominal rows and
    on the shifted ones only."""
    samples = _samples()
    x_b, w_b = samples["background"]
    shifted = (x_b + 0.3, w_b)
    nuisances = [Nuisance.precomputed("btag", {"background": ((x_b, 1.1 * w_b),
                                                              (x_b, 0.9 * w_b))}),
                 Nuisance.precomputed("jes", {"background": (shifted, shifted)})]
    model = _CountingModel()
    train(model, samples, [Stage("penalty", 1, 1e-3)], nuisances,
          loss=LossSettings(penalty_weight=1.0))
    # nominal: both samples; plus prepare_samples' one-row probe; jes: up and down
    assert model.rows == 2 * N_EVENTS + 1 + 2 * N_EVENTS


def test_strategies_split_into_yield_blind_and_yield_aware() -> None:
    # the one source of these names is analysis.config; training, tasks and report read them
    assert YIELD_BLIND == ("ce", "penalty") and YIELD_AWARE == ("inference", "significance")
    assert (*YIELD_BLIND, *YIELD_AWARE) == STRATEGIES
    assert REFERENCE_STRATEGY == "ce" and REFERENCE_STRATEGY in YIELD_BLIND


def test_a_batch_draws_whole_events_with_all_their_replicas() -> None:
    """With event identities (4 replicas per event in 'background'), a batch of 10 holds 10
    generated events with all 4 replicas each, and weights scaled by events, not rows."""
    from analysis.training.loop import _batch
    from analysis.training.samples import prepare_samples

    samples = _samples()
    x, w = samples["background"]
    samples["background"] = (x, w, np.arange(len(w)) // 4 + 1000)  # replicas: 4 rows each
    data = prepare_samples(_model(), samples, [], "signal", None)
    index, scale = _batch(data, 10, torch.Generator().manual_seed(0))
    events = data.events["background"][index["background"]]
    counts = torch.bincount(events)
    assert int((counts > 0).sum()) == 10 and set(counts[counts > 0].tolist()) == {4}
    assert scale["background"] == pytest.approx((len(w) // 4) / 10)
    assert len(index["signal"]) == 10 and scale["signal"] == pytest.approx(len(w) / 10)
