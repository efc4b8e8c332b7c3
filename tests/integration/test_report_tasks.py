"""The whole graph as real law tasks on the tiny config: Report from nothing, nothing to do on a
second call, and the same result JSON files when a chain of the graph is made again in a second
store."""

from __future__ import annotations

import functools
import html as html_module
import json
import math
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import numpy as np
import pyhf
import pytest
import uproot
from luigi.task import flatten

from analysis.config import load_config
from analysis.inference.model import model_spec
from tasks.cuts import ReduceEvents
from tasks.inference import BuildWorkspace, CreateHistograms, Evaluate, Fit
from tasks.report import Report, TaylorAnalysis
from tasks.train import TrainModel
from tests.integration.conftest import REPO, law_run, link_store, unchanged

pytestmark = pytest.mark.slow

T = TypeVar("T")

CONFIG = "tth_bb_tiny"
# both selections, as the Report's --compare-without-cuts (off by default) makes them
ARGS = ("--version", "t1", "--config", CONFIG, "--compare-without-cuts", "true")


def _dir(cls: type, **params: str) -> Path:
    return Path(cls(version="t1", config=CONFIG, **params).target().abspath)


def _fitted(call: Callable[[], T]) -> T:
    """``call()`` with pyhf on MINUIT (as the fits use it), at looser tolerances until a
    minimisation converges (tiny models); the caller's pyhf backend is restored after."""
    backend, optimizer = pyhf.get_backend()
    try:
        for tolerance, strategy in ((0.01, None), (0.1, 2), (1.0, 2)):
            pyhf.set_backend("numpy", pyhf.optimize.minuit_optimizer(tolerance=tolerance,
                                                                     strategy=strategy))
            try:
                with np.errstate(divide="ignore", invalid="ignore"):
                    return call()
            except pyhf.exceptions.FailedMinimization as error:
                failure = error
        raise failure
    finally:
        pyhf.set_backend(backend, optimizer)


@functools.cache
def _rise_at_poi_bounds_cached(spec_json: str) -> tuple[float, float]:
    model = pyhf.Workspace(json.loads(spec_json)).model()
    poi = model.config.poi_index
    truth = np.asarray(model.config.suggested_init(), dtype=float)
    truth[poi] = 1.0
    asimov = np.asarray(model.expected_data(truth))
    bounds = model.config.suggested_bounds()
    # on Asimov data the likelihood is largest at the parameters that generated it
    best = min(float(pyhf.infer.mle.twice_nll(truth, asimov, model)[0]), _fitted(
        lambda: float(pyhf.infer.mle.fit(asimov, model, par_bounds=bounds,
                                         return_fitted_val=True)[1])))
    return tuple(_fitted(lambda mu=mu: float(pyhf.infer.mle.fixed_poi_fit(
        mu, asimov, model, par_bounds=bounds, return_fitted_val=True)[1])) - best
        for mu in bounds[poi])


def _rise_at_poi_bounds(spec: dict) -> tuple[float, float]:
    """``-2 Delta ln L`` of the profile likelihood on Asimov data (mu = 1) at the lower and the
    upper bound of mu: below 1 on a side, sigma_mu is beyond the range of mu (NaN)."""
    return _rise_at_poi_bounds_cached(json.dumps(spec, sort_keys=True))


def _cls_at(spec: dict, mu: float, data: str) -> float:
    """CLs at ``mu`` (``qtilde``, mu in [0, ``mu``]) on the workspace's pseudo-data
    (``observed``) or, for the median expected CLs, on background-only Asimov data."""
    return _cls_at_cached(json.dumps(spec, sort_keys=True), mu, data)


