"""analysis/plotting/figures.py: the axes grid, PNG + PDF written atomically, reproducible PDFs,
the CMS style inside the drawing functions only, and no matplotlib state changed by import."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import matplotlib
import matplotlib.image
import mplhep
import numpy as np
import pytest
from matplotlib.figure import Figure

from analysis.plotting.figures import cms_style, new_figure, save_figure
from analysis.plotting.training import plot_training_curves

REPOSITORY = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize(("n_columns", "n_rows"), [(1, 1), (2, 1), (3, 2)])
def test_new_figure_is_a_grid_of_axes_sized_per_axis(n_columns: int, n_rows: int) -> None:
    figure, axes = new_figure(n_columns, n_rows, width=4.0, height=3.0)
    assert axes.shape == (n_rows, n_columns)  # 2-D even for one axis
    assert len(figure.axes) == n_rows * n_columns
    assert tuple(figure.get_size_inches()) == (4.0 * n_columns, 3.0 * n_rows)


def test_save_figure_writes_png_and_pdf(tmp_path: Path) -> None:
    figure, axes = new_figure(width=7.0, height=5.5)
    axes[0, 0].plot([0, 1], [1, 0])
    paths = save_figure(figure, tmp_path / "line")
    assert paths == [str(tmp_path / "line.png"), str(tmp_path / "line.pdf")]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["line.pdf", "line.png"]  # no temp
    assert Path(paths[1]).read_bytes().startswith(b"%PDF-")
    # 100 dpi: the PNG has the figure's size in pixels (rows, columns, RGBA)
    assert matplotlib.image.imread(paths[0]).shape == (550, 700, 4)



@cms_style
def _labelled_grid(long_label: str) -> Figure:
    figure, axes = new_figure(2, 1, width=7.0, height=4.0)
    for axis in axes.flat:
        axis.set_yticks([0, 1], ["a", long_label])
        axis.set_xlabel(r"$\Delta\hat\mu$")
        axis.set_title("title")
    return figure


def test_save_figure_lays_out_as_tight_layout_and_draws_once_per_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # tight_layout's margins (the long tick label widens the left one), without the layout
    # engine that Figure.tight_layout leaves behind: savefig draws a figure with an engine twice
    lay_out = cms_style(Figure.tight_layout)  # its padding is in units of the style's font size
    reference, short = _labelled_grid("a longer label"), _labelled_grid("b")
    lay_out(reference)
    lay_out(short)
    figure = _labelled_grid("a longer label")
    draws: list[str] = []
    real_draw = Figure.draw

    def counted(self: Figure, renderer: Any) -> None:
        draws.append(type(renderer).__name__)
        real_draw(self, renderer)

    monkeypatch.setattr(Figure, "draw", counted)
    cms_style(save_figure)(figure, tmp_path / "grid")
    assert len(draws) == 2  # one for the PNG, one for the PDF
    assert figure.get_layout_engine() is None
    wanted = reference.subplotpars
    for key in ("left", "right", "bottom", "top", "wspace", "hspace"):
        assert getattr(figure.subplotpars, key) == pytest.approx(getattr(wanted, key), abs=1e-12)
    assert wanted.left > short.subplotpars.left + 0.05  # else the comparison shows nothing

@cms_style
def _line(path_base: Path, slope: float) -> list[str]:
    figure, axes = new_figure()
    axes[0, 0].plot(np.arange(5), slope * np.arange(5))
    return save_figure(figure, path_base)


def test_same_figure_gives_the_same_pdf_bytes_at_another_time(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # matplotlib dates a PDF from SOURCE_DATE_EPOCH when set: two "times" for the two files
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1000000000")
    first = _line(tmp_path / "a", 2.0)
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    second = _line(tmp_path / "b", 2.0)
    other = _line(tmp_path / "c", 3.0)
    for i in range(2):  # PNG and PDF
        assert Path(first[i]).read_bytes() == Path(second[i]).read_bytes(), first[i]
        assert Path(first[i]).read_bytes() != Path(other[i]).read_bytes(), other[i]


def _rc_params() -> dict[str, Any]:
    # "backend" is left out: reading it would make matplotlib choose one
    return {key: matplotlib.rcParams[key] for key in matplotlib.rcParams if key != "backend"}


def test_importing_the_plotting_package_leaves_rc_params_and_backend_alone() -> None:
    # a fresh interpreter with no backend chosen: an import that picks one (matplotlib.use) or
    # sets a style shows up as a difference
    script = """
import importlib, pkgutil, matplotlib
def rc():
    return {k: matplotlib.rcParams[k] for k in matplotlib.rcParams if k != "backend"}
before, backend = rc(), matplotlib.rcParams._get_backend_or_none()
import analysis.plotting
names = sorted(m.name for m in pkgutil.iter_modules(analysis.plotting.__path__))
for name in names:
    importlib.import_module("analysis.plotting." + name)
after = rc()
print(len(names), backend, matplotlib.rcParams._get_backend_or_none(),
      sorted(k for k in before if before[k] != after[k]))
"""
    environment = {key: value for key, value in os.environ.items() if key != "MPLBACKEND"}
    environment["PYTHONPATH"] = str(REPOSITORY)
    result = subprocess.run([sys.executable, "-c", script], env=environment, cwd=REPOSITORY,
                            capture_output=True, text=True, check=True)
    n_modules, before, after, changed = result.stdout.split(maxsplit=3)
    assert int(n_modules) >= 6  # figures, comparison, gpu, inference, selection, training
    assert (before, after) == ("None", "None")
    assert changed.strip() == "[]"


def test_a_plot_draws_in_the_cms_style_and_restores_the_callers_rc_params(
        tmp_path: Path, saved_figures: list[Figure]) -> None:
    before = _rc_params()
    plot_training_curves([("ce", [1.0, 0.5, 0.25])], "dnn ce fold 0", tmp_path / "curves")
    assert _rc_params() == before
    assert mplhep.style.CMS["font.size"] != before["font.size"]  # else the check below is void
    (axis,) = saved_figures[0].axes
    # CMS: 'axes.labelsize' is 'medium', i.e. the CMS 'font.size'; axis titles at the right end
    assert axis.xaxis.label.get_fontsize() == mplhep.style.CMS["font.size"]
    assert axis.xaxis.label.get_horizontalalignment() == "right"


def test_the_style_is_restored_when_drawing_fails() -> None:
    before = _rc_params()

    @cms_style
    def broken() -> None:
        assert matplotlib.rcParams["font.size"] == mplhep.style.CMS["font.size"]
        raise RuntimeError("drawing failed")

    with pytest.raises(RuntimeError, match="drawing failed"):
        broken()
    assert _rc_params() == before
