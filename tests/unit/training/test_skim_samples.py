"""Tests of the multi-class training samples and nuisances built from skim tables."""

from __future__ import annotations

import awkward as ak
import numpy as np
import pytest
import torch

from analysis.classes import class_names, class_of_process, signal_class
from analysis.config import AnalysisConfig
from analysis.errors import ConfigError, InputDataError
from analysis.folds import fold_mask
from analysis.training.architectures import (
    NODE_FEATURES,
    EventGNN,
    graph_inputs,
    seeded_build,
)
from analysis.training.skim_samples import (
    GraphAsVector,
    graph_vector,
    training_samples,
)

FEATURES = ("ht", "n_jets", "met_pt")
SHIFTS = ("nominal", "jes_up", "jes_down", "jer_up", "jer_down")
N_JETS = 4
N_EVENTS = 8
VARIATIONS = tuple(f"weight_{s}_{d}" for s in ("btag", "isr", "fsr") for d in ("up", "down"))
# dataset -> processes its events belong to (labels are the tiny config's process indices)
DATASETS = {"tth": ("tth_bb",), "tt_extra_b": ("tt_bb", "tt_b"), "tt_rest": ("tt_cc", "tt_lf")}


def _table(rng: np.random.Generator, labels: np.ndarray, first_event: int,
           shift: str) -> dict[str, np.ndarray]:
    n = len(labels)
    n_real = rng.integers(1, N_JETS + 1, size=n)
    mask = np.arange(N_JETS)[None, :] < n_real[:, None]
    weight = rng.uniform(0.5, 1.5, n)
    cols: dict[str, np.ndarray] = {
        "luminosityBlock": np.ones(n, dtype=np.int64),
        "event": np.arange(first_event, first_event + n, dtype=np.uint64),
        "label": labels, "weight": weight,
        "ht": rng.uniform(100, 800, n), "n_jets": n_real.astype(float),
        "met_pt": rng.uniform(10, 150, n), "lepton_pt": rng.uniform(30, 100, n),
        "lepton_eta": rng.uniform(-2, 2, n), "lepton_phi": rng.uniform(-np.pi, np.pi, n),
        "met_phi": rng.uniform(-np.pi, np.pi, n), "jet_mask": mask.astype(float)}
    for k, name in enumerate(VARIATIONS):  # distinct, recognisable factors per column
        cols[name] = weight * (1.0 + 0.01 * (k + 1))
    for name, low, high in (("pt", 30, 300), ("eta", -2.4, 2.4), ("phi", -np.pi, np.pi),
                            ("mass", 0, 30), ("btag", 0, 1)):
        cols[f"jet_{name}"] = np.where(mask, rng.uniform(low, high, (n, N_JETS)), 0.0)
    if shift != "nominal":
        cols["ht"] = cols["ht"] * (1.05 if shift.endswith("up") else 0.95)
    return cols


