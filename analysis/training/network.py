"""Train the analysis's networks on its skims: model choice, the training stages, checkpoints.

One call trains one network for one fold, model kind and strategy, as the TrainModel task needs:
the DNN on the config's event features or the GNN on the jets + lepton + MET graph, both sized to
``training.target_parameters`` trainable parameters (arXiv:2402.17386), one output per class of
the config's ``classes`` (:mod:`analysis.classes`), first with cross entropy and then, unless the
strategy is ``"ce"``, with the strategy's loss and the skim's systematic variations
(:mod:`analysis.training.skim_samples`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import awkward as ak
import numpy as np
import torch

from analysis.classes import class_names, score_column, signal_class
from analysis.config import (
    REFERENCE_STRATEGY,
    AnalysisConfig,
    LearnedCutsSettings,
    Training,
)
from analysis.errors import ConfigError, EmptySelectionError
from analysis.folds import fold_mask
from analysis.inference.model import btag_groups, model_spec
from analysis.io import atomic_path, read_tables
from analysis.relax.cut_config import hard_cut_mask, initial_cuts
from analysis.relax.cuts import LearnableCuts, slope_schedule
from analysis.training.architectures import (
    NODE_FEATURES,
    count_parameters,
    seeded_build,
    sized_dnn,
    sized_gnn,
)
from analysis.training.branches import JOINT_CUTS_SUFFIX, network_seed
from analysis.training.loop import (
    STRATEGIES,
    YIELD_AWARE,
    DataParallel,
    EarlyStopping,
    JointCuts,
    LossSettings,
    Stage,
    train,
)
from analysis.training.skim_samples import (
    GraphAsVector,
    model_inputs,
    training_samples,
)

__all__ = ["TrainingResult", "build_network", "export_onnx", "load_network", "planned_steps",
           "save_checkpoint", "score_tables", "train_network", "training_stages"]

log = logging.getLogger(__name__)


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
    classes: tuple[str, ...] = ()  # the output nodes' classes, in node order
    stages: list[tuple[str, list[float]]] = field(default_factory=list)  # (loss name, losses)
    n_train_events: dict[str, int] = field(default_factory=dict)
    best_steps: dict[str, int] = field(default_factory=dict)  # early stopping, per stage
    # per stage: (step, loss on the validation events) at each early-stopping check
    validation_losses: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    # wall time per stage; not in metadata(): result files stay identical between runs
    seconds: dict[str, float] = field(default_factory=dict)
    joint_cuts: dict[str, list[Any]] | None = None  # cuts learned jointly: features, thresholds
    data_parallel_processes: int = 1  # DDP ranks that trained it (a share of n >= 2 GPUs)
    seed_index: int = 0  # which of training.seeds (network_seed)

    def summary(self) -> str:
        """One line: parameters, the final loss and the wall time of each stage.

        Example:
            >>> r = TrainingResult(torch.nn.Linear(1, 1), "dnn", "ce", 0, 1, 2, ("ht",),
            ...                    stages=[("ce", [0.9, 0.5])], seconds={"ce": 3.2})
            >>> r.summary()
            '2 parameters, final loss 0.5 (ce 3 s)'
        """
        seconds = ", ".join(f"{k} {v:.0f} s" for k, v in self.seconds.items())
        return (f"{self.n_parameters} parameters, final loss {self.stages[-1][1][-1]:.4g} "
                f"({seconds})")

    def metadata(self) -> dict[str, Any]:
        """JSON-ready description: kind, strategy, fold, seed index, sizes, inputs, losses per
        stage."""
        return {"model": self.model_kind, "strategy": self.strategy, "fold": self.fold,
                "seed_index": self.seed_index,
                "classes": list(self.classes), "n_inputs": self.n_inputs,
                "n_parameters": self.n_parameters, "features": list(self.features),
                "n_train_events": self.n_train_events, "best_steps": self.best_steps,
                "losses": {name: losses for name, losses in self.stages},
                "validation_losses": {name: [list(point) for point in points]
                                      for name, points in self.validation_losses.items()},
                "joint_cuts": self.joint_cuts,
                "data_parallel_processes": self.data_parallel_processes}


class _ScaledCuts(torch.nn.Module):
    """Learnable cuts whose parameter is the offset from the start in units of each feature's
    interquartile range, so one learning rate moves GeV and jet-count thresholds alike."""

    def __init__(self, cuts: LearnableCuts) -> None:
        super().__init__()
        self.cuts = cuts
        cuts.thresholds.requires_grad_(False)
        self.offset = torch.nn.Parameter(torch.zeros_like(cuts.thresholds))

    @property
    def slope(self) -> float:
        return self.cuts.slope

    @slope.setter
    def slope(self, value: float) -> None:
        self.cuts.slope = value

    def thresholds(self) -> torch.Tensor:
        return self.cuts.thresholds + self.offset * self.cuts.scales

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cuts.weights_at(x, self.thresholds())


def _joint_cuts(settings: LearnedCutsSettings,
                samples: Mapping[str, tuple[np.ndarray, ...]],
                features: Sequence[str]) -> _ScaledCuts:
    """The config's cuts as learnable cuts on the DNN inputs, started at the loose quantile."""
    x_all = torch.as_tensor(np.concatenate([sample[0] for sample in samples.values()]))
    w_all = torch.as_tensor(np.concatenate([sample[1] for sample in samples.values()]))
    return _ScaledCuts(initial_cuts(settings, features, x_all, w_all))


