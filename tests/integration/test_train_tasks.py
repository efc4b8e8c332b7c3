"""TrainModel as a real law task on the tiny config: checkpoints, metadata, ONNX, curves."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import luigi
import onnx
import pytest
import torch
from onnx.reference import ReferenceEvaluator

from analysis.config import load_config, resolve_config_path
from analysis.training.architectures import NODE_FEATURES
from analysis.training.network import load_network
from tasks.train import TrainModel
from tests.conftest import fresh_law_process
from tests.integration.conftest import link_store, unchanged

pytestmark = pytest.mark.slow


WANTED = ((0, 0, "dnn", "inference"), (0, 1, "gnn", "ce"), (0, 0, "dnn", "inference+cuts"))


@pytest.fixture(scope="module")
def trained_store(tiny_skim_store: Path, tmp_path_factory: pytest.TempPathFactory
                  ) -> Iterator[Path]:
    """A store in which three TrainModel branches of the tiny config (:data:`WANTED`) ran, on the
    events and skims of the session's shared store; ``$DIFFANA_STORE`` names it during the
    module's tests. Read it only (the module fails if a test changed it); a test that trains
    again takes a copy (:func:`link_store`)."""
    store = link_store(tiny_skim_store, tmp_path_factory.mktemp("train") / "store")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DIFFANA_STORE", str(store))
        fresh_law_process()
        branch_map = TrainModel(version="t1", config="tth_bb_tiny").get_branch_map()
        assert luigi.build([TrainModel(version="t1", config="tth_bb_tiny", branch=b)
                            for b, data in branch_map.items() if data in WANTED],
                           local_scheduler=True, workers=1, log_level="WARNING")
        fresh_law_process()
        with unchanged(store, "the trained store"):
            yield store


def test_train_model_branches(trained_store: Path) -> None:
    config = load_config("tth_bb_tiny")
    task = TrainModel(version="t1", config="tth_bb_tiny")
    branch_map = task.get_branch_map()
    training = config.training
    n_variants = len(training.models) * len(training.strategies) + len(training.joint_cuts)
    assert len(branch_map) == training.seeds * training.n_folds * n_variants
    wanted = [b for b, data in branch_map.items() if data in WANTED]
    counts = {}
    for b in wanted:
        seed_index, fold, model_kind, strategy = branch_map[b]
        # seed index 0 keeps the directory of a config without seeds
        directory = Path(task.target().abspath) / f"{model_kind}_{strategy}_fold{fold}"
        metadata = json.loads((directory / "model.json").read_text())
        assert metadata["provenance"]["config_sha256"] == config.digest
        assert (metadata["seed_index"], metadata["fold"]) == (seed_index, fold)
        assert list(metadata["losses"]) == (["ce"] if strategy == "ce" else ["ce", strategy])
        # early stopping on a validation slice of the training folds: at most the configured
        # steps, the best one kept (the last one when a tiny slice lacks a class: no early stopping)
        for stage, losses in metadata["losses"].items():
            assert 0 < metadata["best_steps"][stage] <= len(losses)
            # the validation loss of every check is recorded; the kept model is its minimum
            points = metadata["validation_losses"][stage]
            if points:
                steps, values = zip(*points)
                assert list(steps) == sorted(steps) and steps[-1] <= len(losses)
                assert metadata["best_steps"][stage] == steps[values.index(min(values))]
        assert len(metadata["losses"][strategy]) <= (
            training.ce_steps if strategy == "ce" else training.strategy_steps)
        if strategy.endswith("+cuts"):  # cuts learned jointly, recorded for Evaluate
            cuts = metadata["joint_cuts"]
            assert cuts["features"] == [c.feature for c in config.cuts.cuts]
            assert len(cuts["thresholds"]) == len(cuts["features"])
        else:
            assert metadata["joint_cuts"] is None
        state = torch.load(directory / "model.pt", weights_only=True)
        network = load_network(directory / "model.pt", metadata, training.target_parameters)
        # the standardisation buffers (DNN inputs, GNN nodes and edges) are no parameters
        buffers = {name for name, _ in network.named_buffers()}
        assert {"mean", "std"} <= buffers if model_kind == "dnn" else {
            "gnn.node_mean", "gnn.node_std", "gnn.edge_mean", "gnn.edge_std"} <= buffers
        counts[model_kind] = sum(v.numel() for k, v in state.items() if k not in buffers)
        assert counts[model_kind] == metadata["n_parameters"]
        graph = onnx.load(directory / "model.onnx")
        onnx.checker.check_model(graph)
        assert [i.name for i in graph.graph.input] == ["x"]
        # the exported graph computes what the checkpoint computes
        x = torch.randn(5, metadata["n_inputs"], generator=torch.Generator().manual_seed(1))
        if model_kind == "gnn":  # a real graph row: every node present (masks of 1)
            x[:, -(metadata["n_inputs"] // (len(NODE_FEATURES) + 1)):] = 1.0
        (onnx_out,) = ReferenceEvaluator(graph).run(None, {"x": x.numpy()})
        with torch.no_grad():
            torch.testing.assert_close(torch.as_tensor(onnx_out), network(x), rtol=1e-4,
                                       atol=1e-5)
        assert sorted(p.name for p in directory.iterdir()) == [
            "curves.pdf", "curves.png", "model.json", "model.onnx", "model.pt"]
    # DNN and GNN at matched size (arXiv:2402.17386): within 10 % of the config's target
    for n in counts.values():
        assert abs(n - training.target_parameters) < 0.1 * training.target_parameters


@pytest.mark.parametrize("strategy", ["inference", "inference+cuts"])
def test_share_of_two_gpus_trains_data_parallel(trained_store: Path, strategy: str,
                                                tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """``--gpu-share 2`` on a machine with two GPUs' worth of luigi slots: TrainModel trains
    with DistributedDataParallel on two processes (gloo here, no GPU) and ends with the model
    that one process trained, for the inference-aware loss (which does not split per event),
    with and without cuts learned jointly in front of the network."""
    store = link_store(trained_store, tmp_path / "store")  # this test trains the branch again
    monkeypatch.setenv("DIFFANA_STORE", str(store))
    task = TrainModel(version="t1", config="tth_bb_tiny")
    branch = next(b for b, data in task.get_branch_map().items()
                  if data == (0, 0, "dnn", strategy))
    directory = Path(task.target().abspath) / f"dnn_{strategy}_fold0"
    single = torch.load(directory / "model.pt", weights_only=True)
    single_meta = json.loads((directory / "model.json").read_text())
    shutil.rmtree(directory)  # the branch is to do again
    # a machine with two GPUs' worth of slots, for this test only
    monkeypatch.setitem(luigi.configuration.get_config()["resources"], "gpu", "200")
    assert luigi.build([TrainModel(version="t1", config="tth_bb_tiny", branch=branch,
                                   gpu_share="2")],
                       local_scheduler=True, workers=1, log_level="WARNING")
    parallel = torch.load(directory / "model.pt", weights_only=True)
    parallel_meta = json.loads((directory / "model.json").read_text())
    # the size of the process group that trained it, recorded inside the ranks
    assert parallel_meta["data_parallel_processes"] == 2
    assert single_meta["data_parallel_processes"] == 1
    assert parallel_meta["best_steps"] == single_meta["best_steps"]
    for stage, losses in single_meta["losses"].items():
        assert parallel_meta["losses"][stage] == pytest.approx(losses, rel=1e-4, abs=1e-6)
    for name, value in single.items():
        torch.testing.assert_close(parallel[name], value, rtol=1e-3, atol=1e-5)
    if single_meta["joint_cuts"] is not None:
        assert parallel_meta["joint_cuts"]["thresholds"] == pytest.approx(
            single_meta["joint_cuts"]["thresholds"], rel=1e-3, abs=1e-4)


def test_every_seed_gets_fold_workspaces_and_fold_fits(tiny_skim_store: Path,
                                                       tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """``training.seeds: 2``: TrainModel trains each (seed index, fold) network with its own
    seed; Evaluate scores every seed's networks on their held-out folds; CreateHistograms and
    BuildWorkspace write a histogram and a workspace per (seed index, fold), and Fit their
    sigma_mu with those labels, besides seed index 0's full analysis."""
    from tasks.inference import Evaluate, Fit

    text = resolve_config_path("tth_bb_tiny").read_text()
    seeds_line = next(line for line in text.splitlines() if line.startswith("  seeds: "))
    config = tmp_path / "tth_bb_tiny.yaml"  # same analysis name: the shared skims are found
    config.write_text(text.replace(seeds_line, "  seeds: 2"))
    store = link_store(tiny_skim_store, tmp_path / "store")
    monkeypatch.setenv("DIFFANA_STORE", str(store))
    fresh_law_process()
    params = {"version": "t1", "config": str(config), "learned_cuts": False, "model": "dnn",
              "strategy": "ce"}
    assert luigi.build([Fit(branch=0, **params)], local_scheduler=True, workers=1,
                       log_level="WARNING")
    training = TrainModel(version="t1", config=str(config), learned_cuts=False)
    assert len(training.get_branch_map()) == 2 * len(TrainModel(
        version="t1", config="tth_bb_tiny").get_branch_map())
    first = Path(training.target("dnn_ce_fold1", "model.pt").abspath)
    other = Path(training.target("dnn_ce_seed1_fold1", "model.pt").abspath)
    assert json.loads(other.with_name("model.json").read_text())["seed_index"] == 1
    # another seed, another network (the initialisation and the batches differ)
    a, b = (torch.load(p, weights_only=True) for p in (first, other))
    assert any(not torch.equal(a[k], b[k]) for k in a)
    evaluate = Evaluate(**params)
    assert all(Path(t.abspath).exists() for shifts in evaluate.output()["seed_scores"][1].values()
               for t in shifts.values())
    evaluation = json.loads(Path(evaluate.output()["evaluation"].abspath).read_text())
    assert len(evaluation["auc_seeds"]) == 2 and evaluation["auc_seeds"][0] == evaluation["auc"]
    # each fold network's AUC on its own held-out events, per seed index
    assert [len(aucs) for aucs in evaluation["auc_folds"]] == [2, 2]
    assert all(0 <= a <= 1 for aucs in evaluation["auc_folds"] for a in aucs)
    labels = [[0, 0], [0, 1], [1, 0], [1, 1]]
    fit = Fit(branch=0, **params)
    workspaces = json.loads(Path(fit.input()["folds"].abspath).read_text())
    assert workspaces["labels"] == labels and len(workspaces["workspaces"]) == 4
    results = json.loads(Path(fit.output()["results"].abspath).read_text())
    assert results["fold_labels"] == labels
    assert len(results["sigma_mu_folds"]) == len(results["sigma_mu_no_mcstat_folds"]) == 4
    fresh_law_process()
