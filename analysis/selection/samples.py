"""The events the learned skim is learned on: every skimmed event per class, with variations.

:func:`selection_samples` gathers the skim tables of all folds into one
:class:`SelectionSamples` on the cut features and the discriminant, with the JES/JER
variations (their own events) and the weight variations as precomputed up/down samples, and the
luminosity and cross-section normalisations of :func:`class_normsys` (also the normsys of
inference-aware training).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from analysis.config import AnalysisConfig, LearnedCutsSettings
from analysis.errors import InputDataError
from analysis.io import read_tables
from analysis.training.skim_samples import (
    CLASSES,
    class_of_process,
    training_samples,
)

__all__ = ["SelectionSamples", "class_normsys", "selection_columns", "selection_samples"]

_DTYPE = torch.float64  # yields and likelihoods in double precision
_Pair = tuple[torch.Tensor, torch.Tensor]


@dataclass(frozen=True)
class SelectionSamples:
    """All events of the skims per class, on the selection's columns, with their variations.

    Attributes:
        columns: names of the ``x`` columns: the cut features, then the discriminant.
        x: class -> ``(n_events, len(columns))`` float64 features.
        w: class -> ``(n_events,)`` expected events per simulated event.
        varied: nuisance -> class -> up/down ``(x, w)``.
        normsys: systematic -> class -> ``(hi, lo)`` normalisation factors.
    """

    columns: tuple[str, ...]
    x: dict[str, torch.Tensor]
    w: dict[str, torch.Tensor]
    varied: dict[str, dict[str, tuple[_Pair, _Pair]]]
    normsys: dict[str, dict[str, tuple[float, float]]]

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
        config: processes (cross-section uncertainties) and luminosity.

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
    normsys = {"lumi": {c: (1.0 + lumi, 1.0 - lumi) for c in CLASSES}}
    for cls in CLASSES[1:]:
        members = [p for p in names if process_class[p] == cls]
        total = sum(yields[p] for p in members)
        if total <= 0:
            continue
        u = sum(yields[p] * config.processes[p].cross_section.uncertainty for p in members) / total
        if u > 0:
            normsys[f"xsec_{cls}"] = {cls: (1.0 + u, max(1.0 - u, 1e-3))}
    return normsys


def _merge(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]) -> _Pair:
    return (torch.as_tensor(np.concatenate([a[0], b[0]]), dtype=_DTYPE),
            torch.as_tensor(np.concatenate([a[1], b[1]]), dtype=_DTYPE))


def selection_samples(tables: Mapping[str, Mapping[str, Any]], config: AnalysisConfig,
                      settings: LearnedCutsSettings | None = None) -> SelectionSamples:
    """Every event of the skims (all folds) per class, on :func:`selection_columns`.

    Args:
        tables: dataset -> shift (``nominal``, ``jes_up/down``, ``jer_up/down``) -> skim table
            or its Parquet path.
        config: the analysis; its ``cuts`` section unless ``settings`` is given.
        settings: the learned-cut settings.

    Raises:
        InputDataError: missing columns or no ``cuts`` settings. EmptySelectionError: a class
            without events.
    """
    settings = settings or config.cuts
    if settings is None:
        raise InputDataError(f"{config.source or config.name}: no 'cuts' section: nothing to learn")
    columns = selection_columns(settings)
    tables = read_tables(tables)
    n_folds = config.training.n_folds
    parts = [training_samples(tables, config, columns, 0, n_folds, "dnn", train=flag)
             for flag in (True, False)]
    (train, train_nuis), (held, held_nuis) = parts
    x = {c: _merge(train[c], held[c])[0] for c in CLASSES}
    w = {c: _merge(train[c], held[c])[1] for c in CLASSES}
    varied: dict[str, dict[str, tuple[_Pair, _Pair]]] = {}
    for a, b in zip(train_nuis, held_nuis, strict=True):
        if a.varied is None or b.varied is None:  # training_samples makes precomputed ones
            raise InputDataError(f"selection_samples: nuisance {a.name!r} is not precomputed")
        varied[a.name] = {c: (_merge(a.varied[c][0], b.varied[c][0]),
                              _merge(a.varied[c][1], b.varied[c][1])) for c in CLASSES}
    return SelectionSamples(columns, x, w, varied, class_normsys(tables, config))
