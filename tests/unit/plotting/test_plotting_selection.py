"""analysis/plotting/selection.py: the learned skim's optimisation and trade-off figures."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from matplotlib.figure import Figure

# the types as the plotting module uses them (wherever the learned skim lives)
from analysis.plotting.selection import (
    LearnedSelection,
    TradeoffPoint,
    plot_learning,
    plot_tradeoff,
)


def _selection(objective: str, history: list[float]) -> LearnedSelection:
    return LearnedSelection(features=("met_pt",), directions=(">",), thresholds=(40.0,),
                            initial_thresholds=(20.0,), loose_thresholds=(0.0,),
                            objective=objective, history=history,
                            slopes=[1.0, 10.0, 100.0][:len(history)])


def _point(t: float, fraction: float, efficiency: float, sigma_mu: float) -> TradeoffPoint:
    return TradeoffPoint(t=t, thresholds=(40.0 * t,), data_fraction=fraction,
                         signal_efficiency=efficiency, background_efficiency=fraction,
                         sigma_mu_stat=0.8 * sigma_mu, sigma_mu=sigma_mu, significance=1.0)


POINTS = [_point(0.0, 1.0, 1.0, 2.0), _point(0.5, 0.6, 0.9, 1.7), _point(1.0, 0.3, 0.75, 1.5),
          _point(1.5, 0.1, 0.4, math.nan)]  # NaN: a class left empty


@pytest.mark.parametrize(("objective", "label"), [
    ("sigma_mu", r"expected $\sigma_\mu$ (soft cuts)"),
    ("significance", "Asimov significance (soft cuts)")])
def test_learning_draws_the_objective_and_the_slope_per_step(
        objective: str, label: str, tmp_path: Path, saved_figures: list[Figure]) -> None:
    paths = plot_learning(_selection(objective, [3.0, 2.5, 2.25]), tmp_path / "learning")
    assert paths == [f"{tmp_path / 'learning'}.png", f"{tmp_path / 'learning'}.pdf"]
    assert all(Path(p).stat().st_size > 0 for p in paths)
    (figure,) = saved_figures
    value, slope = figure.axes
    (line,) = value.lines
    assert list(line.get_xdata()) == [1, 2, 3] and list(line.get_ydata()) == [3.0, 2.5, 2.25]
    assert value.get_ylabel() == label
    (line,) = slope.lines
    assert list(line.get_ydata()) == [1.0, 10.0, 100.0] and slope.get_yscale() == "log"


def test_tradeoff_draws_size_efficiency_and_sigma_mu_and_marks_the_learned_cuts(
        tmp_path: Path, saved_figures: list[Figure]) -> None:
    paths = plot_tradeoff(POINTS, tmp_path / "tradeoff")
    assert [Path(p).suffix for p in paths] == [".png", ".pdf"]
    assert all(Path(p).stat().st_size > 0 for p in paths)
    size, sigma = saved_figures[0].axes
    scan, star = size.lines
    np.testing.assert_array_equal(scan.get_xdata(), [1.0, 0.9, 0.75, 0.4])
    np.testing.assert_array_equal(scan.get_ydata(), [1.0, 0.6, 0.3, 0.1])
    assert (star.get_xdata(), star.get_ydata()) == (0.75, 0.3)  # t = 1: the learned cuts
    assert star.get_marker() == "*"
    total, stat, star = sigma.lines
    np.testing.assert_array_equal(total.get_ydata(), [2.0, 1.7, 1.5, math.nan])  # a gap at NaN
    np.testing.assert_allclose(stat.get_ydata(), [1.6, 1.36, 1.2, math.nan])
    assert (star.get_xdata(), star.get_ydata()) == (0.3, 1.5)
    assert [t.get_text() for t in sigma.get_legend().get_texts()] == [
        "with systematics", "stat. only", "learned cuts"]


@pytest.mark.parametrize("draw", ["learning", "tradeoff"])
def test_equal_input_gives_equal_pdf_bytes(draw: str, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    def pdf(index: int, scale: float) -> bytes:
        base = tmp_path / str(index)
        if draw == "learning":
            paths = plot_learning(_selection("sigma_mu", [3.0, scale]), base)
        else:
            paths = plot_tradeoff([_point(0.0, 1.0, 1.0, 2.0), _point(1.0, 0.5, 0.8, scale)],
                                  base)
        return Path(paths[1]).read_bytes()

    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1000000000")  # another date for matplotlib's PDF
    first = pdf(0, 1.0)
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    assert pdf(1, 1.0) == first
    assert pdf(2, 1.2) != first
