"""Every kind of bad input stops with one message naming the file (and branch)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import uproot

from analysis.config import AnalysisConfig
from analysis.errors import EmptySelectionError, InputDataError
from analysis.events.nanoaod import read_nanoaod, write_nanoaod
from analysis.skim.processor import run_skim


def _copy_without(source: Path, target: Path, drop: str | None = None) -> Path:
    """A copy of a generated file without the branch ``drop`` (``Collection_field``)."""
    branches, runs = read_nanoaod(source)
    if drop is not None:
        collection, field = drop.split("_", 1)
        branches[collection] = branches[collection][[f for f in branches[collection].fields
                                                     if f != field]]
    write_nanoaod(target, branches, runs)
    return target


@pytest.mark.parametrize("case", ["empty", "not_root", "truncated_30", "truncated_67",
                                  "truncated_92", "no_events_tree", "missing_branch",
                                  "missing_file"])
def test_bad_file_is_named(case: str, tmp_path: Path, nano_file: Path,
                           tiny_config: AnalysisConfig) -> None:
    path = tmp_path / f"{case}.root"
    expected = str(path)
    if case == "empty":
        path.write_bytes(b"")
    elif case == "not_root":
        path.write_text("run,event\n1,2\n")
    elif case.startswith("truncated"):
        content = nano_file.read_bytes()
        path.write_bytes(content[: len(content) * int(case.split("_")[1]) // 100])
    elif case == "no_events_tree":
        with uproot.recreate(path) as file:
            file["Runs"] = {"run": np.array([1])}
    elif case == "missing_branch":
        _copy_without(nano_file, path, drop="Jet_btagDeepFlavB")
        expected = (f"{path}: Events tree lacks 1 branch that the config (NanoAOD v12) reads: "
                    "Jet_btagDeepFlavB (nanoaod.btag: Jet_btagDeepFlavB)")
    with pytest.raises(InputDataError) as info:
        run_skim(tiny_config, "tth", [str(path)])
    assert expected in str(info.value) and "\n" not in str(info.value)
    assert not isinstance(info.value, EmptySelectionError)


def test_no_event_passing_is_an_empty_selection(tmp_path: Path, nano_file: Path,
                                                tiny_config: AnalysisConfig) -> None:
    import dataclasses

    impossible = dataclasses.replace(
        tiny_config, selection=dataclasses.replace(tiny_config.selection, n_jets_min=50))
    with pytest.raises(EmptySelectionError, match=str(nano_file)):
        run_skim(impossible, "tth", [str(nano_file)])


def test_copy_helper_keeps_good_files_good(tmp_path: Path, nano_file: Path,
                                           tiny_config: AnalysisConfig) -> None:
    """The broken inputs above differ from a good file only by what each test removes."""
    copy = _copy_without(nano_file, tmp_path / "copy.root")
    original = run_skim(tiny_config, "tth", [str(nano_file)]).tables["nominal"]
    copied = run_skim(tiny_config, "tth", [str(copy)]).tables["nominal"]
    assert len(copied) == len(original)
    np.testing.assert_array_equal(np.asarray(copied.ht), np.asarray(original.ht))
