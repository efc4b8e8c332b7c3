"""The events the learned skim of one fold is learned on: the training folds, per class.

Separate from the network's training samples (:mod:`analysis.training.skim_samples`) because
it holds other things for another optimisation: the cut features and a discriminant instead of
the network inputs, the normalisation nuisances alongside, for LearnCuts and ReduceEvents. It
builds them with :func:`~analysis.training.skim_samples.training_samples`, so both select the
same events of fold ``k``.

Held-out honesty: network ``k`` is evaluated on fold ``k`` (``event % n_folds == k``), so the
cuts it is evaluated behind, cuts_k, must not see fold ``k`` either. :func:`selection_samples`
gathers, for fold ``k``, exactly the events network ``k`` trains on (every fold but ``k``,
:func:`~analysis.training.skim_samples.training_samples`) into one :class:`SelectionSamples` on
the cut features and the discriminant, weighted up to the full luminosity, with the JES/JER
variations (their own events) and the weight variations as precomputed up/down samples, and the
luminosity and cross-section normalisations of :func:`class_normsys` (also the normsys of
inference-aware training) from the same events.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from analysis.classes import class_index_of_labels, class_names, class_of_process
from analysis.config import AnalysisConfig, LearnedCutsSettings
from analysis.errors import InputDataError
from analysis.folds import fold_mask
from analysis.io import read_tables
from analysis.training.skim_samples import training_samples

__all__ = ["SelectionSamples", "class_normsys", "selection_columns", "selection_samples"]

_DTYPE = torch.float64  # yields and likelihoods in double precision
_Pair = tuple[torch.Tensor, torch.Tensor]


@dataclass(frozen=True)
class SelectionSamples:
    """The events the cuts are learned on, per class, on the selection's columns, with their
    variations.

    Attributes:
        columns: names of the ``x`` columns: the cut features, then the discriminant.
        x: class -> ``(n_events, len(columns))`` float64 features, the config's ``classes`` in
            node order: the signal class first (:attr:`classes`, :attr:`signal`).
        w: class -> ``(n_events,)`` expected events per simulated event.
        varied: nuisance -> class -> up/down ``(x, w)``.
        normsys: systematic -> class -> ``(hi, lo)`` normalisation factors.
        events: class -> ``(n_events,)`` int64 event numbers of the nominal rows of ``x`` (the
            record that the held-out fold is absent); empty where not recorded.
        event_groups: class -> ``(n_events,)`` int64 index in ``[0, n_generated)`` of the
            generated event behind each nominal row of ``x``: the detector replicas of one event
            share it (for the MC statistical uncertainty); empty where not recorded.
    """

    columns: tuple[str, ...]
    x: dict[str, torch.Tensor]
    w: dict[str, torch.Tensor]
    varied: dict[str, dict[str, tuple[_Pair, _Pair]]]
    normsys: dict[str, dict[str, tuple[float, float]]]
    events: dict[str, torch.Tensor] = field(default_factory=dict)
    event_groups: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def classes(self) -> tuple[str, ...]:
        """The classes, in the config's node order (the keys of ``x``)."""
        return tuple(self.x)

    @property
    def signal(self) -> str:
        """The signal class: the first (the config's ``classes`` start with it)."""
        return next(iter(self.x))

    @property
    def n_events(self) -> int:
        """Simulated events of all classes (the data size the skim keeps)."""
        return sum(x.shape[0] for x in self.x.values())


def selection_columns(settings: LearnedCutsSettings) -> tuple[str, ...]:
    """Columns of the selection's samples.

    Args:
        settings: the cuts and the discriminant.

    Returns:
        The cut features (in order of first appearance) and then the discriminant, each once.
    """
    names = [c.feature for c in settings.cuts] + [settings.discriminant]
    return tuple(dict.fromkeys(names))


def class_normsys(tables: Mapping[str, Mapping[str, Any]], config: AnalysisConfig
                  ) -> dict[str, dict[str, tuple[float, float]]]:
    """Normalisation systematics per class: the luminosity, and each background class's
    cross-section uncertainty as the yield-weighted mean of its processes' (the signal's is the
    POI's business).

    Args:
        tables: dataset -> shift -> skim table with ``label`` and ``weight`` (nominal is used).
        config: processes (cross-section uncertainties), ``classes`` and luminosity.

    Returns:
        ``{"lumi": {class: (1 + u, 1 - u)}, "xsec_<class>": {class: (1 + u, 1 - u)}}``.
    """
    process_class = class_of_process(config)
    yields = dict.fromkeys(config.processes, 0.0)
    names = list(config.processes)
    for shifts in tables.values():
        table = shifts["nominal"]
        labels = np.asarray(table["label"], dtype=np.int64)
        weights = np.asarray(table["weight"], dtype=np.float64)
        for k, name in enumerate(names):
            yields[name] += float(weights[labels == k].sum())
    lumi = config.luminosity.uncertainty
    classes = class_names(config)
    normsys = {"lumi": {c: (1.0 + lumi, 1.0 - lumi) for c in classes}}
    for cls in classes[1:]:  # the first is the signal class
        members = [p for p in names if process_class[p] == cls]
        total = sum(yields[p] for p in members)
        if total <= 0:
            continue
        u = sum(yields[p] * config.processes[p].cross_section.uncertainty for p in members) / total
        if u > 0:
            normsys[f"xsec_{cls}"] = {cls: (1.0 + u, max(1.0 - u, 1e-3))}
    return normsys


