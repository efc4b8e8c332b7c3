"""analysis/classes.py: the classifier's classes, each process's class, the signal's labels, and
a module that the statistical model can import without the training package."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from analysis.classes import CLASSES, SIGNAL_CLASS, class_of_process, signal_labels
from analysis.config import AnalysisConfig
from analysis.errors import ConfigError

REPOSITORY = Path(__file__).resolve().parents[2]


def test_class_of_process(tiny_config: AnalysisConfig) -> None:
    classes = class_of_process(tiny_config)
    assert list(classes) == list(tiny_config.process_names)
    assert classes == {"tth_bb": "tth", "tt_bb": "ttbb", "tt_b": "ttother", "tt_cc": "ttother",
                       "tt_lf": "ttother"}
    assert set(classes.values()) == set(CLASSES) and SIGNAL_CLASS == "tth"
    with pytest.raises(ConfigError, match="processes.tt_xx"):
        class_of_process(tiny_config, "tt_xx")


def test_signal_labels_are_the_positions_of_the_signal_processes(
        tiny_config: AnalysisConfig) -> None:
    assert signal_labels(tiny_config) == [tiny_config.label_of("tth_bb")] == [0]
    # the signal moved to the end of the processes: its label follows it
    names = [*[n for n in tiny_config.processes if n != "tth_bb"], "tth_bb"]
    moved = dataclasses.replace(tiny_config,
                                processes={n: tiny_config.processes[n] for n in names})
    assert signal_labels(moved) == [len(names) - 1]


def test_the_statistical_model_needs_no_training_package() -> None:
    # the class names (and the AUC) used to come from analysis.training, which itself imports
    # analysis.inference.model: a cycle between the packages
    script = ("import sys; from analysis.config import load_config; "
              "import analysis.inference.scores, analysis.inference.workspace; "
              "from analysis.inference.model import model_spec, network_classes; "
              "network_classes(load_config('tth_bb_tiny')); model_spec(load_config('tth_bb_tiny'));"
              " print(sorted(m for m in sys.modules if m.startswith('analysis.training')))")
    result = subprocess.run([sys.executable, "-c", script], cwd=REPOSITORY, capture_output=True,
                            text=True, check=True, env={"PYTHONPATH": str(REPOSITORY),
                                                        "PATH": "/usr/bin:/bin"})
    assert result.stdout.strip() == "[]"
