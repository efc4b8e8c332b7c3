"""Training helper: fit a classifier with CE, the systematic penalty or the inference-aware loss.

The public entry point of training for users with their own samples: each named sample is an
array of input features with a weight per event (expected events per simulated event); each
systematic uncertainty is a :class:`Nuisance`, a pair of user functions that either shift the
inputs (``x -> x'``, e.g. an energy scale) or reweight the events (``(x, w) -> w'``, e.g. a scale
factor). :func:`train_classifier` minimises one of three losses of
:mod:`analysis.training.losses`:

- ``"ce"``: weighted cross entropy, classes balanced to equal total weight;
- ``"penalty"``: ``L_CE + lambda * sum_nuisances sum_samples L_syst``, the penalty on the change
  of the soft histogram of the signal score under the up and down variation (Wunsch et al.,
  arXiv:1907.11674, Sec. 2);
- ``"inference"``: the expected ``sigma_mu`` of the binned likelihood of the soft-histogrammed
  signal score, every nuisance a histosys (Wunsch et al., arXiv:2003.07186, Sec. 2).
- ``"significance"``: minus the Asimov discovery significance ``Z0`` of the same binned model,
  from two profiled fits, differentiable through the envelope theorem.

:func:`~analysis.training.metrics.evaluate_sigma_mu` then reports ``sigma_mu`` of the trained
score with **hard** bins, stat only and with the systematics. The classifier maps
``(n_events, n_features)`` to logits: one column (binary, score ``sigmoid``), two columns
(background, signal) or one column per sample in the order of ``samples``; the score is the
softmax probability of the signal class.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from analysis.errors import ConfigError
from analysis.relax.likelihood import asimov_data
from analysis.relax.significance import discovery_significance
from analysis.training.losses import (
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

__all__ = ["STRATEGIES", "TrainingHistory", "train_classifier"]

log = logging.getLogger(__name__)

STRATEGIES: tuple[str, ...] = ("ce", "penalty", "inference", "significance")
"""Training losses of :func:`train_classifier`."""


@dataclass
class TrainingHistory:
    """What :func:`train_classifier` did.

    Attributes:
        strategy: the loss, one of :data:`STRATEGIES`.
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


def _batch(data: PreparedSamples, batch_size: int | None,
           generator: torch.Generator | None) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
    """Event indices per sample and the weight scale ``n / n_batch`` that keeps yields."""
    index, scale = {}, {}
    for name, x in data.x.items():
        n = x.shape[0]
        if batch_size is None or batch_size >= n:
            index[name], scale[name] = torch.arange(n, device=x.device), 1.0
        else:
            perm = torch.randperm(n, generator=generator, device="cpu")[:batch_size]
            index[name], scale[name] = perm.to(x.device), n / batch_size
    return index, scale


def _loss(model: torch.nn.Module, data: PreparedSamples, strategy: str, index: dict[str, torch.Tensor],
          scale: dict[str, float], edges: Edges, bandwidth: float, penalty_weight: float,
          normsys: NormSys | None, signal: str,
          selection: torch.nn.Module | None = None, staterror: bool = False) -> torch.Tensor:
    names = list(data.x)
    x = {s: data.x[s][index[s]] for s in names}
    w = {s: data.w[s][index[s]] * scale[s] for s in names}
    if selection is not None:  # cuts in front of the network: soft event weights
        w = {s: w[s] * selection(x[s]) for s in names}
    if strategy in ("ce", "penalty"):
        logits = {s: classifier_logits(model, x[s]) for s in names}
        labels = torch.cat([torch.full((x[s].shape[0],), data.classes[s], dtype=torch.long,
                                       device=x[s].device) for s in names])
        totals: dict[int, torch.Tensor] = {}
        for s in names:
            totals[data.classes[s]] = totals.get(data.classes[s], 0 * w[s].sum()) + w[s].sum()
        balanced = torch.cat([w[s] / totals[data.classes[s]] for s in names])
        loss = cross_entropy_loss(torch.cat([logits[s] for s in names]), labels, balanced)
        if strategy == "ce":
            return loss
        for per_sample in varied_scores(model, data, index, scale).values():
            for s, (up, down) in per_sample.items():
                nominal = torch.softmax(logits[s], dim=1)[:, data.signal_class]
                loss = loss + penalty_weight * systematic_penalty(nominal, w[s], [up, down],
                                                                  edges, bandwidth)
        return loss
    scores = {s: signal_score(model, x[s], data.signal_class) for s in names}
    varied = varied_scores(model, data, index, scale, selection)
    if strategy == "significance":
        binned = binned_model_from_scores(scores, w, edges, bandwidth, signal, shifted=varied,
                                          normsys=normsys, staterror=staterror)
        return -discovery_significance(binned, asimov_data(binned))
    return inference_loss(scores, w, varied, edges, bandwidth, signal, normsys=normsys,
                          staterror=staterror)


