"""analysis/report/matched_size.py: the DNN's and the GNN's held-out AUC per strategy, in three
readings, and the GNN's target "within 0.02 of the DNN's AUC, or above it"."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from analysis.config import AnalysisConfig
from analysis.report import Heading, Paragraph, Table, build_report, network_key
from analysis.report.matched_size import auc_readings, dnn_gnn_auc_table, per_fold_auc


def _record(model: str, strategy: str, auc: float, seeds: list[float],
            folds: list[float], cuts: bool = True) -> dict:
    """A network summary with the keys the page reads; ``folds`` seed-major."""
    return {"learned_cuts": cuts, "model": model, "strategy": strategy, "auc": auc,
            "auc_seeds": seeds, "auc_folds": folds, "n_bins": 8, "poi_bounds": [-5.0, 10.0],
            "pruned_shapes": [], "sigma_mu": 2.0, "sigma_mu_stat": 1.0, "sigma_mu_syst": 1.0,
            "expected_significance": 0.5, "expected_limit": 4.0, "observed_limit": 4.0,
            "mu_hat": 1.0, "mu_uncertainty": 2.0, "impacts": {}, "normalisations": {},
            "sigma_mu_folds": [2.0, 2.1, 1.9, 2.0], "sigma_mu_no_mcstat": 1.5,
            "sigma_mu_no_mcstat_folds": [1.5, 1.6, 1.4, 1.5],
            "fold_labels": [[0, 0], [0, 1], [1, 0], [1, 1]]}


def _summary() -> dict[str, dict]:
    """CE: the GNN above the DNN on every reading. Inference: the GNN 0.03 below on the pooled
    AUC of seed 0, 0.015 below on the seeds' mean, 0.01 above per fold. Penalty: a DNN only;
    a GNN of the skim-only selection only: neither has a partner."""
    return {
        network_key(True, "dnn", "ce"): _record("dnn", "ce", 0.78, [0.78, 0.76],
                                                [0.77, 0.79, 0.75, 0.77]),
        network_key(True, "dnn", "inference"): _record("dnn", "inference", 0.80, [0.80, 0.78],
                                                       [0.78, 0.80, 0.78, 0.80]),
        network_key(True, "dnn", "penalty"): _record("dnn", "penalty", 0.7, [0.7], []),
        network_key(True, "gnn", "ce"): _record("gnn", "ce", 0.79, [0.79, 0.79],
                                                [0.80, 0.80, 0.80, 0.80]),
        network_key(True, "gnn", "inference"): _record("gnn", "inference", 0.77, [0.77, 0.78],
                                                       [0.79, 0.81, 0.79, 0.81]),
        network_key(False, "gnn", "penalty"): _record("gnn", "penalty", 0.7, [0.7], [],
                                                      cuts=False)}


def test_three_readings_of_one_network() -> None:
    readings = auc_readings(_summary()[network_key(True, "dnn", "ce")])
    assert [name for name, _, _ in readings] == ["pooled, seed 0", "pooled, mean of 2 seeds",
                                                 "per fold, seeds × folds"]
    assert readings[0][1] == 0.78 and math.isnan(readings[0][2])
    assert readings[1][1:] == pytest.approx((0.77, 0.01))  # std 0.0141 / sqrt(2)
    # folds 0, 1 at 0.76, 0.78 (seed means): clustered by fold, the fold means' spread
    assert per_fold_auc(_summary()[network_key(True, "dnn", "ce")]) == pytest.approx(
        (0.77, 0.01))
    # one seed: the mean over seeds is the first reading, not repeated; no per-fold AUCs
    (pooled, per_fold) = auc_readings(_summary()[network_key(True, "dnn", "penalty")])
    assert pooled[0] == "pooled, seed 0" and math.isnan(per_fold[1])


def test_the_gnn_target_passes_for_ce_and_fails_for_inference_on_seed_0() -> None:
    table = dnn_gnn_auc_table(_summary())
    assert table.header == ["selection / strategy", "AUC reading", "DNN", "GNN", "GNN − DNN",
                            "within 0.02 of the DNN or above"]
    assert table.rows == [
        ["cuts / ce", "pooled, seed 0", "0.7800", "0.7900", "+0.010", "yes"],
        ["cuts / ce", "pooled, mean of 2 seeds", "0.7700 ± 0.0100", "0.7900 ± 0.0000",
         "+0.020", "yes"],
        ["cuts / ce", "per fold, seeds × folds", "0.7700 ± 0.0100", "0.8000 ± 0.0000",
         "+0.030", "yes"],
        ["cuts / inference", "pooled, seed 0", "0.8000", "0.7700", "-0.030", "no"],
        ["cuts / inference", "pooled, mean of 2 seeds", "0.7900 ± 0.0100", "0.7750 ± 0.0050",
         "-0.015", "yes"],
        ["cuts / inference", "per fold, seeds × folds", "0.7900 ± 0.0100", "0.8000 ± 0.0100",
         "+0.010", "yes"]]
    # the target is a parameter: at 0.01 the seeds' mean of inference fails too
    strict = dnn_gnn_auc_table(_summary(), tolerance=0.01)
    assert [row[5] for row in strict.rows if row[0] == "cuts / inference"] == ["no", "no", "yes"]
    # exactly 0.02 below is within 0.02
    summary = _summary()
    summary[network_key(True, "gnn", "inference")]["auc"] = 0.78
    assert dnn_gnn_auc_table(summary).rows[3][4:] == ["-0.020", "yes"]


def test_the_report_section_holds_the_table(tmp_path: Path,
                                            tiny_config: AnalysisConfig) -> None:
    blocks = build_report(tiny_config, _summary(), {"dnn": 4931, "gnn": 4943}, {},
                          version="t1", provenance={"packages": {}, "python": "3.11"})
    start = blocks.index(Heading("DNN vs GNN at matched size (arXiv:2402.17386)"))
    parameters, target, table = blocks[start + 1:start + 4]
    assert parameters == Paragraph("Trainable parameters: DNN 4931, GNN 4943 (target "
                                   f"{tiny_config.training.target_parameters}).")
    assert "within 0.02 of the DNN's, or above it" in target.text
    assert isinstance(table, Table) and table == dnn_gnn_auc_table(_summary())
    # only DNNs: no table, the parameters only
    dnn_only = {k: r for k, r in _summary().items() if r["model"] == "dnn"}
    blocks = build_report(tiny_config, dnn_only, {"dnn": 4931}, {}, version="t1",
                          provenance={"packages": {}, "python": "3.11"})
    start = blocks.index(Heading("DNN vs GNN at matched size (arXiv:2402.17386)"))
    assert isinstance(blocks[start + 1], Paragraph) and isinstance(blocks[start + 2], Heading)
