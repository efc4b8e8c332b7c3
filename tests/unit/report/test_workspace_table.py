"""The report's workspace table: per network its bins and how many histosys were pruned, with
the systematics pruned everywhere, not the list of every pruned (channel, process,
systematic), which stays in the JSON (binning.json, the report's summary.json)."""

from __future__ import annotations

from dataclasses import replace

from analysis.config import AnalysisConfig
from analysis.report import Paragraph, Table, build_report, network_summary
from analysis.report.build import pruned_shapes_cell

CHANNELS = ["cat_tth", "cat_ttbb", "cat_ttother"]
PROCESSES = ["tth_bb", "tt_bb", "tt_b", "tt_cc", "tt_lf"]
SYSTEMATICS = ["jes", "jer", "btag", "isr", "fsr"]
# as in the demo: four systematics pruned in every channel and process, fsr in one
PRUNED = [[c, p, s] for c in CHANNELS for p in PROCESSES for s in SYSTEMATICS[:4]] + [
    ["cat_ttbb", "tt_lf", "fsr"]]

_FIT = {key: 1.5 for key in ("sigma_mu", "sigma_mu_stat", "sigma_mu_syst",
                             "expected_significance", "expected_limit", "observed_limit",
                             "mu_hat", "mu_uncertainty", "sigma_mu_no_mcstat")} | {
    "impacts": {}, "sigma_mu_folds": [1.0, 2.0], "sigma_mu_no_mcstat_folds": [1.0, 1.0]}


def test_the_cell_counts_the_pruned_histosys_and_names_those_pruned_everywhere() -> None:
    assert pruned_shapes_cell(PRUNED, CHANNELS, PROCESSES, SYSTEMATICS) == (
        "61 of 75; everywhere: jes, jer, btag, isr")
    # jes kept in one channel and process: no longer pruned everywhere
    some = [t for t in PRUNED if t != ["cat_tth", "tt_b", "jes"]]
    assert pruned_shapes_cell(some, CHANNELS, PROCESSES, SYSTEMATICS) == (
        "60 of 75; everywhere: jer, btag, isr")
    assert pruned_shapes_cell([["cat_tth", "tt_b", "jes"]], CHANNELS, PROCESSES,
                              SYSTEMATICS) == "1 of 75"
    assert pruned_shapes_cell([], CHANNELS, PROCESSES, SYSTEMATICS) == "none of 75"
    # binning.json written before its channels were recorded: the count alone
    assert pruned_shapes_cell(PRUNED, [], PROCESSES, SYSTEMATICS) == "61"


def test_the_page_gives_the_count_and_the_json_keeps_the_list(
        tiny_config: AnalysisConfig) -> None:
    binning = {"n_bins": 17, "poi_bounds": [-5.0, 10.0], "pruned_shapes": PRUNED,
               "channels": {c: {"edges": [0.0, 1.0], "node": c[4:]} for c in CHANNELS}}
    record = network_summary(_FIT, {"auc": 0.7}, binning, learned_cuts=True, model="dnn",
                             strategy="ce")
    assert record["pruned_shapes"] == PRUNED and record["workspace_channels"] == CHANNELS
    config = replace(tiny_config, processes={p: tiny_config.processes[next(iter(
        tiny_config.processes))] for p in PROCESSES},
        inference=replace(tiny_config.inference, systematics=tuple(SYSTEMATICS)))
    blocks = build_report(config, {"cuts_dnn_ce": record}, {"dnn": 5000}, {}, version="t1",
                          provenance={"packages": {}, "python": "3.11"})
    table = next(b for b in blocks if isinstance(b, Table) and "histosys pruned" in b.header)
    assert table.rows == [["cuts / dnn / ce", "17", "61 of 75; everywhere: jes, jer, btag, isr"]]
    text = "\n".join(b.text for b in blocks if isinstance(b, Paragraph))
    assert "cat_ttbb/tt_lf:fsr" not in text and "cat_ttbb" not in text
    assert "pruned_shapes in the report's summary.json and BuildWorkspace's binning.json" in text