def _class_events(tables: Mapping[str, Mapping[str, Any]], config: AnalysisConfig, fold: int,
                  n_folds: int) -> dict[str, torch.Tensor]:
    """Per class, the event numbers of the nominal training-fold events, in the row order of
    :func:`~analysis.training.skim_samples.training_samples` (datasets in order, then rows)."""
    class_of_label = class_index_of_labels(config)
    events, classes = [], []
    for shifts in tables.values():
        table = shifts["nominal"]
        event = np.asarray(table["event"]).astype(np.int64)
        keep = ~fold_mask(event, fold, n_folds)
        events.append(event[keep])
        classes.append(class_of_label[np.asarray(table["label"], dtype=np.int64)[keep]])
    event_all, class_all = np.concatenate(events), np.concatenate(classes)
    return {c: torch.as_tensor(event_all[class_all == k])
            for k, c in enumerate(class_names(config))}


def _training_folds(tables: Mapping[str, Mapping[str, Any]], fold: int, n_folds: int
                    ) -> dict[str, dict[str, dict[str, np.ndarray]]]:
    """The nominal ``label`` and ``weight`` of the events outside fold ``fold``."""
    out = {}
    for dataset, shifts in tables.items():
        table = shifts["nominal"]
        keep = ~fold_mask(np.asarray(table["event"]), fold, n_folds)
        out[dataset] = {"nominal": {name: np.asarray(table[name])[keep]
                                    for name in ("label", "weight")}}
    return out


def selection_samples(tables: Mapping[str, Mapping[str, Any]], config: AnalysisConfig,
                      fold: int, settings: LearnedCutsSettings | None = None) -> SelectionSamples:
    """The events cuts_k of fold ``fold`` is learned on: every fold but ``fold``, per class, on
    :func:`selection_columns`, at the full luminosity.

    These are the events network ``fold`` trains on (its fit and validation parts,
    :func:`~analysis.training.skim_samples.training_samples` with ``train=True``), weighted by
    ``n_folds / (n_folds - 1)``; fold ``fold`` itself, which evaluates that network, is left out
    of everything, the normalisations' process yields included.

    Args:
        tables: dataset -> shift (``nominal``, ``jes_up/down``, ``jer_up/down``) -> skim
            table or its Parquet path.
        config: the analysis (``training.n_folds``); its ``cuts`` section unless ``settings`` is
            given.
        fold: the held-out fold, ``0 <= fold < training.n_folds``.
        settings: the learned-cut settings.

    Raises:
        ConfigError: ``fold`` outside ``[0, training.n_folds)``.
        InputDataError: missing columns or no ``cuts`` settings. EmptySelectionError: a class
            without events in the training folds (the message names the fold).
    """
    settings = settings or config.cuts
    if settings is None:
        raise InputDataError(f"{config.source or config.name}: no 'cuts' section: nothing to learn")
    columns = selection_columns(settings)
    tables = read_tables(tables)
    n_folds = config.training.n_folds
    samples, nuisances = training_samples(tables, config, columns, fold, n_folds, "dnn",
                                          train=True, part="all", rescale=True, event_ids=True)
    classes = class_names(config)
    x = {c: torch.as_tensor(samples[c][0], dtype=_DTYPE) for c in classes}
    w = {c: torch.as_tensor(samples[c][1], dtype=_DTYPE) for c in classes}
    # dense indices: grouped sums need an index per generated event, not its 2^40-strided id
    groups = {c: torch.as_tensor(np.unique(samples[c][2], return_inverse=True)[1].reshape(-1),
                                 dtype=torch.int64) for c in classes}
    varied: dict[str, dict[str, tuple[_Pair, _Pair]]] = {}
    for nuisance in nuisances:
        if nuisance.varied is None:  # training_samples makes precomputed ones
            raise InputDataError(f"selection_samples: nuisance {nuisance.name!r} is not "
                                 f"precomputed")
        varied[nuisance.name] = {c: (_pair(nuisance.varied[c][0]), _pair(nuisance.varied[c][1]))
                                 for c in classes}
    return SelectionSamples(columns, x, w, varied,
                            class_normsys(_training_folds(tables, fold, n_folds), config),
                            _class_events(tables, config, fold, n_folds), groups)


def _pair(sample: tuple[np.ndarray, np.ndarray]) -> _Pair:
    return (torch.as_tensor(sample[0], dtype=_DTYPE), torch.as_tensor(sample[1], dtype=_DTYPE))