@pytest.fixture
def tables(tiny_config: AnalysisConfig) -> dict[str, dict[str, ak.Array]]:
    """3 datasets x 5 shifts, N_EVENTS events each (distinct event numbers, every class in
    both folds)."""
    rng = np.random.default_rng(7)
    out = {}
    for d, (dataset, processes) in enumerate(DATASETS.items()):
        labels = np.array([tiny_config.label_of(processes[(i // 2) % len(processes)])
                           for i in range(N_EVENTS)], dtype=np.int64)
        out[dataset] = {shift: ak.Array(_table(rng, labels, 100 * d, shift)) for shift in SHIFTS}
    return out


def test_fold_mask_parity() -> None:
    event = np.arange(11, dtype=np.uint64)
    test, train = fold_mask(event, 0), fold_mask(event, 1)
    assert not (test & train).any() and (test | train).all()
    np.testing.assert_array_equal(event[test] % 2, 0)
    with pytest.raises(ConfigError, match="fold"):
        fold_mask(event, 2, 2)


def _n_class_events(tables: dict, config: AnalysisConfig, fold: int, train: bool) -> dict:
    classes = list(class_of_process(config).values())
    counts = dict.fromkeys(class_names(config), 0)
    for shifts in tables.values():
        t = shifts["nominal"]
        keep = (t["event"].to_numpy() % 2 == fold) != train
        for label in t["label"].to_numpy()[keep]:
            counts[classes[label]] += 1
    return counts


@pytest.mark.parametrize("fold", [0, 1])
def test_folds_split_events(tables: dict, tiny_config: AnalysisConfig, fold: int) -> None:
    train, _ = training_samples(tables, tiny_config, FEATURES, fold, train=True)
    test, _ = training_samples(tables, tiny_config, FEATURES, fold, train=False)
    classes = class_names(tiny_config)
    assert list(train) == list(classes) == ["tth", "ttbb", "ttother"]
    for c in classes:
        assert len(train[c][0]) == _n_class_events(tables, tiny_config, fold, True)[c]
        assert len(test[c][0]) == _n_class_events(tables, tiny_config, fold, False)[c]
    all_w = np.concatenate([t["nominal"]["weight"].to_numpy() for t in tables.values()])
    split_w = np.concatenate([s[c][1] for s in (train, test) for c in classes])
    np.testing.assert_allclose(np.sort(split_w), np.sort(all_w.astype(np.float32)))


def test_dnn_and_gnn_shapes(tables: dict, tiny_config: AnalysisConfig) -> None:
    dnn, _ = training_samples(tables, tiny_config, FEATURES, 0, model_kind="dnn")
    gnn, _ = training_samples(tables, tiny_config, FEATURES, 0, model_kind="gnn")
    n_nodes = N_JETS + 2
    for c in class_names(tiny_config):
        assert dnn[c][0].dtype == np.float32 and dnn[c][0].shape == (len(dnn[c][1]), 3)
        assert gnn[c][0].shape == (len(dnn[c][1]), n_nodes * (len(NODE_FEATURES) + 1))
    with pytest.raises(ConfigError, match="model_kind"):
        training_samples(tables, tiny_config, FEATURES, 0, model_kind="bdt")


def test_nuisances(tables: dict, tiny_config: AnalysisConfig) -> None:
    samples, nuisances = training_samples(tables, tiny_config, FEATURES, 1)
    assert [n.name for n in nuisances] == ["jes", "jer", "btag", "isr", "fsr"]
    assert all(n.kind == "precomputed" and n.samples == class_names(tiny_config)
               for n in nuisances)
    by_name = {n.name: n.varied for n in nuisances}
    for k, name in enumerate(VARIATIONS):  # factor 1 + 0.01 (k + 1) of the column
        syst, direction = name.split("_")[1:]
        for c, (x, w) in samples.items():
            assert by_name[syst] is not None
            xv, wv = by_name[syst][c][0 if direction == "up" else 1]
            assert xv is x
            np.testing.assert_allclose(wv, w * (1.0 + 0.01 * (k + 1)), rtol=1e-6)
    jes = by_name["jes"]
    assert jes is not None
    (x_up, _), (x_down, _) = jes["tth"]
    ht_nominal = samples["tth"][0][:, 0]
    assert x_up.shape == samples["tth"][0].shape and not np.allclose(x_up[:, 0], ht_nominal)
    assert not np.allclose(x_up[:, 0], x_down[:, 0])


def test_graph_as_vector_matches_gnn(tables: dict) -> None:
    gnn = seeded_build(lambda: EventGNN(len(NODE_FEATURES), hidden=8, n_layers=1, n_classes=3),
                       torch.Generator().manual_seed(0))
    columns = {k: tables["tth"]["nominal"][k].to_numpy() for k in ak.fields(tables["tth"]["nominal"])}
    nodes, mask = graph_inputs(columns)
    vector = torch.as_tensor(graph_vector(columns))
    with torch.no_grad():
        torch.testing.assert_close(GraphAsVector(gnn)(vector), gnn(nodes, mask))
    with pytest.raises(InputDataError, match="GraphAsVector"):
        GraphAsVector(gnn)(vector[:, :-1])


@pytest.mark.parametrize("column", ["weight_isr_up", "label", "ht", "jet_pt"])
def test_missing_column(tables: dict, tiny_config: AnalysisConfig, column: str) -> None:
    nominal = tables["tt_rest"]["nominal"]
    broken = {**tables, "tt_rest": {**tables["tt_rest"],
                                    "nominal": nominal[[f for f in ak.fields(nominal)
                                                        if f != column]]}}
    kind = "gnn" if column.startswith("jet_") else "dnn"
    with pytest.raises(InputDataError, match=f"dataset tt_rest, shift nominal.*{column}"):
        training_samples(broken, tiny_config, FEATURES, 0, model_kind=kind)


def test_missing_shift(tables: dict, tiny_config: AnalysisConfig) -> None:
    broken = {**tables, "tth": {k: v for k, v in tables["tth"].items() if k != "jer_down"}}
    with pytest.raises(InputDataError, match="dataset tth: no table for shift 'jer_down'"):
        training_samples(broken, tiny_config, FEATURES, 0)


@pytest.mark.parametrize("kind", ["dnn", "gnn"])
def test_train_classifier_accepts_samples(tables: dict, tiny_config: AnalysisConfig,
                                          kind: str) -> None:
    from analysis.training.architectures import EventDNN
    from analysis.training.loop import LossSettings, train_classifier

    samples, nuisances = training_samples(tables, tiny_config, FEATURES, 0, model_kind=kind)
    n_classes = len(class_names(tiny_config))
    model = seeded_build(lambda: EventDNN(len(FEATURES), (8,), n_classes) if kind == "dnn"
                         else GraphAsVector(EventGNN(len(NODE_FEATURES), 8, 1, n_classes)),
                         torch.Generator().manual_seed(0))
    _, history = train_classifier(model, samples, "penalty", nuisances, steps=2,
                                  loss=LossSettings(signal=signal_class(tiny_config)))
    assert len(history.loss) == 2 and all(np.isfinite(history.loss))


def test_event_slices_partition_the_fit_part(tiny_config: AnalysisConfig) -> None:
    """The n event slices of the "fit" part hold its events once each, every shift's rows of
    one event in the same slice, with weights n times the fit part's."""
    rng = np.random.default_rng(3)
    n_events, n_slices = 400, 3
    big = {}
    for d, (dataset, processes) in enumerate(DATASETS.items()):
        labels = np.array([tiny_config.label_of(processes[(i // 2) % len(processes)])
                           for i in range(n_events)], dtype=np.int64)
        big[dataset] = {shift: ak.Array(_table(rng, labels, 1000 * d, shift))
                        for shift in SHIFTS}
    fit, fit_nuisances = training_samples(big, tiny_config, FEATURES, 0, part="fit",
                                          rescale=True)
    slices = [training_samples(big, tiny_config, FEATURES, 0, part="fit", rescale=True,
                               event_slice=(k, n_slices)) for k in range(n_slices)]
    for c in class_names(tiny_config):
        assert sum(len(s[c][1]) for s, _ in slices) == len(fit[c][1])
        np.testing.assert_allclose(sum(s[c][1].sum() for s, _ in slices) / n_slices,
                                   fit[c][1].sum(), rtol=1e-5)
        # the rows of a slice are the fit rows with those inputs: disjoint, covering
        rows = np.concatenate([s[c][0] for s, _ in slices])
        np.testing.assert_allclose(np.sort(rows[:, 0]), np.sort(fit[c][0][:, 0]))
    for k, (part, nuisances) in enumerate(slices):
        jes = {n.name: n.varied for n in nuisances}["jes"]
        # the shifted tables hold the same events: the same slice rows
        for c in class_names(tiny_config):
            assert len(jes[c][0][1]) == len(jes[c][1][1]) == len(part[c][1]) > 0
    with pytest.raises(ConfigError, match="event_slice"):
        training_samples(big, tiny_config, FEATURES, 0, part="all", event_slice=(0, 2))
    assert fit_nuisances


def test_a_fold_without_a_class_names_the_fold_and_the_class(
        tables: dict, tiny_config: AnalysisConfig) -> None:
    """Every tt+bb event moved to fold 0 (even event numbers): fold 0's training folds have
    none, and the error says which class, shift and fold."""
    from analysis.errors import EmptySelectionError

    ttbb = tiny_config.label_of("tt_bb")
    moved = {}
    for dataset, shifts in tables.items():
        moved[dataset] = {}
        for shift, table in shifts.items():
            columns = {name: np.asarray(table[name]) for name in table.fields}
            is_ttbb = columns["label"] == ttbb
            columns["event"] = np.where(is_ttbb, 2 * columns["event"], columns["event"])
            moved[dataset][shift] = ak.Array(columns)
    with pytest.raises(EmptySelectionError,
                       match="no ttbb events in shift nominal, training folds of fold 0/2"):
        training_samples(moved, tiny_config, FEATURES, 0, train=True)
    training_samples(moved, tiny_config, FEATURES, 1, train=True)  # fold 1 trains on them
