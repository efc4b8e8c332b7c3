"""analysis/plotting/training.py: one axis per training stage with its losses."""

from __future__ import annotations

from pathlib import Path

import pytest
from matplotlib.figure import Figure

from analysis.plotting.training import plot_training_curves

STAGES = [("ce", [0.7, 0.6, 0.55, 0.5]), ("inference", [2.0, 1.8, 1.9])]


def test_one_axis_per_stage_with_its_losses(tmp_path: Path,
                                            saved_figures: list[Figure]) -> None:
    paths = plot_training_curves(STAGES, "dnn / inference / fold 0", tmp_path / "curves")
    assert paths == [f"{tmp_path / 'curves'}.png", f"{tmp_path / 'curves'}.pdf"]
    assert Path(paths[1]).read_bytes().startswith(b"%PDF-")
    (figure,) = saved_figures
    assert len(figure.axes) == len(STAGES)
    for axis, (name, losses) in zip(figure.axes, STAGES):
        (line,) = axis.lines
        assert list(line.get_xdata()) == list(range(1, len(losses) + 1))
        assert list(line.get_ydata()) == losses
        assert axis.get_ylabel() == f"{name} loss"
        assert axis.get_legend() is None  # training loss only: nothing to tell apart
    assert figure.get_suptitle() == "dnn / inference / fold 0"


def test_validation_points_and_kept_step_on_their_stage(tmp_path: Path,
                                                        saved_figures: list[Figure]) -> None:
    plot_training_curves(STAGES, "t", tmp_path / "curves",
                         validation={"inference": [[1, 2.1], [3, 1.7]]},
                         best_steps={"ce": 4, "inference": 3})
    ce, inference = saved_figures[0].axes
    training, kept = ce.lines
    assert list(kept.get_xdata()) == [4, 4] and kept.get_label() == "model kept"
    training, validation, kept = inference.lines
    assert list(validation.get_xdata()) == [1, 3] and list(validation.get_ydata()) == [2.1, 1.7]
    assert list(kept.get_xdata()) == [3, 3]
    assert [t.get_text() for t in inference.get_legend().get_texts()] == [
        "training (batch)", "validation (all events)", "model kept"]


def test_equal_input_gives_equal_pdf_bytes(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    def pdf(index: int, stages: list) -> bytes:
        return Path(plot_training_curves(stages, "t", tmp_path / str(index))[1]).read_bytes()

    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1000000000")  # another date for matplotlib's PDF
    first = pdf(0, STAGES)
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    assert pdf(1, STAGES) == first
    assert pdf(2, [("ce", [0.7, 0.4])]) != first
