"""TrainModel as a real law task on the tiny config: checkpoints, metadata, ONNX, curves."""

from __future__ import annotations

import json
from pathlib import Path

import luigi
import onnx
import pytest
import torch

from analysis.config import load_config
from tasks.train import TrainModel

pytestmark = pytest.mark.slow


def test_train_model_branches(store: Path) -> None:
    config = load_config("tth_bb_tiny")
    task = TrainModel(version="t1", config="tth_bb_tiny")
    branch_map = task.get_branch_map()
    training = config.training
    n_variants = len(training.models) * len(training.strategies) + len(training.joint_cuts)
    assert len(branch_map) == training.n_folds * n_variants
    wanted = [b for b, data in branch_map.items()
              if data in ((0, "dnn", "inference"), (1, "gnn", "ce"),
                          (0, "dnn", "inference+cuts"))]
    assert luigi.build([TrainModel(version="t1", config="tth_bb_tiny", branch=b) for b in wanted],
                       local_scheduler=True, workers=1, log_level="WARNING")
    counts = {}
    for b in wanted:
        fold, model_kind, strategy = branch_map[b]
        directory = Path(task.target().abspath) / f"{model_kind}_{strategy}_fold{fold}"
        metadata = json.loads((directory / "model.json").read_text())
        assert metadata["provenance"]["config_sha256"] == config.digest
        assert list(metadata["losses"]) == (["ce"] if strategy == "ce" else ["ce", strategy])
        # early stopping on a validation slice of the training folds: at most the configured
        # steps, the best one kept (0 when a tiny slice lacks a class: no early stopping)
        for stage, losses in metadata["losses"].items():
            assert 0 < metadata["best_steps"][stage] <= len(losses)
        assert len(metadata["losses"][strategy]) <= (
            training.ce_steps if strategy == "ce" else training.strategy_steps)
        if strategy.endswith("+cuts"):  # cuts learned jointly, recorded for Evaluate
            cuts = metadata["joint_cuts"]
            assert cuts["features"] == [c.feature for c in config.cuts.cuts]
            assert len(cuts["thresholds"]) == len(cuts["features"])
        else:
            assert metadata["joint_cuts"] is None
        state = torch.load(directory / "model.pt", weights_only=True)
        counts[model_kind] = sum(v.numel() for k, v in state.items()
                                 if k not in ("mean", "std"))  # DNN buffers are no parameters
        assert counts[model_kind] == metadata["n_parameters"]
        graph = onnx.load(directory / "model.onnx")
        onnx.checker.check_model(graph)
        assert [i.name for i in graph.graph.input] == ["x"]
        assert sorted(p.name for p in directory.iterdir()) == [
            "curves.pdf", "curves.png", "model.json", "model.onnx", "model.pt"]
    # DNN and GNN at matched size (arXiv:2402.17386): within 10 % of the config's target
    for n in counts.values():
        assert abs(n - training.target_parameters) < 0.1 * training.target_parameters
