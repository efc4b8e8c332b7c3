"""TrainModel: a DNN or GNN per fold x model x strategy, on the skims of all datasets."""

from __future__ import annotations

import os
import tempfile

import law

from analysis.io import write_json
from analysis.plotting.training import plot_training_curves
from analysis.training.distributed import train_network_data_parallel
from analysis.training.network import (
    export_onnx,
    network_variants,
    planned_steps,
    save_checkpoint,
    train_network,
)
from tasks.base import TRAINING_SECTIONS, DiffanaTask
from tasks.cuts import SelectionMixin
from tasks.gpu import GpuWorkflow

__all__ = ["TrainModel"]


class TrainModel(SelectionMixin, DiffanaTask, GpuWorkflow):
    """Train one network per fold x model x strategy (config ``training:``).

    The held-out fold (``event % n_folds == fold``) is not used for training; Evaluate uses it.
    Outputs per branch: the state dict, JSON metadata (parameter counts, features, losses,
    provenance), an ONNX export and the training curves (PNG and PDF). A share of n >= 2 whole
    GPUs (``--gpu-share 2``) trains with DistributedDataParallel on n processes, one per GPU
    (gloo on the CPU where fewer GPUs are visible), to the same model as one process.
    """

    config_dependencies = TRAINING_SECTIONS

    def create_branch_map(self) -> dict[int, tuple[int, str, str]]:
        variants = network_variants(self.analysis_config)
        return dict(enumerate((fold, model, strategy)
                              for fold in range(self.analysis_config.training.n_folds)
                              for model, strategy in variants))

    def workflow_requires(self) -> dict[str, law.Task]:
        reqs = super().workflow_requires()
        reqs["events"] = self.selection_requires()
        return reqs

    def requires(self) -> law.Task:
        return self.selection_requires()  # every dataset's events, all shifts

    def output(self) -> dict[str, law.LocalFileTarget]:
        fold, model, strategy = self.branch_data
        directory = f"{model}_{strategy}_fold{fold}"
        return {"model": self.target(directory, "model.pt"),
                "metadata": self.target(directory, "model.json"),
                "onnx": self.target(directory, "model.onnx"),
                "curves": self.target(directory, "curves.png")}

    @law.decorator.safe_output
    def run(self) -> None:
        fold, model_kind, strategy = self.branch_data
        tables = self.selection_tables(self.input(), fold)  # behind cuts_k, learned without fold k
        steps = planned_steps(self.analysis_config.training, strategy)
        if self.data_parallel_size >= 2:
            self.publish_message(f"{model_kind}/{strategy}/fold {fold}: data-parallel on "
                                 f"{self.data_parallel_size} processes")
            with tempfile.TemporaryDirectory(prefix="diffana-ddp-") as workdir:
                result = train_network_data_parallel(
                    tables, self.analysis_config, fold, model_kind, strategy,
                    world_size=self.data_parallel_size, workdir=workdir,
                    progress_label=f"{model_kind}/{strategy}/fold {fold}")
        else:
            result = train_network(tables, self.analysis_config, fold, model_kind, strategy,
                                   progress=self.progress(steps, f"{model_kind}/{strategy}/"
                                                          f"fold {fold}", "step"))
        outputs = self.output()
        outputs["model"].parent.touch()
        save_checkpoint(outputs["model"].abspath, result.model)
        export_onnx(outputs["onnx"].abspath, result.model, result.n_inputs)
        base = os.path.splitext(outputs["curves"].abspath)[0]
        plot_training_curves(result.stages, f"{model_kind.upper()}, {strategy}, fold {fold}", base,
                             validation=result.validation_losses, best_steps=result.best_steps)
        write_json(outputs["metadata"].abspath, {
            **result.metadata(), "provenance": self.provenance(self.analysis_config.training.seed)})
        self.publish_message(f"{model_kind}/{strategy}/fold {fold}: {result.summary()}")