def training_stages(training: Training, strategy: str,
                    joint_cuts: JointCuts | None = None) -> list[Stage]:
    """The stages of a pipeline network: a CE warm-up, then the strategy's loss.

    Args:
        training: the config's ``training`` section (steps and learning rates).
        strategy: one of :data:`~analysis.training.loop.STRATEGIES`; ``"ce"`` is the warm-up
            alone.
        joint_cuts: cuts trained with the network in the second stage, named
            ``"<strategy>+cuts"``.

    Returns:
        ``[Stage("ce", ce_steps, learning_rate)]`` and, unless ``strategy`` is ``"ce"``,
        ``Stage(strategy, strategy_steps, strategy_learning_rate)``.

    Example:
        >>> from analysis.config import Training
        >>> [(s.label, s.steps) for s in training_stages(Training(), "inference")]
        [('ce', 200), ('inference', 100)]
    """
    stages = [Stage(REFERENCE_STRATEGY, training.ce_steps, training.learning_rate)]
    if strategy != REFERENCE_STRATEGY:
        name = f"{strategy}{JOINT_CUTS_SUFFIX}" if joint_cuts is not None else strategy
        stages.append(Stage(strategy, training.strategy_steps, training.strategy_learning_rate,
                            joint_cuts=joint_cuts, name=name))
    return stages


def planned_steps(training: Training, strategy: str) -> int:
    """Optimiser steps of :func:`train_network` without early stopping (a progress total).

    Args:
        training: the config's ``training`` section.
        strategy: as for :func:`train_network` (``"<strategy>+cuts"`` included).

    Example:
        >>> from analysis.config import Training
        >>> planned_steps(Training(), "ce"), planned_steps(Training(), "inference+cuts")
        (200, 300)
    """
    loss = strategy.removesuffix(JOINT_CUTS_SUFFIX)
    return sum(stage.steps for stage in training_stages(training, loss))