def _validation_loss(model: torch.nn.Module, data: PreparedSamples, strategy: str, edges: Edges,
                     bandwidth: float, penalty_weight: float, normsys: NormSys | None,
                     signal: str, selection: torch.nn.Module | None = None,
                     staterror: bool = False) -> float:
    """The training loss on all validation events, without gradients, in eval mode."""
    index = {name: torch.arange(x.shape[0], device=x.device) for name, x in data.x.items()}
    scale = {name: 1.0 for name in data.x}
    was_training = model.training
    model.eval()
    # the likelihood losses differentiate internally (Hessian, profile fits): no no_grad there
    context = torch.no_grad() if strategy in ("ce", "penalty") else contextlib.nullcontext()
    try:
        with context:
            return float(_loss(model, data, strategy, index, scale, edges, bandwidth,
                               penalty_weight, normsys, signal, selection, staterror).detach())
    finally:
        model.train(was_training)


def _data_parallel() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def _average_over_ranks(module: torch.nn.Module) -> None:
    """Data-parallel training: average the gradients of a module that DDP does not wrap (the
    joint cuts), so that a non-deterministic kernel cannot let the ranks drift apart."""
    if not _data_parallel():
        return
    size = torch.distributed.get_world_size()
    for parameter in module.parameters():
        if parameter.grad is not None:
            torch.distributed.all_reduce(parameter.grad)
            parameter.grad /= size


def _rank_zero_value(value: float) -> float:
    """Data-parallel training: rank 0's validation loss on every rank, so that every rank
    takes the same early-stopping decision (one rank stopping alone would hang the others)."""
    if not _data_parallel():
        return value
    device = "cuda" if torch.distributed.get_backend() == "nccl" else "cpu"
    tensor = torch.tensor([value], dtype=torch.float64, device=device)
    torch.distributed.broadcast(tensor, src=0)
    return float(tensor.item())


