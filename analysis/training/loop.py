"""The training loop: a classifier trained in stages (e.g. a CE warm-up, then the chosen loss).

A training is a list of stages (:class:`Stage`) run one after the other on the same network, each with its
own loss, steps and learning rate (a fresh Adam optimiser per stage) and one batch generator for
all of them. The losses (:data:`STRATEGIES`, from :mod:`analysis.training.losses`):

- ``"ce"``: weighted cross entropy, classes balanced to equal total weight;
- ``"penalty"``: ``L_CE + lambda * sum_nuisances sum_samples L_syst``, the penalty on the change
  of the soft histogram of the signal score under the up and down variation (Wunsch et al.,
  arXiv:1907.11674, Sec. 2);
- ``"inference"``: the expected ``sigma_mu`` of the binned likelihood of the soft-histogrammed
  signal score, every nuisance a histosys (Wunsch et al., arXiv:2003.07186, Sec. 2);
- ``"significance"``: minus the Asimov discovery significance ``Z0`` of the same binned model,
  from two profiled fits, differentiable through the envelope theorem.

Three optional parts are explicit arguments, not hidden switches: :class:`EarlyStopping` (a
validation sample, its nuisances, patience), :class:`JointCuts` (learnable cuts in front of the
network, trained in a stage with it, Watts CHEP 2023) and :class:`DataParallel` (the hook of a
data-parallel process group: the wrapper of the network, the gradient average of the cuts and
rank 0's early-stopping decision). :func:`train` runs the stages; :func:`train_classifier` is
the one-stage form for a user's own samples.

Samples are ``(inputs, weights)`` per name, systematic uncertainties are
:class:`~analysis.training.samples.Nuisance` objects (:mod:`analysis.training.samples`). The classifier maps ``(n_events, n_features)`` to
logits: one column (binary, score ``sigmoid``), two columns (background, signal) or one column per
sample in the order of ``samples``; the score is the softmax probability of the signal class.
:func:`~analysis.training.metrics.evaluate_sigma_mu` then reports ``sigma_mu`` of the trained
score with **hard** bins.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from analysis.config import (
    CROSS_ENTROPY,
    SIGNIFICANCE,
    STRATEGIES,
    YIELD_AWARE,
    YIELD_BLIND,
)
from analysis.errors import ConfigError
from analysis.inference.model import ModelSpec
from analysis.relax.histograms import resolve_bandwidth
from analysis.relax.likelihood import asimov_data
from analysis.relax.significance import discovery_significance
from analysis.training.losses import (
    analysis_loss,
    binned_model_from_scores,
    cross_entropy_loss,
    inference_loss,
    systematic_penalty,
)
from analysis.training.samples import (
    Edges,
    NormSys,
    Nuisance,
    PreparedSamples,
    Samples,
    classifier_logits,
    prepare_samples,
    signal_score,
    varied_scores,
)

__all__ = ["STRATEGIES", "YIELD_AWARE", "DataParallel", "EarlyStopping", "JointCuts",
           "LossSettings", "Stage", "TrainingHistory", "train", "train_classifier"]

log = logging.getLogger(__name__)



@dataclass
class TrainingHistory:
    """What one :class:`Stage` did.

    Attributes:
        strategy: the stage's name (its loss, one of :data:`STRATEGIES`, unless named otherwise).
        loss: loss value before each optimiser step (nats for ``"ce"``/``"penalty"``, POI units
            for ``"inference"``, minus sigma for ``"significance"``).
        seconds: wall time of the loop.
        validation_loss: ``(step, loss)`` on the validation samples, when given.
        best_step: the step whose model was kept (early stopping); the last step without
            validation samples.
    """

    strategy: str
    loss: list[float] = field(default_factory=list)
    seconds: float = 0.0
    validation_loss: list[tuple[int, float]] = field(default_factory=list)
    best_step: int = 0


@dataclass(frozen=True)
class LossSettings:
    """How the binned losses see the signal score (ignored by ``"ce"``).

    Attributes:
        signal: name of the signal sample (carries the POI ``mu``).
        edges: ``(n_bins + 1,)`` bin edges of the signal score in ``[0, 1]``.
        bandwidth: soft-histogram kernel width in score units, > 0; None (default):
            :data:`~analysis.relax.histograms.BANDWIDTH_PER_BIN_WIDTH` (0.2) of the narrowest
            bin of ``edges``, resolved by :func:`~analysis.relax.histograms.resolve_bandwidth`
            (which says how to choose it). A kernel as wide as a bin trains for a blurred
            binning: on a shape-systematic toy it lost about a third of the gain over CE.
        penalty_weight: ``lambda`` of ``"penalty"``, >= 0.
        staterror: ``"inference"``/``"significance"``: include the MC statistical uncertainty of
            each bin (Barlow-Beeston lite, from the sum of squared weights).
        model: the statistical model of ``"inference"``/``"significance"``
            (:func:`~analysis.inference.model.model_spec`): its categories (soft, the softmax of
            the logits over its temperature), processes (the samples; ``signal`` is its signal),
            bins, free normalisations (normfactors, no constraint) and systematics (the
            nuisances of those names); the losses are then
            :func:`~analysis.training.losses.analysis_loss`, the model BuildWorkspace writes.
            None: the one-channel model of the signal score (``edges``, every nuisance a
            histosys, ``normsys`` as given).
        classes: sample -> output node of the network (several samples may share one); None:
            one node per sample, or signal against the rest for 1 or 2 outputs.
        btag_group: inputs ``(n, n_features)`` -> ``(n,)`` b-tag group
            (:func:`~analysis.inference.model.btag_groups`), for a model with a b-tag split.
    """

    signal: str = "signal"
    edges: Edges = (0.0, 0.25, 0.5, 0.75, 1.0)
    bandwidth: float | None = None
    penalty_weight: float = 1.0
    staterror: bool = False
    model: ModelSpec | None = None
    classes: Mapping[str, int] | None = None
    btag_group: Callable[[torch.Tensor], torch.Tensor] | None = None


@dataclass(frozen=True, eq=False)
class JointCuts:
    """Learnable cuts in front of the network, trained with it in one stage (Watts, CHEP 2023).

    Attributes:
        module: ``x (n_events, n_features) -> (n_events,)`` soft weights in [0, 1], e.g.
            :class:`~analysis.relax.cuts.LearnableCuts` on the input columns; they multiply
            every event weight (nominal and varied). It has a ``slope`` attribute if ``slopes``.
        slopes: the slope at each step of the stage (an annealing schedule,
            :func:`~analysis.relax.cuts.slope_schedule`), or None to leave it.
        learning_rate: Adam learning rate of the cuts' parameters (default: the stage's).
    """

    module: torch.nn.Module
    slopes: Sequence[float] | None = None
    learning_rate: float | None = None


@dataclass(frozen=True, eq=False)
class EarlyStopping:
    """Keep the model of the best validation loss; stop after ``patience`` worse evaluations.

    Attributes:
        validation: samples on which the stage's loss is evaluated with all events.
        nuisances: their nuisances; None: the training nuisances (right for functions;
            precomputed variations hold their own events and need their own).
        patience: evaluations without improvement before stopping, >= 1.
        validate_every: steps between evaluations, >= 1 (and after the last step).
    """

    validation: Samples
    nuisances: Sequence[Nuisance] | None = None
    patience: int = 5
    validate_every: int = 10


@dataclass(frozen=True)
class Stage:
    """One stage of a training: a loss, its steps and learning rate, optionally joint cuts.

    Attributes:
        loss: one of :data:`STRATEGIES`.
        steps: optimiser steps, >= 1.
        learning_rate: Adam learning rate of the network, > 0.
        batch_size: events drawn per sample and step (without replacement, weights scaled by
            ``n / batch_size``); None uses every event every step.
        joint_cuts: cuts trained with the network in this stage (yield-aware losses only: a
            yield-blind loss would let the cuts drift).
        name: the stage's name in its :class:`TrainingHistory` (default: ``loss``).
    """

    loss: str
    steps: int
    learning_rate: float
    batch_size: int | None = None
    joint_cuts: JointCuts | None = None
    name: str | None = None

    @property
    def label(self) -> str:
        """``name``, or the loss."""
        return self.name or self.loss


class DataParallel:
    """The hook of a data-parallel process group (``torch.distributed``, already initialised).

    Args:
        wrap: what the loop calls instead of the network, e.g. the
            :class:`~analysis.training.distributed.RowShardedModule` around a DDP replica.

    Every rank runs :func:`train` on the same stages; DDP averages the network's gradients, and
    this hook averages those of the joint cuts (which DDP does not wrap, so that a
    non-deterministic kernel cannot let the ranks drift apart) and hands rank 0's validation loss
    to every rank (one rank stopping alone would hang the others).
    """

    def __init__(self, wrap: Callable[[torch.nn.Module], torch.nn.Module]) -> None:
        self.wrap = wrap

    def average_gradients(self, module: torch.nn.Module) -> None:
        """Average the gradients of ``module``'s parameters over the ranks, in place."""
        size = torch.distributed.get_world_size()
        for parameter in module.parameters():
            if parameter.grad is not None:
                torch.distributed.all_reduce(parameter.grad)
                parameter.grad /= size

    def rank_zero_value(self, value: float) -> float:
        """Rank 0's ``value`` on every rank."""
        device = "cuda" if torch.distributed.get_backend() == "nccl" else "cpu"
        tensor = torch.tensor([value], dtype=torch.float64, device=device)
        torch.distributed.broadcast(tensor, src=0)
        return float(tensor.item())