def train_network(tables: Mapping[str, Mapping[str, str | ak.Array]], config: AnalysisConfig,
                  fold: int, model_kind: str, strategy: str,
                  device: str | torch.device | None = None,
                  progress: Callable[[int], None] | None = None,
                  data_parallel: DataParallel | None = None, seed_index: int = 0
                  ) -> TrainingResult:
    """Train one network on the training folds of the skims.

    The penalty sees the skim's variations (JES, JER, b-tag, ISR, FSR) of the signal score; the
    yield-aware strategies see the statistical model that BuildWorkspace writes
    (:func:`~analysis.inference.model.model_spec`: its categories, soft, its processes as
    samples, free normalisations, normsys and shapes, MC statistics). The stages are
    :func:`training_stages`; early stopping watches a fifth of the training folds.

    Args:
        tables: dataset -> shift -> skim table or its Parquet path.
        config: the analysis (features, processes, ``training`` settings, ``cuts`` for joint
            cuts).
        fold: the held-out fold, not used here.
        model_kind: ``"dnn"`` or ``"gnn"``.
        strategy: one of :data:`~analysis.training.loop.STRATEGIES`, or
            ``"<strategy>+cuts"`` for cuts trained jointly (:data:`JOINT_CUTS_SUFFIX`).
        device: where to train; default CUDA if available, else the CPU (the same code).
        progress: called with the number of optimiser steps done (of ``ce_steps`` plus
            ``strategy_steps`` unless the strategy is ``"ce"``).
        data_parallel: the :class:`~analysis.training.loop.DataParallel` hook when this process
            is one rank of a data-parallel group; the returned model is the network itself.
        seed_index: which of ``training.seeds``: the initialisation and the batches are drawn
            with :func:`network_seed`.

    Returns:
        The trained network (eval mode, float32, on the CPU) and its description.

    Raises:
        ConfigError: unknown model kind or strategy, or joint cuts without a ``cuts:`` section.
        InputDataError: missing skim columns or an empty class. FitError: a singular likelihood
        during inference-aware training.
    """
    settings = config.training
    joint = strategy.endswith(JOINT_CUTS_SUFFIX)
    loss = strategy.removesuffix(JOINT_CUTS_SUFFIX)
    where = f"{config.source or config.name}: training"
    if loss not in STRATEGIES:
        raise ConfigError(f"{where}: strategy {loss!r}: must be one of {STRATEGIES}")
    if joint and (model_kind != "dnn" or loss not in YIELD_AWARE or config.cuts is None):
        raise ConfigError(f"{where}.joint_cuts: only the DNN with {YIELD_AWARE} and a 'cuts:' "
                          f"section, not {model_kind}/{loss}")
    features = tuple(config.features.event)
    read = read_tables(tables)
    # the optimiser sees 4/5 of the training folds; early stopping looks at the other 1/5, so
    # the held-out fold stays unseen until Evaluate; weights scaled to the full luminosity
    # the yield-aware losses are the statistical model's: one sample per process, with the
    # event identities that correlate detector replicas in its MC statistical uncertainty
    by_process = loss in YIELD_AWARE
    samples, nuisances = training_samples(read, config, features, fold, settings.n_folds,
                                          model_kind, train=True, part="fit", rescale=True,
                                          by_process=by_process, event_ids=by_process)
    try:
        validation, validation_nuisances = training_samples(
            read, config, features, fold, settings.n_folds, model_kind, train=True,
            part="validation", rescale=True, by_process=by_process, event_ids=by_process)
        stopping: EarlyStopping | None = EarlyStopping(
            validation, validation_nuisances, settings.patience, settings.validate_every)
    except EmptySelectionError as err:  # tiny samples: a class missing from the slice
        log.warning("train_network: no early stopping (%s)", err)
        stopping = None
    slices = None
    if settings.event_slices > 1:  # mini-batches of whole events (training.event_slices)
        try:
            slices = [training_samples(read, config, features, fold, settings.n_folds,
                                       model_kind, train=True, part="fit", rescale=True,
                                       by_process=by_process, event_ids=by_process,
                                       event_slice=(k, settings.event_slices))
                      for k in range(settings.event_slices)]
        except EmptySelectionError as err:
            raise ConfigError(f"{where}.event_slices = {settings.event_slices}: a slice of the "
                              f"training events has no events of a class ({err}); use fewer "
                              f"slices") from err
    n_inputs = next(iter(samples.values()))[0].shape[1]
    # the same initialisation for every strategy of a (seed index, fold)
    classes = class_names(config)
    model = build_network(model_kind, n_inputs, settings.target_parameters, torch.Generator(
        ).manual_seed(network_seed(settings.seed, seed_index, fold)), n_classes=len(classes))
    # inputs standardised with the numbers of the events the optimiser sees; they are buffers,
    # so the checkpoint carries them to Evaluate
    x_all = np.concatenate([sample[0] for sample in samples.values()])
    if model_kind == "dnn":
        model.set_standardisation(torch.as_tensor(x_all.mean(axis=0)),  # type: ignore[operator]
                                  torch.as_tensor(x_all.std(axis=0) + 1e-6))
    else:
        model.fit_standardisation(torch.as_tensor(x_all))  # type: ignore[operator]
    device = torch.device(device if device is not None else
                          "cuda" if torch.cuda.is_available() else "cpu")
    model = model.to(device)
    cuts, cut_settings = None, config.cuts if joint else None
    if cut_settings is not None:
        cuts = JointCuts(_joint_cuts(cut_settings, samples, features).to(device),
                         slope_schedule(cut_settings.slope_start, cut_settings.slope_end,
                                        settings.strategy_steps).tolist(),
                         cut_settings.learning_rate)
    stages = training_stages(settings, loss, cuts)
    histories = train(model, samples, stages, nuisances,
                      loss=_loss_settings(config, model_kind, by_process),
                      generator=torch.Generator().manual_seed(network_seed(settings.seed,
                                                                           seed_index)),
                      early_stopping=stopping, data_parallel=data_parallel, progress=progress,
                      slices=slices)
    result = TrainingResult(model.cpu(), model_kind, stages[-1].label, fold, n_inputs,
                            count_parameters(model),
                            features if model_kind == "dnn" else NODE_FEATURES, classes,
                            n_train_events={k: len(sample[1]) for k, sample in samples.items()},
                            seed_index=seed_index)
    for history in histories:
        result.stages.append((history.strategy, history.loss))
        result.best_steps[history.strategy] = history.best_step
        result.validation_losses[history.strategy] = history.validation_loss
        result.seconds[history.strategy] = history.seconds
    if cuts is not None:
        scaled = cuts.module
        result.joint_cuts = {"features": list(scaled.cuts.feature_names),
                             "directions": list(scaled.cuts.directions),
                             "thresholds": scaled.thresholds().detach().cpu().tolist()}
    return result


