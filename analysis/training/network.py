"""Train the analysis's networks on its skims: model choice, the training stages, checkpoints.

One call trains one network for one fold, model kind and strategy, as the TrainModel task needs:
the DNN on the config's event features or the GNN on the jets + lepton + MET graph, both sized to
``training.target_parameters`` trainable parameters (arXiv:2402.17386), three classes (ttH,
tt+bb, tt+other), first with cross entropy and then, unless the strategy is ``"ce"``, with the
strategy's loss and the skim's systematic variations (:mod:`analysis.training.skim_samples`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import awkward as ak
import numpy as np
import torch

from analysis.config import AnalysisConfig
from analysis.errors import ConfigError
from analysis.training.fit import STRATEGIES, train_classifier
from analysis.training.models import NODE_FEATURES, count_parameters, sized_dnn, sized_gnn
from analysis.training.skim_samples import (
    CLASSES,
    GraphAsVector,
    fold_mask,
    model_inputs,
    training_samples,
)

__all__ = ["TrainingResult", "build_network", "export_onnx", "load_network", "save_checkpoint",
           "score_tables", "train_network"]

SIGNAL_CLASS = CLASSES[0]


@dataclass
class TrainingResult:
    """A trained network and what describes it."""

    model: torch.nn.Module
    model_kind: str
    strategy: str
    fold: int
    n_inputs: int  # width of the input rows
    n_parameters: int  # trainable
    features: tuple[str, ...]
    stages: list[tuple[str, list[float]]] = field(default_factory=list)  # (loss name, losses)
    n_train_events: dict[str, int] = field(default_factory=dict)
    best_steps: dict[str, int] = field(default_factory=dict)  # early stopping, per stage

    def metadata(self) -> dict[str, Any]:
        """JSON-ready description: kind, strategy, fold, sizes, inputs, losses per stage."""
        return {"model": self.model_kind, "strategy": self.strategy, "fold": self.fold,
                "classes": list(CLASSES), "n_inputs": self.n_inputs,
                "n_parameters": self.n_parameters, "features": list(self.features),
                "n_train_events": self.n_train_events, "best_steps": self.best_steps,
                "losses": {name: losses for name, losses in self.stages}}


def _read(tables: Mapping[str, Mapping[str, str | ak.Array]]) -> dict[str, dict[str, ak.Array]]:
    return {dataset: {shift: ak.from_parquet(t) if isinstance(t, (str, os.PathLike)) else t
                      for shift, t in shifts.items()} for dataset, shifts in tables.items()}


def train_network(tables: Mapping[str, Mapping[str, str | ak.Array]], config: AnalysisConfig,
                  fold: int, model_kind: str, strategy: str) -> TrainingResult:
    """Train one network on the training folds of the skims.

    Args:
        tables: dataset -> shift -> skim table or its Parquet path.
        config: the analysis (features, processes, ``training`` settings).
        fold: the held-out fold, not used here.
        model_kind: ``"dnn"`` or ``"gnn"``.
        strategy: one of :data:`~analysis.training.fit.STRATEGIES`.

    Returns:
        The trained network (eval mode, float32, CPU or the tables' device) and its description.

    Raises:
        ConfigError: unknown model kind or strategy. InputDataError: missing skim columns or an
            empty class. FitError: a singular likelihood during inference-aware training.
    """
    settings = config.training
    if strategy not in STRATEGIES:
        raise ConfigError(f"strategy {strategy!r}: must be one of {STRATEGIES}")
    features = tuple(config.features.event)
    read = _read(tables)
    samples, nuisances = training_samples(read, config, features, fold, settings.n_folds,
                                          model_kind, train=True)
    # early stopping looks at the held-out fold (the "validation fold" of the issue)
    validation, validation_nuisances = training_samples(read, config, features, fold,
                                                        settings.n_folds, model_kind, train=False)
    n_inputs = next(iter(samples.values()))[0].shape[1]
    torch.manual_seed(settings.seed + 1000 * fold)  # the same initialisation for every strategy
    model = build_network(model_kind, n_inputs, settings.target_parameters)
    if model_kind == "dnn":
        x_all = np.concatenate([x for x, _ in samples.values()])
        model.set_standardisation(torch.as_tensor(x_all.mean(axis=0)),  # type: ignore[operator]
                                  torch.as_tensor(x_all.std(axis=0) + 1e-6))
    result = TrainingResult(model, model_kind, strategy, fold, n_inputs, count_parameters(model),
                            features if model_kind == "dnn" else NODE_FEATURES,
                            n_train_events={k: len(w) for k, (_, w) in samples.items()})
    generator = torch.Generator().manual_seed(settings.seed)
    stopping = {"patience": settings.patience, "validate_every": settings.validate_every}
    _, history = train_classifier(model, samples, "ce", signal=SIGNAL_CLASS,
                                  steps=settings.ce_steps, lr=settings.learning_rate,
                                  generator=generator, validation=validation,
                                  validation_nuisances=validation_nuisances, **stopping)
    result.stages.append(("ce", history.loss))
    result.best_steps["ce"] = history.best_step
    if strategy != "ce":
        edges = np.linspace(0.0, 1.0, settings.n_bins + 1).tolist()
        _, history = train_classifier(model, samples, strategy, nuisances, signal=SIGNAL_CLASS,
                                      edges=edges, bandwidth=settings.bandwidth,
                                      penalty_weight=settings.penalty_weight,
                                      steps=settings.strategy_steps,
                                      lr=settings.strategy_learning_rate,
                                      generator=generator, validation=validation,
                                      validation_nuisances=validation_nuisances, **stopping)
        result.stages.append((strategy, history.loss))
        result.best_steps[strategy] = history.best_step
    return result


def build_network(model_kind: str, n_inputs: int, target_parameters: int) -> torch.nn.Module:
    """The untrained network of :func:`train_network` (random initialisation).

    Args:
        model_kind: ``"dnn"`` (on ``n_inputs`` event features) or ``"gnn"`` (on
            :func:`~analysis.training.skim_samples.graph_vector` rows of width ``n_inputs``).
        n_inputs: width of the input rows.
        target_parameters: trainable parameters to size it to (arXiv:2402.17386).

    Returns:
        ``(n_events, n_inputs) -> (n_events, len(CLASSES))`` logits, float32.

    Raises:
        ConfigError: unknown ``model_kind``.
    """
    if model_kind == "dnn":
        return sized_dnn(n_inputs, len(CLASSES), target_parameters)
    if model_kind == "gnn":
        return GraphAsVector(sized_gnn(len(NODE_FEATURES), len(CLASSES), target_parameters))
    raise ConfigError(f"model {model_kind!r}: must be 'dnn' or 'gnn'")


def load_network(path: str | os.PathLike[str], metadata: Mapping[str, Any],
                 target_parameters: int) -> torch.nn.Module:
    """A network saved by :func:`save_checkpoint`, rebuilt from its JSON ``metadata``.

    Args:
        path: the state dict file.
        metadata: :meth:`TrainingResult.metadata` (``model``, ``n_inputs``).
        target_parameters: the size it was built for (config ``training.target_parameters``).

    Returns:
        The network in eval mode.
    """
    model = build_network(metadata["model"], int(metadata["n_inputs"]), target_parameters)
    model.load_state_dict(torch.load(path, weights_only=True))
    return model.eval()


def score_tables(model: torch.nn.Module, tables: Mapping[str, Mapping[str, str | ak.Array]],
                 config: AnalysisConfig, fold: int, model_kind: str) -> dict[str, dict[str, Any]]:
    """Class probabilities of the held-out fold ``fold`` of every dataset and shift.

    Args:
        model: a network of :func:`train_network` for ``fold``.
        tables: dataset -> shift -> skim table or Parquet path.
        config: features and ``training.n_folds``.
        fold: the fold the model did not see.
        model_kind: ``"dnn"`` or ``"gnn"``.

    Returns:
        dataset -> shift -> columns: ``event``, ``label``, ``weight`` and its variations (all
        ``weight*`` columns), and ``p_<class>`` per class of :data:`CLASSES` (softmax, in [0, 1]).
    """
    out: dict[str, dict[str, Any]] = {}
    for dataset, shifts in _read(tables).items():
        out[dataset] = {}
        for shift, table in shifts.items():
            keep = fold_mask(np.asarray(table["event"]), fold, config.training.n_folds)
            x = model_inputs(table, config.features.event, model_kind,
                             f"dataset {dataset}, shift {shift}")[keep]
            with torch.no_grad():
                p = torch.softmax(model(torch.as_tensor(x)), dim=1).numpy() if len(x) else (
                    np.zeros((0, len(CLASSES)), dtype=np.float32))
            columns = {name: np.asarray(table[name])[keep] for name in table.fields
                       if name in ("event", "label") or name.startswith("weight")}
            columns.update({f"p_{c}": p[:, k] for k, c in enumerate(CLASSES)})
            out[dataset][shift] = columns
    return out


def save_checkpoint(path: str | os.PathLike[str], model: torch.nn.Module) -> None:
    """Write the state dict atomically (temporary file, then rename)."""
    tmp = f"{os.fspath(path)}.tmp{os.getpid()}"
    torch.save(model.state_dict(), tmp)
    os.replace(tmp, path)


def export_onnx(path: str | os.PathLike[str], model: torch.nn.Module, n_inputs: int) -> None:
    """Export ``model`` (``(n_events, n_inputs) -> logits``) to ONNX, batch size dynamic."""
    tmp = f"{os.fspath(path)}.tmp{os.getpid()}.onnx"
    example = (torch.zeros(2, n_inputs),)
    torch.onnx.export(model.eval(), example, tmp, input_names=["x"], output_names=["logits"],
                      dynamic_shapes=({0: torch.export.Dim("n_events")},), verbose=False,
                      external_data=False)  # one self-contained file
    os.replace(tmp, path)
