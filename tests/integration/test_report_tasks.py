"""The whole graph as real law tasks on the tiny config: Report from nothing, nothing to do on a
second call, and the same result JSON files in a second store."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator
from pathlib import Path

import luigi
import pyhf
import pytest

from analysis.config import load_config
from tasks.inference import Fit
from tasks.report import Report

pytestmark = pytest.mark.slow

CONFIG = "tth_bb_tiny"


def _build(task: luigi.Task, workers: int = 1) -> bool:
    return luigi.build([task], local_scheduler=True, workers=workers, log_level="WARNING")


def _files(store: Path) -> dict[str, int]:
    return {str(p.relative_to(store)): p.stat().st_mtime_ns for p in store.rglob("*")
            if p.is_file()}


@pytest.fixture(scope="module")
def report_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A store in which ``law run Report`` ran from nothing on the tiny config."""
    store = tmp_path_factory.mktemp("report_store")
    before = os.environ.get("DIFFANA_STORE")
    os.environ["DIFFANA_STORE"] = str(store)
    try:
        assert _build(Report(version="t1", config=CONFIG), workers=1)
        yield store
    finally:
        if before is None:
            del os.environ["DIFFANA_STORE"]
        else:
            os.environ["DIFFANA_STORE"] = before


def test_report_from_nothing(report_store: Path) -> None:
    config = load_config(CONFIG)
    root = report_store / CONFIG
    report = root / "Report" / "t1"
    html = (report / "report.html").read_text()
    markdown = (report / "report.md").read_text()
    assert html.count("data:image/png;base64,") >= 2  # self-contained: images embedded
    assert "<table>" in html and "| selection | model | strategy |" in markdown
    summary = json.loads((report / "summary.json").read_text())
    training = config.training
    assert len(summary["results"]) == 2 * len(training.models) * len(training.strategies)
    for key, result in summary["results"].items():
        assert result["sigma_mu"] >= result["sigma_mu_stat"] > 0, key
        assert 0 <= result["auc"] <= 1
        assert math.isfinite(result["expected_significance"])
        assert set(result["impacts"]) >= {"jes", "jer", "btag", "isr", "fsr", "lumi"}
    # matched sizes (arXiv:2402.17386): both within 10 % of the target
    for count in summary["parameters"].values():
        assert abs(count - training.target_parameters) < 0.1 * training.target_parameters
    assert summary["provenance"]["config_sha256"] == config.digest
    # every strategy's sentence about sigma_mu against CE is in the report
    assert markdown.count("compared with CE") == 2 * len(training.models) * (
        len(training.strategies) - 1)
    # each workspace is a valid pyhf workspace as written, with the modifiers
    for path in (root / "BuildWorkspace" / "t1").rglob("workspace.json"):
        spec = json.loads(path.read_text())
        model = pyhf.Workspace(spec).model()
        assert model.config.poi_name == "mu"
        kinds = {(m["name"], m["type"]) for s in spec["channels"][0]["samples"]
                 for m in s["modifiers"]}
        for syst in ("jes", "jer", "btag", "isr", "fsr"):
            assert {(syst, "histosys"), (syst, "normsys")} <= kinds
        assert ("lumi", "normsys") in kinds and ("mu", "normfactor") in kinds
        assert any(t == "staterror" for _, t in kinds)
    # the learned skim reports its trade-off and the reduced tables are smaller
    tradeoff = json.loads((root / "ReduceEvents" / "t1" / "tradeoff.json").read_text())
    assert tradeoff["kept_events"] <= tradeoff["skimmed_events"]
    assert tradeoff["points"][0]["data_fraction"] == 1.0
    for name in ("tradeoff.png", "tradeoff.pdf", "tradeoff.md"):
        assert (root / "ReduceEvents" / "t1" / name).stat().st_size > 0
    fit = root / "Fit" / "t1" / "learned_cuts" / "dnn_inference"
    for name in ("scan", "pulls", "impacts"):
        assert (fit / f"{name}.png").exists() and (fit / f"{name}.pdf").exists()
    taylor = json.loads((root / "TaylorAnalysis" / "t1" / "learned_cuts" / "dnn_ce"
                         / "taylor.json").read_text())
    assert taylor["feature_names"] == list(config.features.event)


def test_second_call_does_nothing(report_store: Path,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIFFANA_STORE", str(report_store))
    before = _files(report_store)
    assert Report(version="t1", config=CONFIG).complete()
    assert _build(Report(version="t1", config=CONFIG))
    assert _files(report_store) == before


def test_second_store_same_results(report_store: Path, tmp_path: Path,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Same config, version and seed in another store: identical result JSON files."""
    other = tmp_path / "other"
    monkeypatch.setenv("DIFFANA_STORE", str(other))
    assert _build(Fit(version="t1", config=CONFIG, model="dnn", strategy="inference"))
    compared = 0
    for path in sorted(other.rglob("*.json")):
        relative = path.relative_to(other)
        mine, theirs = path.read_bytes(), (report_store / relative).read_bytes()
        if path.name == "cutflow.json":  # names its input files, which live in each store
            mine, theirs = (json.dumps({k: v for k, v in json.loads(x).items() if k != "files"})
                            for x in (mine, theirs))
        assert mine == theirs, relative
        compared += 1
    # LearnCuts, ReduceEvents, TrainModel (x folds), Evaluate, CreateHistograms, BuildWorkspace,
    # Fit and the skims' cutflows at least
    assert compared >= 10
