"""The report's blocks and its verdict on the strategies."""

from __future__ import annotations

import base64
import math
from pathlib import Path

import matplotlib
import pytest

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from analysis.report import (  # noqa: E402
    Heading,
    Image,
    Paragraph,
    Table,
    render_html,
    render_markdown,
    uncertainty_breakdown,
)

NAN = math.nan


def test_uncertainty_breakdown_in_quadrature() -> None:
    syst, mc_stat = uncertainty_breakdown(
        {"sigma_mu": 13.0, "sigma_mu_no_mcstat": 5.0, "sigma_mu_stat": 3.0})
    assert syst == pytest.approx(4.0) and mc_stat == pytest.approx(12.0)
    syst, mc_stat = uncertainty_breakdown(
        {"sigma_mu": NAN, "sigma_mu_no_mcstat": 3.0, "sigma_mu_stat": 3.0000001})
    assert syst == 0.0 and math.isnan(mc_stat)


def test_markdown_links_and_html_embeds_the_images(tmp_path: Path) -> None:
    figure, axis = plt.subplots()
    axis.plot([0, 1], [0, 1])
    png = tmp_path / "line.png"
    figure.savefig(png)
    plt.close(figure)
    blocks = [Heading("Results", 1), Paragraph("σ_μ < 1 & more"),
              Table(["a", "b"], [["1", "2"]]), Image(str(png), "line.png", "a line")]
    markdown = render_markdown(blocks)
    assert "# Results" in markdown and "| a | b |" in markdown and "![a line](line.png)" in markdown
    page = render_html(blocks, "report")
    assert "σ_μ &lt; 1 &amp; more" in page  # escaped
    assert base64.b64encode(png.read_bytes()).decode()[:200] in page  # self-contained


def test_network_summary_reads_the_tasks_json_and_impacts_flag_the_bound() -> None:
    from analysis.report import impact_cell, network_summary

    fit = {key: 1.5 for key in ("sigma_mu", "sigma_mu_stat", "sigma_mu_syst",
                                "expected_significance", "expected_limit", "observed_limit",
                                "mu_hat", "mu_uncertainty", "sigma_mu_no_mcstat")}
    fit |= {"impacts": {"fsr": [0.3, -0.2], "jes": [9.0, -2.0]}, "sigma_mu_folds": [1.0, 2.0],
            "sigma_mu_no_mcstat_folds": [1.0, 1.0], "unrelated": 0}
    record = network_summary(fit, {"auc": 0.7}, {"n_bins": 2, "poi_bounds": [-5, 10],
                                                 "pruned_shapes": []},
                             learned_cuts=False, model="gnn", strategy="ce")
    assert record["n_bins"] == 2 and record["auc"] == 0.7 and "unrelated" not in record
    assert impact_cell(record, "fsr") == "0.300"
    # mu-hat = 1 can move down by 6 before the bound -5: an impact of 9 reached it
    assert impact_cell(record, "jes") == "≥ 9.0 (μ at its bound)"
    assert impact_cell(record, "isr") == "n/a"
    assert record["normalisations"] == {}  # results.json of a workspace without any


def test_report_shows_the_free_normalisations_after_the_fit() -> None:
    from analysis.report.build import _normalisation_blocks

    records = {"a": {"learned_cuts": True, "model": "dnn", "strategy": "ce",
                     "normalisations": {"norm_tt_bb": [1.234, 0.156]}},
               "b": {"learned_cuts": False, "model": "gnn", "strategy": "inference",
                     "normalisations": {}}}
    heading, _, table = _normalisation_blocks(records)
    assert heading.text == "Free normalisations after the fit"
    assert table.header == ["selection / model / strategy", "norm_tt_bb"]
    assert table.rows == [["cuts / dnn / ce", "1.23 ± 0.16"], ["no cuts / gnn / inference", "n/a"]]
    assert _normalisation_blocks({"b": records["b"]}) == []


def test_report_tradeoff_comes_from_json_points(tmp_path: Path) -> None:
    from analysis.report import tradeoff_table

    points = [{"t": 0.0, "thresholds": [20.0], "data_fraction": 1.0, "signal_efficiency": 1.0,
               "background_efficiency": 1.0, "sigma_mu_stat": 0.5, "sigma_mu": NAN,
               "significance": 2.0},
              {"t": 1.0, "thresholds": [35.5], "data_fraction": 0.4, "signal_efficiency": 0.8,
               "background_efficiency": 0.3, "sigma_mu_stat": 0.4, "sigma_mu": 0.9,
               "significance": 2.5}]
    table = tradeoff_table(points, ["ht"], [">"])
    assert table.header[:2] == ["t", "ht >"] and len(table.header) == len(table.rows[0])
    assert table.rows[1][:3] == ["1 (learned)", "35.5", "0.400"]
    assert table.rows[0][-2] == "n/a"  # NaN sigma_mu


def test_report_shows_every_folds_learned_cuts() -> None:
    from analysis.report.build import _fold_cut_blocks

    selections = [{"features": ["ht", "met_pt"], "directions": [">", "<"],
                   "thresholds": [300.0 + 10 * k, 80.0], "objective": "sigma_mu",
                   "initial_hard_value": 0.9, "hard_value": 0.7 + 0.01 * k} for k in range(3)]
    folds = [{"fold": k, "kept": 40, "total": 300, "held_out_kept": 12 + k,
              "held_out_total": 100} for k in range(3)]
    paragraph, table = _fold_cut_blocks({"selections": selections, "folds": folds})
    assert "learned on the events outside fold k" in paragraph.text
    assert table.header == ["fold k", "ht >", "met_pt <", "sigma_mu start", "sigma_mu learned",
                            "fold k events kept"]
    assert [row[:2] for row in table.rows] == [["0", "300"], ["1", "310"], ["2", "320"]]
    assert table.rows[2][-2:] == ["0.72", "14 of 100"]
    assert _fold_cut_blocks({"points": []}) == []  # one cut set (an older tradeoff.json)


