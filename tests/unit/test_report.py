"""The report's blocks and its verdict on the strategies."""

from __future__ import annotations

import base64
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from analysis.report import (  # noqa: E402
    Heading,
    Image,
    Paragraph,
    Table,
    render_html,
    render_markdown,
    strategy_verdict,
)

NAN = math.nan


def _result(model: str, strategy: str, folds: list[float], total: float = NAN,
            cuts: bool = True) -> dict:
    return {"learned_cuts": cuts, "model": model, "strategy": strategy, "sigma_mu": total,
            "sigma_mu_no_mcstat": sum(folds) / len(folds), "sigma_mu_no_mcstat_folds": folds}


def test_verdict_counts_only_changes_every_fold_shows() -> None:
    results = {
        "dnn_ce": _result("dnn", "ce", [2.0, 4.0], total=30.0),
        "dnn_inference": _result("dnn", "inference", [1.0, 3.0]),  # -50 %, -25 %
        "dnn_penalty": _result("dnn", "penalty", [3.0, 3.0]),  # +50 %, -25 %: undecided
        "gnn_ce": _result("gnn", "ce", [2.0, NAN]),
        "gnn_inference": _result("gnn", "inference", [1.0, 1.0]),  # a fold undetermined
        "nocuts_dnn_ce": _result("dnn", "ce", [1.0, 1.0], cuts=False),
        "nocuts_dnn_penalty": _result("dnn", "penalty", [2.0, 1.5], cuts=False),  # increases
    }
    verdict = strategy_verdict(results)
    assert "σ_μ is determined for 1 of 7 networks" in verdict
    assert "same sign in all 2 folds: lower σ_μ for DNN inference (learned cuts) -50 %, -25 %;" \
        in verdict
    assert "higher σ_μ for DNN penalty (skim only);" in verdict
    assert ("folds disagree or σ_μ undetermined for DNN penalty (learned cuts), "
            "GNN inference (learned cuts).") in verdict
    assert "share the sign in 50 % of the cases" in verdict


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
