"""Samples and nuisances of any classifier training, whatever made them: validation, tensors,
scores.

A sample is ``(inputs (n_events, n_features), weights (n_events,))`` per name, optionally with
a third entry, the ``(n_events,)`` integer identity of the generated event behind each row (the
detector replicas of one event share it; the yield-aware losses then treat them as correlated
in the MC statistical uncertainty, as the workspace does); a nuisance
(:class:`Nuisance`) is a pair of user functions that shift the inputs or reweight the events.
:func:`prepare_samples` checks both and turns them into tensors of the model's dtype and device,
with the up/down variations evaluated once; :mod:`analysis.training.loop` trains on them and
:mod:`analysis.training.metrics` evaluates on them.

The generic layer of the three samples modules: nothing here knows the skim, the config or the
process classes. :mod:`analysis.training.skim_samples` builds such samples from the analysis's
skim tables, the paper toys (:mod:`analysis.validation`) from their own generators, and
:mod:`analysis.selection.cut_samples` holds the learned skim's events, not network inputs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from analysis.errors import ConfigError, InputDataError

__all__ = [
    "NUISANCE_KINDS",
    "ArrayLike",
    "Edges",
    "NormSys",
    "Nuisance",
    "Pair",
    "PreparedSamples",
    "Samples",
    "classifier_logits",
    "model_dtype_device",
    "prepare_samples",
    "signal_score",
    "varied_scores",
]

NUISANCE_KINDS: tuple[str, ...] = ("shift", "weight", "precomputed")
"""A nuisance shifts the inputs (``x -> x'``), reweights the events (``(x, w) -> w'``), or comes
as precomputed varied samples (e.g. a skim re-run with shifted jets, other events than nominal)."""

ArrayLike = torch.Tensor | npt.NDArray[np.floating] | Sequence[float] | Sequence[Sequence[float]]
Samples = Mapping[str, tuple[ArrayLike, ArrayLike] | tuple[ArrayLike, ArrayLike, ArrayLike]]
Edges = torch.Tensor | np.ndarray | Sequence[float]
NormSys = Mapping[str, Mapping[str, tuple[float, float]]]
Pair = tuple[torch.Tensor, torch.Tensor]  # (inputs or scores, weights)


@dataclass(frozen=True, eq=False)
class Nuisance:
    """A systematic uncertainty as up/down user functions; becomes a histosys in the model.

    Build it with :meth:`shift`, :meth:`weight` or :meth:`precomputed`. The functions get the
    whole sample as torch tensors (model dtype and device) and must return a new tensor of the same
    shape; they act event by event (training may use any subset of events). Precomputed
    variations hold their own events, evaluated in full at every training step.

    Attributes:
        name: parameter name of the histosys (distinct from ``"mu"`` and other nuisances).
        kind: one of :data:`NUISANCE_KINDS`.
        up: ``x -> x'`` (shift) or ``(x, w) -> w'`` (weight) at ``+1 sigma``; None when
            precomputed.
        down: the same at ``-1 sigma``.
        samples: names of the affected samples; ``None`` for all.
        varied: precomputed only: sample -> ``((x_up, w_up), (x_down, w_down))``.
    """

    name: str
    kind: str
    up: Callable[..., torch.Tensor] | None
    down: Callable[..., torch.Tensor] | None
    samples: tuple[str, ...] | None = None
    varied: Mapping[str, tuple[tuple[ArrayLike, ArrayLike], tuple[ArrayLike, ArrayLike]]] | None = None

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

    @classmethod
    def precomputed(cls, name: str, varied: Mapping[str, tuple[tuple[ArrayLike, ArrayLike],
                                                             tuple[ArrayLike, ArrayLike]]]
                    ) -> Nuisance:
        """Varied samples given as arrays: sample -> ``((x_up, w_up), (x_down, w_down))``.

        For variations that change which events are selected, such as a jet energy scale shift
        with the selection re-run: ``x_up`` is ``(n_up, n_features)``, ``w_up`` ``(n_up,)``.
        """
        return cls(name, "precomputed", None, None, tuple(varied), dict(varied))


@dataclass(frozen=True, eq=False)
class PreparedSamples:
    """Samples as tensors and, per nuisance and affected sample, the up/down (inputs, weights);
    ``events``: per sample given with event identities, each row's event index ``(n_events,)``
    int64 in ``[0, n_distinct)`` (replicas of one event share it)."""

    x: dict[str, torch.Tensor]
    w: dict[str, torch.Tensor]
    varied: dict[str, dict[str, tuple[Pair, Pair]]]
    classes: dict[str, int]
    signal_class: int
    precomputed: frozenset[str] = frozenset()  # nuisances whose events are not the nominal ones
    events: dict[str, torch.Tensor] = field(default_factory=dict)


def model_dtype_device(model: torch.nn.Module) -> tuple[torch.dtype, torch.device]:
    parameter = next(iter(model.parameters()), None)
    if parameter is None:
        return torch.get_default_dtype(), torch.device("cpu")
    return parameter.dtype, parameter.device


def classifier_logits(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``(n_events, n_classes >= 2)``; a single output column ``z`` becomes ``(0, z)``."""
    out = model(x)
    if out.dim() == 1:
        out = out[:, None]
    if out.dim() != 2 or out.shape[0] != x.shape[0]:
        raise InputDataError(f"classifier: expected (n_events, n_classes) logits for "
                             f"{x.shape[0]} events, got {tuple(out.shape)}")
    return torch.cat([torch.zeros_like(out), out], dim=1) if out.shape[1] == 1 else out