def _loss_settings(config: AnalysisConfig, model_kind: str, by_process: bool) -> LossSettings:
    """Per class: the signal score's binning (CE, penalty); per process: the statistical model
    of BuildWorkspace (:func:`~analysis.inference.model.model_spec`), its soft categories and
    b-tag groups."""
    settings = config.training
    edges = np.linspace(0.0, 1.0, settings.n_bins + 1).tolist()
    if not by_process:
        return LossSettings(signal_class(config), edges, settings.bandwidth,
                            settings.penalty_weight,
                            staterror=True)
    spec = model_spec(config)
    classes = {p: spec.classes.index(c) for p, c in spec.process_class.items()}
    # the statistical model bins with inference.n_bins: the bandwidth must fit those bins too
    # (the config check knows only training.n_bins)
    bin_width = float(np.diff(spec.edges()).min())
    if settings.bandwidth is not None and settings.bandwidth > bin_width:
        raise ConfigError(f"{config.source or config.name}: training.bandwidth = "
                          f"{settings.bandwidth:g}: wider than a bin of the statistical model's "
                          f"channels ({bin_width:g}, inference.n_bins = {spec.n_bins}), which "
                          f"the yield-aware losses histogram; omit it for 0.2 of the bin width")
    return LossSettings(spec.signal, spec.edges().tolist(), settings.bandwidth,
                        settings.penalty_weight,
                        staterror=True, model=spec, classes=classes,
                        btag_group=_btag_group(config, model_kind) if spec.btag_split else None)


