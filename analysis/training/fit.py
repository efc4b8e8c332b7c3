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

:func:`~analysis.training.evaluate.evaluate_sigma_mu` then reports ``sigma_mu`` of the trained
score with **hard** bins, stat only and with the systematics. The classifier maps
``(n_events, n_features)`` to logits: one column (binary, score ``sigmoid``), two columns
(background, signal) or one column per sample in the order of ``samples``; the score is the
softmax probability of the signal class.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import torch

from analysis.errors import ConfigError, InputDataError
from analysis.training.losses import (
    cross_entropy_loss,
    inference_loss,
    systematic_penalty,
)

__all__ = [
    "STRATEGIES",
    "NUISANCE_KINDS",
    "Nuisance",
    "TrainingHistory",
    "train_classifier",
]

log = logging.getLogger(__name__)

STRATEGIES: tuple[str, ...] = ("ce", "penalty", "inference")
"""Training losses of :func:`train_classifier`."""

NUISANCE_KINDS: tuple[str, ...] = ("shift", "weight")
"""A nuisance shifts the inputs (``x -> x'``) or reweights the events (``(x, w) -> w'``)."""

ArrayLike = torch.Tensor | npt.NDArray[np.floating] | Sequence[float] | Sequence[Sequence[float]]
Samples = Mapping[str, tuple[ArrayLike, ArrayLike]]
Edges = torch.Tensor | np.ndarray | Sequence[float]
NormSys = Mapping[str, Mapping[str, tuple[float, float]]]
Pair = tuple[torch.Tensor, torch.Tensor]  # (inputs or scores, weights)


@dataclass(frozen=True, eq=False)
class Nuisance:
    """A systematic uncertainty as up/down user functions; becomes a histosys in the model.

    Build it with :meth:`shift` or :meth:`weight`. The functions get the whole sample as torch
    tensors (model dtype and device) and must return a new tensor of the same shape; they act
    event by event (training may use any subset of events).

    Attributes:
        name: parameter name of the histosys (distinct from ``"mu"`` and other nuisances).
        kind: one of :data:`NUISANCE_KINDS`.
        up: ``x -> x'`` (shift) or ``(x, w) -> w'`` (weight) at ``+1 sigma``.
        down: the same at ``-1 sigma``.
        samples: names of the affected samples; ``None`` for all.
    """

    name: str
    kind: str
    up: Callable[..., torch.Tensor]
    down: Callable[..., torch.Tensor]
    samples: tuple[str, ...] | None = None

    @classmethod
    def shift(cls, name: str, up: Callable[[torch.Tensor], torch.Tensor],
              down: Callable[[torch.Tensor], torch.Tensor],
              samples: Sequence[str] | None = None) -> Nuisance:
        """Input shift: ``up(x)``, ``down(x)`` give ``(n_events, n_features)`` shifted inputs.

        Example:
            >>> jes = Nuisance.shift("jes", lambda x: 1.05 * x, lambda x: 0.95 * x, ["bkg"])
            >>> jes.kind, jes.samples
            ('shift', ('bkg',))
        """
        return cls(name, "shift", up, down, None if samples is None else tuple(samples))

    @classmethod
    def weight(cls, name: str, up: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
               down: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
               samples: Sequence[str] | None = None) -> Nuisance:
        """Reweighting: ``up(x, w)``, ``down(x, w)`` give ``(n_events,)`` varied weights."""
        return cls(name, "weight", up, down, None if samples is None else tuple(samples))


@dataclass
class TrainingHistory:
    """What :func:`train_classifier` did.

    Attributes:
        strategy: the loss, one of :data:`STRATEGIES`.
        loss: loss value before each optimiser step (nats for ``"ce"``/``"penalty"``, POI units
            for ``"inference"``).
        seconds: wall time of the loop.
    """

    strategy: str
    loss: list[float] = field(default_factory=list)
    seconds: float = 0.0