def _batch(data: PreparedSamples, batch_size: int | None,
           generator: torch.Generator) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
    """Row indices per sample and the weight scale ``n / n_batch`` that keeps yields.

    A sample with event identities (``data.events``) is drawn by generated event: all the
    detector replicas of a drawn event, so that the MC statistical variance of the batch sums
    each event's replicas as the workspace does; ``batch_size`` then counts events, not rows.
    """
    index, scale = {}, {}
    for name, x in data.x.items():
        events = data.events.get(name)
        n = x.shape[0] if events is None else (int(events.max()) + 1 if events.numel() else 0)
        if batch_size is None or batch_size >= n:
            index[name], scale[name] = torch.arange(x.shape[0], device=x.device), 1.0
            continue
        drawn = torch.randperm(n, generator=generator, device="cpu")[:batch_size]
        if events is not None:  # every row of a drawn event, on the rows' device
            chosen = torch.zeros(n, dtype=torch.bool, device=events.device)
            chosen[drawn.to(events.device)] = True
            drawn = torch.nonzero(chosen[events]).flatten()
        index[name], scale[name] = drawn.to(x.device), n / batch_size
    return index, scale


def _loss(model: torch.nn.Module, data: PreparedSamples, strategy: str,
          index: dict[str, torch.Tensor], scale: dict[str, float], settings: LossSettings,
          normsys: NormSys | None, selection: torch.nn.Module | None = None,
          n_slices: int = 1) -> torch.Tensor:
    """The loss ``strategy`` of the batch ``index`` (weights scaled by ``scale``); on one of
    ``n_slices`` event slices the statistical model's MC variances are scaled by ``1/n``."""
    bandwidth = resolve_bandwidth(settings.bandwidth, settings.edges, "LossSettings.bandwidth")
    names = list(data.x)
    x = {s: data.x[s][index[s]] for s in names}
    w = {s: data.w[s][index[s]] * scale[s] for s in names}
    if selection is not None:  # cuts in front of the network: soft event weights
        w = {s: w[s] * selection(x[s]) for s in names}
    if strategy in YIELD_BLIND:
        logits = {s: classifier_logits(model, x[s]) for s in names}
        labels = torch.cat([torch.full((x[s].shape[0],), data.classes[s], dtype=torch.long,
                                       device=x[s].device) for s in names])
        totals: dict[int, torch.Tensor] = {}
        for s in names:
            totals[data.classes[s]] = totals.get(data.classes[s], 0 * w[s].sum()) + w[s].sum()
        balanced = torch.cat([w[s] / totals[data.classes[s]] for s in names])
        loss = cross_entropy_loss(torch.cat([logits[s] for s in names]), labels, balanced)
        if strategy == CROSS_ENTROPY:
            return loss
        nominal = {s: torch.softmax(logits[s], dim=1)[:, data.signal_class] for s in names}
        for per_sample in varied_scores(model, data, index, scale,
                                        nominal_scores=nominal).values():
            for s, (up, down) in per_sample.items():
                loss = loss + settings.penalty_weight * systematic_penalty(
                    nominal[s], w[s], [up, down], settings.edges, bandwidth)
        return loss
    if settings.model is not None:
        return analysis_loss(_model_outputs(model, data, index, scale, settings, selection),
                             settings.model, strategy, bandwidth=settings.bandwidth,
                             variance_scale=1.0 / n_slices)
    scores = {s: signal_score(model, x[s], data.signal_class) for s in names}
    varied = varied_scores(model, data, index, scale, selection)
    if strategy == SIGNIFICANCE:
        binned = binned_model_from_scores(scores, w, settings.edges, bandwidth,
                                          settings.signal, shifted=varied, normsys=normsys,
                                          staterror=settings.staterror)
        return -discovery_significance(binned, asimov_data(binned))
    return inference_loss(scores, w, varied, settings.edges, bandwidth, settings.signal,
                          normsys=normsys, staterror=settings.staterror)