@functools.cache
def _cls_at_cached(spec_json: str, mu: float, data: str) -> float:
    workspace = pyhf.Workspace(json.loads(spec_json))
    model = workspace.model()
    poi = model.config.poi_index
    bounds = model.config.suggested_bounds()
    bounds[poi] = (0.0, mu)
    background = np.asarray(model.config.suggested_init(), dtype=float)
    background[poi] = 0.0
    values = (workspace.data(model) if data == "observed"
              else model.expected_data(background))
    observed, expected = _fitted(lambda: pyhf.infer.hypotest(
        mu, values, model, test_stat="qtilde", par_bounds=bounds, return_expected_set=True))
    return float(observed if data == "observed" else expected[2])


def _files(store: Path) -> dict[str, int]:
    return {str(p.relative_to(store)): p.stat().st_mtime_ns for p in store.rglob("*")
            if p.is_file()}


@pytest.mark.parametrize("seeds", [1, 2])
def test_model_tasks_require_the_networks_of_their_model_and_strategy(tmp_path: Path,
                                                                      seeds: int) -> None:
    # Evaluate: every fold's network per seed index, in fold order; TaylorAnalysis: seed index
    # 0, fold 0 (one lookup, ModelTask.network_requires, for both)
    text = (REPO / "config" / f"{CONFIG}.yaml").read_text()
    assert "  seeds: 1" in text
    config_file = tmp_path / f"{CONFIG}.yaml"
    config_file.write_text(text.replace("  seeds: 1", f"  seeds: {seeds}", 1))
    config = load_config(str(config_file))
    assert config.training.seeds == seeds
    variants = {(m, s) for _, _, m, s in TrainModel(version="t1", config=str(config_file))
                .get_branch_map().values()}
    assert len(variants) >= 4  # else the choice of the right variant is hardly tested
    for model, strategy in sorted(variants):
        params = {"version": "t1", "config": str(config_file), "model": model,
                  "strategy": strategy}
        networks = Evaluate(**params).requires()["models"]
        assert {seed: [t.branch_data for t in tasks] for seed, tasks in networks.items()} == {
            seed: [(seed, fold, model, strategy) for fold in range(config.training.n_folds)]
            for seed in range(seeds)}
        assert TaylorAnalysis(**params).requires()["model"].branch_data == (0, 0, model,
                                                                            strategy)


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
    limit_max = config.inference.limit_max
    for key, result in summary["results"].items():
        # finite on the tiny config: the stat.-only sigma_mu, the significance, the AUC
        assert math.isfinite(result["sigma_mu_stat"]) and result["sigma_mu_stat"] > 0, key
        assert math.isfinite(result["expected_significance"]), key
        assert result["expected_significance"] > 0, key  # Asimov data with mu = 1
        assert 0 <= result["auc"] <= 1
        assert set(result["impacts"]) >= {"jes", "jer", "btag", "isr", "fsr", "lumi"}
        assert len(result["sigma_mu_folds"]) == training.seeds * training.n_folds
        assert len(result["fold_labels"]) == training.seeds * training.n_folds
        # sigma_mu with systematics and the CLs limits: a number, or NaN for the documented
        # reason, checked on the workspace (on the tiny config each is NaN: 1-2 bins with a
        # 50 % tt+bb cross-section and ~60 % MC stat. uncertainty leave the profile likelihood
        # flat, -2 Delta ln L < 1, over the whole range of mu)
        directory = _dir(BuildWorkspace, model=result["model"], strategy=result["strategy"],
                         learned_cuts=result["learned_cuts"])
        spec = json.loads((directory / "workspace.json").read_text())
        if math.isfinite(result["sigma_mu"]):
            assert result["sigma_mu"] >= result["sigma_mu_stat"] * (1 - 1e-3), key
        else:  # the -2 Delta ln L = 1 interval reaches a bound of mu
            rise = _rise_at_poi_bounds(spec)
            assert min(rise) < 1.0, (key, rise)
        for name, data in (("expected_limit", "background"), ("observed_limit", "observed")):
            if math.isfinite(result[name]):
                assert 0 < result[name] <= limit_max, (key, name, result[name])
            else:  # beyond limit_max: CLs not yet below 0.05 there
                cls = _cls_at(spec, limit_max, data)
                assert cls >= 0.05, (key, name, cls)
    # matched sizes (arXiv:2402.17386): both within 10 % of the target
    for count in summary["parameters"].values():
        assert abs(count - training.target_parameters) < 0.1 * training.target_parameters
    assert summary["provenance"]["config_sha256"] == config.digest
    # the first section: the headline (best sigma_mu, the verdict) and the comparison figure;
    # then one row per non-CE network of the paired comparison against CE
    first = markdown.split("\n## ", 2)[1]
    assert first.startswith("Result\n") and "Verdict, " in first
    # the best network where some sigma_mu is determined; on the tiny config every interval can
    # reach mu's bounds (1-2 bins), and the headline says so instead of naming a network
    determined = any(math.isfinite(r["sigma_mu"]) for r in summary["results"].values())
    assert ("Lowest expected σ_μ total: " in first) == determined
    assert ("No network has a determined expected σ_μ" in first) == (not determined)
    assert "(report_comparison.png)" in first
    paired = markdown.split("## Each strategy against CE, paired over seeds × folds", 1)[1]
    table = [line for line in paired.split("\n## ", 1)[0].splitlines()
             if line.startswith("| ") and " / " in line.split("|")[1]
             and "selection" not in line]
    assert len(table) == 2 * (variants - len(training.models))
    # each workspace is a valid pyhf workspace as written, with the modifiers
    for path in (root / "BuildWorkspace" / "t1").rglob("workspace.json"):  # all variants
        spec = json.loads(path.read_text())
        model = pyhf.Workspace(spec).model()
        assert model.config.poi_name == "mu"
        # the channels of the config's statistical model (the tiny config: the ttH score alone;
        # the categorised model with a free tt+bb normalisation is the demo's, unit-tested in
        # tests/unit/inference/test_model.py against pyhf)
        assert [c["name"] for c in spec["channels"]] == list(model_spec(config).channels)
        kinds = {(m["name"], m["type"]) for c in spec["channels"] for s in c["samples"]
                 for m in s["modifiers"]}
        # the normfactors are mu and the config's free normalisations, nothing else (the tiny
        # config has none; unconstrained where there are)
        assert {name for name, kind in kinds if kind == "normfactor"} == {
            "mu", *(f"norm_{p}" for p in config.inference.free_normalisations)}
        for process in config.inference.free_normalisations:
            assert not model.config.param_set(f"norm_{process}").constrained
        # shapes within the templates' MC stat. are pruned (binning.json says which)
        binning = json.loads(path.with_name("binning.json").read_text())
        pruned = {syst for _, _, syst in binning["pruned_shapes"]}
        for syst in ("jes", "jer", "btag", "isr", "fsr"):
            assert (syst, "normsys") in kinds
            assert (syst, "histosys") in kinds or syst in pruned
        observations = {o["name"]: o["data"] for o in spec["observations"]}
        for name, channel in binning["channels"].items():
            assert len(channel["edges"]) == len(observations[name]) + 1
        assert ("lumi", "normsys") in kinds and ("mu", "normfactor") in kinds
        assert any(t == "staterror" for _, t in kinds)
    # the pyhf command line reads a workspace the graph wrote, as it is
    pyhf_cli = str(Path(sys.executable).with_name("pyhf"))
    run = subprocess.run([pyhf_cli, "cls", str(path)], capture_output=True, text=True,
                         timeout=120, check=False)
    assert run.returncode == 0 and "CLs_obs" in run.stdout, run.stderr
    for command in ("inspect", "fit"):
        run = subprocess.run([pyhf_cli, command, str(path)], capture_output=True, text=True,
                             timeout=120, check=False)
        assert run.returncode == 0, (command, run.stderr)
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


