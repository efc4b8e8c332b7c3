"""analysis/classes.py and the config's ``classes`` key: each process's class, the signal's
labels, the errors of a bad key, and a module that the statistical model can import without the
training package."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from analysis.classes import (
    class_index_of_labels,
    class_names,
    class_of_process,
    score_column,
    signal_class,
    signal_labels,
)
from analysis.config import (
    AnalysisConfig,
    OutputClass,
    load_config,
    resolve_config_path,
)
from analysis.errors import ConfigError

REPOSITORY = Path(__file__).resolve().parents[2]


def test_the_shipped_configs_keep_the_three_classes() -> None:
    expected = (OutputClass("tth", ("tth_bb",)), OutputClass("ttbb", ("tt_bb",)),
                OutputClass("ttother", ("tt_b", "tt_cc", "tt_lf")))
    for path in sorted((REPOSITORY / "config").glob("*.yaml")):
        assert load_config(str(path)).classes == expected, path.name


def test_class_of_process(tiny_config: AnalysisConfig) -> None:
    classes = class_of_process(tiny_config)
    assert list(classes) == list(tiny_config.process_names)
    assert classes == {"tth_bb": "tth", "tt_bb": "ttbb", "tt_b": "ttother", "tt_cc": "ttother",
                       "tt_lf": "ttother"}
    assert class_names(tiny_config) == ("tth", "ttbb", "ttother")
    assert signal_class(tiny_config) == "tth" and score_column("tth") == "p_tth"
    assert class_index_of_labels(tiny_config).tolist() == [0, 1, 2, 2, 2]


def test_another_grouping_is_read_from_the_config(tiny_config: AnalysisConfig) -> None:
    grouped = dataclasses.replace(tiny_config, classes=(
        OutputClass("higgs", ("tth_bb",)), OutputClass("light", ("tt_lf",)),
        OutputClass("heavy", ("tt_bb", "tt_b", "tt_cc"))))
    assert class_names(grouped) == ("higgs", "light", "heavy")
    assert signal_class(grouped) == "higgs"
    assert class_index_of_labels(grouped).tolist() == [0, 2, 2, 2, 1]
    assert list(class_of_process(grouped).values()) == ["higgs", "heavy", "heavy", "heavy",
                                                        "light"]


def test_signal_labels_are_the_positions_of_the_signal_processes(
        tiny_config: AnalysisConfig) -> None:
    assert signal_labels(tiny_config) == [tiny_config.label_of("tth_bb")] == [0]
    # the signal moved to the end of the processes: its label follows it
    names = [*[n for n in tiny_config.processes if n != "tth_bb"], "tth_bb"]
    moved = dataclasses.replace(tiny_config,
                                processes={n: tiny_config.processes[n] for n in names})
    assert signal_labels(moved) == [len(names) - 1]
    assert class_index_of_labels(moved).tolist() == [1, 2, 2, 2, 0]


def _classes(*groups: tuple[str, list[str]]) -> list[dict[str, Any]]:
    return [{"name": name, "processes": processes} for name, processes in groups]


SIGNAL = ("tth", ["tth_bb"])
TTBB = ("ttbb", ["tt_bb"])
OTHER = ("ttother", ["tt_b", "tt_cc", "tt_lf"])


@pytest.mark.parametrize(("classes", "key", "why"), [
    (None, "classes", "required key is missing"),
    (_classes(SIGNAL, ("ttbb", []), ("ttother", ["tt_bb", "tt_b", "tt_cc", "tt_lf"])),
     "classes[1].processes", "class ttbb needs at least one process"),
    (_classes(SIGNAL, TTBB, ("ttother", ["tt_b", "tt_cc", "tt_lf", "tt_bb"])),
     "classes[2].processes[3]", "already in class ttbb"),
    (_classes(SIGNAL, TTBB, ("ttother", ["tt_b", "tt_cc"])), "classes",
     "process tt_lf is in no class"),
    (_classes(SIGNAL, TTBB, ("ttother", ["tt_b", "tt_cc", "tt_lf", "tt_xx"])),
     "classes[2].processes[3]", "no such process"),
    (_classes(TTBB, SIGNAL, OTHER), "classes[0].processes[0]",
     "a background in the first class"),
    (_classes(("tth", ["tth_bb", "tt_bb"]), OTHER), "classes[0].processes[1]",
     "a background in the first class"),
    (_classes(("all", ["tth_bb", "tt_bb", "tt_b", "tt_cc", "tt_lf"])), "classes",
     "needs at least 2 classes"),
    (_classes(SIGNAL, ("tt+bb", ["tt_bb"]), OTHER), "classes[1].name",
     "must be a letter, then letters, digits or _"),
    (_classes(SIGNAL, ("ttother", ["tt_bb"]), OTHER), "classes[2].name", "listed twice"),
    ([{"tth": ["tth_bb"]}, *_classes(TTBB, OTHER)], "classes[0].tth", "unknown key"),
])
def test_a_bad_classes_key_names_the_file_and_the_key(tmp_path: Path, classes: Any, key: str,
                                                      why: str) -> None:
    raw = yaml.safe_load(resolve_config_path("tth_bb_tiny").read_text())
    raw.pop("classes")
    if classes is not None:
        raw["classes"] = classes
    path = tmp_path / "variant.yaml"
    path.write_text(yaml.safe_dump(raw))  # sorted keys: a list keeps the classes' order
    with pytest.raises(ConfigError, match=re.escape(f"{path}: {key} = ")) as info:
        load_config(str(path))
    assert why in str(info.value)


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
