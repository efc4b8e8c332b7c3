"""The pipeline's networks: stages from the config, seeded builds, one training, joint cuts."""

from __future__ import annotations

import dataclasses

import awkward as ak
import numpy as np
import pytest
import torch
import yaml
from test_skim_samples import DATASETS, SHIFTS, _table

from analysis.classes import class_names, score_column, signal_class, signal_labels
from analysis.config import AnalysisConfig, Training, load_config, resolve_config_path
from analysis.errors import ConfigError
from analysis.folds import fold_mask
from analysis.inference.model import model_spec
from analysis.inference.scores import signal_auc
from analysis.relax.cut_config import hard_cut_mask
from analysis.training import loop as loop_module
from analysis.training.branches import (
    FOLD_SEED_STRIDE,
    SEED_INDEX_STRIDE,
    network_directory,
    network_seed,
    network_variants,
    training_branches,
)
from analysis.training.network import (
    build_network,
    load_network,
    save_checkpoint,
    score_tables,
    train_network,
    training_stages,
)
from analysis.training.skim_samples import (
    EVENT_ID_DATASET_STRIDE,
    GraphAsVector,
    training_samples,
)

N_EVENTS = 60
CE_STEPS, STRATEGY_STEPS = 4, 3


@pytest.fixture(scope="module")
def config(tiny_config: AnalysisConfig) -> AnalysisConfig:
    training = dataclasses.replace(tiny_config.training, ce_steps=CE_STEPS,
                                   strategy_steps=STRATEGY_STEPS, validate_every=2, patience=2,
                                   target_parameters=300)
    return dataclasses.replace(tiny_config, training=training)