def _classes(names: list[str], signal: str, n_classes: int,
             explicit: Mapping[str, int] | None = None) -> tuple[dict[str, int], int]:
    """Class index of each sample and of the signal: ``explicit`` (sample -> output node), or
    from the number of model outputs."""
    if explicit is not None:
        missing = sorted(set(names) - set(explicit))
        bad = sorted(n for n in names if n in explicit and not 0 <= explicit[n] < n_classes)
        if missing or bad:
            raise ConfigError(f"training: classes must give every sample an output node in "
                              f"[0, {n_classes}): missing {missing}, out of range {bad}")
        return {name: int(explicit[name]) for name in names}, int(explicit[signal])
    if n_classes == 2:
        return {name: int(name == signal) for name in names}, 1
    if n_classes == len(names):
        return {name: i for i, name in enumerate(names)}, names.index(signal)
    raise ConfigError(f"training: the model has {n_classes} outputs: need 1 or 2 "
                      f"(signal vs background) or one per sample ({len(names)}: {names})")


def _check_config(samples: Samples, nuisances: Sequence[Nuisance], signal: str,
                  normsys: NormSys | None) -> list[str]:
    names = list(samples)
    if not names:
        raise InputDataError("training: samples is empty")
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


def _vary(nuisance: Nuisance, sample: str, x: torch.Tensor, w: torch.Tensor,
          source: Any = None) -> tuple[Pair, Pair]:
    """Up/down ``(inputs, weights)`` of ``sample``; a precomputed variation whose inputs are the
    nominal ones (the same object as ``source``, e.g. a weight systematic) gets ``x`` itself, so
    the losses see it as aligned with the nominal rows and reuse their network outputs."""
    out: list[Pair] = []
    for k, (direction, function) in enumerate((("up", nuisance.up), ("down", nuisance.down))):
        if nuisance.kind == "precomputed":
            if nuisance.varied is None or sample not in nuisance.varied:
                raise ConfigError(f"nuisance {nuisance.name!r}: precomputed without varied "
                                  f"samples for {sample!r} (build it with "
                                  f"Nuisance.precomputed)")
            xv, wv = nuisance.varied[sample][k]
            pair = _as_tensors(f"{sample} ({nuisance.name} {direction})", xv, wv, x.dtype,
                               x.device)
            if source is not None and xv is source:
                pair = (x, pair[1])
            if pair[0].shape[1] != x.shape[1]:
                raise InputDataError(f"nuisance {nuisance.name!r} {direction} on sample "
                                     f"{sample!r}: {pair[0].shape[1]} features, nominal has "
                                     f"{x.shape[1]}")
            out.append(pair)
            continue
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


