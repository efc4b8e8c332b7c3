"""TrainModel --workflow htcondor: the submit file of each GPU share, and law's job wrapper run
locally (no scheduler) completing a real training branch."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import htcondor2
import pytest

from tests.integration.conftest import (
    FAKE_CONDOR_SUBMIT,
    SKIM_VERSION,
    fake_submit_env,
    law_run,
    train_output,
)

pytestmark = pytest.mark.slow

SITE = {"universe": "vanilla", "accounting_group": "cms.higgs", "runtime_attribute": "+MaxRuntime",
        "runtime_unit": "s", "share_attribute": "+DiffanaGpuShare",
        "+SingularityImage": '"/cvmfs/unpacked.cern.ch/almalinux:9"'}

# share, extra command-line options, expected submit commands (htcondor2 names "+X" as "MY.X")
CASES = [
    ("0.1", [], {"request_gpus": "1", "gpus_minimum_memory": "8192", "request_cpus": "1",
                 "request_memory": "4096", "MY.MaxRuntime": "3600", "MY.DiffanaGpuShare": "0.1"},
     {"CUDA_MPS_ACTIVE_THREAD_PERCENTAGE": "10", "CUDA_MPS_PINNED_DEVICE_MEM_LIMIT": "0=8G"}),
    ("0.25", ["--gpu-memory-gb", "2.5", "--cpus", "2", "--memory-gb", "8",
              "--runtime-minutes", "90"],
     {"request_gpus": "1", "gpus_minimum_memory": "2560", "request_cpus": "2",
      "request_memory": "8192", "MY.MaxRuntime": "5400", "MY.DiffanaGpuShare": "0.25"},
     {"CUDA_MPS_ACTIVE_THREAD_PERCENTAGE": "25", "CUDA_MPS_PINNED_DEVICE_MEM_LIMIT": "0=2560M"}),
    ("0.5", [], {"request_gpus": "1", "gpus_minimum_memory": "40960", "MY.DiffanaGpuShare": "0.5"},
     {"CUDA_MPS_ACTIVE_THREAD_PERCENTAGE": "50", "CUDA_MPS_PINNED_DEVICE_MEM_LIMIT": "0=40G"}),
    ("1", [], {"request_gpus": "1", "gpus_minimum_memory": "81920", "MY.DiffanaGpuShare": "1"},
     {}),
    ("2", ["--gpu-memory-gb", "40"],
     {"request_gpus": "2", "gpus_minimum_memory": "40960", "MY.DiffanaGpuShare": "2"}, {}),
]


@pytest.fixture
def condor_env(tmp_path: Path, skimmed_store: Path) -> dict[str, str]:
    """PATH with the fake condor_submit, a capture directory, the skimmed store, a site law.cfg."""
    return fake_submit_env(tmp_path, "condor_submit", FAKE_CONDOR_SUBMIT, skimmed_store, {
        "htcondor_site": SITE,
        "diffana_remote": {"bootstrap_file": "tasks/bootstrap.sh",
                           "venv": sys.prefix}})  # the venv running pytest


def submit(share: str, options: list[str], env: dict[str, str], cwd: Path) -> Path:
    """Submit branches 0 and 1 of TrainModel with ``share``; return the captured submit file."""
    before = set(Path(env["CAPTURE_DIR"]).iterdir())
    law_run(["tasks.train.TrainModel", "--version", SKIM_VERSION, "--config", "tth_bb_tiny",
             "--workflow", "htcondor", "--branches", "0:2", "--no-poll", "--ignore-submission",
             "--gpu-share", share, *options], env, cwd)
    (new,) = set(Path(env["CAPTURE_DIR"]).iterdir()) - before
    return new


def environment(submit_file: htcondor2.Submit) -> dict[str, str]:
    return dict(item.split("=", 1) for item in submit_file["environment"].strip('"').split())


@pytest.mark.parametrize(("share", "options", "commands", "mps"), CASES,
                         ids=[case[0] for case in CASES])
def test_submit_file_of_share(share: str, options: list[str], commands: dict[str, str],
                              mps: dict[str, str], condor_env: dict[str, str],
                              tmp_path: Path) -> None:
    path = submit(share, options, condor_env, tmp_path)
    parsed = htcondor2.Submit(path.read_text())  # raises on a malformed description
    for command, value in commands.items():
        assert parsed[command] == value, command
    # site specifics come from law.cfg, not code
    assert parsed["universe"] == "vanilla"
    assert parsed["accounting_group"] == "cms.higgs"
    assert parsed["MY.SingularityImage"] == '"/cvmfs/unpacked.cern.ch/almalinux:9"'
    env = environment(parsed)
    assert {k: v for k, v in env.items() if k.startswith("CUDA_MPS")} == mps
    assert env["LAW_HTCONDOR_JOB_PROCESS"] == "$(Process)"
    items = list(parsed.itemdata())
    assert [item["law_job_postfix"] for item in items] == ["_0To1", "_1To2"]
    assert Path(parsed["transfer_input_files"].split(",")[-1]).name.startswith("bootstrap")


def test_impossible_share_is_refused(condor_env: dict[str, str], tmp_path: Path) -> None:
    with pytest.raises(AssertionError, match=r"GPU share '1\.5': more than one GPU must be a whole"):
        submit("1.5", [], condor_env, tmp_path)
    with pytest.raises(AssertionError, match=r"memory_gb = 100.0 GiB exceeds the card's 80.0"):
        submit("0.5", ["--gpu-memory-gb", "100"], condor_env, tmp_path)
    assert not list(Path(condor_env["CAPTURE_DIR"]).iterdir())


def test_job_wrapper_trains_a_branch(condor_env: dict[str, str], skimmed_store: Path,
                                     tmp_path: Path) -> None:
    """Run what HTCondor would run for job 1 (branch 0): the transferred files in a scratch
    directory, the submit file's environment, law's wrapper script; no scheduler, no venv on PATH
    (the bootstrap script must provide it)."""
    outputs = train_output(skimmed_store, 0)
    assert not any(path.exists() for path in outputs.values())
    parsed = htcondor2.Submit(submit("0.25", [], condor_env, tmp_path).read_text())
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    for source in parsed["transfer_input_files"].split(","):
        shutil.copy(source, scratch)
    job_env = {k: v.replace("$(Process)", "0").replace("$(Cluster)", "4242")
               for k, v in environment(parsed).items()}
    clean = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": os.environ.get("HOME", "/root"),
             **job_env}
    item = next(iter(parsed.itemdata()))
    result = subprocess.run(["bash", parsed["executable"], *item["arguments"].replace("''", "")
                             .split()], cwd=scratch, env=clean, capture_output=True, text=True,
                            timeout=300, check=False)
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-4000:]
    assert "diffana bootstrap: base" in log and "job exit code : 0" in log, log[-6000:]
    metadata = json.loads(outputs["metadata"].read_text())
    assert (metadata["fold"], metadata["model"], metadata["strategy"]) == (0, "dnn", "ce")
    assert all(path.exists() for path in outputs.values())