@dataclass(frozen=True, eq=False)
class _Prepared:
    """Samples as tensors and, per nuisance and affected sample, the up/down (inputs, weights)."""

    x: dict[str, torch.Tensor]
    w: dict[str, torch.Tensor]
    varied: dict[str, dict[str, tuple[Pair, Pair]]]
    classes: dict[str, int]
    signal_class: int


def _dtype_device(model: torch.nn.Module) -> tuple[torch.dtype, torch.device]:
    parameter = next(iter(model.parameters()), None)
    if parameter is None:
        return torch.get_default_dtype(), torch.device("cpu")
    return parameter.dtype, parameter.device


def _logits(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``(n_events, n_classes >= 2)``; a single output column ``z`` becomes ``(0, z)``."""
    out = model(x)
    if out.dim() == 1:
        out = out[:, None]
    if out.dim() != 2 or out.shape[0] != x.shape[0]:
        raise InputDataError(f"classifier: expected (n_events, n_classes) logits for "
                             f"{x.shape[0]} events, got {tuple(out.shape)}")
    return torch.cat([torch.zeros_like(out), out], dim=1) if out.shape[1] == 1 else out


def _classes(names: list[str], signal: str, n_classes: int) -> tuple[dict[str, int], int]:
    """Class index of each sample and of the signal, from the number of model outputs."""
    if n_classes == 2:
        return {name: int(name == signal) for name in names}, 1
    if n_classes == len(names):
        return {name: i for i, name in enumerate(names)}, names.index(signal)
    raise ConfigError(f"train_classifier: the model has {n_classes} outputs: need 1 or 2 "
                      f"(signal vs background) or one per sample ({len(names)}: {names})")


def _check_config(samples: Samples, nuisances: Sequence[Nuisance], signal: str,
                  normsys: NormSys | None) -> list[str]:
    names = list(samples)
    if not names:
        raise InputDataError("train_classifier: samples is empty")
    if signal not in samples:
        raise ConfigError(f"signal = {signal!r}: not among the samples {names}")
    seen = {"mu"}
    for nuisance in nuisances:
        if not isinstance(nuisance, Nuisance) or nuisance.kind not in NUISANCE_KINDS:
            raise ConfigError(f"nuisance {nuisance!r}: must be a Nuisance of kind "
                              f"{NUISANCE_KINDS}")
        if nuisance.name in seen:
            raise ConfigError(f"nuisance {nuisance.name!r}: name used twice (or is the POI)")
        seen.add(nuisance.name)
        unknown = sorted(set(nuisance.samples or ()) - set(names))
        if unknown:
            raise ConfigError(f"nuisance {nuisance.name!r}: unknown samples {unknown}; known: "
                              f"{names}")
    for syst in normsys or {}:
        if syst in seen:
            raise ConfigError(f"normsys {syst!r}: name is already a nuisance (or the POI)")
    return names


def _as_tensors(name: str, x: ArrayLike, w: ArrayLike, dtype: torch.dtype,
                device: torch.device) -> Pair:
    x_t = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x)
    w_t = torch.as_tensor(np.asarray(w) if not isinstance(w, torch.Tensor) else w)
    x_t, w_t = x_t.to(dtype=dtype, device=device), w_t.to(dtype=dtype, device=device)
    if x_t.dim() != 2 or x_t.shape[0] == 0 or w_t.shape != (x_t.shape[0],):
        raise InputDataError(f"sample {name!r}: need inputs (n_events > 0, n_features) and "
                             f"weights (n_events,), got {tuple(x_t.shape)} and "
                             f"{tuple(w_t.shape)}")
    if not bool(torch.isfinite(x_t).all()) or not bool(torch.isfinite(w_t).all()):
        raise InputDataError(f"sample {name!r}: inputs and weights must be finite")
    return x_t, w_t


def _vary(nuisance: Nuisance, sample: str, x: torch.Tensor, w: torch.Tensor) -> tuple[Pair, Pair]:
    out: list[Pair] = []
    for direction, function in (("up", nuisance.up), ("down", nuisance.down)):
        if nuisance.kind == "shift":
            pair = (torch.as_tensor(function(x)).to(x), w)
        else:
            pair = (x, torch.as_tensor(function(x, w)).to(w))
        if pair[0].shape != x.shape or pair[1].shape != w.shape:
            raise InputDataError(f"nuisance {nuisance.name!r} {direction} on sample {sample!r}: "
                                 f"returned shape {tuple(pair[0].shape)} / "
                                 f"{tuple(pair[1].shape)}, expected {tuple(x.shape)} / "
                                 f"{tuple(w.shape)}")
        if not bool(torch.isfinite(pair[0]).all() & torch.isfinite(pair[1]).all()):
            raise InputDataError(f"nuisance {nuisance.name!r} {direction} on sample {sample!r}: "
                                 f"non-finite values")
        out.append(pair)
    return out[0], out[1]


def _prepare(model: torch.nn.Module, samples: Samples, nuisances: Sequence[Nuisance],
             signal: str, normsys: NormSys | None) -> _Prepared:
    names = _check_config(samples, nuisances, signal, normsys)
    dtype, device = _dtype_device(model)
    x, w = {}, {}
    for name in names:
        pair = samples[name]
        if not isinstance(pair, tuple | list) or len(pair) != 2:
            raise InputDataError(f"sample {name!r}: must be an (inputs, weights) pair")
        x[name], w[name] = _as_tensors(name, pair[0], pair[1], dtype, device)
    n_features = {t.shape[1] for t in x.values()}
    if len(n_features) != 1:
        raise InputDataError(f"samples: inputs differ in n_features: {sorted(n_features)}")
    varied = {n.name: {s: _vary(n, s, x[s], w[s]) for s in (n.samples or names)}
              for n in nuisances}
    with torch.no_grad():
        n_classes = _logits(model, x[names[0]][:1]).shape[1]
    classes, signal_class = _classes(names, signal, n_classes)
    return _Prepared(x, w, varied, classes, signal_class)


def _score(model: torch.nn.Module, x: torch.Tensor, signal_class: int) -> torch.Tensor:
    return torch.softmax(_logits(model, x), dim=1)[:, signal_class]


def _batch(data: _Prepared, batch_size: int | None,
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


def _loss(model: torch.nn.Module, data: _Prepared, strategy: str, index: dict[str, torch.Tensor],
          scale: dict[str, float], edges: Edges, bandwidth: float, penalty_weight: float,
          normsys: NormSys | None, signal: str) -> torch.Tensor:
    names = list(data.x)
    x = {s: data.x[s][index[s]] for s in names}
    w = {s: data.w[s][index[s]] * scale[s] for s in names}
    if strategy in ("ce", "penalty"):
        logits = {s: _logits(model, x[s]) for s in names}
        labels = torch.cat([torch.full((x[s].shape[0],), data.classes[s], dtype=torch.long,
                                       device=x[s].device) for s in names])
        totals: dict[int, torch.Tensor] = {}
        for s in names:
            totals[data.classes[s]] = totals.get(data.classes[s], 0 * w[s].sum()) + w[s].sum()
        balanced = torch.cat([w[s] / totals[data.classes[s]] for s in names])
        loss = cross_entropy_loss(torch.cat([logits[s] for s in names]), labels, balanced)
        if strategy == "ce":
            return loss
        for per_sample in _varied_scores(model, data, index, scale).values():
            for s, (up, down) in per_sample.items():
                nominal = torch.softmax(logits[s], dim=1)[:, data.signal_class]
                loss = loss + penalty_weight * systematic_penalty(nominal, w[s], [up, down],
                                                                  edges, bandwidth)
        return loss
    scores = {s: _score(model, x[s], data.signal_class) for s in names}
    return inference_loss(scores, w, _varied_scores(model, data, index, scale), edges, bandwidth,
                          signal, normsys=normsys)


def _varied_scores(model: torch.nn.Module, data: _Prepared, index: dict[str, torch.Tensor],
                   scale: dict[str, float]) -> dict[str, dict[str, tuple[Pair, Pair]]]:
    """Nuisance -> sample -> up/down ``(scores, weights)`` of the batch ``index``."""
    def one(sample: str, pair: Pair) -> Pair:
        xv, wv = pair
        return (_score(model, xv[index[sample]], data.signal_class),
                wv[index[sample]] * scale[sample])

    return {n: {s: (one(s, up), one(s, down)) for s, (up, down) in per_sample.items()}
            for n, per_sample in data.varied.items()}


def train_classifier(model: torch.nn.Module, samples: Samples, strategy: str,
                     nuisances: Sequence[Nuisance] = (), *, signal: str = "signal",
                     edges: Edges = (0.0, 0.25, 0.5, 0.75, 1.0), bandwidth: float = 0.1,
                     penalty_weight: float = 1.0, normsys: NormSys | None = None,
                     steps: int = 100, lr: float = 1e-2, batch_size: int | None = None,
                     generator: torch.Generator | None = None,
                     progress: Callable[[int], None] | None = None,
                     ) -> tuple[torch.nn.Module, TrainingHistory]:
    """Train ``model`` in place with Adam on one of :data:`STRATEGIES`; return it and its history.

    ``"ce"``: :func:`~analysis.training.losses.cross_entropy_loss` with the weights of each class
    scaled to a total of 1. ``"penalty"``: that plus ``penalty_weight`` times
    :func:`~analysis.training.losses.systematic_penalty` of the signal score's soft histogram,
    up and down, summed over nuisances and affected samples (arXiv:1907.11674, Sec. 2).
    ``"inference"``: :func:`~analysis.training.losses.inference_loss`, the expected ``sigma_mu``
    with every nuisance a histosys and ``normsys`` as given (arXiv:2003.07186, Sec. 2); a CE
    pre-training (a first call with ``"ce"``) helps, as in the paper.

    Args:
        model: classifier ``(n_events, n_features) -> logits`` with 1, 2 or ``len(samples)``
            columns (module docstring); its dtype and device are used for everything.
        samples: sample name -> ``(inputs (n_events, n_features), weights (n_events,))``,
            numpy arrays or tensors; weights are expected events per simulated event.
        strategy: ``"ce"``, ``"penalty"`` or ``"inference"``.
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
        generator: seeds the batches; with the same model initialisation and seed, two runs
            give identical models on the CPU.
        progress: called after each step with the number of steps done.

    Returns:
        ``(model, history)``: the same module, trained and in eval mode, and a
        :class:`TrainingHistory`.

    Raises:
        ConfigError: unknown strategy or signal, a nuisance naming unknown samples or reusing a
            name, a model output width that fits no labelling, or ``steps``/``lr``/
            ``penalty_weight``/``batch_size`` out of range.
        InputDataError: malformed or non-finite samples, or a nuisance returning a wrong shape.
        FitError: ``"inference"`` only, if the Fisher information is singular.
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
    data = _prepare(model, samples, nuisances if strategy != "ce" else (), signal, normsys)
    history = TrainingHistory(strategy)
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    start = time.perf_counter()
    model.train()
    for step in range(steps):
        index, scale = _batch(data, batch_size, generator)
        optimiser.zero_grad()
        loss = _loss(model, data, strategy, index, scale, edges, bandwidth, penalty_weight,
                     normsys, signal)
        loss.backward()  # type: ignore[no-untyped-call]
        optimiser.step()
        history.loss.append(float(loss.detach()))
        if progress is not None:
            progress(step + 1)
    model.eval()
    history.seconds = time.perf_counter() - start
    log.info("train_classifier: %s, %d steps, loss %.4g -> %.4g in %.1f s", strategy, steps,
             history.loss[0], history.loss[-1], history.seconds)
    return model, history