def _model_outputs(model: torch.nn.Module, data: PreparedSamples, index: dict[str, torch.Tensor],
                   scale: dict[str, float], settings: LossSettings,
                   selection: torch.nn.Module | None) -> dict[str, dict[str, Any]]:
    """Process -> variation -> (logits, weights, b-tag group, event indices or None) of the
    batch for the model's losses; a process without training events gets no events, a process
    that a systematic does not vary its nominal outputs."""
    spec = settings.model
    if spec is None:  # the yield-aware losses are built from the statistical model's spec
        raise ConfigError("training: the yield-aware losses need LossSettings.model (the "
                          "statistical model of inference:), which is None")
    missing = [s for s in spec.systematics if s not in data.varied]
    if missing:
        raise ConfigError(f"training: the statistical model's systematics {missing} have no "
                          f"nuisance (have {sorted(data.varied)}); they come from "
                          f"inference.systematics")
    reference = next(iter(data.x.values()))

    def one(x: torch.Tensor, w: torch.Tensor, passed: torch.Tensor | None = None,
            events: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, Any, Any]:
        if selection is not None:  # the nominal rows' selection is computed once, by the caller
            w = w * (selection(x) if passed is None else passed)
        group = settings.btag_group(x) if settings.btag_group is not None else None
        return classifier_logits(model, x), w, group, events

    outputs: dict[str, dict[str, Any]] = {}
    for process in spec.processes:
        if process not in data.x:
            empty = (reference[:0], data.w[next(iter(data.w))][:0])
            nominal = one(*empty)
            outputs[process] = {v: nominal for v in spec.variations}
            continue
        rows = index[process]
        passed = selection(data.x[process][rows]) if selection is not None else None
        # the nominal rows' event indices: the staterror of the workspace correlates replicas
        events = data.events[process][rows] if process in data.events else None
        nominal = one(data.x[process][rows], data.w[process][rows] * scale[process], passed,
                      events)
        per = {"nominal": nominal}
        for syst in spec.systematics:
            varied = data.varied[syst].get(process)
            for k, direction in enumerate(("up", "down")):
                if varied is None:
                    per[f"{syst}_{direction}"] = nominal
                    continue
                xv, wv = varied[k]
                if xv is data.x[process]:  # a reweighting of the nominal rows: their outputs
                    wv = wv[rows] * scale[process]
                    per[f"{syst}_{direction}"] = (nominal[0], wv * passed if passed is not None
                                                  else wv, nominal[2], nominal[3])
                    continue
                if syst not in data.precomputed:  # the nominal events: the batch only
                    xv, wv = xv[rows], wv[rows] * scale[process]
                per[f"{syst}_{direction}"] = one(xv, wv)
        outputs[process] = per
    return outputs