# Run in the page by the browser: where the first section's parts are drawn, written into the DOM
# that --dump-dom prints (the page itself has no script).
_LAYOUT_SCRIPT = """<script>
const heading = [...document.querySelectorAll("h2")].find(h => h.textContent.trim() === "Result");
const after = heading ? [...document.querySelectorAll("h2 ~ *")] : [];
const headline = after.find(e => e.tagName === "P");
const image = after.map(e => e.querySelector("img")).find(i => i);
const box = e => e ? e.getBoundingClientRect() : null;
document.body.setAttribute("data-layout", JSON.stringify({
  heading: box(heading), headline: box(headline), image: box(image),
  headlineText: headline ? headline.textContent.slice(0, 60) : null,
  imageWidth: image ? image.naturalWidth : 0, view: [innerWidth, innerHeight]}));
</script>"""


@pytest.mark.skipif(shutil.which("chromium") is None, reason="no chromium on PATH")
def test_the_report_opens_with_its_headline_and_figure_on_the_first_screen(
        report_store: Path, tmp_path: Path) -> None:
    """The real report page, laid out by a headless browser at 1200 x 900: the "Result"
    heading, the headline and the comparison figure (loaded, drawn) are all on the first
    screen, in that order, before anything is scrolled."""
    page = tmp_path / "report.html"
    html = (_dir(Report) / "report.html").read_text()
    page.write_text(html.replace("</body>", _LAYOUT_SCRIPT + "</body>"), encoding="utf-8")
    dom = subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu",
                          "--window-size=1200,900", "--virtual-time-budget=5000",
                          "--dump-dom", page.as_uri()],
                         check=True, capture_output=True, text=True, timeout=120).stdout
    found = re.search(r'data-layout="([^"]*)"', dom)
    assert found, "the browser did not run the layout script"
    layout = json.loads(html_module.unescape(found.group(1)))
    assert layout["headline"] and layout["image"], layout
    assert layout["headlineText"].startswith(("Lowest expected σ_μ", "No network has a determined"))
    assert layout["imageWidth"] > 300  # the embedded PNG decoded
    height = layout["view"][1]
    assert (layout["heading"]["top"] < layout["headline"]["top"] < layout["image"]["top"]
            < height), layout
    assert layout["image"]["height"] > 150  # drawn at a readable size, not a thumbnail


