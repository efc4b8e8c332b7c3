"""--workflow local: luigi "gpu" slots from the share pack branches on one GPU; each branch runs in
a share process of its own with its share's environment; the managed MPS daemon (against a fake
control binary); without a GPU, a warning, the CPU, and the environment all the same."""

from __future__ import annotations

import itertools
import json
import logging
import os
from pathlib import Path

import luigi
import pytest

import tasks.gpu
from analysis.errors import ResourceError
from tasks.gpu import SHARE_TASK_VARIABLE
from tasks.train import TrainModel
from tests.integration.gpu_tasks import RecordShare

_RUNS = itertools.count()


def records(task: RecordShare) -> list[dict]:
    """What each branch of ``task`` recorded, in branch order."""
    return [json.loads(Path(t.abspath).read_text())
            for t in task.output()["collection"].targets.values()]


def run_local(share: str, workers: int, **params: object) -> list[dict]:
    # a new version per run: the share is not part of the task id
    task = RecordShare(version=f"v{next(_RUNS)}", config="tth_bb_tiny", gpu_share=share,
                       **params)
    assert luigi.build([task], local_scheduler=True, workers=workers, log_level="WARNING")
    return records(task)


def without_cuda_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in [k for k in os.environ if k.startswith("CUDA_")]:
        monkeypatch.delenv(key)


def max_concurrent(records: list[dict]) -> int:
    """Largest number of branches running at one time (from their start/end times)."""
    events = sorted([(r["start"], 1) for r in records] + [(r["end"], -1) for r in records])
    running = peak = 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    return peak


@pytest.mark.parametrize(("share", "slots"), [("0.1", 10), ("0.25", 25), ("0.5", 50), ("1", 100),
                                              ("2", 200)])
