"""Pythia generation into NanoAOD: naming, content, weights, filter and bit-identical reruns."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import uproot

from analysis.config import AnalysisConfig
from analysis.events.generate import chunk_event_counts, chunk_seed, generate_chunk

NANOAOD_BRANCHES = {
    "run", "luminosityBlock", "event", "genWeight", "nPSWeight", "PSWeight", "genTtbarId",
    "nJet", "Jet_pt", "Jet_eta", "Jet_phi", "Jet_mass", "Jet_btagDeepFlavB", "Jet_hadronFlavour",
    "nMuon", "Muon_pt", "Muon_eta", "Muon_phi", "Muon_tightId", "Muon_pfRelIso04_all",
    "nElectron", "Electron_pt", "Electron_cutBased", "Electron_pfRelIso03_all",
    "MET_pt", "MET_phi", "nGenJet", "GenJet_pt",
}


def test_nanoaod_naming_and_content(nano_file: Path) -> None:
    with uproot.open(nano_file) as file:
        events = file["Events"]
        assert NANOAOD_BRANCHES <= set(events.keys())
        data = events.arrays(library="ak")
        runs = file["Runs"].arrays(library="np")
    assert len(data) == 60 and runs["genEventCount"][0] == 60
    assert np.all(data.event == np.arange(1, 61)) and np.all(data.nPSWeight == 4)
    assert runs["genEventSumw"][0] == pytest.approx(float(ak.sum(data.genWeight)))
    assert runs["genFilterTried"][0] == runs["genFilterPassed"][0] == 60  # no filter on ttH
    # ttH(bb) in l+jets: many jets, b jets among them, one prompt lepton in most events
    assert float(ak.mean(data.nJet)) > 5
    assert float(ak.mean(ak.sum(data.Jet_hadronFlavour == 5, axis=1))) > 1.5
    prompt = ak.sum(data.Muon_pfRelIso04_all < 0.15, axis=1) + ak.sum(
        data.Electron_pfRelIso03_all < 0.15, axis=1)
    assert float(ak.mean(prompt >= 1)) > 0.6
    assert ak.all(ak.argsort(data.Jet_pt, axis=1, ascending=False) == ak.local_index(data.Jet_pt))
    # PS weights are ratios to the nominal weight, spread around 1
    ps = ak.to_numpy(data.PSWeight)
    assert np.all(ps > 0) and 0.5 < float(np.median(ps)) < 1.5
    assert float(ak.mean(data.MET_pt)) > 20


def test_rerun_is_bit_identical(tmp_path: Path, tiny_config: AnalysisConfig, nano_file: Path) -> None:
    import datetime

    import uproot.writing._cascade as cascade

    again = tmp_path / nano_file.name  # another folder, another time: the same bytes
    generate_chunk(tiny_config, "tth", 0, again)
    assert again.read_bytes() == nano_file.read_bytes()
    assert cascade.datetime is datetime  # uproot's clock runs again after the write
    assert [p.name for p in tmp_path.iterdir()] == [nano_file.name]  # no temporary left
    with uproot.open(nano_file) as first, uproot.open(again) as second:
        for tree in ("Events", "Runs"):
            a = first[tree].arrays(library="np")
            b = second[tree].arrays(library="np")
            assert a.keys() == b.keys()
            for key in a:
                assert np.array_equal(np.concatenate(a[key]) if a[key].dtype == object else a[key],
                                      np.concatenate(b[key]) if b[key].dtype == object else b[key])


def test_chunks_differ_and_count_events(tiny_config: AnalysisConfig) -> None:
    dataset = tiny_config.datasets["tth"]
    assert chunk_event_counts(dataset) == [60, 60]
    assert chunk_seed(dataset, 0) != chunk_seed(dataset, 1)


def test_filtered_sample_records_efficiency(ttbar_file: Path) -> None:
    with uproot.open(ttbar_file) as file:
        runs = file["Runs"].arrays(library="np")
        ttbar_id = file["Events"]["genTtbarId"].array(library="np") % 100
    tried, passed = runs["genFilterTried"][0], runs["genFilterPassed"][0]
    # the complement of "an extra b quark with pt > 15 GeV" keeps most tt events (~96 %)
    assert passed == 60 and 0.8 < passed / tried <= 1.0
    assert np.mean(ttbar_id == 0) > 0.5  # mostly tt+light


class _FakeInfo:
    """Pythia's Info with its weights sorted by label, as Pythia 8.317 orders them."""

    labels = ["Baseline", "fsr.murfac=0.5", "fsr.murfac=2.0", "isr.murfac=0.5", "isr.murfac=2.0"]

    def nWeights(self) -> int:  # noqa: N802 (Pythia's name)
        return len(self.labels)

    def weightLabel(self, index: int) -> str:  # noqa: N802
        return self.labels[index]