def _validation_loss(model: torch.nn.Module, data: PreparedSamples, strategy: str,
                     settings: LossSettings, normsys: NormSys | None,
                     selection: torch.nn.Module | None = None) -> float:
    """The training loss on all validation events, without gradients, in eval mode."""
    index = {name: torch.arange(x.shape[0], device=x.device) for name, x in data.x.items()}
    scale = {name: 1.0 for name in data.x}
    was_training = model.training
    model.eval()
    # the likelihood losses differentiate internally (Hessian, profile fits): no no_grad there
    context = torch.no_grad() if strategy in YIELD_BLIND else contextlib.nullcontext()
    try:
        with context:
            return float(_loss(model, data, strategy, index, scale, settings, normsys,
                               selection).detach())
    finally:
        model.train(was_training)


def _check(stage: Stage, settings: LossSettings, stopping: EarlyStopping | None) -> None:
    """ConfigError naming the field of ``stage``, ``settings`` or ``stopping`` out of range."""
    where = f"Stage {stage.label!r}"
    if stage.loss not in STRATEGIES:
        raise ConfigError(f"{where}: loss = {stage.loss!r}: must be one of {STRATEGIES}")
    if isinstance(stage.steps, bool) or not isinstance(stage.steps, int) or stage.steps < 1:
        raise ConfigError(f"{where}: steps = {stage.steps!r}: must be an integer >= 1")
    if not (math.isfinite(stage.learning_rate) and stage.learning_rate > 0):
        raise ConfigError(f"{where}: learning_rate = {stage.learning_rate}: must be finite "
                          f"and > 0")
    if stage.batch_size is not None and stage.batch_size < 1:
        raise ConfigError(f"{where}: batch_size = {stage.batch_size}: must be >= 1 or None")
    cuts = stage.joint_cuts
    if cuts is not None and stage.loss not in YIELD_AWARE:
        raise ConfigError(f"{where}: joint cuts train only with {YIELD_AWARE}, not "
                          f"{stage.loss!r} (yield-blind)")
    if cuts is not None and cuts.slopes is not None and len(cuts.slopes) != stage.steps:
        raise ConfigError(f"{where}: joint_cuts.slopes has {len(cuts.slopes)} values for "
                          f"{stage.steps} steps")
    if stage.loss != CROSS_ENTROPY:  # the binned losses: fail before training, naming the setting
        resolve_bandwidth(settings.bandwidth, settings.edges, "LossSettings.bandwidth")
    if not (math.isfinite(settings.penalty_weight) and settings.penalty_weight >= 0):
        raise ConfigError(f"LossSettings: penalty_weight = {settings.penalty_weight}: must be "
                          f">= 0")
    if stopping is not None and (stopping.patience < 1 or stopping.validate_every < 1):
        raise ConfigError(f"EarlyStopping: patience = {stopping.patience}, validate_every = "
                          f"{stopping.validate_every}: both must be >= 1")


