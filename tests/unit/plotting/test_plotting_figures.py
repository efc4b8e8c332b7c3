"""analysis/plotting/figures.py: the axes grid, PNG + PDF written atomically, reproducible PDFs."""

from __future__ import annotations

from pathlib import Path

import matplotlib.image
import matplotlib.pyplot as plt
import numpy as np
import pytest

from analysis.plotting.figures import new_figure, save_figure


@pytest.mark.parametrize(("n_columns", "n_rows"), [(1, 1), (2, 1), (3, 2)])
def test_new_figure_is_a_grid_of_axes_sized_per_axis(n_columns: int, n_rows: int) -> None:
    figure, axes = new_figure(n_columns, n_rows, width=4.0, height=3.0)
    try:
        assert axes.shape == (n_rows, n_columns)  # 2-D even for one axis
        assert len(figure.axes) == n_rows * n_columns
        assert tuple(figure.get_size_inches()) == (4.0 * n_columns, 3.0 * n_rows)
    finally:
        plt.close(figure)


def test_save_figure_writes_png_and_pdf_and_closes_the_figure(tmp_path: Path) -> None:
    figure, axes = new_figure(width=7.0, height=5.5)
    axes[0, 0].plot([0, 1], [1, 0])
    paths = save_figure(figure, tmp_path / "line")
    assert paths == [str(tmp_path / "line.png"), str(tmp_path / "line.pdf")]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["line.pdf", "line.png"]  # no temp
    assert Path(paths[1]).read_bytes().startswith(b"%PDF-")
    # 100 dpi: the PNG has the figure's size in pixels (rows, columns, RGBA)
    assert matplotlib.image.imread(paths[0]).shape == (550, 700, 4)
    assert not plt.fignum_exists(figure.number)


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