def test_ps_weights_follow_cms_order() -> None:
    from analysis.events.pythia import _ps_weight_indices

    # CMS NanoAOD: [0] ISR up (ISR=2), [1] FSR up, [2] ISR down (ISR=0.5), [3] FSR down;
    # "up" is more radiation: the renormalisation scale times 0.5
    assert _ps_weight_indices(_FakeInfo()) == [3, 1, 4, 2]


def test_nan_feature_names_the_column(tmp_path: Path) -> None:
    from analysis.errors import InputDataError
    from analysis.skim.processor import _check_finite

    columns = {"ht": np.array([1.0, np.nan]), "label": np.array([0, 1])}
    with pytest.raises(InputDataError, match=r"f.root: column ht \(nominal\) has 1 non-finite"):
        _check_finite(columns, ["f.root"], "nominal")


@pytest.fixture(scope="module")
def replica_file(tmp_path_factory: pytest.TempPathFactory, tiny_config: AnalysisConfig) -> Path:
    """The ttH chunk of ``nano_file`` with three detector realisations per event."""
    generator = dataclasses.replace(tiny_config.datasets["tth"].generator, replicas=3)
    datasets = {**tiny_config.datasets,
                "tth": dataclasses.replace(tiny_config.datasets["tth"], generator=generator)}
    path = tmp_path_factory.mktemp("replicas") / "tth_0.root"
    generate_chunk(dataclasses.replace(tiny_config, datasets=datasets), "tth", 0, path)
    return path


def _arrays(path: Path) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    with uproot.open(path) as file:
        return file["Events"].arrays(library="np"), file["Runs"].arrays(library="np")


def test_replicas_share_event_and_split_weight(replica_file: Path) -> None:
    data, runs = _arrays(replica_file)
    assert np.array_equal(data["event"], np.repeat(np.arange(1, 61), 3))  # same fold, adjacent
    assert np.array_equal(data["detectorReplica"], np.tile([0, 1, 2], 60))
    assert np.allclose(data["genWeight"], 1 / 3)
    assert runs["genEventCount"][0] == 60 and runs["detectorReplicas"][0] == 3
    assert runs["genEventSumw"][0] == pytest.approx(60.0, rel=1e-6)  # normalisation unchanged


def test_replica_zero_is_the_event_without_replicas(replica_file: Path, nano_file: Path) -> None:
    replicas, _ = _arrays(replica_file)
    single, _ = _arrays(nano_file)
    first = replicas["detectorReplica"] == 0
    assert np.all(single["detectorReplica"] == 0)
    for key in single:
        if key in ("genWeight", "detectorReplica"):
            continue
        a, b = single[key], replicas[key][first]
        if a.dtype == object:
            a, b = np.concatenate(a), np.concatenate(b)
        assert np.array_equal(a, b), key


def test_replicas_are_independent_detector_draws(replica_file: Path) -> None:
    data, _ = _arrays(replica_file)
    gen = [data["GenJet_pt"][data["detectorReplica"] == k] for k in range(3)]
    assert all(np.array_equal(np.concatenate(gen[0]), np.concatenate(g)) for g in gen[1:])
    # the relative smearing of the generator jets reconstructed in replicas 1 and 2: uncorrelated
    residual = []
    for k in (1, 2):
        chosen = data["detectorReplica"] == k
        rows = []
        for pt, index, gen_pt in zip(data["Jet_pt"][chosen], data["Jet_genJetIdx"][chosen],
                                     data["GenJet_pt"][chosen]):
            full = np.full(len(gen_pt), np.nan)
            full[index] = pt / gen_pt[index] - 1
            rows.append(full)
        residual.append(np.concatenate(rows))
    both = np.isfinite(residual[0]) & np.isfinite(residual[1])
    assert both.sum() > 300
    assert abs(np.corrcoef(residual[0][both], residual[1][both])[0, 1]) < 0.15
    assert not np.array_equal(data["MET_pt"][0::3], data["MET_pt"][1::3])


def test_replica_rerun_is_bit_identical(tmp_path: Path, tiny_config: AnalysisConfig,
                                        replica_file: Path) -> None:
    generator = dataclasses.replace(tiny_config.datasets["tth"].generator, replicas=3)
    datasets = {**tiny_config.datasets,
                "tth": dataclasses.replace(tiny_config.datasets["tth"], generator=generator)}
    again = tmp_path / "again.root"
    generate_chunk(dataclasses.replace(tiny_config, datasets=datasets), "tth", 0, again)
    first, _ = _arrays(replica_file)
    second, _ = _arrays(again)
    for key in first:
        a, b = first[key], second[key]
        if a.dtype == object:
            a, b = np.concatenate(a), np.concatenate(b)
        assert np.array_equal(a, b), key