def _run_stage(model: torch.nn.Module, samples: Samples, stage: Stage,
               nuisances: Sequence[Nuisance], settings: LossSettings, normsys: NormSys | None,
               batches: torch.Generator, stopping: EarlyStopping | None,
               parallel: DataParallel | None, progress: Callable[[int], None] | None,
               slices: Sequence[tuple[Samples, Sequence[Nuisance]]] | None = None,
               ) -> TrainingHistory:
    """One stage of :func:`train`, on ``model`` (the network or its data-parallel wrapper)."""
    strategy = stage.loss
    parts = list(slices) if slices else [(samples, nuisances)]
    prepared = [prepare_samples(model, part, part_nuisances if strategy != CROSS_ENTROPY else (),
                                settings.signal, normsys, settings.classes)
                for part, part_nuisances in parts]
    check = None
    if stopping is not None:
        used = nuisances if strategy != CROSS_ENTROPY else ()
        check_nuisances = used if stopping.nuisances is None or strategy == CROSS_ENTROPY else (
            stopping.nuisances)
        check = prepare_samples(model, stopping.validation, check_nuisances, settings.signal,
                                normsys, settings.classes)
    selection = stage.joint_cuts.module if stage.joint_cuts is not None else None
    slopes = stage.joint_cuts.slopes if stage.joint_cuts is not None else None
    history = TrainingHistory(stage.label)
    best: tuple[float, dict[str, dict[str, torch.Tensor]]] | None = None
    stale = 0
    groups: list[dict[str, object]] = [{"params": list(model.parameters())}]
    if stage.joint_cuts is not None:
        cuts_lr = stage.joint_cuts.learning_rate
        groups.append({"params": list(stage.joint_cuts.module.parameters()),
                       "lr": stage.learning_rate if cuts_lr is None else cuts_lr})
    optimiser = torch.optim.Adam(groups, lr=stage.learning_rate)  # type: ignore[arg-type]

    def snapshot() -> dict[str, dict[str, torch.Tensor]]:
        state = {"model": copy.deepcopy(model.state_dict())}
        if selection is not None:
            state["selection"] = copy.deepcopy(selection.state_dict())
        return state

    start = time.perf_counter()
    model.train()
    for step in range(stage.steps):
        if slopes is not None and selection is not None:
            selection.slope = float(slopes[step])
        data = prepared[step % len(prepared)]  # slices in turn: each an unbiased estimate
        index, scale = _batch(data, stage.batch_size, batches)
        optimiser.zero_grad()
        loss = _loss(model, data, strategy, index, scale, settings, normsys, selection,
                     len(prepared))
        loss.backward()  # type: ignore[no-untyped-call]
        if selection is not None and parallel is not None:
            parallel.average_gradients(selection)
        optimiser.step()
        history.loss.append(float(loss.detach()))
        if progress is not None:
            progress(step + 1)
        if check is not None and stopping is not None and (
                (step + 1) % stopping.validate_every == 0 or step + 1 == stage.steps):
            value = _validation_loss(model, check, strategy, settings, normsys, selection)
            if parallel is not None:
                value = parallel.rank_zero_value(value)
            history.validation_loss.append((step + 1, value))
            if best is None or value < best[0]:
                best, stale = (value, snapshot()), 0
                history.best_step = step + 1
            else:
                stale += 1
                if stale >= stopping.patience:
                    break
    if best is not None:
        model.load_state_dict(best[1]["model"])
        if selection is not None:
            selection.load_state_dict(best[1]["selection"])
    else:
        history.best_step = len(history.loss)
    model.eval()
    history.seconds = time.perf_counter() - start
    log.info("train: stage %s, %d steps, loss %.4g -> %.4g in %.1f s", stage.label,
             len(history.loss), history.loss[0], history.loss[-1], history.seconds)
    return history