def test_second_call_does_nothing(report_store: Path) -> None:
    before = _files(report_store)
    assert Report(version="t1", config=CONFIG).complete()
    law_run(["tasks.report.Report", *ARGS], {}, REPO)  # exit 0: the graph is complete
    assert _files(report_store) == before  # and nothing was rewritten


# the chain rerun in a second store: one network trained on the learned skim, with the CE
# warm-up and the inference-aware loss, so that every kind of task of the graph runs again
CHAIN = {"learned_cuts": True, "model": "dnn", "strategy": "inference"}


def _chain_outputs(store: Path) -> set[Path]:
    """The output files in ``store`` of :data:`CHAIN`'s tasks (its TrainModel branches, one per
    fold, Evaluate, CreateHistograms, BuildWorkspace, Fit, TaylorAnalysis) and of Report."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DIFFANA_STORE", str(store))
        common = {"version": "t1", "config": CONFIG}
        branch_map = TrainModel(**common, learned_cuts=True, branch=0).get_branch_map()
        tasks = [TrainModel(**common, learned_cuts=True, branch=b)
                 for b, (_, _, model, strategy) in branch_map.items()
                 if (model, strategy) == (CHAIN["model"], CHAIN["strategy"])]
        tasks += [cls(**common, **CHAIN) for cls in (Evaluate, CreateHistograms, BuildWorkspace,
                                                     TaylorAnalysis)]
        tasks += [Fit(**common, **CHAIN, branch=0), Report(**common)]
        return {Path(target.abspath) for task in tasks for target in flatten(task.output())}


def test_second_store_same_results(report_store: Path, tiny_skim_store: Path,
                                   tmp_path: Path) -> None:
    """Same config, version and seed in another store: one chain of the graph made again gives
    byte-identical result JSON files (the report's summary included) and the same Markdown report.

    The other store starts with the session's shared store (events, skims and learned cuts built
    from nothing in this pytest run, apart from the report store's). Of the report store it takes
    (hard links) every other network's outputs, not :data:`CHAIN`'s nor the report, and
    ``law run Report`` makes those again: each file compared was made independently of the
    report store's, and every kind of task of the graph made one."""
    other = link_store(tiny_skim_store, tmp_path / "other")
    rerun = {path.relative_to(other) for path in _chain_outputs(other)}
    assert len(rerun) > 20 and not any((other / p).exists() for p in rerun)
    # not linked either: what else the rerun tasks write beside their outputs (PDFs, the
    # report's images), which a task may write in place, through a link
    rerun_dirs = {p.parent for p in rerun}
    with unchanged(report_store, "the report store"):
        for path in report_store.rglob("*"):
            relative = path.relative_to(report_store)
            if path.is_file() and relative.parent not in rerun_dirs \
                    and not (other / relative).exists():
                (other / relative).parent.mkdir(parents=True, exist_ok=True)
                os.link(path, other / relative)
        law_run(["tasks.report.Report", *ARGS, "--workers", "2"], {"DIFFANA_STORE": str(other)},
                REPO, timeout_s=600)
    for relative in rerun:  # made again here, not linked from the report store
        assert (other / relative).stat().st_ino != (report_store / relative).stat().st_ino
    compared = set()
    for path in sorted(other.rglob("*.json")):
        relative = path.relative_to(other)
        if path.stat().st_ino == (report_store / relative).stat().st_ino:
            continue  # linked from the report store
        if path.name.endswith("_cost.json"):  # GenerateEvents' CPU time: measured, not made
            assert json.loads(path.read_text())["events"] == json.loads(
                (report_store / relative).read_text())["events"]
            continue
        mine, theirs = path.read_bytes(), (report_store / relative).read_bytes()
        if path.name == "cutflow.json":  # names its input files, which live in each store
            mine, theirs = (json.dumps({k: v for k, v in json.loads(x).items() if k != "files"})
                            for x in (mine, theirs))
        assert mine == theirs, relative
        compared.add(relative.parts[1])  # the task's name
    # every task of the graph that writes JSON took part, not only the first few
    assert {"GenerateEvents", "Skim", "LearnCuts", "ReduceEvents", "TrainModel", "Evaluate",
            "CreateHistograms", "BuildWorkspace", "Fit", "TaylorAnalysis", "Report"} <= compared
    # equal while the projection prints no CPU-hours (the tiny config's sigma_mu is beyond
    # reach of simulation or undetermined); with them the report carries this run's CPU time
    markdown = _dir(Report) / "report.md"
    assert (other / markdown.relative_to(report_store)).read_text() == markdown.read_text()
    # the events and skims of the two stores, each generated and skimmed from nothing in this
    # run (the shared store's and the report store's): byte-identical Parquet, equal ROOT
    # branches (ROOT files carry their write time)
    skims = [sorted(p.glob(f"{CONFIG}/Skim/**/*.parquet")) for p in (tiny_skim_store,
                                                                       report_store)]
    assert skims[0] and [p.relative_to(tiny_skim_store) for p in skims[0]] == [
        p.relative_to(report_store) for p in skims[1]]
    for a, b in zip(*skims, strict=True):
        assert a.read_bytes() == b.read_bytes(), a
    generated = sorted(tiny_skim_store.glob(f"{CONFIG}/GenerateEvents/**/*.root"))
    assert generated
    for a in generated:
        with uproot.open(a) as fa, uproot.open(report_store / a.relative_to(tiny_skim_store)) as fb:
            for key, value in fa["Events"].arrays(library="np").items():
                other_values = fb["Events"][key].array(library="np")
                if value.dtype == object:  # jagged branches: one array per event
                    value, other_values = np.concatenate(value), np.concatenate(other_values)
                assert np.array_equal(value, other_values), (a.name, key)