def train_classifier(model: torch.nn.Module, samples: Samples, strategy: str,
                     nuisances: Sequence[Nuisance] = (), *, signal: str = "signal",
                     edges: Edges = (0.0, 0.25, 0.5, 0.75, 1.0), bandwidth: float = 0.1,
                     penalty_weight: float = 1.0, normsys: NormSys | None = None,
                     steps: int = 100, lr: float = 1e-2, batch_size: int | None = None,
                     generator: torch.Generator | None = None,
                     progress: Callable[[int], None] | None = None,
                     validation: Samples | None = None,
                     validation_nuisances: Sequence[Nuisance] | None = None, patience: int = 5,
                     validate_every: int = 10, selection: torch.nn.Module | None = None,
                     selection_slopes: Sequence[float] | None = None,
                     selection_lr: float | None = None, staterror: bool = False,
                     ) -> tuple[torch.nn.Module, TrainingHistory]:
    """Train ``model`` in place with Adam on one of :data:`STRATEGIES`; return it and its history.

    ``"ce"``: :func:`~analysis.training.losses.cross_entropy_loss` with the weights of each class
    scaled to a total of 1. ``"penalty"``: that plus ``penalty_weight`` times
    :func:`~analysis.training.losses.systematic_penalty` of the signal score's soft histogram,
    up and down, summed over nuisances and affected samples (arXiv:1907.11674, Sec. 2).
    ``"inference"``: :func:`~analysis.training.losses.inference_loss`, the expected ``sigma_mu``
    with every nuisance a histosys and ``normsys`` as given (arXiv:2003.07186, Sec. 2); a CE
    pre-training (a first call with ``"ce"``) helps, as in the paper. ``"significance"``: minus
    the Asimov discovery significance ``Z0`` of the same binned model from two profiled fits,
    differentiated through the envelope theorem
    (:func:`~analysis.relax.significance.discovery_significance`); slower (two fits a step).

    Args:
        model: classifier ``(n_events, n_features) -> logits`` with 1, 2 or ``len(samples)``
            columns (module docstring); its dtype and device are used for everything.
        samples: sample name -> ``(inputs (n_events, n_features), weights (n_events,))``,
            numpy arrays or tensors; weights are expected events per simulated event.
        strategy: one of :data:`STRATEGIES`.
        nuisances: the systematic variations (:class:`Nuisance`); ignored by ``"ce"``.
        signal: name of the signal sample (carries the POI ``mu``).
        edges: ``(n_bins + 1,)`` bin edges of the signal score in ``[0, 1]`` (penalty, inference).
        bandwidth: soft-histogram kernel width in score units, > 0.
        penalty_weight: ``lambda`` of the penalty, >= 0.
        normsys: systematic -> sample -> ``(hi, lo)`` normalisation factors (inference only).
        steps: optimiser steps, >= 1.
        lr: Adam learning rate, > 0.
        batch_size: events drawn per sample and step (without replacement, weights scaled by
            ``n / batch_size``); ``None`` uses every event every step.
        generator: seeds the batches (default: a generator seeded with 0); with the same model
            initialisation and seed, two runs give identical models on the CPU.
        progress: called after each step with the number of steps done.
        validation: samples (and the same nuisances, for the systematic-aware losses) on which
            the loss is evaluated every ``validate_every`` steps with all events; the model of
            the best validation loss is kept, and training stops after ``patience``
            evaluations without improvement (early stopping).
        validation_nuisances: the nuisances of the validation samples; default ``nuisances``
            (right for functions; precomputed variations hold their own events and need theirs).
        patience: evaluations without improvement before stopping, >= 1.
        validate_every: steps between validation evaluations, >= 1.
        selection: learnable cuts in front of the network, trained jointly with it (Watts, CHEP
            2023): a module ``x -> (n_events,)`` soft weights in [0, 1], e.g.
            :class:`~analysis.relax.cuts.LearnableCuts` on the input columns, multiplying every
            event weight (nominal and varied). Only for the yield-aware losses ``"inference"``
            and ``"significance"``: a yield-blind loss would let the cuts drift.
        selection_slopes: the slope of ``selection`` at each step (an annealing schedule of
            length ``steps``, :func:`~analysis.relax.cuts.slope_schedule`).
        selection_lr: Adam learning rate of the selection's parameters (default ``lr``).
        staterror: ``"inference"``/``"significance"``: include the MC statistical uncertainty
            of each bin (Barlow-Beeston lite, from the sum of squared weights) in the likelihood.

    Returns:
        ``(model, history)``: the same module, trained and in eval mode, and a
        :class:`TrainingHistory`.

    Raises:
        ConfigError: unknown strategy or signal, a nuisance naming unknown samples or reusing a
            name, a model output width that fits no labelling, or ``steps``/``lr``/
            ``penalty_weight``/``batch_size`` out of range.
        InputDataError: malformed or non-finite samples, or a nuisance returning a wrong shape.
        FitError: ``"inference"``: the Fisher information is singular; ``"significance"``: a
            profiled fit did not converge.
    """
    if strategy not in STRATEGIES:
        raise ConfigError(f"train_classifier: strategy = {strategy!r}: must be one of "
                          f"{STRATEGIES}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ConfigError(f"train_classifier: steps = {steps!r}: must be an integer >= 1")
    if not (math.isfinite(lr) and lr > 0):
        raise ConfigError(f"train_classifier: lr = {lr}: must be finite and > 0")
    if not (math.isfinite(penalty_weight) and penalty_weight >= 0):
        raise ConfigError(f"train_classifier: penalty_weight = {penalty_weight}: must be >= 0")
    if batch_size is not None and batch_size < 1:
        raise ConfigError(f"train_classifier: batch_size = {batch_size}: must be >= 1 or None")
    if selection is not None and strategy not in ("inference", "significance"):
        raise ConfigError(f"train_classifier: a selection is trained jointly only with "
                          f"'inference' or 'significance', not {strategy!r} (yield-blind)")
    if selection_slopes is not None and len(selection_slopes) != steps:
        raise ConfigError(f"train_classifier: {len(selection_slopes)} selection_slopes for "
                          f"{steps} steps")
    used = nuisances if strategy != "ce" else ()
    data = prepare_samples(model, samples, used, signal, normsys)
    if validation_nuisances is not None and strategy == "ce":
        validation_nuisances = ()
    check = (None if validation is None else prepare_samples(
        model, validation, used if validation_nuisances is None else validation_nuisances,
        signal, normsys))
    if patience < 1 or validate_every < 1:
        raise ConfigError(f"train_classifier: patience = {patience}, validate_every = "
                          f"{validate_every}: both must be >= 1")
    history = TrainingHistory(strategy)
    best: tuple[float, dict[str, dict[str, torch.Tensor]]] | None = None
    stale = 0
    # no global random state: without a generator the batches come from a fixed seed
    batches = generator if generator is not None else torch.Generator().manual_seed(0)
    groups: list[dict[str, object]] = [{"params": list(model.parameters())}]
    if selection is not None:
        groups.append({"params": list(selection.parameters()),
                       "lr": lr if selection_lr is None else selection_lr})
    optimiser = torch.optim.Adam(groups, lr=lr)  # type: ignore[arg-type]

    def snapshot() -> dict[str, dict[str, torch.Tensor]]:
        state = {"model": copy.deepcopy(model.state_dict())}
        if selection is not None:
            state["selection"] = copy.deepcopy(selection.state_dict())
        return state

    start = time.perf_counter()
    model.train()
    for step in range(steps):
        if selection_slopes is not None and selection is not None:
            selection.slope = float(selection_slopes[step])
        index, scale = _batch(data, batch_size, batches)
        optimiser.zero_grad()
        loss = _loss(model, data, strategy, index, scale, edges, bandwidth, penalty_weight,
                     normsys, signal, selection, staterror)
        loss.backward()  # type: ignore[no-untyped-call]
        if selection is not None:
            _average_over_ranks(selection)
        optimiser.step()
        history.loss.append(float(loss.detach()))
        if progress is not None:
            progress(step + 1)
        if check is not None and ((step + 1) % validate_every == 0 or step + 1 == steps):
            value = _rank_zero_value(_validation_loss(
                model, check, strategy, edges, bandwidth, penalty_weight, normsys, signal,
                selection, staterror))
            history.validation_loss.append((step + 1, value))
            if best is None or value < best[0]:
                best, stale = (value, snapshot()), 0
                history.best_step = step + 1
            else:
                stale += 1
                if stale >= patience:
                    break
    if best is not None:
        model.load_state_dict(best[1]["model"])
        if selection is not None:
            selection.load_state_dict(best[1]["selection"])
    else:
        history.best_step = len(history.loss)
    model.eval()
    history.seconds = time.perf_counter() - start
    log.info("train_classifier: %s, %d steps, loss %.4g -> %.4g in %.1f s", strategy, steps,
             history.loss[0], history.loss[-1], history.seconds)
    return model, history
