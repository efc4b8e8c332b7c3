"""LearnCuts and ReduceEvents as real law tasks on the tiny config: held-out honesty.

The session's shared store ran them (:func:`~tests.integration.conftest.tiny_skim_store`); these
tests read it. Cuts_k must have been learned on the events outside fold k only (the ones network
k trains on), and fold k's reduced tables must hold exactly the skimmed events passing cuts_k.
"""

from __future__ import annotations

import json
from pathlib import Path

import awkward as ak
import numpy as np
import pytest

from analysis.classes import class_index_of_labels, class_names
from analysis.config import OBJECT_SHIFTS, load_config
from analysis.selection.learn import LearnedSelection, selection_mask
from analysis.selection.reduce import load_selection_samples
from tasks.cuts import LearnCuts, ReduceEvents
from tasks.skim import Skim
from tests.integration.conftest import SKIM_VERSION, TINY_CONFIG

pytestmark = pytest.mark.slow


@pytest.fixture
def shared_store(tiny_skim_store: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The session's shared store, read only ($DIFFANA_STORE names it for the test)."""
    monkeypatch.setenv("DIFFANA_STORE", str(tiny_skim_store))
    return tiny_skim_store


def _skim_tables() -> dict[str, dict[str, ak.Array]]:
    skim = Skim(version=SKIM_VERSION, config=TINY_CONFIG)
    return {outputs["nominal"].parent.basename: {s: ak.from_parquet(outputs[s].abspath)
                                                 for s in OBJECT_SHIFTS}
            for outputs in skim.output()["collection"].targets.values()}


def test_cuts_of_fold_k_were_learned_without_the_events_of_fold_k(shared_store: Path) -> None:
    config = load_config(TINY_CONFIG)
    n_folds = config.training.n_folds
    tables = _skim_tables()
    class_index = class_index_of_labels(config)
    nominal = [shifts["nominal"] for shifts in tables.values()]
    event = np.concatenate([np.asarray(t["event"]) for t in nominal]).astype(np.int64)
    label = class_index[np.concatenate([np.asarray(t["label"]) for t in nominal])]
    learn = LearnCuts(version=SKIM_VERSION, config=TINY_CONFIG)
    assert learn.get_branch_map() == {k: k for k in range(n_folds)}
    thresholds = []
    for fold, outputs in learn.output()["collection"].targets.items():
        record = json.loads(Path(outputs["cuts"].abspath).read_text())
        assert (record["fold"], record["n_folds"]) == (fold, n_folds)
        samples = load_selection_samples(outputs["samples"].abspath)
        for k, cls in enumerate(class_names(config)):
            learned_on = samples.events[cls].numpy()
            # the training folds of network k, every one of their events, and nothing else
            expected = event[(label == k) & (event % n_folds != fold)]
            assert not np.any(learned_on % n_folds == fold)
            assert sorted(learned_on.tolist()) == sorted(expected.tolist())
            assert record["n_events"][cls] == len(expected) == len(samples.x[cls]) > 0
        thresholds.append(record["thresholds"])
    # the folds learned on different events; their cuts are their own
    assert thresholds[0] != thresholds[1]


def test_fold_k_tables_hold_the_events_passing_cuts_k(shared_store: Path) -> None:
    config = load_config(TINY_CONFIG)
    n_folds = config.training.n_folds
    tables = _skim_tables()
    learn = LearnCuts(version=SKIM_VERSION, config=TINY_CONFIG)
    reduce = ReduceEvents(version=SKIM_VERSION, config=TINY_CONFIG).output()
    summary = json.loads(Path(reduce["tradeoff"].abspath).read_text())
    assert len(reduce["folds"]) == len(summary["folds"]) == n_folds
    held_out_kept = 0
    for fold, outputs in learn.output()["collection"].targets.items():
        selection = LearnedSelection.from_dict(json.loads(Path(outputs["cuts"].abspath)
                                                          .read_text()))
        assert summary["selections"][fold]["thresholds"] == list(selection.thresholds)
        for dataset, shifts in tables.items():
            for shift, table in shifts.items():
                passed = selection_mask({f: table[f] for f in selection.features}, selection)
                reduced = ak.from_parquet(reduce["folds"][fold][dataset][shift].abspath)
                assert np.array_equal(np.asarray(reduced["event"]),
                                      np.asarray(table["event"])[passed])
                if shift == "nominal":
                    held_out = np.asarray(table["event"]) % n_folds == fold
                    held_out_kept += int((passed & held_out).sum())
        assert summary["folds"][fold]["fold"] == fold
    # the events that reach the held-out histograms: fold k's events passing cuts_k, summed
    assert summary["kept_events"] == held_out_kept == sum(
        f["held_out_kept"] for f in summary["folds"])
    assert 0 < held_out_kept < summary["skimmed_events"]
    assert summary["scanned_fold"] == 0 and summary["points"][0]["data_fraction"] == 1.0