def test_paired_comparison_mean_standard_error_and_verdict() -> None:
    from analysis.report.comparison import paired_comparison

    reference = [10.0, 12.0, 11.0, 9.0, 10.5, 11.5]
    changes = [-0.20, -0.10, -0.15, -0.12, -0.18, -0.05]
    result = paired_comparison([r * (1 + c) for r, c in zip(reference, changes)], reference)
    mean = sum(changes) / 6
    error = math.sqrt(sum((c - mean) ** 2 for c in changes) / 5 / 6)
    assert result.n_pairs == 6
    assert result.mean == pytest.approx(mean, rel=1e-12)
    assert result.standard_error == pytest.approx(error, rel=1e-12)
    assert result.same_sign == 1.0 and result.verdict == "better"
    assert result.sentence().startswith("better: -13.3 % ± 2.2 % (6 pairs, 100 % same sign)")
    # the same mean with a spread 5x larger is not resolved, and the sentence gives the
    # resolution (2 standard errors)
    wide = [mean + 5 * (c - mean) for c in changes]
    unresolved = paired_comparison([r * (1 + c) for r, c in zip(reference, wide)], reference)
    assert unresolved.verdict == "not resolved"
    assert unresolved.sentence().startswith(
        f"not resolved at ±{200 * unresolved.standard_error:.1f} %")
    assert paired_comparison([12.0, 13.0], [10.0, 10.0]).verdict == "worse"
    # NaN pairs are left out; one pair cannot give an error
    single = paired_comparison([float("nan"), 9.0], [10.0, 10.0])
    assert single.n_pairs == 1 and single.verdict == "undetermined"
    with pytest.raises(Exception, match="pairs must match"):
        paired_comparison([1.0], [1.0, 2.0])


def test_paired_comparison_clusters_the_seeds_of_a_fold() -> None:
    """Three seeds per fold that agree with each other are one measurement per fold, not
    three: the error clustered by fold is that of the three fold means, which here is
    sqrt((9 - 1) / (3 - 1)) = 2 times the error of nine independent pairs."""
    from analysis.report.comparison import paired_comparison

    fold_changes = [-0.20, -0.02, -0.11]
    changes = [c for c in fold_changes for _ in range(3)]
    folds = [k for k in range(3) for _ in range(3)]
    reference = [10.0] * 9
    values = [10.0 * (1 + c) for c in changes]
    naive = paired_comparison(values, reference)
    clustered = paired_comparison(values, reference, clusters=folds)
    mean = sum(fold_changes) / 3
    fold_error = math.sqrt(sum((c - mean) ** 2 for c in fold_changes) / 2 / 3)
    assert clustered.mean == pytest.approx(mean, rel=1e-12)
    assert clustered.standard_error == pytest.approx(fold_error, rel=1e-12)
    assert clustered.standard_error == pytest.approx(2 * naive.standard_error, rel=1e-12)
    # -11 % is 4.2 naive standard errors, 2.1 clustered ones; with the fold spread 1.6x
    # wider the clustered verdict is unresolved (1.3) while the naive one is not (2.6)
    assert naive.verdict == "better" and clustered.n_clusters == 3
    wide = [mean + 1.6 * (c - mean) for c in fold_changes]
    values = [10.0 * (1 + c) for c in wide for _ in range(3)]
    assert paired_comparison(values, reference).verdict == "better"
    assert paired_comparison(values, reference, clusters=folds).verdict == "not resolved"
    # all pairs from one fold: no error can be estimated
    one_fold = paired_comparison(values[:3], reference[:3], clusters=[0, 0, 0])
    assert one_fold.verdict == "undetermined"
    assert one_fold.sentence() == "undetermined (3 pairs in 1 fold)"
    with pytest.raises(Exception, match="pairs must match"):
        paired_comparison([1.0, 2.0], [1.0, 2.0], clusters=[0])


def test_a_clustered_error_never_falls_below_the_independent_one() -> None:
    """Folds whose means agree by chance while their seeds scatter widely (the demo's GNN
    inference sigma_mu without MC stat.: 0.37-2.87, fold means 1.38-1.42): CR1 alone would
    give 0.013; the error is the independent one, the values' scatter / sqrt(9)."""
    from analysis.report.comparison import mean_and_standard_error

    values = [1.03, 2.87, 0.37, 2.24, 0.81, 1.20, 0.83, 2.33, 0.97]  # (fold, seed) order
    folds = [k for k in range(3) for _ in range(3)]
    mean = sum(values) / 9
    independent = math.sqrt(sum((v - mean) ** 2 for v in values) / 8 / 9)
    fold_means = [sum(values[3 * k:3 * k + 3]) / 3 for k in range(3)]
    cr1 = math.sqrt(3 / 2 * sum((3 * (m - mean)) ** 2 for m in fold_means)) / 9
    assert cr1 < 0.1 * independent  # what CR1 alone would report
    assert mean_and_standard_error(values, folds) == pytest.approx((mean, independent),
                                                                   rel=1e-12)
