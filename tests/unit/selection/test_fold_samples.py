"""Held-out honesty of the learned skim: the cuts of fold k are learned on the events network k
trains on, never on fold k, which evaluates that network."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from analysis.classes import class_index_of_labels, class_names
from analysis.config import OBJECT_SHIFTS, WEIGHT_SYSTEMATICS, AnalysisConfig
from analysis.errors import ConfigError
from analysis.selection.cut_samples import SelectionSamples, selection_samples

N_EVENTS = {"signal": 90, "background": 240}


def _table(rng: np.random.Generator, labels: np.ndarray, first_event: int) -> dict[str, np.ndarray]:
    """A skim table's columns for the tiny config's cuts and discriminant."""
    n = len(labels)
    columns = {"label": labels, "event": np.arange(first_event, first_event + n, dtype=np.int64),
               "weight": rng.uniform(0.5, 1.5, n), "ht": rng.uniform(200.0, 900.0, n),
               "n_btag": rng.integers(2, 5, n).astype(np.float64),
               "met_pt": rng.uniform(0.0, 200.0, n), "lepton_pt": rng.uniform(30.0, 200.0, n),
               "mbb_closest": rng.uniform(20.0, 300.0, n)}
    for name in WEIGHT_SYSTEMATICS:
        columns[f"weight_{name}_up"] = columns["weight"] * 1.05
        columns[f"weight_{name}_down"] = columns["weight"] * 0.95
    return columns


def _tables(rng: np.random.Generator) -> dict[str, dict[str, dict[str, np.ndarray]]]:
    """Two datasets (the signal; the five tt processes), every shift its own events."""
    tables: dict[str, dict[str, dict[str, np.ndarray]]] = {}
    for dataset, first in (("signal", 0), ("background", 1000)):
        tables[dataset] = {}
        for shift in OBJECT_SHIFTS:
            n = N_EVENTS[dataset]
            labels = np.zeros(n, dtype=np.int64) if dataset == "signal" else rng.integers(1, 5, n)
            tables[dataset][shift] = _table(rng, labels, first)
    return tables


def _with_folds(config: AnalysisConfig, n_folds: int) -> AnalysisConfig:
    return dataclasses.replace(config, training=dataclasses.replace(config.training,
                                                                    n_folds=n_folds))


def _assert_same(a: SelectionSamples, b: SelectionSamples) -> None:
    assert a.classes == b.classes
    for c in a.classes:
        torch.testing.assert_close(a.x[c], b.x[c], rtol=0, atol=0)
        torch.testing.assert_close(a.w[c], b.w[c], rtol=0, atol=0)
        torch.testing.assert_close(a.events[c], b.events[c], rtol=0, atol=0)
        for name in a.varied:
            for (ax, aw), (bx, bw) in zip(a.varied[name][c], b.varied[name][c], strict=True):
                torch.testing.assert_close(ax, bx, rtol=0, atol=0)
                torch.testing.assert_close(aw, bw, rtol=0, atol=0)
    assert a.normsys == b.normsys


@pytest.mark.parametrize("n_folds", [2, 3])
def test_cuts_of_fold_k_learn_on_exactly_the_training_folds_of_network_k(
        tiny_config: AnalysisConfig, rng: np.random.Generator, n_folds: int) -> None:
    config = _with_folds(tiny_config, n_folds)
    tables = _tables(rng)
    class_index = class_index_of_labels(config)
    classes = class_names(config)
    seen: dict[str, list[np.ndarray]] = {c: [] for c in classes}
    for fold in range(n_folds):
        samples = selection_samples(tables, config, fold)
        assert samples.classes == classes and samples.signal == "tth"
        for k, c in enumerate(classes):
            events = samples.events[c].numpy()
            # no event of fold k, every other event of the class, in the rows of x
            assert len(events) == len(samples.x[c]) == len(samples.w[c]) > 0
            assert not np.any(events % n_folds == fold)
            expected, ht, weight = [], [], []
            for shifts in tables.values():
                nominal = shifts["nominal"]
                keep = (class_index[nominal["label"]] == k) & (
                    nominal["event"] % n_folds != fold)
                expected.append(nominal["event"][keep])
                ht.append(nominal["ht"][keep])
                weight.append(nominal["weight"][keep])
            np.testing.assert_array_equal(events, np.concatenate(expected))
            column = samples.columns.index("ht")
            np.testing.assert_allclose(samples.x[c][:, column].numpy(), np.concatenate(ht),
                                       rtol=1e-6)
            # the training folds stand for the full luminosity
            np.testing.assert_allclose(samples.w[c].numpy(),
                                       np.concatenate(weight) * n_folds / (n_folds - 1),
                                       rtol=1e-6)
            seen[c].append(events)
    # across the folds, every event is left out exactly once: n_folds - 1 sightings each
    for c in classes:
        _, counts = np.unique(np.concatenate(seen[c]), return_counts=True)
        assert set(counts.tolist()) == {n_folds - 1}


def test_cuts_of_fold_k_do_not_change_when_the_events_of_fold_k_do(
        tiny_config: AnalysisConfig, rng: np.random.Generator) -> None:
    """Rewrite every event of fold 1 (features, weights, process): the samples of cuts_1 stay
    the same bit for bit; those of cuts_0, which train on fold 1, change."""
    config = _with_folds(tiny_config, 3)
    tables = _tables(rng)
    before = {fold: selection_samples(tables, config, fold) for fold in (0, 1)}
    for shifts in tables.values():
        for columns in shifts.values():
            held_out = columns["event"] % 3 == 1
            for name, values in columns.items():
                if name.startswith("weight") or name in ("ht", "met_pt", "mbb_closest"):
                    values[held_out] = values[held_out] * 7.0 + 1.0
            columns["label"][held_out] = np.where(columns["label"][held_out] == 0, 0, 4)
    _assert_same(selection_samples(tables, config, 1), before[1])
    with pytest.raises(AssertionError):
        _assert_same(selection_samples(tables, config, 0), before[0])


def test_a_fold_outside_the_configured_folds_is_refused(tiny_config: AnalysisConfig,
                                                         rng: np.random.Generator) -> None:
    with pytest.raises(ConfigError, match="fold = 2, n_folds = 2"):
        selection_samples(_tables(rng), tiny_config, 2)


def test_the_detector_replicas_of_one_event_share_one_event_group(
        tiny_config: AnalysisConfig, rng: np.random.Generator) -> None:
    """Two replicas per generated event (rows with one event number in one dataset): one group;
    rows of different events, or of one event number in two datasets, are different groups."""
    tables = _tables(rng)
    for dataset, shifts in tables.items():
        for table in shifts.values():  # both datasets number their events from 0, in pairs
            pair = np.arange(len(table["event"]), dtype=np.int64) // 2
            table["event"] = pair
            table["label"] = np.repeat(table["label"][::2], 2)
            if dataset == "signal":  # some pairs a background process: a class of both datasets
                table["label"] = np.where(pair % 4 == 1, 1, table["label"])
    samples = selection_samples(tables, tiny_config, 0)
    for c in samples.classes:
        groups, events = samples.event_groups[c].numpy(), samples.events[c].numpy()
        assert groups.shape == events.shape and groups.dtype == np.int64
        assert sorted(set(groups)) == list(range(len(set(groups))))  # dense indices
        # pairs of rows with one event number share one group, and only they
        assert len(set(groups)) == len(groups) // 2
        for g in set(groups):
            assert len(set(events[groups == g])) == 1
