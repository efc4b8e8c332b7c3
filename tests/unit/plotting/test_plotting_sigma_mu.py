"""analysis/plotting/sigma_mu.py: the report's comparison figure, whose one legend sits outside
every panel, so it covers no point or error bar."""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure

from analysis.plotting.sigma_mu import plot_sigma_mu_comparison
from analysis.report.comparison import SigmaMuPoint

MEASURES = ["σ_μ total (incl. MC stat.)", "σ_μ without MC stat."]
FOLDS = [0, 1, 2, 0, 1, 2]


def _points() -> list[SigmaMuPoint]:
    """Two groups (DNN with four strategies, GNN with three), values that fill each panel
    from bottom to top, as in the demo (where the old legend covered a point in each)."""
    def point(group: str, strategy: str, centre: float) -> SigmaMuPoint:
        values = [centre * (1 + 0.05 * (k - 2.5)) for k in range(6)]
        return SigmaMuPoint(group, strategy, {m: values for m in MEASURES}, clusters=FOLDS)
    return [point("DNN, cuts", "ce", 25.0), point("DNN, cuts", "penalty", 25.0),
            point("DNN, cuts", "inference", 24.0), point("DNN, cuts", "inference+cuts", 27.0),
            point("GNN, cuts", "ce", 16.0), point("GNN, cuts", "penalty", 21.0),
            point("GNN, cuts", "inference", 12.7)]


def test_one_legend_outside_every_panel(tmp_path: Path, saved_figures: list[Figure]) -> None:
    written = plot_sigma_mu_comparison(_points(), MEASURES, "test", tmp_path / "comparison")
    assert [Path(p).name for p in written] == ["comparison.png", "comparison.pdf"]
    (figure,) = saved_figures
    renderer = figure.canvas.get_renderer()  # laid out as saved (save_figure's tight layout)
    legends = [a.get_legend() for a in figure.axes if a.get_legend() is not None]
    legends += list(figure.legends)
    assert len(legends) == 1  # one for both panels, not one per panel
    legend = legends[0]
    assert [t.get_text() for t in legend.get_texts()] == [
        "ce", "penalty", "inference", "inference+cuts", "CE of the group ± s.e."]
    box = legend.get_window_extent(renderer)
    panels = [a.get_window_extent(renderer) for a in figure.axes]
    assert len(panels) == len(MEASURES)
    for panel in panels:  # no pixel of the legend in a panel's data area
        assert not box.overlaps(panel), (box, panel)
        assert box.x0 > panel.x1 or box.y0 > panel.y1 or box.y1 < panel.y0
    # drawn on the canvas, not clipped at its edge
    assert figure.bbox.contains(box.x0, box.y0) and figure.bbox.contains(box.x1, box.y1)
