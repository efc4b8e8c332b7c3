"""Real law tasks: GenerateEvents -> Skim on the tiny config, reruns, Dask, bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import awkward as ak
import law
import luigi
import numpy as np
import pyarrow.parquet as pq
import pytest
import uproot
import yaml

from analysis.config import OBJECT_SHIFTS, load_config, resolve_config_path
from analysis.errors import InputDataError
from analysis.skim.processor import run_skim
from tasks.generate import GenerateEvents
from tasks.skim import Skim

pytestmark = pytest.mark.slow


def _build(task: law.Task, workers: int = 1) -> bool:
    return luigi.build([task], local_scheduler=True, workers=workers, log_level="WARNING")


def _outputs(store: Path) -> dict[str, float]:
    return {str(p.relative_to(store)): p.stat().st_mtime_ns for p in store.rglob("*") if p.is_file()}


def _task_dir(cls: type) -> Path:
    """The output directory of a task of the tiny config (store, version, config tag)."""
    return Path(cls(version="t1", config="tth_bb_tiny").target().abspath)


def test_skim_from_nothing_then_nothing_to_do(tiny_skim_store: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    # the session's shared store: Skim from nothing (with GenerateEvents before it)
    store = tiny_skim_store
    monkeypatch.setenv("DIFFANA_STORE", str(store))
    config = load_config("tth_bb_tiny")
    for dataset in config.datasets:
        for shift in OBJECT_SHIFTS:
            path = _task_dir(Skim) / dataset / f"{shift}.parquet"
            table = ak.from_parquet(path)
            assert len(table) > 0 and set(config.features.event) <= set(table.fields)
            provenance = json.loads(pq.read_schema(path).metadata[b"diffana_provenance"])
            assert provenance["config_sha256"] == config.digest
        summary = json.loads((_task_dir(Skim) / dataset / "cutflow.json").read_text())
        assert summary["provenance"]["config_sha256"] == config.digest
    n_chunks = sum(len(range(0, d.generator.n_events, d.generator.chunk_size))
                   for d in config.datasets.values())
    assert len(list(_task_dir(GenerateEvents).rglob("events_*.root"))) == n_chunks
    before = _outputs(store)
    assert _build(Skim(version="t1", config="tth_bb_tiny"))
    assert _outputs(store) == before  # complete: nothing rewritten


def _external_config(tmp_path: Path, files: list[str]) -> Path:
    raw = yaml.safe_load(resolve_config_path("cms_tt").read_text())
    raw["name"] = "external_test"
    raw["datasets"]["cms_tt"]["files"] = files
    path = tmp_path / "external_test.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_skim_on_dask_cluster_equals_local(store: Path, tmp_path: Path, cms_file: Path) -> None:
    """Real CMS NanoAOD v12 through the coffea processor on a Dask cluster named in law.cfg
    ([diffana] dask_scheduler): the chunks run on the cluster's worker process, and every
    shift's table and the cutflow are those of the processor run in this process."""
    from distributed import LocalCluster

    config_path = _external_config(tmp_path, [str(cms_file)])
    local = run_skim(load_config(str(config_path)), "cms_tt", [str(cms_file)])
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster:  # the processor travels to a worker
        # law.config is process-wide: the next test must see the setting as it was before
        had = law.config.has_option("diffana", "dask_scheduler")
        previous = law.config.get("diffana", "dask_scheduler", raw=True) if had else None
        law.config.set("diffana", "dask_scheduler", cluster.scheduler_address)
        try:
            assert _build(Skim(version="dask", config=str(config_path)))
        finally:
            if had:
                law.config.set("diffana", "dask_scheduler", previous)
            else:
                law.config.remove_option("diffana", "dask_scheduler")
        # the scheduler (in this process) saw the processor's tasks: the work went to Dask.
        # state_counts is cumulative; prefix.states drops a group once its tasks are forgotten
        ran = {name: sum(prefix.state_counts.values())
               for name, prefix in cluster.scheduler.task_prefixes.items()}
        assert sum(ran.values()) > 0, ran
    skim_dir = Path(Skim(version="dask", config=str(config_path)).target().abspath)
    for shift in OBJECT_SHIFTS:
        table = ak.from_parquet(skim_dir / "cms_tt" / f"{shift}.parquet")
        expected = local.tables[shift]
        assert len(table) == len(expected) > 0, shift
        np.testing.assert_array_equal(ak.to_numpy(table.event), ak.to_numpy(expected.event))
        np.testing.assert_allclose(ak.to_numpy(table.weight), ak.to_numpy(expected.weight))
    cutflow = json.loads((skim_dir / "cms_tt" / "cutflow.json").read_text())
    assert cutflow["cutflow"] == json.loads(json.dumps(local.cutflow))
    assert cutflow["n_events"] == local.n_events == 200  # the whole file (README of the data)


