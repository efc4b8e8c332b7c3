"""Training samples and nuisances of the multi-class classifier from the skim tables.

The analysis's layer between the skim and :mod:`analysis.training.samples` (which is generic):
this module knows the skim's columns, the config's processes, the classes and the folds.
:mod:`analysis.selection.cut_samples` calls :func:`training_samples` so that the learned skim of
fold ``k`` sees exactly the events network ``k`` trains on.

The skim (:mod:`analysis.skim.processor`) writes, per dataset and shift (``nominal``,
``jes_up/down``, ``jer_up/down``), one table of selected events with the truth ``label`` (the
process's position in the config), the ``weight`` and its variations ``weight_<syst>_up/down``,
the event features and the padded ``jet_*``, ``lepton_*`` and ``met_*`` columns.
:func:`training_samples` turns them into the samples of
:func:`~analysis.training.loop.train_classifier`: one per class of the config's ``classes``
(:mod:`analysis.classes`; ttH, tt+bb, tt+other in the shipped configs), events split into folds
by event number, and the JES,
JER, b-tag, ISR and FSR variations as precomputed nuisances. A GNN is trained by the same
function through :class:`GraphAsVector`, which reads the event graph from one flat input row per
event.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import awkward as ak
import numpy as np
import torch

from analysis.classes import class_index_of_labels, class_names
from analysis.config import (
    MODEL_KINDS,
    SHIFT_SYSTEMATICS,
    WEIGHT_SYSTEMATICS,
    AnalysisConfig,
)
from analysis.errors import ConfigError, EmptySelectionError, InputDataError
from analysis.folds import fold_mask
from analysis.training.architectures import EventGNN, graph_inputs
from analysis.training.samples import Nuisance

__all__ = [
    "EVENT_ID_DATASET_STRIDE",
    "MODEL_KINDS",
    "GraphAsVector",
    "graph_vector",
    "model_inputs",
    "training_samples",
]

_Table = Any  # an awkward record array or a mapping column -> array


def _fields(table: _Table) -> set[str]:
    return set(ak.fields(table)) if isinstance(table, ak.Array) else set(table)


def _columns(table: _Table, names: Sequence[str], where: str) -> dict[str, np.ndarray]:
    missing = sorted(set(names) - _fields(table))
    if missing:
        raise InputDataError(f"{where}: missing columns {', '.join(missing)}")
    try:
        return {name: np.asarray(ak.to_numpy(table[name])) for name in names}
    except (ValueError, TypeError) as err:  # jagged where a padded column was expected
        raise InputDataError(f"{where}: columns {list(names)} are not regular arrays: {err}") from err


def graph_vector(columns: Mapping[str, np.ndarray]) -> np.ndarray:
    """``(n_events, n_nodes * len(NODE_FEATURES) + n_nodes)`` float32 rows
    ``concat(nodes.reshape(n, -1), mask)`` of the :func:`~analysis.training.architectures.graph_inputs`
    graph; :class:`GraphAsVector` reads them back.

    Raises:
        InputDataError: naming a missing column or one of the wrong shape.
    """
    nodes, mask = graph_inputs(columns)
    n_events = nodes.shape[0]
    return torch.cat([nodes.reshape(n_events, -1), mask.to(nodes.dtype)], dim=1).numpy()


class GraphAsVector(torch.nn.Module):
    """An :class:`~analysis.training.architectures.EventGNN` fed by :func:`graph_vector` rows.

    ``forward(x)`` with ``x`` ``(n_events, n_nodes * n_node_features + n_nodes)`` returns the GNN
    logits of ``(nodes, mask > 0.5)``, so that
    :func:`~analysis.training.loop.train_classifier` trains a GNN unchanged.

    Args:
        gnn: the wrapped model (no global features); its parameters are this module's.

    Raises:
        ConfigError: if ``gnn`` takes global features.
    """

    def __init__(self, gnn: EventGNN) -> None:
        super().__init__()
        if gnn.n_global_features:
            raise ConfigError(f"GraphAsVector: the GNN takes {gnn.n_global_features} global "
                              f"features; only graph inputs fit in the vector")
        self.gnn = gnn

    def graph(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(nodes, mask)`` of the rows ``x``: ``(n_events, n_nodes, n_node_features)`` and
        ``(n_events, n_nodes)`` bool.

        Raises:
            InputDataError: if the width of ``x`` is not a multiple of ``n_node_features + 1``.
        """
        width = self.gnn.n_node_features + 1
        if x.ndim != 2 or x.shape[1] == 0 or x.shape[1] % width:
            raise InputDataError(f"GraphAsVector: need (n_events, n_nodes * {width}) inputs, "
                                 f"got {tuple(x.shape)}")
        n_nodes = x.shape[1] // width
        # -1, not len(x): the ONNX export keeps the number of events dynamic
        nodes = x[:, :n_nodes * self.gnn.n_node_features].reshape(-1, n_nodes,
                                                                   self.gnn.n_node_features)
        return nodes, x[:, n_nodes * self.gnn.n_node_features:] > 0.5

    def fit_standardisation(self, x: torch.Tensor) -> None:
        """:meth:`~analysis.training.architectures.EventGNN.fit_standardisation` on the graphs of the
        (training) rows ``x`` ``(n_events, n_nodes * (n_node_features + 1))``."""
        self.gnn.fit_standardisation(*self.graph(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(n_events, n_classes)``.

        Raises:
            InputDataError: if the width of ``x`` is not a multiple of ``n_node_features + 1``.
        """
        return self.gnn(*self.graph(x))


def model_inputs(table: _Table, features: Sequence[str], model_kind: str, where: str
                 ) -> np.ndarray:
    """``(n_events, n_inputs)`` float32 network inputs of a skim table.

    ``"dnn"``: the ``features`` columns; ``"gnn"``: the :func:`graph_vector` rows.
    ``where`` names the table in errors (InputDataError for a missing column).
    """
    if model_kind == "gnn":
        names = ("jet_pt", "jet_eta", "jet_phi", "jet_mass", "jet_btag", "jet_mask",
                 "lepton_pt", "lepton_eta", "lepton_phi", "met_pt", "met_phi")
        return graph_vector(_columns(table, names, where))
    columns = _columns(table, features, where)
    if not features:
        return np.zeros((len(table["weight"]), 0), dtype=np.float32)
    return np.stack([columns[name] for name in features], axis=1).astype(np.float32)


def _class_index(labels: np.ndarray, class_of_label: np.ndarray, where: str) -> np.ndarray:
    """``(n_events,)`` output node of each event from its process ``labels``;
    ``class_of_label`` is :func:`~analysis.classes.class_index_of_labels`."""
    labels = np.asarray(labels, dtype=np.int64)
    bad = (labels < 0) | (labels >= len(class_of_label))
    if bad.any():
        raise InputDataError(f"{where}: column label has values {sorted(set(labels[bad]))} "
                             f"outside the {len(class_of_label)} processes of the config")
    return class_of_label[labels]


VALIDATION_SLICES = 5
"""Early stopping uses 1 of this many slices (by ``event // n_folds``) of the training folds."""

EVENT_ID_DATASET_STRIDE = 1 << 40
"""Event identity of a training row: ``dataset number * stride + event``; event numbers of one
dataset stay far below it (generated datasets number their events 1, 2, ...; CMS event numbers
fit 32 bits), so equal event numbers of two datasets are two events."""

PARTS: tuple[str, ...] = ("all", "fit", "validation")
"""Parts of the training folds: all of them, the part optimised on, the validation slice."""


def _part_mask(event: np.ndarray, fold: int, n_folds: int, train: bool, part: str,
               event_slice: tuple[int, int] = (0, 1)) -> tuple[np.ndarray, float]:
    """Events of the requested folds and part, and the fraction of all events they are;
    ``event_slice = (k, n)`` keeps the k-th of n slices of the part (by event number, so the
    replicas and the shifted tables' rows of one event stay in one slice)."""
    held_out = fold_mask(event, fold, n_folds)
    if not train:
        return held_out, 1.0 / n_folds
    keep, fraction = ~held_out, (n_folds - 1) / n_folds
    if part == "all":
        return keep, fraction
    validation = (event // n_folds) % VALIDATION_SLICES == 0
    if part == "validation":
        return keep & validation, fraction / VALIDATION_SLICES
    k, n = event_slice
    in_slice = (event // (n_folds * VALIDATION_SLICES)) % n == k
    return (keep & ~validation & in_slice,
            fraction * (VALIDATION_SLICES - 1) / VALIDATION_SLICES / n)


def _split(tables: Mapping[str, Mapping[str, _Table]], shift: str, weights: Sequence[str],
           config: AnalysisConfig, features: Sequence[str], fold: int, n_folds: int,
           model_kind: str, train: bool, part: str = "all", rescale: bool = False,
           by_process: bool = False, event_slice: tuple[int, int] = (0, 1),
           ) -> tuple[dict[str, np.ndarray], dict[str, dict[str, np.ndarray]],
                      dict[str, np.ndarray]]:
    """Per class (or process): inputs, the named weight columns and the event identities
    (:data:`EVENT_ID_DATASET_STRIDE`) of the selected folds of one shift."""
    class_of_label = class_index_of_labels(config)
    parts: list[tuple[np.ndarray, ...]] = []
    for number, (dataset, shifts) in enumerate(tables.items()):
        if shift not in shifts:
            raise InputDataError(f"dataset {dataset}: no table for shift {shift!r} "
                                 f"(have {sorted(shifts)})")
        where = f"dataset {dataset}, shift {shift}"
        table = shifts[shift]
        ids = _columns(table, ("label", "event", *weights), where)
        keep, fraction = _part_mask(np.asarray(ids["event"]), fold, n_folds, train, part,
                                    event_slice)
        scale = 1.0 / fraction if rescale else 1.0  # a part stands for the full luminosity
        x = model_inputs(table, features, model_kind, where)
        parts.append((_class_index(ids["label"], class_of_label, where)[keep], x[keep],
                      {w: (scale * ids[w][keep]).astype(np.float32) for w in weights},
                      np.asarray(ids["label"], dtype=np.int64)[keep],
                      number * EVENT_ID_DATASET_STRIDE
                      + np.asarray(ids["event"], dtype=np.int64)[keep]))
    if not parts:
        raise InputDataError("training_samples: tables has no datasets")
    index = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[3] for p in parts])
    x_all = np.concatenate([p[1] for p in parts])
    identity = np.concatenate([p[4] for p in parts])
    x, w, events = {}, {}, {}
    classes = class_names(config)
    for k, name in enumerate(classes):
        if not (index == k).any():
            raise EmptySelectionError(f"training_samples: no {name} events in shift {shift}, "
                                      f"{'training' if train else 'held-out'} folds of fold "
                                      f"{fold}/{n_folds}")
    # per class, or per process (a process without events in this part is left out)
    keys = list(config.processes) if by_process else list(classes)
    for k, name in enumerate(keys):
        selected = (labels if by_process else index) == k
        if not selected.any():
            continue
        x[name] = x_all[selected]
        w[name] = {c: np.concatenate([p[2][c] for p in parts])[selected] for c in weights}
        events[name] = identity[selected]
    return x, w, events


def training_samples(tables: Mapping[str, Mapping[str, _Table]], config: AnalysisConfig,
                     features: Sequence[str], fold: int, n_folds: int = 2,
                     model_kind: str = "dnn", train: bool = True, part: str = "all",
                     rescale: bool = False, by_process: bool = False,
                     event_slice: tuple[int, int] = (0, 1), event_ids: bool = False,
                     ) -> tuple[dict[str, tuple[np.ndarray, ...]], list[Nuisance]]:
    """Samples per class of the config's ``classes`` and the systematic nuisances, from the
    skim tables.

    Events of all datasets are pooled and assigned a class by their ``label`` (the process index
    of ``config``, :func:`~analysis.classes.class_of_process`). ``train=True`` keeps the
    training folds (every fold but ``fold``), ``train=False`` the held-out fold ``fold``
    (:func:`~analysis.folds.fold_mask`).

    Args:
        tables: dataset -> shift (each of ``nominal``, ``jes_up/down``, ``jer_up/down``) -> skim
            table (awkward record array or column mapping).
        config: the analysis config (process order, ``classes``).
        features: event-level feature columns of the DNN inputs; unused for ``"gnn"``.
        fold: the held-out fold, ``0 <= fold < n_folds``.
        n_folds: number of folds (event number modulo ``n_folds``).
        model_kind: ``"dnn"``: ``x`` is ``(n, len(features))``; ``"gnn"``: ``x`` is the
            :func:`graph_vector` ``(n, n_nodes * 9)`` for :class:`GraphAsVector`.
        train: training folds (True) or the held-out fold (False).
        part: of the training folds, ``"all"``, ``"fit"`` (what the optimiser sees) or
            ``"validation"`` (1 of :data:`VALIDATION_SLICES` slices by ``event // n_folds``,
            for early stopping); ignored for the held-out fold.
        rescale: multiply the weights by the inverse fraction of all events that the selected
            folds and part hold, so that yields are those of the full luminosity.
        by_process: one sample per process of the config (the statistical model's samples;
            :func:`~analysis.classes.class_of_process` gives each its output node) instead of
            one per class; a process without events in the selected part is left out (of a
            variation too).
        event_slice: ``(k, n)``: of the ``"fit"`` part, only the k-th of n slices by event
            number (``event // (n_folds * VALIDATION_SLICES) % n``), weights rescaled with it;
            the optimiser can step through the slices as mini-batches in which the nominal
            and shifted rows are the same events (``slices`` of
            :func:`~analysis.training.loop.train`).
        event_ids: add each nominal row's event identity as a third entry of its sample:
            ``dataset number * EVENT_ID_DATASET_STRIDE + event`` (int64), shared by the
            detector replicas of one generated event, for the yield-aware losses' MC
            statistical uncertainty.

    Returns:
        ``(samples, nuisances)``: class -> ``(x float32, weight float32)`` (classes in node
        order), or process -> the same (``by_process``), with ``event_ids`` ``(x, weight,
        event identity)``, and the
        :meth:`~analysis.training.samples.Nuisance.precomputed` nuisances ``jes``, ``jer`` (the
        shifted tables, same folds, their ``weight``) and ``btag``, ``isr``, ``fsr`` (nominal x,
        ``weight_<name>_up/down``).

    Raises:
        ConfigError: unknown ``model_kind`` or a bad fold.
        InputDataError: naming the dataset, shift and column that is missing or malformed.
        EmptySelectionError: a class without events in the selected folds of a shift.
    """
    if model_kind not in MODEL_KINDS:
        raise ConfigError(f"training_samples: model_kind = {model_kind!r}: must be one of "
                          f"{MODEL_KINDS}")
    fold_mask(np.zeros(0, dtype=np.int64), fold, n_folds)  # validates fold and n_folds
    variations = [f"weight_{name}_{d}" for name in WEIGHT_SYSTEMATICS for d in ("up", "down")]
    if part not in PARTS:
        raise ConfigError(f"training_samples: part = {part!r}: must be one of {PARTS}")
    k, n = event_slice
    if not (n >= 1 and 0 <= k < n) or (n > 1 and part != "fit"):
        raise ConfigError(f"training_samples: event_slice = {event_slice}: need 0 <= k < n, "
                          f"and n = 1 unless part is 'fit'")
    args = (config, features, fold, n_folds, model_kind, train, part, rescale, by_process,
            event_slice)
    x, w, events = _split(tables, "nominal", ["weight", *variations], *args)
    samples: dict[str, tuple[np.ndarray, ...]] = {
        c: (x[c], w[c]["weight"], events[c]) if event_ids else (x[c], w[c]["weight"])
        for c in x}
    nuisances = []
    for name in SHIFT_SYSTEMATICS:
        up, down = (_split(tables, f"{name}_{d}", ["weight"], *args)[:2]
                    for d in ("up", "down"))
        nuisances.append(Nuisance.precomputed(name, {
            c: ((up[0][c], up[1][c]["weight"]), (down[0][c], down[1][c]["weight"]))
            for c in x if c in up[0] and c in down[0]}))
    for name in WEIGHT_SYSTEMATICS:
        nuisances.append(Nuisance.precomputed(name, {
            c: ((x[c], w[c][f"weight_{name}_up"]), (x[c], w[c][f"weight_{name}_down"]))
            for c in x}))
    return samples, nuisances