def prepare_samples(model: torch.nn.Module, samples: Samples, nuisances: Sequence[Nuisance],
                    signal: str, normsys: NormSys | None,
                    classes: Mapping[str, int] | None = None) -> PreparedSamples:
    """Checked tensors of ``samples`` and their variations; ``classes`` maps each sample to
    its output node (None: one node per sample, or signal vs background for 1-2 outputs)."""
    names = _check_config(samples, nuisances, signal, normsys)
    dtype, device = model_dtype_device(model)
    x, w, events = {}, {}, {}
    for name in names:
        pair = samples[name]
        if not isinstance(pair, tuple | list) or len(pair) not in (2, 3):
            raise InputDataError(f"sample {name!r}: must be an (inputs, weights) pair or an "
                                 f"(inputs, weights, event ids) triple")
        x[name], w[name] = _as_tensors(name, pair[0], pair[1], dtype, device)
        if len(pair) == 3:
            ids = np.asarray(pair[2])
            if ids.shape != (x[name].shape[0],) or not np.issubdtype(ids.dtype, np.integer):
                raise InputDataError(f"sample {name!r}: event ids must be ({x[name].shape[0]},) "
                                     f"integers, got {ids.shape} {ids.dtype}")
            # dense indices: the losses sum each event's replicas with one index_add
            events[name] = torch.as_tensor(np.unique(ids, return_inverse=True)[1].reshape(-1),
                                           dtype=torch.int64, device=device)
    n_features = {t.shape[1] for t in x.values()}
    if len(n_features) != 1:
        raise InputDataError(f"samples: inputs differ in n_features: {sorted(n_features)}")
    varied = {n.name: {s: _vary(n, s, x[s], w[s], samples[s][0]) for s in (n.samples or names)}
              for n in nuisances}
    with torch.no_grad():
        n_classes = classifier_logits(model, x[names[0]][:1]).shape[1]
    labels, signal_class = _classes(names, signal, n_classes, classes)
    precomputed = frozenset(n.name for n in nuisances if n.kind == "precomputed")
    return PreparedSamples(x, w, varied, labels, signal_class, precomputed, events)


def signal_score(model: torch.nn.Module, x: torch.Tensor, signal_class: int) -> torch.Tensor:
    return torch.softmax(classifier_logits(model, x), dim=1)[:, signal_class]


def varied_scores(model: torch.nn.Module, data: PreparedSamples, index: dict[str, torch.Tensor],
                  scale: dict[str, float], selection: torch.nn.Module | None = None,
                  nominal_scores: Mapping[str, torch.Tensor] | None = None,
                  ) -> dict[str, dict[str, tuple[Pair, Pair]]]:
    """Nuisance -> sample -> up/down ``(scores, weights)`` of the batch ``index``; with a
    ``selection`` (``x -> (n,)`` weights in [0, 1]) the weights are multiplied by it. A
    variation of the nominal rows' weights reuses their scores: ``nominal_scores`` (sample ->
    ``(n_batch,)``) where the caller has them, else computed once per sample."""
    nominal: dict[str, tuple[torch.Tensor, torch.Tensor | None]] = {}
    if nominal_scores is not None and selection is None:
        nominal.update({s: (scores, None) for s, scores in nominal_scores.items()})

    def one(nuisance: str, sample: str, pair: Pair) -> Pair:
        xv, wv = pair
        aligned = xv is data.x[sample]
        if nuisance not in data.precomputed or aligned:  # the nominal events: the batch only
            xv, wv = xv[index[sample]], wv[index[sample]] * scale[sample]
        if not aligned:
            if selection is not None:
                wv = wv * selection(xv)
            return signal_score(model, xv, data.signal_class), wv
        if sample not in nominal:  # the nominal rows' scores, once for every variation of them
            nominal[sample] = (signal_score(model, xv, data.signal_class),
                               selection(xv) if selection is not None else None)
        scores, passed = nominal[sample]
        return scores, wv * passed if passed is not None else wv

    return {n: {s: (one(n, s, up), one(n, s, down)) for s, (up, down) in per_sample.items()}
            for n, per_sample in data.varied.items()}
