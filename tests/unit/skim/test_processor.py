"""The coffea skim on generated and on real CMS NanoAOD: selection, features, shifts, weights."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import awkward as ak
import numpy as np
import pytest

from analysis.config import WEIGHT_SYSTEMATICS, AnalysisConfig, load_config
from analysis.skim.processor import _PS_INDEX, run_skim


@pytest.fixture(scope="module")
def tth_skim(nano_file: Path, tiny_config: AnalysisConfig):  # noqa: ANN201
    return run_skim(tiny_config, "tth", [str(nano_file)])


def test_selection_and_cutflow(tth_skim, tiny_config: AnalysisConfig) -> None:  # noqa: ANN001
    table, flow = tth_skim.tables["nominal"], tth_skim.cutflow["nominal"]
    assert flow["all"] == 60 >= flow["lepton"] >= flow["jets"] >= flow["btag"] == len(table) > 0
    assert np.all(table.n_jets >= tiny_config.selection.n_jets_min)
    assert np.all(table.jet4_pt > tiny_config.objects.jets.pt_min)
    loose = np.sum(ak.to_numpy(table.jet_btag) > tiny_config.objects.jets.btag_loose, axis=1)
    assert np.all(loose >= 2)  # >= 2 loose b tags (all jets fit in the padding here or more)
    assert np.all(table.label == tiny_config.label_of("tth_bb"))


def test_weights_normalise_to_cross_section(tth_skim, tiny_config: AnalysisConfig) -> None:  # noqa: ANN001
    table, flow = tth_skim.tables["nominal"], tth_skim.cutflow["nominal"]
    expected_total = (tiny_config.processes["tth_bb"].cross_section.value
                      * tiny_config.luminosity.value * 1000.0)  # pb x pb^-1
    assert flow["all_weighted"] == pytest.approx(expected_total)
    assert float(np.sum(table.weight)) == pytest.approx(expected_total * flow["btag"] / 60)
    for variation in ("btag_up", "btag_down", "isr_up", "isr_down", "fsr_up", "fsr_down"):
        ratio = ak.to_numpy(table[f"weight_{variation}"] / table.weight)
        assert np.all(ratio > 0) and not np.allclose(ratio, 1.0)
    # each jet's factor is 1 + delta * a or 1 - delta * a: up and down move opposite ways
    up = ak.to_numpy(table.weight_btag_up / table.weight) - 1
    down = ak.to_numpy(table.weight_btag_down / table.weight) - 1
    assert np.all(up * down < 0)


def test_features_follow_their_definitions(tth_skim) -> None:  # noqa: ANN001
    table = tth_skim.tables["nominal"]
    jet_pt = ak.to_numpy(table.jet_pt) * ak.to_numpy(table.jet_mask)
    exact = ak.to_numpy(table.n_jets) <= jet_pt.shape[1]
    np.testing.assert_allclose(ak.to_numpy(table.ht)[exact], jet_pt[exact].sum(axis=1), rtol=1e-5)
    np.testing.assert_allclose(table.jet1_pt, jet_pt[:, 0], rtol=1e-6)
    assert np.all((table.aplanarity >= 0) & (table.aplanarity <= 0.5))
    assert np.all((table.centrality > 0) & (table.centrality <= 1))
    assert np.all(table.drbb_closest > 0) and np.all(table.mbb_max >= table.mbb_closest)
    assert np.all(table.mt_w >= 0)


def test_jes_shift_scales_jets_and_reruns_selection(tth_skim, tiny_config: AnalysisConfig) -> None:  # noqa: ANN001
    nominal, up = tth_skim.tables["nominal"], tth_skim.tables["jes_up"]
    common, i_nom, i_up = np.intersect1d(ak.to_numpy(nominal.event), ak.to_numpy(up.event),
                                         return_indices=True)
    assert len(common) > 0 and len(up) >= len(nominal)  # jets move up across the threshold
    np.testing.assert_allclose(ak.to_numpy(up.jet1_pt)[i_up],
                               ak.to_numpy(nominal.jet1_pt)[i_nom] * (1 + tiny_config.systematics.jes),
                               rtol=1e-5)
    jer_up = tth_skim.tables["jer_up"]
    assert not np.allclose(ak.to_numpy(jer_up.ht)[:5], ak.to_numpy(nominal.ht)[:5])


def test_real_cms_nanoaod_runs_unchanged(cms_file: Path) -> None:
    config = load_config("cms_tt")
    result = run_skim(config, "cms_tt", [str(cms_file)])
    table = result.tables["nominal"]
    assert result.n_events == 200 and len(table) > 10
    labels = set(np.unique(ak.to_numpy(table.label)))
    assert labels <= {config.label_of(p) for p in ("tt_bb", "tt_b", "tt_cc", "tt_lf")}
    assert config.label_of("tt_lf") in labels
    # genWeight of this sample is not 1: normalisation uses the sum over all its events
    assert result.cutflow["nominal"]["all_weighted"] == pytest.approx(
        config.processes["tt_lf"].cross_section.value * config.luminosity.value * 1000.0)


def test_futures_executor_gives_the_same_tables(nano_file: Path, tiny_config: AnalysisConfig,
                                                tth_skim) -> None:  # noqa: ANN001
    parallel = run_skim(tiny_config, "tth", [str(nano_file)], workers=2, chunksize=20)
    for shift, table in tth_skim.tables.items():
        other = parallel.tables[shift]
        np.testing.assert_array_equal(ak.to_numpy(other.event), ak.to_numpy(table.event))
        np.testing.assert_allclose(ak.to_numpy(other.weight), ak.to_numpy(table.weight), rtol=1e-12)
        np.testing.assert_allclose(ak.to_numpy(other.ht), ak.to_numpy(table.ht), rtol=1e-12)
    assert parallel.cutflow == tth_skim.cutflow


def test_stitched_filter_efficiencies_add_to_one(tiny_config: AnalysisConfig, tmp_path: Path,
                                                 ttbar_file: Path) -> None:
    from analysis.events.generate import generate_chunk
    from analysis.skim.inputs import filter_efficiency

    assert tiny_config.filter_complement("tt_extra_b") == "tt_rest"
    assert tiny_config.filter_complement("tt_rest") == "tt_extra_b"
    assert tiny_config.filter_complement("tth") is None
    extra_b = tmp_path / "tt_extra_b_0.root"
    # 10 filtered events (~270 tried) instead of the config's 40: a quarter of the time, and
    # still a few per cent passing
    dataset = tiny_config.datasets["tt_extra_b"]
    assert dataset.generator is not None
    smaller = dataclasses.replace(tiny_config, datasets={**tiny_config.datasets, "tt_extra_b":
                                  dataclasses.replace(dataset, generator=dataclasses.replace(
                                      dataset.generator, n_events=10, chunk_size=10))})
    generate_chunk(smaller, "tt_extra_b", 0, extra_b)
    pooled_b = filter_efficiency([str(extra_b)], [str(ttbar_file)])
    pooled_rest = filter_efficiency([str(ttbar_file)], [str(extra_b)])
    assert pooled_b + pooled_rest == pytest.approx(1.0, abs=1e-12)
    assert 0.01 < pooled_b < 0.1  # an extra b quark above 15 GeV in a few per cent of tt events


def test_weight_columns_follow_the_config_systematics(tth_skim) -> None:  # noqa: ANN001
    # the names come from analysis.config; PSWeight's indices are CMS's order, whatever the names
    assert _PS_INDEX == {"isr_up": 0, "fsr_up": 1, "isr_down": 2, "fsr_down": 3}
    expected = {f"weight_{name}_{direction}" for name in WEIGHT_SYSTEMATICS
                for direction in ("up", "down")}
    table = tth_skim.tables["nominal"]
    assert {f for f in table.fields if f.startswith("weight_")} == expected