@pytest.mark.parametrize("case", ["empty", "not_root", "truncated", "no_events_tree",
                                  "missing_branch", "no_pass"])
def test_bad_input_stops_task_and_leaves_nothing(case: str, store: Path, tmp_path: Path,
                                                 cms_file: Path) -> None:
    broken = tmp_path / f"{case}.root"
    content = cms_file.read_bytes()
    if case == "empty":
        broken.write_bytes(b"")
    elif case == "not_root":
        broken.write_text("this is not ROOT\n")
    elif case == "truncated":
        broken.write_bytes(content[: len(content) // 2])
    elif case == "no_events_tree":
        with uproot.recreate(broken) as file:
            file["Runs"] = {"run": np.array([1])}
    elif case == "missing_branch":
        with uproot.open(cms_file) as source:
            events = source["Events"].arrays(["run", "luminosityBlock", "event", "genWeight"],
                                             library="np")
        with uproot.recreate(broken) as file:
            file["Events"] = events  # a NanoAOD file without jets, leptons, MET ...
    else:
        broken.write_bytes(content)
    config = _external_config(tmp_path, [str(broken)])
    if case == "no_pass":
        raw = yaml.safe_load(config.read_text())
        raw["selection"]["n_jets_min"] = 50
        config.write_text(yaml.safe_dump(raw))
    task = Skim(version="bad", config=str(config), branch=0)
    with pytest.raises(InputDataError, match=str(broken)):
        task.run()
    assert not any(t.exists() for t in task.output().values())
    assert not _build(task)
    assert not any(p.suffix in (".parquet", ".json") for p in store.rglob("*"))


def test_external_dataset_keeps_urls_and_resolves_paths(tmp_path: Path, cms_file: Path) -> None:
    from tasks.generate import ExternalDataset

    url = "root://eospublic.cern.ch//eos/opendata/cms/some/file.root"
    config = _external_config(tmp_path, [str(cms_file), url, "relative/file.root"])
    task = ExternalDataset(version="v", config=str(config), dataset="cms_tt")
    assert task.files() == [str(cms_file), url, str(tmp_path / "relative" / "file.root")]
    assert [t.abspath for t in task.output()] == [str(cms_file), str(tmp_path / "relative" / "file.root")]


# ---- NanoAOD versions and lepton multiplicities through the real task -------------------------

def _skim_table(config: Path, version: str = "layouts") -> ak.Array:
    assert _build(Skim(version=version, config=str(config)))
    skim_dir = Path(Skim(version=version, config=str(config)).target().abspath)
    return ak.from_parquet(skim_dir / "cms_tt" / "nominal.parquet")


@pytest.mark.parametrize("n_leptons", [0, 2])
def test_zero_and_two_lepton_selections_through_skim(n_leptons: int, store: Path,
                                                     tmp_path: Path) -> None:
    from tests.unit.skim.nanoaod_layouts import (
        expected_events,
        layout_config,
        write_layout,
    )

    nano = write_layout(tmp_path / "nano_v15.root", "v15", n_events=600)
    features = (["ht", "n_jets", "n_btag", "met_pt", "mbb_closest", "aplanarity"]
                + {0: [], 2: ["lepton_pt", "lepton2_pt", "mll", "mt_w"]}[n_leptons])
    selection = {"n_tight_leptons": n_leptons, "n_jets_min": 6 if n_leptons == 0 else 2,
                 "n_btag_min": 2 if n_leptons == 0 else 1}
    config = layout_config(tmp_path, [str(nano)], {"version": "v15", "met": "PuppiMET",
                                                   "btag": "Jet_btagUParTAK4B"},
                           selection, features, name=f"leptons_{n_leptons}")
    table = _skim_table(config)
    expected = expected_events(nano, load_config(str(config)))
    assert len(expected) >= 5
    np.testing.assert_array_equal(np.sort(ak.to_numpy(table.event)), expected)
    assert set(features) <= set(table.fields)
    assert any(f.startswith("lepton") for f in table.fields) == (n_leptons > 0)
    assert ("lepton2_pt" in table.fields) == (n_leptons == 2)


def test_v15_layout_and_real_v12_skim_through_configs_differing_in_nanoaod_and_selection(
        store: Path, tmp_path: Path, cms_file: Path) -> None:
    """cms_tt.yaml on the real v12 file; the same file with only nanoaod (version, MET,
    discriminant) and selection changed on a v15-layout file."""
    from tests.unit.skim.nanoaod_layouts import expected_events, write_layout

    nano = write_layout(tmp_path / "nano_v15.root", "v15", n_events=600)
    raw = yaml.safe_load(resolve_config_path("cms_tt").read_text())
    raw_v15 = {**raw, "name": "cms_tt_v15",
               "datasets": {"cms_tt": {**raw["datasets"]["cms_tt"], "files": [str(nano)]}},
               "nanoaod": {"version": "v15", "met": "PFMET", "btag": "Jet_btagPNetB"},
               "selection": {**raw["selection"], "n_jets_min": 3}}
    changed = {key for key in raw if raw[key] != raw_v15[key]}
    assert changed == {"name", "datasets", "nanoaod", "selection"}
    path = tmp_path / "cms_tt_v15.yaml"
    path.write_text(yaml.safe_dump(raw_v15, sort_keys=False))
    v15 = _skim_table(path)
    np.testing.assert_array_equal(np.sort(ak.to_numpy(v15.event)),
                                  expected_events(nano, load_config(str(path))))
    real = _skim_table(_external_config(tmp_path, [str(cms_file)]))
    assert len(v15) > 10 and len(real) > 10


def test_allhadronic_example_config_writes_its_parquet(store: Path, tmp_path: Path) -> None:
    """config/cms_tt_allhad_v15.yaml as shipped, on a v15-layout file: every shift's Parquet."""
    from tests.unit.skim.nanoaod_layouts import expected_events, write_layout

    nano = write_layout(tmp_path / "allhad_v15.root", "v15", n_events=600)
    raw = yaml.safe_load(resolve_config_path("cms_tt_allhad_v15").read_text())
    raw["datasets"]["cms_tt"]["files"] = [str(nano)]
    path = tmp_path / "cms_tt_allhad_v15.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    config = load_config(str(path))
    assert config.selection.n_tight_leptons == 0 and config.nanoaod.version == "v15"
    table = _skim_table(path)
    np.testing.assert_array_equal(np.sort(ak.to_numpy(table.event)), expected_events(nano, config))
    skim_dir = Path(Skim(version="layouts", config=str(path)).target().abspath) / "cms_tt"
    assert {p.name for p in skim_dir.iterdir()} == {f"{s}.parquet" for s in OBJECT_SHIFTS} | {
        "cutflow.json"}


def _law_run_skim(config: Path, store: Path) -> tuple[subprocess.CompletedProcess, str]:
    """``law run Skim`` as a user types it; the result and what the terminal showed."""
    law = Path(sys.executable).parent / "law"
    result = subprocess.run(
        [str(law), "run", "tasks.skim.Skim", "--version", "cli", "--config", str(config)],
        env={**os.environ, "DIFFANA_STORE": str(store)}, capture_output=True, text=True,
        timeout=300, check=False, cwd=Path(__file__).resolve().parents[2])
    return result, result.stdout + result.stderr


def test_law_run_shows_the_message_not_a_traceback(tmp_path: Path) -> None:
    """``law run Skim`` with a v12 config on a v15 file: the terminal shows the full message."""
    from tests.unit.skim.nanoaod_layouts import layout_config, write_layout

    nano = write_layout(tmp_path / "nano_v15.root", "v15")
    config = layout_config(tmp_path, [str(nano)], {"version": "v12", "met": "MET",
                                                   "btag": "Jet_btagDeepFlavB"})
    result, terminal = _law_run_skim(config, tmp_path / "store")
    assert (f"InputDataError: {nano}: Events tree lacks 3 branches that the config (NanoAOD v12) "
            "reads: Jet_jetId (nanoaod.version: v12 (jet ID read from the file)); MET_pt, MET_phi "
            "(nanoaod.met: MET). The file looks like NanoAOD v15") in terminal, terminal
    assert "Traceback" not in terminal, terminal
    assert not list((tmp_path / "store").rglob("*.parquet"))


def test_law_run_shows_a_config_error_as_its_message(tmp_path: Path) -> None:
    """A ConfigError met while luigi checks the task (complete()): the message, no traceback."""
    from tests.unit.skim.nanoaod_layouts import layout_config

    config = layout_config(tmp_path, ["unused.root"], {"version": "v12"},
                           {"n_tight_leptons": 0}, ["ht", "lepton_pt"], name="lepton_free")
    result, terminal = _law_run_skim(config, tmp_path / "store")
    assert (f"ConfigError: {config}: features.event = \"lepton_pt\": needs 1 tight lepton in every "
            "selected event, but selection.n_tight_leptons = 0") in terminal, terminal
    assert "Traceback" not in terminal and result.returncode != 0, terminal
