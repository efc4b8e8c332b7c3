"""TrainModel: a DNN or GNN per seed x fold x model x strategy, on the skims of all datasets."""

from __future__ import annotations

import os
import tempfile

import law

from analysis.io import write_json
from tasks.base import TRAINING_SECTIONS, DiffanaTask
from tasks.cuts import SelectionMixin
from tasks.gpu import GpuWorkflow

__all__ = ["TrainModel"]

# analysis.training (torch) and analysis.plotting (matplotlib) are imported where they are used:
# a law process that imports this module for another task's graph loads them only if it builds
# TrainModel's branch map, and only run() loads the plotting and data-parallel code


class TrainModel(SelectionMixin, DiffanaTask, GpuWorkflow):
    """Train one network per seed index x fold x model x strategy (config ``training:``).

    The held-out fold (``event % n_folds == fold``) is not used for training; Evaluate uses it.
    Seed index ``s`` (``training.seeds`` of them) draws initialisation and batches with
    :func:`~analysis.training.branches.network_seed`; its directory is
    ``<model>_<strategy>_fold<k>`` for ``s = 0`` and ``<model>_<strategy>_seed<s>_fold<k>``
    else. Outputs per branch: the state dict, JSON metadata (parameter counts, features, losses,
    provenance), an ONNX export and the training curves (PNG and PDF). A share of n >= 2 whole
    GPUs (``--gpu-share 2``) trains with DistributedDataParallel on n processes, one per GPU
    (gloo on the CPU where fewer GPUs are visible), to the same model as one process.
    """

    config_dependencies = TRAINING_SECTIONS

    def create_branch_map(self) -> dict[int, tuple[int, int, str, str]]:
        from analysis.training.branches import training_branches

        return dict(enumerate(training_branches(self.analysis_config)))

    def workflow_requires(self) -> dict[str, law.Task]:
        reqs = super().workflow_requires()
        reqs["events"] = self.selection_requires()
        return reqs

    def requires(self) -> law.Task:
        return self.selection_requires()  # every dataset's events, all shifts

    def output(self) -> dict[str, law.LocalFileTarget]:
        from analysis.training.branches import network_directory

        seed_index, fold, model, strategy = self.branch_data
        directory = network_directory(seed_index, fold, model, strategy)
        return {"model": self.target(directory, "model.pt"),
                "metadata": self.target(directory, "model.json"),
                "onnx": self.target(directory, "model.onnx"),
                "curves": self.target(directory, "curves.png")}

    @law.decorator.safe_output
    def run(self) -> None:
        from analysis.plotting.training import plot_training_curves
        from analysis.training.branches import network_seed
        from analysis.training.distributed import train_network_data_parallel
        from analysis.training.network import (
            export_onnx,
            planned_steps,
            save_checkpoint,
            train_network,
        )

        seed_index, fold, model_kind, strategy = self.branch_data
        tables = self.selection_tables(self.input(), fold)  # behind cuts_k, learned without fold k
        steps = planned_steps(self.analysis_config.training, strategy)
        label = f"{model_kind}/{strategy}/seed {seed_index}/fold {fold}"
        if self.data_parallel_size >= 2:
            self.publish_message(f"{label}: data-parallel on {self.data_parallel_size} "
                                 "processes")
            with tempfile.TemporaryDirectory(prefix="diffana-ddp-") as workdir:
                result = train_network_data_parallel(
                    tables, self.analysis_config, fold, model_kind, strategy,
                    world_size=self.data_parallel_size, workdir=workdir, progress_label=label,
                    seed_index=seed_index)
        else:
            result = train_network(tables, self.analysis_config, fold, model_kind, strategy,
                                   progress=self.progress(steps, label, "step"),
                                   seed_index=seed_index)
        outputs = self.output()
        outputs["model"].parent.touch()
        save_checkpoint(outputs["model"].abspath, result.model)
        export_onnx(outputs["onnx"].abspath, result.model, result.n_inputs)
        base = os.path.splitext(outputs["curves"].abspath)[0]
        plot_training_curves(result.stages, f"{model_kind.upper()}, {strategy}, seed "
                             f"{seed_index}, fold {fold}", base,
                             validation=result.validation_losses, best_steps=result.best_steps)
        write_json(outputs["metadata"].abspath, {
            **result.metadata(), "provenance": self.provenance(
                network_seed(self.analysis_config.training.seed, seed_index, fold))})
        self.publish_message(f"{label}: {result.summary()}")