def test_branch_takes_share_of_gpu_slots(share: str, slots: int, store: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LAW_JOB_HOME", raising=False)
    monkeypatch.setattr(luigi.configuration.get_config(), "getint",
                        lambda section, option, default=None: 200)  # a machine with 2 GPUs
    branch = TrainModel(version="t1", config="tth_bb_tiny", branch=0, gpu_share=share,
                        gpu_memory_gb=8)
    assert branch.process_resources() == {"gpu": slots}
    workflow = TrainModel(version="t1", config="tth_bb_tiny", gpu_share=share, gpu_memory_gb=8)
    assert workflow.process_resources() == {}  # the workflow itself holds no GPU
    monkeypatch.setenv("LAW_JOB_HOME", "/scratch/job_1")  # inside a batch job: already allotted
    assert branch.process_resources() == {}


def test_share_beyond_the_machine_is_refused() -> None:
    branch = TrainModel(version="t1", config="tth_bb_tiny", branch=0, gpu_share="2",
                        gpu_memory_gb=8)
    assert luigi.configuration.get_config().getint("resources", "gpu") == 100  # law.cfg: 1 GPU
    with pytest.raises(ResourceError, match=r"GPU share '2' needs 200 units of the luigi "
                       r"resource gpu, the machine has 100"):
        branch.process_resources()


def test_default_share_comes_from_law_cfg() -> None:
    task = TrainModel(version="t1", config="tth_bb_tiny")
    assert task.gpu_share == luigi.configuration.get_config().get("TrainModel", "gpu_share")
    assert task.share.spec == "0.25" and task.share.memory_gb == 20.0  # 0.25 x 80 GiB card


def test_local_share_is_checked_against_the_card_it_runs_on(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # a (pretended) 40 GiB card: locally its memory, not law.cfg's 80 GiB, is the limit
    monkeypatch.setattr(tasks.gpu, "gpu_count", lambda: 1)
    monkeypatch.setattr(tasks.gpu, "device_memory_gb", lambda: 40.0)
    with pytest.raises(ResourceError,
                       match=r"memory_gb = 48(\.0)? GiB exceeds the card's 40(\.0)? GiB"):
        TrainModel(version="t1", config="tth_bb_tiny", gpu_share="0.5", gpu_memory_gb=48)
    local = TrainModel(version="t1", config="tth_bb_tiny", gpu_share="0.25", gpu_memory_gb=0)
    assert local.share.memory_gb == 10.0  # a quarter of the card it will run on
    # a batch job's card is the site's (law.cfg), whatever the submit node has
    remote = TrainModel(version="t1", config="tth_bb_tiny", gpu_share="0.5", gpu_memory_gb=48,
                        workflow="htcondor")
    assert remote.share.memory_gb == 48.0


@pytest.mark.slow
@pytest.mark.parametrize(("share", "peak", "n_branches"), [("0.5", 2, 3), ("1", 1, 2)])
def test_workers_pack_by_gpu_slots(share: str, peak: int, n_branches: int, store: Path,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """--workers 4 with [resources] gpu = 100: two 0.5 shares at a time, whole GPUs one by one
    (one branch more than the peak: without the slots, all would run at once)."""
    monkeypatch.setattr(tasks.gpu, "gpu_count", lambda: 0)
    assert luigi.configuration.get_config().getint("resources", "gpu") == 100
    records = run_local(share, workers=4, n_branches=n_branches)
    assert len({r["pid"] for r in records}) == n_branches  # a share process each
    assert max_concurrent(records) == peak


def test_without_gpu_warns_and_runs_on_cpu(store: Path, monkeypatch: pytest.MonkeyPatch,
                                           caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(tasks.gpu, "gpu_count", lambda: 0)
    without_cuda_variables(monkeypatch)
    with caplog.at_level(logging.WARNING, logger="tasks.gpu"):
        records = run_local("0.25", workers=1, n_branches=1)
    assert ("RecordShare: no GPU visible, running on the CPU (GPU share 0.25: its environment is "
            "passed to each branch's process, where it has no effect)") in caplog.text
    (record,) = records
    assert record["env"]["CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"] == "25"  # computed all the same
    assert not (store / "mps").exists()  # but no daemon


def test_two_shares_in_one_run_each_get_their_own(store: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """--workers 1, a quarter and a half GPU in one run (no GPU here: the environment is passed
    all the same): every branch ran in a fresh process of its own that saw its own share's MPS
    limits, and this process's environment is unchanged."""
    monkeypatch.setattr(tasks.gpu, "gpu_count", lambda: 0)
    without_cuda_variables(monkeypatch)
    def gpu_variables() -> dict[str, str]:
        return {k: v for k, v in os.environ.items()
                if k.startswith("CUDA_") or k == SHARE_TASK_VARIABLE}

    before = gpu_variables()
    version = f"v{next(_RUNS)}"
    quarter, half = (RecordShare(version=version, config="tth_bb_tiny", label=label,
                                 gpu_share=share, n_branches=2)
                     for label, share in (("quarter", "0.25"), ("half", "0.5")))
    assert luigi.build([quarter, half], local_scheduler=True, workers=1, log_level="WARNING")
    assert gpu_variables() == before == {}  # nothing of the shares leaked into this process
    pipe = str(store / "mps" / "pipe")
    for task, percent, memory in ((quarter, "25", "0=20G"), (half, "50", "0=40G")):
        for record in records(task):
            assert record["env"] == {"CUDA_MPS_PIPE_DIRECTORY": pipe,
                                     "CUDA_MPS_ACTIVE_THREAD_PERCENTAGE": percent,
                                     "CUDA_MPS_PINNED_DEVICE_MEM_LIMIT": memory,
                                     SHARE_TASK_VARIABLE: record["task_id"]}
    pids = [r["pid"] for task in (quarter, half) for r in records(task)]
    assert len(set(pids)) == 4 and os.getpid() not in pids


def test_whole_gpus_get_visible_devices(store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tasks.gpu, "gpu_count", lambda: 0)
    without_cuda_variables(monkeypatch)
    (record,) = run_local("1", workers=1, n_branches=1)
    assert {k: v for k, v in record["env"].items() if k.startswith("CUDA_")} == {
        "CUDA_VISIBLE_DEVICES": "0"}


def test_failing_branch_fails_the_workflow(store: Path, monkeypatch: pytest.MonkeyPatch,
                                           capfd: pytest.CaptureFixture[str],
                                           caplog: pytest.LogCaptureFixture) -> None:
    """A payload that fails in its share process fails its branch, and both errors are shown."""
    monkeypatch.setattr(tasks.gpu, "gpu_count", lambda: 0)
    task = RecordShare(version=f"v{next(_RUNS)}", config="tth_bb_tiny", gpu_share="0.5",
                       n_branches=1, fail=True)
    assert not luigi.build([task], local_scheduler=True, workers=1, log_level="WARNING")
    assert not any(Path(t.abspath).exists() for t in task.output()["collection"].targets.values())
    # the payload's error, printed by its share process, and the branch's, logged here
    assert "InputDataError: RecordShare branch 0: failing on purpose" in capfd.readouterr().err
    assert ("its share process (law run of the branch with GPU share 0.5) exited with status 1; "
            "its error is printed above") in caplog.text


def test_with_gpu_starts_and_stops_mps_daemon(store: Path, fake_mps: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """A (pretended) GPU and a fake control binary: the workflow starts the daemon under the
    store, each branch's process gets its client limits, and the daemon is stopped at the end."""
    calls = fake_mps
    monkeypatch.setattr(tasks.gpu, "gpu_count", lambda: 1)
    without_cuda_variables(monkeypatch)
    records = run_local("0.25", workers=2, n_branches=2)
    pipe = store / "mps" / "pipe"
    assert calls.read_text().splitlines() == [f"start {pipe} {store / 'mps' / 'log'}",
                                              f"quit {pipe}"]
    assert not (pipe / "control").exists() and not (pipe / "owner").exists()
    for record in records:
        assert {k: v for k, v in record["env"].items() if k.startswith("CUDA_")} == {
            "CUDA_MPS_PIPE_DIRECTORY": str(pipe), "CUDA_MPS_ACTIVE_THREAD_PERCENTAGE": "25",
            "CUDA_MPS_PINNED_DEVICE_MEM_LIMIT": "0=20G"}
    # a daemon that someone else runs is used and left running
    pipe.mkdir(parents=True, exist_ok=True)
    (pipe / "control").touch()
    calls.unlink()
    run_local("0.25", workers=1, n_branches=1)
    assert not calls.exists() and (pipe / "control").exists()