def train(model: torch.nn.Module, samples: Samples, stages: Sequence[Stage],
          nuisances: Sequence[Nuisance] = (), *, loss: LossSettings = LossSettings(),
          normsys: NormSys | None = None, generator: torch.Generator | None = None,
          early_stopping: EarlyStopping | None = None, data_parallel: DataParallel | None = None,
          progress: Callable[[int], None] | None = None,
          slices: Sequence[tuple[Samples, Sequence[Nuisance]]] | None = None,
          ) -> list[TrainingHistory]:
    """Train ``model`` in place, stage after stage, with Adam; return each stage's history.

    Each stage starts a fresh optimiser on the model the previous stage kept (its best
    validation model under early stopping). ``"ce"``:
    :func:`~analysis.training.losses.cross_entropy_loss` with the weights of each class scaled
    to a total of 1. ``"penalty"``: that plus ``penalty_weight`` times
    :func:`~analysis.training.losses.systematic_penalty` of the signal score's soft histogram,
    up and down, summed over nuisances and affected samples (arXiv:1907.11674, Sec. 2).
    ``"inference"``: :func:`~analysis.training.losses.inference_loss`, the expected
    ``sigma_mu`` with every nuisance a histosys and ``normsys`` as given (arXiv:2003.07186,
    Sec. 2), best after a CE stage, as in the paper. ``"significance"``: minus the Asimov
    discovery significance ``Z0`` of the same binned model from two profiled fits (slower).

    Args:
        model: classifier ``(n_events, n_features) -> logits`` with 1, 2 or ``len(samples)``
            columns (module docstring); its dtype and device are used for everything.
        samples: sample name -> ``(inputs (n_events, n_features), weights (n_events,))``,
            numpy arrays or tensors; weights are expected events per simulated event.
        stages: the stages (:class:`Stage`), in order, e.g. ``[Stage("ce", 200, 3e-3),
            Stage("inference", 100, 1e-3)]``.
        nuisances: the systematic variations (:class:`~analysis.training.samples.Nuisance`);
            ignored by ``"ce"``.
        loss: :class:`LossSettings` of the binned losses; its default bandwidth is 0.2 of the
            narrowest bin width (:func:`~analysis.relax.histograms.resolve_bandwidth`).
        normsys: systematic -> sample -> ``(hi, lo)`` normalisation factors
            (``"inference"``/``"significance"``).
        generator: draws the batches of every stage (default: one seeded with 0); with the
            same model initialisation and seed, two runs give identical models on the CPU.
        early_stopping: :class:`EarlyStopping`, or None to keep the last step's model.
        data_parallel: :class:`DataParallel` when this process is one rank of several.
        progress: called after each step with the steps done over all stages (a stage that
            stops early counts its planned steps).
        slices: the optimiser's events split into parts (e.g. by event number,
            :func:`~analysis.training.skim_samples.training_samples` ``event_slice``), each
            ``(samples, nuisances)`` with weights scaled to the full yields; step ``t`` sees
            part ``t % len(slices)``. Mini-batches of whole events: a precomputed variation's
            rows (a shifted skim) are the same events as the nominal rows of its part, so the
            systematic shift is not drowned in batch noise. None: every step sees ``samples``
            (which still gives the data-parallel wrapper and the checks their inputs).

    Returns:
        One :class:`TrainingHistory` per stage; ``model`` is trained and in eval mode.

    Raises:
        ConfigError: a stage, loss setting or early-stopping value out of range, unknown
            signal, a nuisance naming unknown samples or reusing a name, or a model output
            width that fits no labelling.
        InputDataError: malformed or non-finite samples, or a nuisance returning a wrong shape.
        FitError: ``"inference"``: the Fisher information is singular; ``"significance"``: a
            profiled fit did not converge.
    """
    if not stages:
        raise ConfigError("train: stages is empty: need at least one Stage")
    for stage in stages:
        _check(stage, loss, early_stopping)
    # no global random state: without a generator the batches come from a fixed seed
    batches = generator if generator is not None else torch.Generator().manual_seed(0)
    trainable = data_parallel.wrap(model) if data_parallel is not None else model
    histories, offset = [], 0
    for stage in stages:
        def stage_progress(done: int, before: int = offset) -> None:
            if progress is not None:
                progress(before + done)

        histories.append(_run_stage(trainable, samples, stage, nuisances, loss, normsys, batches,
                                    early_stopping, data_parallel, stage_progress, slices))
        offset += stage.steps
    return histories


