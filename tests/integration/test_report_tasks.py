"""The whole graph as real law tasks on the tiny config: Report from nothing, nothing to do on a
second call, and the same result JSON files in a second store."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pyhf
import pytest

from analysis.config import load_config
from tasks.cuts import ReduceEvents
from tasks.inference import Fit
from tasks.report import Report, TaylorAnalysis
from tests.integration.conftest import REPO, law_run

pytestmark = pytest.mark.slow

CONFIG = "tth_bb_tiny"
ARGS = ("--version", "t1", "--config", CONFIG)


def _dir(cls: type, **params: str) -> Path:
    return Path(cls(version="t1", config=CONFIG, **params).target().abspath)


def _files(store: Path) -> dict[str, int]:
    return {str(p.relative_to(store)): p.stat().st_mtime_ns for p in store.rglob("*")
            if p.is_file()}


@pytest.fixture(scope="module")
def report_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A store in which ``law run Report`` ran from nothing on the tiny config (a new process,
    as a user runs it)."""
    store = tmp_path_factory.mktemp("report_store")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DIFFANA_STORE", str(store))
        law_run(["tasks.report.Report", *ARGS, "--workers", "2"], {}, REPO, timeout_s=1200)
        yield store


def test_report_from_nothing(report_store: Path) -> None:
    config = load_config(CONFIG)
    root = report_store / CONFIG
    report = _dir(Report)
    html = (report / "report.html").read_text()
    markdown = (report / "report.md").read_text()
    assert html.count("data:image/png;base64,") >= 2  # self-contained: images embedded
    assert "<table>" in html and "| selection | model | strategy |" in markdown
    summary = json.loads((report / "summary.json").read_text())
    training = config.training
    variants = len(training.models) * len(training.strategies) + len(training.joint_cuts)
    assert len(summary["results"]) == 2 * variants  # with and without the learned skim
    for key, result in summary["results"].items():
        assert result["sigma_mu_stat"] > 0, key
        assert not result["sigma_mu"] < result["sigma_mu_stat"], key  # NaN: beyond the mu range
        assert 0 <= result["auc"] <= 1
        assert math.isfinite(result["expected_significance"])
        assert set(result["impacts"]) >= {"jes", "jer", "btag", "isr", "fsr", "lumi"}
        assert len(result["sigma_mu_folds"]) == training.n_folds
    # matched sizes (arXiv:2402.17386): both within 10 % of the target
    for count in summary["parameters"].values():
        assert abs(count - training.target_parameters) < 0.1 * training.target_parameters
    assert summary["provenance"]["config_sha256"] == config.digest
    # one sentence per non-CE network about its sigma_mu against CE's, and the verdict with
    # and without the MC statistical uncertainty
    sentence = "against CE, expected σ_μ with all systematics:"
    assert markdown.count(sentence) == 2 * (variants - len(training.models))
    assert "With MC stat., against CE, with the same sign" in markdown
    assert "Without MC stat., against CE, with the same sign" in markdown
    # each workspace is a valid pyhf workspace as written, with the modifiers
    for path in (root / "BuildWorkspace" / "t1").rglob("workspace.json"):  # all variants
        spec = json.loads(path.read_text())
        model = pyhf.Workspace(spec).model()
        assert model.config.poi_name == "mu"
        kinds = {(m["name"], m["type"]) for s in spec["channels"][0]["samples"]
                 for m in s["modifiers"]}
        # shapes within the templates' MC stat. are pruned (binning.json says which)
        binning = json.loads(path.with_name("binning.json").read_text())
        pruned = {syst for _, syst in binning["pruned_shapes"]}
        for syst in ("jes", "jer", "btag", "isr", "fsr"):
            assert (syst, "normsys") in kinds
            assert (syst, "histosys") in kinds or syst in pruned
        assert len(binning["edges"]) == len(spec["observations"][0]["data"]) + 1
        assert ("lumi", "normsys") in kinds and ("mu", "normfactor") in kinds
        assert any(t == "staterror" for _, t in kinds)
    # the pyhf command line reads a workspace the graph wrote, as it is
    pyhf_cli = str(Path(sys.executable).with_name("pyhf"))
    run = subprocess.run([pyhf_cli, "cls", str(path)], capture_output=True, text=True,
                         timeout=120, check=False)
    assert run.returncode == 0 and "CLs_obs" in run.stdout, run.stderr
    # the learned skim reports its trade-off and the reduced tables are smaller
    tradeoff = json.loads((_dir(ReduceEvents) / "tradeoff.json").read_text())
    assert tradeoff["kept_events"] <= tradeoff["skimmed_events"]
    assert tradeoff["points"][0]["data_fraction"] == 1.0
    for name in ("tradeoff.png", "tradeoff.pdf", "tradeoff.md"):
        assert (_dir(ReduceEvents) / name).stat().st_size > 0
    fit = _dir(Fit, model="dnn", strategy="inference")
    for name in ("scan", "pulls", "impacts"):
        assert (fit / f"{name}.png").exists() and (fit / f"{name}.pdf").exists()
    taylor = json.loads((_dir(TaylorAnalysis, model="dnn", strategy="ce")
                         / "taylor.json").read_text())
    assert taylor["feature_names"] == list(config.features.event)


def test_second_call_does_nothing(report_store: Path) -> None:
    before = _files(report_store)
    assert Report(version="t1", config=CONFIG).complete()
    law_run(["tasks.report.Report", *ARGS], {}, REPO)  # exit 0: the graph is complete
    assert _files(report_store) == before  # and nothing was rewritten


def test_second_store_same_results(report_store: Path, tmp_path: Path) -> None:
    """Same config, version and seed in another store, the whole graph again: identical result
    JSON files (every task's, the report's summary included) and the same Markdown report."""
    other = tmp_path / "other"
    law_run(["tasks.report.Report", *ARGS, "--workers", "2"], {"DIFFANA_STORE": str(other)},
            REPO, timeout_s=1200)
    compared = set()
    for path in sorted(other.rglob("*.json")):
        relative = path.relative_to(other)
        mine, theirs = path.read_bytes(), (report_store / relative).read_bytes()
        if path.name == "cutflow.json":  # names its input files, which live in each store
            mine, theirs = (json.dumps({k: v for k, v in json.loads(x).items() if k != "files"})
                            for x in (mine, theirs))
        assert mine == theirs, relative
        compared.add(relative.parts[1])  # the task's name
    # every task of the graph that writes JSON took part, not only the first few
    assert {"GenerateEvents", "Skim", "LearnCuts", "ReduceEvents", "TrainModel", "Evaluate",
            "CreateHistograms", "BuildWorkspace", "Fit", "TaylorAnalysis", "Report"} <= compared
    markdown = _dir(Report) / "report.md"
    assert (other / markdown.relative_to(report_store)).read_text() == markdown.read_text()