def _btag_group(config: AnalysisConfig, model_kind: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """Inputs -> b-tag group of each event (``inference.categories.btag_split``): the DNN's
    ``n_btag`` input, or the GNN's jet nodes above the medium working point."""
    split = config.inference.categories.btag_split if config.inference.categories else ()
    if model_kind == "gnn":
        n_node = len(NODE_FEATURES)
        btag, is_jet = NODE_FEATURES.index("btag"), NODE_FEATURES.index("is_jet")
        threshold = config.objects.jets.btag_medium

        def from_graph(x: torch.Tensor) -> torch.Tensor:
            n_nodes = x.shape[1] // (n_node + 1)
            nodes = x[:, :n_nodes * n_node].reshape(-1, n_nodes, n_node)
            jets = (nodes[..., is_jet] > 0.5) & (nodes[..., btag] > threshold)
            return btag_groups(jets.sum(dim=1), split)

        return from_graph
    features = list(config.features.event)
    if "n_btag" not in features:
        raise ConfigError(f"{config.source or config.name}: inference.categories.btag_split: "
                          f"the DNN needs n_btag among features.event to split its categories")
    column = features.index("n_btag")
    return lambda x: btag_groups(x[:, column], split)


def build_network(model_kind: str, n_inputs: int, target_parameters: int,
                  generator: torch.Generator | None = None, *, n_classes: int
                  ) -> torch.nn.Module:
    """The untrained network of :func:`train_network` (random initialisation).

    Args:
        model_kind: ``"dnn"`` (on ``n_inputs`` event features) or ``"gnn"`` (on
            :func:`~analysis.training.skim_samples.graph_vector` rows of width ``n_inputs``).
        n_inputs: width of the input rows.
        target_parameters: trainable parameters to size it to (arXiv:2402.17386).
        generator: seeds the initialisation (:func:`~analysis.training.architectures.seeded_build`);
            None: seed 0. The caller's global random state is left as it was.
        n_classes: output nodes, one per class (``len(analysis.classes.class_names(config))``).

    Returns:
        ``(n_events, n_inputs) -> (n_events, n_classes)`` logits, float32.

    Raises:
        ConfigError: unknown ``model_kind``.
    """
    seeds = generator if generator is not None else torch.Generator().manual_seed(0)
    if model_kind == "dnn":
        return seeded_build(lambda: sized_dnn(n_inputs, n_classes, target_parameters), seeds)
    if model_kind == "gnn":
        return seeded_build(lambda: GraphAsVector(sized_gnn(len(NODE_FEATURES), n_classes,
                                                            target_parameters)), seeds)
    raise ConfigError(f"model {model_kind!r}: must be 'dnn' or 'gnn'")


def load_network(path: str | os.PathLike[str], metadata: Mapping[str, Any],
                 target_parameters: int) -> torch.nn.Module:
    """A network saved by :func:`save_checkpoint`, rebuilt from its JSON ``metadata``.

    Args:
        path: the state dict file.
        metadata: :meth:`TrainingResult.metadata` (``model``, ``n_inputs``, ``classes``: one
            output node each).
        target_parameters: the size it was built for (config ``training.target_parameters``).

    Returns:
        The network in eval mode.
    """
    model = build_network(metadata["model"], int(metadata["n_inputs"]), target_parameters,
                          n_classes=len(metadata["classes"]))
    model.load_state_dict(torch.load(path, weights_only=True))
    return model.eval()


def score_tables(model: torch.nn.Module, tables: Mapping[str, Mapping[str, str | ak.Array]],
                 config: AnalysisConfig, fold: int, model_kind: str,
                 joint_cuts: Mapping[str, Sequence[Any]] | None = None,
                 ) -> dict[str, dict[str, Any]]:
    """Class probabilities of the held-out fold ``fold`` of every dataset and shift.

    With ``joint_cuts`` (``features``, ``directions``, ``thresholds`` of cuts trained with the
    network), only events passing them hard are kept.

    Args:
        model: a network of :func:`train_network` for ``fold``.
        tables: dataset -> shift -> skim table or Parquet path.
        config: features, ``training.n_folds`` and ``classes`` (the model's output nodes, in
            order).
        fold: the fold the model did not see.
        model_kind: ``"dnn"`` or ``"gnn"``.

    Returns:
        dataset -> shift -> columns: ``event``, ``label``, ``n_btag`` (if a feature; for the
        b-tag categories), ``weight`` and its variations (all ``weight*`` columns), and
        ``p_<class>`` per class of the config's ``classes`` (softmax, in [0, 1];
        :func:`~analysis.classes.score_column`).
    """
    classes = class_names(config)
    out: dict[str, dict[str, Any]] = {}
    for dataset, shifts in read_tables(tables).items():
        out[dataset] = {}
        for shift, table in shifts.items():
            keep = fold_mask(np.asarray(table["event"]), fold, config.training.n_folds)
            if joint_cuts is not None:
                keep &= hard_cut_mask({f: table[f] for f in joint_cuts["features"]},
                                      joint_cuts["features"], joint_cuts["directions"],
                                      joint_cuts["thresholds"])
            x = model_inputs(table, config.features.event, model_kind,
                             f"dataset {dataset}, shift {shift}")[keep]
            with torch.no_grad():
                p = torch.softmax(model(torch.as_tensor(x)), dim=1).numpy() if len(x) else (
                    np.zeros((0, len(classes)), dtype=np.float32))
            columns = {name: np.asarray(table[name])[keep] for name in table.fields
                       if name in ("event", "label", "n_btag") or name.startswith("weight")}
            if p.shape[1] != len(classes):
                raise ConfigError(f"{config.source or config.name}: classes: {len(classes)} "
                                  f"classes, but the network has {p.shape[1]} outputs (trained "
                                  f"with other classes?)")
            columns.update({score_column(c): p[:, k] for k, c in enumerate(classes)})
            out[dataset][shift] = columns
    return out


def save_checkpoint(path: str | os.PathLike[str], model: torch.nn.Module) -> None:
    """Write the state dict atomically (temporary file, then rename)."""
    with atomic_path(path) as tmp:
        torch.save(model.state_dict(), tmp)


def export_onnx(path: str | os.PathLike[str], model: torch.nn.Module, n_inputs: int) -> None:
    """Export ``model`` to one self-contained ONNX file, atomically.

    Args:
        path: destination ``.onnx`` file.
        model: ``(n_events, n_inputs)`` float32 inputs -> ``(n_events, n_classes)`` logits;
            exported in eval mode with a dynamic batch dimension (input ``x``, output
            ``logits``).
        n_inputs: width of the input rows.
    """
    example = (torch.zeros(2, n_inputs),)
    with atomic_path(path) as tmp:
        torch.onnx.export(model.eval(), example, str(tmp), input_names=["x"],
                          output_names=["logits"], verbose=False, external_data=False,
                          dynamic_shapes=({0: torch.export.Dim("n_events")},))  # one file