@pytest.fixture(scope="module")
def tables(config: AnalysisConfig) -> dict[str, dict[str, ak.Array]]:
    """3 datasets x 5 shifts with every event feature of the config (signal shifted up)."""
    rng = np.random.default_rng(11)
    out = {}
    for d, (dataset, processes) in enumerate(DATASETS.items()):
        labels = np.array([config.label_of(processes[(i // 2) % len(processes)])
                           for i in range(N_EVENTS)], dtype=np.int64)
        out[dataset] = {}
        for shift in SHIFTS:
            columns = _table(rng, labels, 1000 * d, shift)
            for feature in config.features.event:
                columns.setdefault(feature, rng.uniform(0, 5, N_EVENTS) + 0.7 * (labels == 0))
            out[dataset][shift] = ak.Array(columns)
    return out


def test_stages_are_a_ce_warm_up_then_the_strategy() -> None:
    training = Training(ce_steps=7, strategy_steps=5, learning_rate=0.1,
                        strategy_learning_rate=0.01)
    (ce,) = training_stages(training, "ce")
    assert (ce.loss, ce.steps, ce.learning_rate, ce.joint_cuts) == ("ce", 7, 0.1, None)
    warm, second = training_stages(training, "significance")
    assert warm == ce
    assert (second.label, second.steps, second.learning_rate) == ("significance", 5, 0.01)


def test_variants_add_the_joint_cuts_to_the_dnn(config: AnalysisConfig) -> None:
    training = dataclasses.replace(config.training, models=("dnn", "gnn"),
                                   strategies=("ce", "inference"), joint_cuts=("inference",))
    variants = network_variants(dataclasses.replace(config, training=training))
    assert variants == [("dnn", "ce"), ("dnn", "inference"), ("gnn", "ce"), ("gnn", "inference"),
                        ("dnn", "inference+cuts")]


def test_branches_are_seed_index_fold_model_strategy(config: AnalysisConfig) -> None:
    training = dataclasses.replace(config.training, models=("dnn", "gnn"), strategies=("ce",),
                                   joint_cuts=(), n_folds=3, seeds=2)
    branches = training_branches(dataclasses.replace(config, training=training))
    assert len(branches) == 2 * 3 * 2 == len(set(branches))
    # seed index first: seed 0's branches are those of a config without seeds
    assert branches[:6] == [(0, f, m, "ce") for f in range(3) for m in ("dnn", "gnn")]
    assert branches[6] == (1, 0, "dnn", "ce") and branches[-1] == (1, 2, "gnn", "ce")
    one = dataclasses.replace(training, seeds=1)
    assert training_branches(dataclasses.replace(config, training=one)) == branches[:6]
    # seed index 0 keeps the directory it had before seeds; the others name their seed
    assert network_directory(0, 2, "gnn", "inference+cuts") == "gnn_inference+cuts_fold2"
    assert network_directory(1, 0, "dnn", "ce") == "dnn_ce_seed1_fold0"
    assert len({network_directory(*b) for b in branches}) == len(branches)


def test_network_seeds_are_distinct_and_seed_index_zero_is_the_config_seed() -> None:
    assert network_seed(7, 0) == 7 and network_seed(7, 0, fold=1) == 7 + FOLD_SEED_STRIDE
    assert network_seed(7, 3, fold=2) == 7 + 3 * SEED_INDEX_STRIDE + 2 * FOLD_SEED_STRIDE
    seeds = {network_seed(1, s, f) for s in range(5) for f in range(10)}
    batches = {network_seed(1, s) for s in range(5)}
    assert len(seeds) == 50 and len(batches) == 5
    with pytest.raises(ConfigError, match="seed index -1"):
        network_seed(1, -1)


def test_build_is_seeded_by_its_generator_and_leaves_the_global_one() -> None:
    state = torch.get_rng_state()
    a = build_network("dnn", 5, 300, torch.Generator().manual_seed(4), n_classes=3)
    b = build_network("dnn", 5, 300, torch.Generator().manual_seed(4), n_classes=3)
    c = build_network("dnn", 5, 300, torch.Generator().manual_seed(5), n_classes=3)
    assert torch.equal(torch.get_rng_state(), state)
    for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True):
        assert torch.equal(x, y)
    assert not torch.equal(next(a.parameters()), next(c.parameters()))
    gnn = build_network("gnn", 10, 300, n_classes=3)
    assert 200 < sum(p.numel() for p in gnn.parameters()) < 400
    with pytest.raises(ConfigError, match="model 'bdt'"):
        build_network("bdt", 5, 300, n_classes=3)


def test_one_training_is_reproducible_and_records_each_stage_once(
        tables: dict, config: AnalysisConfig) -> None:
    state = torch.get_rng_state()
    done: list[int] = []
    result = train_network(tables, config, 0, "dnn", "inference", device="cpu",
                           progress=done.append)
    assert torch.equal(torch.get_rng_state(), state)  # no global seeding
    assert [name for name, _ in result.stages] == ["ce", "inference"]
    assert done[-1] <= CE_STEPS + STRATEGY_STEPS and done == sorted(done)
    assert CE_STEPS + 1 in done  # the second stage counts on from the first's planned steps
    metadata = result.metadata()
    assert set(metadata["losses"]) == set(metadata["best_steps"]) == {"ce", "inference"}
    assert metadata["joint_cuts"] is None and metadata["strategy"] == "inference"
    again = train_network(tables, config, 0, "dnn", "inference", device="cpu")
    assert again.stages == result.stages
    for x, y in zip(result.model.state_dict().values(), again.model.state_dict().values(),
                    strict=True):
        assert torch.equal(x, y)
    assert metadata["seed_index"] == 0


def test_seed_index_trains_another_network_reproducibly(tables: dict,
                                                        config: AnalysisConfig) -> None:
    def weights(seed_index: int) -> torch.Tensor:
        result = train_network(tables, config, 0, "dnn", "ce", device="cpu",
                               seed_index=seed_index)
        assert result.metadata()["seed_index"] == seed_index
        return next(result.model.parameters()).detach()

    first, second = weights(1), weights(1)
    assert torch.equal(first, second)
    assert not torch.equal(first, weights(0))


def test_joint_cuts_are_learned_and_applied_hard(tables: dict, config: AnalysisConfig) -> None:
    result = train_network(tables, config, 1, "dnn", "inference+cuts", device="cpu")
    assert [name for name, _ in result.stages] == ["ce", "inference+cuts"]
    cuts = result.joint_cuts
    assert cuts is not None and cuts["features"] == [c.feature for c in config.cuts.cuts]
    scores = score_tables(result.model, tables, config, 1, "dnn", joint_cuts=cuts)
    table = tables["tth"]["nominal"]
    keep = fold_mask(np.asarray(table["event"]), 1, config.training.n_folds)
    keep &= hard_cut_mask({f: table[f] for f in cuts["features"]}, cuts["features"],
                          cuts["directions"], cuts["thresholds"])
    assert np.array_equal(scores["tth"]["nominal"]["event"], np.asarray(table["event"])[keep])
    p = np.stack([scores["tth"]["nominal"][f"p_{c}"] for c in class_names(config)], 1)
    assert np.allclose(p.sum(axis=1), 1.0, atol=1e-5)


def test_joint_cuts_never_see_the_held_out_fold(tables: dict, config: AnalysisConfig) -> None:
    """Cuts trained with network k start and learn on its training folds only: rewriting every
    event of fold k (features and weights) leaves the cuts and the network the same."""
    fold, n_folds = 1, config.training.n_folds

    def altered(rewritten: int) -> dict[str, dict[str, ak.Array]]:
        out: dict[str, dict[str, ak.Array]] = {}
        for dataset, shifts in tables.items():
            out[dataset] = {}
            for shift, table in shifts.items():
                rows = fold_mask(np.asarray(table["event"]), rewritten, n_folds)
                columns = {name: np.asarray(table[name]).copy() for name in table.fields}
                for name, values in columns.items():
                    if name not in ("event", "label") and values.dtype.kind == "f":
                        values[rows] = values[rows] * 3.0 + 1.0
                out[dataset][shift] = ak.Array(columns)
        return out

    result = train_network(tables, config, fold, "dnn", "inference+cuts", device="cpu")
    again = train_network(altered(fold), config, fold, "dnn", "inference+cuts", device="cpu")
    assert again.joint_cuts == result.joint_cuts
    for x, y in zip(result.model.state_dict().values(), again.model.state_dict().values(),
                    strict=True):
        assert torch.equal(x, y)
    # the control: rewriting the training fold moves the cuts
    other = train_network(altered((fold + 1) % n_folds), config, fold, "dnn", "inference+cuts",
                          device="cpu")
    assert other.joint_cuts != result.joint_cuts


@pytest.mark.parametrize(("model", "strategy", "message"), [
    ("gnn", "inference+cuts", "training.joint_cuts: only the DNN"),
    ("dnn", "ce+cuts", "training.joint_cuts: only the DNN"),
    ("dnn", "mse", "training: strategy 'mse'"),
])
def test_errors_name_the_config_key(tables: dict, config: AnalysisConfig, model: str,
                                    strategy: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        train_network(tables, config, 0, model, strategy, device="cpu")
    assert config.source in str(info.value)


def test_gnn_standardisation_is_the_fit_sample_and_survives_save_and_load(
        tables: dict, config: AnalysisConfig, tmp_path) -> None:
    result = train_network(tables, config, 0, "gnn", "ce", device="cpu")
    model = result.model
    assert isinstance(model, GraphAsVector)
    # the numbers of the events the optimiser saw (training folds, fit part)
    fit, _ = training_samples(tables, config, config.features.event, 0, config.training.n_folds,
                              "gnn", train=True, part="fit")
    nodes, mask = model.graph(torch.as_tensor(np.concatenate([x for x, _ in fit.values()])))
    real = nodes[mask].double()
    torch.testing.assert_close(model.gnn.node_mean.double(), real.mean(dim=0))
    torch.testing.assert_close(model.gnn.node_std.double(), real.std(dim=0))
    assert torch.all(model.gnn.edge_std != 1.0)
    save_checkpoint(tmp_path / "model.pt", model)
    loaded = load_network(tmp_path / "model.pt", result.metadata(),
                          config.training.target_parameters)
    torch.testing.assert_close(loaded.gnn.node_mean, model.gnn.node_mean, rtol=0, atol=0)
    before = score_tables(model, tables, config, 0, "gnn")
    after = score_tables(loaded, tables, config, 0, "gnn")
    for dataset, shifts in before.items():
        for shift, columns in shifts.items():
            for name, values in columns.items():
                np.testing.assert_array_equal(after[dataset][shift][name], values)


def test_event_slices_train_on_whole_event_mini_batches(tables: dict,
                                                        config: AnalysisConfig) -> None:
    """training.event_slices: the optimiser steps through slices of the events (another
    trajectory than full batches); more slices than a class can fill is a ConfigError naming
    the key."""
    full = train_network(tables, config, 0, "dnn", "inference", device="cpu")
    sliced_config = dataclasses.replace(config, training=dataclasses.replace(
        config.training, event_slices=2))
    sliced = train_network(tables, sliced_config, 0, "dnn", "inference", device="cpu")
    assert [name for name, _ in sliced.stages] == ["ce", "inference"]
    assert sliced.stages[0][1][0] != pytest.approx(full.stages[0][1][0], rel=1e-4)
    too_many = dataclasses.replace(config, training=dataclasses.replace(
        config.training, event_slices=N_EVENTS))
    with pytest.raises(ConfigError, match="training.event_slices"):
        train_network(tables, too_many, 0, "dnn", "inference", device="cpu")


def test_the_yield_aware_bandwidth_is_checked_on_the_models_bins(
        tables: dict, config: AnalysisConfig) -> None:
    """The yield-aware losses bin with inference.n_bins: a bandwidth wider than those bins
    (but narrower than training.n_bins's) stops before the first step."""
    wide = dataclasses.replace(
        config, training=dataclasses.replace(config.training, n_bins=2, bandwidth=0.3),
        inference=dataclasses.replace(config.inference, n_bins=10))
    done: list[int] = []
    with pytest.raises(ConfigError, match="bandwidth"):
        train_network(tables, wide, 0, "dnn", "inference", device="cpu", progress=done.append)
    assert done == []


# another grouping of the tiny config's processes, with names the code cannot know
FOUR_CLASSES = {"higgs": ["tth_bb"], "bb": ["tt_bb"], "b": ["tt_b"], "cc_light": ["tt_cc", "tt_lf"]}


def test_the_configs_classes_flow_through_samples_network_scores_and_model(
        tables: dict, config: AnalysisConfig, tmp_path) -> None:
    """Four classes of the config's ``classes`` key (read from YAML): the training samples'
    classes and labels, the network's outputs and score columns, the AUC's signal column and
    the categories of the statistical model that the yield-aware loss trains on."""
    raw = yaml.safe_load(resolve_config_path("tth_bb_tiny").read_text())
    raw["classes"] = [{"name": n, "processes": p} for n, p in FOUR_CLASSES.items()]
    raw["inference"]["categories"] = {"drop_empty": True}
    path = tmp_path / "four_classes.yaml"
    path.write_text(yaml.safe_dump(raw))
    four = dataclasses.replace(load_config(str(path)), training=config.training)
    names = list(FOUR_CLASSES)
    class_of_label = [next(k for k, p in enumerate(FOUR_CLASSES.values()) if process in p)
                      for process in four.process_names]

    samples, nuisances = training_samples(tables, four, four.features.event, 0, 2)
    assert list(samples) == names and all(n.samples == tuple(names) for n in nuisances)
    for k, name in enumerate(names):  # each class holds the training-fold events of its labels
        expected = sum(int(np.sum((np.asarray(s["nominal"]["event"]) % 2 != 0)
                                  & (np.asarray(class_of_label)[s["nominal"]["label"]] == k)))
                       for s in tables.values())
        assert len(samples[name][1]) == expected > 0

    spec = model_spec(four)
    assert spec.channels == ("cat_higgs", "cat_bb", "cat_b", "cat_cc_light")
    assert spec.classes == tuple(names) and spec.score_range == (0.25, 1.0)
    assert spec.signal_channel == "cat_higgs"

    result = train_network(tables, four, 0, "dnn", "inference", device="cpu")
    assert result.metadata()["classes"] == names
    assert result.model(torch.zeros(2, result.n_inputs)).shape == (2, 4)
    scores = score_tables(result.model, tables, four, 0, "dnn")
    columns = scores["tth"]["nominal"]
    assert {score_column(n) for n in names} <= set(columns) and "p_tth" not in columns
    p = np.stack([columns[score_column(n)] for n in names], 1)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-5)
    auc = signal_auc(scores, signal_labels(four), score_column(signal_class(four)))
    assert 0.0 <= auc <= 1.0
    # a checkpoint is rebuilt with the output count of its metadata
    save_checkpoint(tmp_path / "model.pt", result.model)
    loaded = load_network(tmp_path / "model.pt", result.metadata(),
                          four.training.target_parameters)
    assert loaded(torch.zeros(2, result.n_inputs)).shape == (2, 4)


def test_the_yield_aware_loss_sees_which_rows_are_one_events_replicas(
        tables: dict, config: AnalysisConfig, monkeypatch: pytest.MonkeyPatch) -> None:
    """Rows 2k and 2k + 1 of a dataset as two detector replicas of one event (one event number):
    every batch the inference-aware loss builds its model from carries the rows' event indices,
    equal for the replicas, distinct between datasets (whose event numbers overlap here), so its
    MC statistical uncertainty is the workspace's (``test_model.py``: the NLLs agree)."""
    # event numbers shuffled, so that each fold holds events of every process
    event = np.random.default_rng(5).permutation(N_EVENTS // 2).astype(np.uint64)
    replicated = {dataset: {shift: ak.with_field(table, event[np.arange(N_EVENTS) // 2], "event")
                            for shift, table in shifts.items()}
                  for dataset, shifts in tables.items()}
    seen: list[dict] = []
    real = loop_module.analysis_loss

    def spy(outputs: dict, spec: object, *args: object, **kwargs: object) -> torch.Tensor:
        seen.append({p: per["nominal"] for p, per in outputs.items()})
        return real(outputs, spec, *args, **kwargs)

    monkeypatch.setattr(loop_module, "analysis_loss", spy)
    train_network(replicated, config, 0, "dnn", "inference", device="cpu")
    assert len(seen) >= STRATEGY_STEPS
    samples, _ = training_samples(replicated, config, config.features.event, 0,
                                  config.training.n_folds, "dnn", part="fit", rescale=True,
                                  by_process=True, event_ids=True)
    for batch in seen:
        for process, (logits, _, _, events) in batch.items():
            if logits.shape[0] == 0:
                continue
            assert events is not None and events.dtype == torch.int64
            # the replicas of one event share an index: fewer events than rows
            assert 0 < len(torch.unique(events)) < len(events)
    for process, (_, _, identity) in samples.items():
        dataset_number, event = np.divmod(identity, EVENT_ID_DATASET_STRIDE)
        rows = {"tth_bb": 0, "tt_bb": 1, "tt_b": 1, "tt_cc": 2, "tt_lf": 2}[process]
        assert np.all(dataset_number == rows) and np.all(event < N_EVENTS // 2)