def train_classifier(model: torch.nn.Module, samples: Samples, strategy: str,
                     nuisances: Sequence[Nuisance] = (), *, steps: int = 100, lr: float = 1e-2,
                     batch_size: int | None = None, loss: LossSettings = LossSettings(),
                     normsys: NormSys | None = None, generator: torch.Generator | None = None,
                     early_stopping: EarlyStopping | None = None,
                     joint_cuts: JointCuts | None = None,
                     progress: Callable[[int], None] | None = None,
                     ) -> tuple[torch.nn.Module, TrainingHistory]:
    """Train ``model`` in place on one loss: :func:`train` with one :class:`Stage`.

    Args:
        model, samples, nuisances, loss, normsys, generator, early_stopping, progress: as for
            :func:`train`.
        strategy: the loss, one of :data:`STRATEGIES`.
        steps, lr, batch_size, joint_cuts: the :class:`Stage`.

    Returns:
        ``(model, history)``: the same module, trained and in eval mode, and its
        :class:`TrainingHistory`.

    Raises:
        ConfigError, InputDataError, FitError: as :func:`train`.
    """
    stage = Stage(strategy, steps, lr, batch_size, joint_cuts)
    (history,) = train(model, samples, [stage], nuisances, loss=loss, normsys=normsys,
                       generator=generator, early_stopping=early_stopping, progress=progress)
    return model, history
