"""analysis/plotting/inference.py: each figure written as PNG + PDF, drawing exactly its input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from matplotlib.container import BarContainer, ErrorbarContainer
from matplotlib.figure import Figure
from matplotlib.patches import StepPatch

from analysis.plotting.inference import (
    plot_impacts,
    plot_prefit_postfit,
    plot_pulls,
    plot_scan,
    plot_score_stack,
    plot_taylor,
)

EDGES = [0.0, 0.4, 0.7, 1.0]
HISTOGRAMS = {"edges": EDGES, "processes": {
    "tth": {"nominal": {"values": [0.1, 0.3, 0.8]}},
    "ttbb": {"nominal": {"values": [6.0, 3.0, 1.5]}},
    "ttlf": {"nominal": {"values": [60.0, 12.0, 2.5]}}}}


def _written(paths: list[str], base: Path) -> None:
    assert paths == [f"{base}.png", f"{base}.pdf"]
    assert Path(paths[0]).read_bytes().startswith(b"\x89PNG")
    assert Path(paths[1]).read_bytes().startswith(b"%PDF-")


def _tick_labels(labels: list) -> list[str]:
    return [label.get_text() for label in labels]


def test_score_stack_stacks_the_backgrounds_and_draws_ten_times_the_signal(
        tmp_path: Path, saved_figures: list[Figure]) -> None:
    paths = plot_score_stack(HISTOGRAMS, {"tth": "ttH", "ttbb": "tt+bb"},
                             {"tth": "red", "ttbb": "blue", "ttlf": "green"}, "tth", "dnn",
                             tmp_path / "stack")
    _written(paths, tmp_path / "stack")
    (figure,) = saved_figures
    (axis,) = figure.axes
    steps = [patch.get_data() for patch in axis.patches if isinstance(patch, StepPatch)]
    filled = [patch.get_fill() for patch in axis.patches]
    assert len(steps) == 3 and filled.count(True) == 2  # two stacked backgrounds, a signal line
    ttbb, ttlf = (np.asarray(HISTOGRAMS["processes"][p]["nominal"]["values"])
                  for p in ("ttbb", "ttlf"))
    tops = sorted((tuple(s.values) for s, fill in zip(steps, filled) if fill), key=sum)
    np.testing.assert_allclose(tops, [ttbb, ttbb + ttlf])  # the stack: cumulative sums
    (signal,) = (s for s, fill in zip(steps, filled) if not fill)
    np.testing.assert_allclose(signal.values, [1.0, 3.0, 8.0])  # x 10
    for step in steps:
        np.testing.assert_allclose(step.edges, EDGES)
    assert axis.get_yscale() == "log"
    assert sorted(_tick_labels(axis.get_legend().get_texts())) == ["tt+bb", "ttH x 10", "ttlf"]
    assert axis.get_title() == "dnn"


def test_scan_draws_each_curve_over_mu_and_the_68_and_95_percent_lines(
        tmp_path: Path, saved_figures: list[Figure]) -> None:
    mu = np.linspace(0.0, 2.0, 5)
    curves = {"Asimov": (mu - 1) ** 2, "pseudo-data": 2 * (mu - 0.8) ** 2}
    _written(plot_scan(mu, curves, "scan", tmp_path / "scan"), tmp_path / "scan")
    (axis,) = saved_figures[0].axes
    lines = {line.get_label(): line for line in axis.lines}
    for name, values in curves.items():
        np.testing.assert_allclose(lines[name].get_xdata(), mu)
        np.testing.assert_allclose(lines[name].get_ydata(), values)
    levels = sorted(line.get_ydata()[0] for line in axis.lines if line.get_label() not in curves)
    assert levels == [1.0, 3.84]  # -2 Delta ln L of 68 % and 95 % (one parameter)
    assert _tick_labels(axis.get_legend().get_texts()) == list(curves)


def test_pulls_draw_each_nuisance_at_its_value_with_its_width(
        tmp_path: Path, saved_figures: list[Figure]) -> None:
    pulls = {"jes": (0.3, 0.9), "btag": (-1.2, 0.5), "lumi": (0.0, 1.0)}
    _written(plot_pulls(pulls, "pulls", tmp_path / "pulls"), tmp_path / "pulls")
    (axis,) = saved_figures[0].axes
    (container,) = (c for c in axis.containers if isinstance(c, ErrorbarContainer))
    points, _, (bars,) = container.lines  # data line, caps, bars
    assert list(points.get_xdata()) == [0.3, -1.2, 0.0]  # the values as given
    assert list(points.get_ydata()) == [0, 1, 2]
    # each error bar spans theta-hat -+ sigma at the nuisance's row
    spans = [(segment[0][0], segment[1][0], segment[0][1]) for segment in bars.get_segments()]
    np.testing.assert_allclose(spans, [(-0.6, 1.2, 0), (-1.7, -0.7, 1), (-1.0, 1.0, 2)])
    assert _tick_labels(axis.get_yticklabels()) == list(pulls)
    assert axis.get_xlim() == (-2.5, 2.5)


def test_impacts_draw_up_and_down_bars_with_the_first_nuisance_on_top(
        tmp_path: Path, saved_figures: list[Figure]) -> None:
    impacts = {"jes": (0.4, -0.35), "btag": (-0.1, 0.12), "isr": (0.02, -0.01)}
    _written(plot_impacts(impacts, "impacts", tmp_path / "impacts"), tmp_path / "impacts")
    (axis,) = saved_figures[0].axes
    up, down = (c for c in axis.containers if isinstance(c, BarContainer))
    assert [bar.get_width() for bar in up] == pytest.approx([0.02, -0.1, 0.4])  # bottom to top
    assert [bar.get_width() for bar in down] == pytest.approx([-0.01, 0.12, -0.35])
    assert [bar.get_y() + bar.get_height() / 2 for bar in up] == pytest.approx([0, 1, 2])
    assert _tick_labels(axis.get_yticklabels()) == ["isr", "btag", "jes"]


def test_taylor_shows_the_largest_n_coefficients_largest_on_top(
        tmp_path: Path, saved_figures: list[Figure]) -> None:
    ranked = [(f"t_{i}", 10.0 - i) for i in range(6)]
    _written(plot_taylor(ranked, "taylor", tmp_path / "taylor", n_show=4), tmp_path / "taylor")
    (axis,) = saved_figures[0].axes
    (bars,) = axis.containers
    assert [bar.get_width() for bar in bars] == [7.0, 8.0, 9.0, 10.0]
    assert _tick_labels(axis.get_yticklabels()) == ["t_3", "t_2", "t_1", "t_0"]


DRAWINGS = {
    "score_stack": lambda base, scale: plot_score_stack(
        {"edges": EDGES, "processes": {p: {"nominal": {"values": list(scale * np.asarray(
            v["nominal"]["values"]))}} for p, v in HISTOGRAMS["processes"].items()}},
        {}, {}, "tth", "t", base),
    "scan": lambda base, scale: plot_scan([0.0, 1.0, 2.0], {"a": [scale, 0.0, scale]}, "t", base),
    "pulls": lambda base, scale: plot_pulls({"jes": (0.1 * scale, 0.9)}, "t", base),
    "impacts": lambda base, scale: plot_impacts({"jes": (0.1 * scale, -0.1)}, "t", base),
    "taylor": lambda base, scale: plot_taylor([("t_0", scale), ("t_1", 0.5)], "t", base),
}


@pytest.mark.parametrize("name", sorted(DRAWINGS))
def test_equal_input_gives_equal_pdf_bytes(name: str, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    files = []
    for index, (epoch, scale) in enumerate([("1000000000", 1.0), ("1700000000", 1.0),
                                            ("1700000000", 2.0)]):
        monkeypatch.setenv("SOURCE_DATE_EPOCH", epoch)  # another date for matplotlib's PDF
        files.append(Path(DRAWINGS[name](tmp_path / str(index), scale)[1]).read_bytes())
    assert files[0] == files[1]
    assert files[1] != files[2]  # the bytes do depend on the data


def test_prefit_postfit_draws_each_category_before_and_after_with_the_data(
        tmp_path: Path, saved_figures: list[Figure]) -> None:
    yields = {channel: {"observed": [70.0, 16.0, 5.0],
                        "prefit": {p: HISTOGRAMS["processes"][p]["nominal"]["values"]
                                   for p in ("tth", "ttbb", "ttlf")},
                        "postfit": {p: [scale * x for x in
                                        HISTOGRAMS["processes"][p]["nominal"]["values"]]
                                    for p in ("tth", "ttbb", "ttlf")}}
              for channel, scale in (("cat_tth", 1.5), ("cat_ttbb", 0.5))}
    _written(plot_prefit_postfit(yields, {"tth": "ttH"}, {"tth": "red"}, "dnn",
                                 tmp_path / "postfit"), tmp_path / "postfit")
    (figure,) = saved_figures
    axes = figure.axes
    assert [axis.get_title() for axis in axes] == [
        "cat_tth, pre-fit", "cat_ttbb, pre-fit", "cat_tth, post-fit", "cat_ttbb, post-fit"]
    for axis, scale in zip(axes, (1.0, 1.0, 1.5, 0.5)):
        steps = [patch.get_data() for patch in axis.patches if isinstance(patch, StepPatch)]
        top = max(steps, key=lambda step: float(np.sum(step.values)))
        np.testing.assert_allclose(top.values, scale * np.array([66.1, 15.3, 4.8]))
        (data,) = [c for c in axis.containers if isinstance(c, ErrorbarContainer)]
        np.testing.assert_allclose(data[0].get_ydata(), [70.0, 16.0, 5.0])
