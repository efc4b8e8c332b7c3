"""The learned cuts applied: one hard-cut rule, reduced tables and counts, the trade-off table,
the selection samples handed from LearnCuts to ReduceEvents."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import awkward as ak
import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from analysis.errors import InputDataError
from analysis.relax.cut_config import hard_cut_mask
from analysis.selection.cut_samples import SelectionSamples
from analysis.selection.cut_tables import threshold_cells
from analysis.selection.learn import LearnedSelection, TradeoffPoint
from analysis.selection.reduce import (
    FoldReduction,
    load_selection_samples,
    reduce_fold_tables,
    save_selection_samples,
    tradeoff_markdown,
    tradeoff_records,
)

SELECTION = LearnedSelection(("ht", "met_pt"), (">", "<"), (300.0, 80.0), (100.0, 150.0),
                             (0.0, 1e3), "sigma_mu")


def test_hard_cut_mask_is_the_strict_inequality_and_nan_fails(rng: np.random.Generator) -> None:
    ht = rng.uniform(0, 600, 500)
    met = rng.uniform(0, 160, 500)
    ht[:3] = [300.0, np.nan, 300.0 + 1e-9]  # on the threshold fails, NaN fails
    mask = hard_cut_mask({"ht": ht, "met_pt": met}, ["ht", "met_pt"], [">", "<"], [300.0, 80.0])
    with np.errstate(invalid="ignore"):
        expected = (ht > 300.0) & (met < 80.0)
    assert mask.dtype == bool and np.array_equal(mask, expected)
    assert list(mask[:2]) == [False, False] and mask[2] == (met[2] < 80.0)
    window = hard_cut_mask({"ht": ht}, ["ht", "ht"], [">", "<"], [100.0, 200.0])
    with np.errstate(invalid="ignore"):
        assert np.array_equal(window, (ht > 100) & (ht < 200))
    with pytest.raises(InputDataError, match="no column 'met_pt'"):
        hard_cut_mask({"ht": ht}, ["ht", "met_pt"], [">", "<"], [300.0, 80.0])


def _table(rng: np.random.Generator, n: int) -> ak.Array:
    return ak.Array({"event": np.arange(n), "ht": rng.uniform(0, 600, n),
                     "met_pt": rng.uniform(0, 160, n), "weight": np.ones(n)})


def test_reduce_fold_tables_keeps_what_passes_each_folds_cuts_and_counts_nominal(
        rng: np.random.Generator, tmp_path: Path) -> None:
    """Fold k's tables hold every event passing cuts_k; its held-out count is fold k's share."""
    selections = [SELECTION, LearnedSelection(("ht",), (">",), (200.0,), (100.0,), (0.0,),
                                              "sigma_mu")]
    tables, n = {}, {"a": 200, "b": 120}
    outputs: list[dict[str, dict[str, str]]] = [{}, {}]
    for dataset, size in n.items():
        tables[dataset] = {}
        for fold in (0, 1):
            outputs[fold][dataset] = {}
        for shift in ("nominal", "jes_up"):
            path = tmp_path / f"{dataset}_{shift}.parquet"
            ak.to_parquet(_table(rng, size), path)
            tables[dataset][shift] = str(path)
            for fold in (0, 1):
                outputs[fold][dataset][shift] = str(tmp_path / f"f{fold}_{dataset}_{shift}.parquet")
    counts = reduce_fold_tables(tables, outputs, selections, {"seed": 3})
    for fold, selection in enumerate(selections):
        expected = np.zeros(4, dtype=int)
        for dataset, shifts in tables.items():
            for shift, path in shifts.items():
                before = ak.from_parquet(path)
                after = ak.from_parquet(outputs[fold][dataset][shift])
                passed = np.ones(len(before), dtype=bool)
                for feature, direction, threshold in zip(selection.features, selection.directions,
                                                         selection.thresholds, strict=True):
                    values = np.asarray(before[feature])
                    passed &= values > threshold if direction == ">" else values < threshold
                event = np.asarray(before["event"])
                assert np.array_equal(np.asarray(after["event"]), event[passed])
                metadata = pq.read_schema(outputs[fold][dataset][shift]).metadata
                assert json.loads(metadata[b"diffana_provenance"]) == {"seed": 3}
                if shift == "nominal":
                    held_out = event % 2 == fold
                    expected += (passed.sum(), len(passed), (passed & held_out).sum(),
                                 held_out.sum())
        assert counts[fold] == FoldReduction(fold, *expected.tolist())
        assert 0 < counts[fold].held_out_kept < counts[fold].kept < counts[fold].total
    with pytest.raises(InputDataError, match="no output for fold 0, dataset 'a', shift 'nominal'"):
        reduce_fold_tables(tables, [{}, {}], selections, {})
    with pytest.raises(InputDataError, match="1 cut sets for 2 folds"):
        reduce_fold_tables(tables, outputs, selections[:1], {})


def test_threshold_table_has_a_row_per_fold() -> None:
    selections = [dataclasses.replace(SELECTION, thresholds=(300.0 + k, 80.0), hard_value=0.4,
                                      initial_hard_value=0.5).as_dict() for k in range(3)]
    reductions = [dataclasses.asdict(FoldReduction(k, 50, 300, 17 + k, 100)) for k in range(3)]
    header, rows = threshold_cells(selections, reductions)
    assert header == ["fold k", "ht >", "met_pt <", "sigma_mu start", "sigma_mu learned",
                      "fold k events kept"]
    assert rows[2] == ["2", "302", "80", "0.5", "0.4", "19 of 100"]


def test_tradeoff_table_marks_the_learned_point_and_missing_values() -> None:
    points = [TradeoffPoint(0.0, (0.0, 1e3), 1.0, 1.0, 1.0, 0.9, 1.2, 1.5),
              TradeoffPoint(1.0, (300.0, 80.0), 0.25, 0.8, 0.1, 0.5, math.nan, 3.25)]
    records = tradeoff_records(points)
    assert records[1]["thresholds"] == [300.0, 80.0] and records[0]["data_fraction"] == 1.0
    lines = tradeoff_markdown(points, SELECTION).splitlines()
    assert lines[0].startswith("| t | ht > | met_pt < | events kept |")
    assert lines[1] == "|" + "---|" * 9
    assert lines[2] == "| 0 | 0 | 1000 | 1.000 | 1.000 | 1.000 | 0.9 | 1.2 | 1.500 |"
    assert lines[3] == "| 1 (learned) | 300 | 80 | 0.250 | 0.800 | 0.100 | 0.5 | n/a | 3.250 |"


def test_selection_samples_round_trip(tmp_path: Path) -> None:
    x = {"tth": torch.arange(6.0, dtype=torch.float64).reshape(3, 2)}
    w = {"tth": torch.ones(3, dtype=torch.float64)}
    varied = {"jes": {"tth": ((x["tth"] * 1.1, w["tth"]), (x["tth"] * 0.9, w["tth"]))}}
    events = {"tth": torch.tensor([1, 3, 2**40 + 5], dtype=torch.int64)}  # the record of folds
    samples = SelectionSamples(("ht", "disc"), x, w, varied, {"lumi": {"tth": (1.02, 0.98)}},
                               events)
    path = tmp_path / "samples.pt"
    save_selection_samples(path, samples)
    back = load_selection_samples(path)
    assert back.columns == samples.columns and back.normsys == samples.normsys
    assert torch.equal(back.x["tth"], x["tth"]) and torch.equal(back.w["tth"], w["tth"])
    assert torch.equal(back.varied["jes"]["tth"][0][0], x["tth"] * 1.1)
    assert torch.equal(back.events["tth"], events["tth"])
    torch.save({"something": 1}, tmp_path / "other.pt")
    with pytest.raises(InputDataError, match="other.pt: not a selection-samples file"):
        load_selection_samples(tmp_path / "other.pt")
    (tmp_path / "broken.pt").write_bytes(b"not a torch file")
    with pytest.raises(InputDataError, match="broken.pt: unreadable"):
        load_selection_samples(tmp_path / "broken.pt")
