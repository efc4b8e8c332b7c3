"""--workflow local: luigi "gpu" slots from the share pack branches on one GPU; the managed MPS
daemon and the client limits (against a fake control binary); without a GPU, a warning and CPU."""

from __future__ import annotations

import itertools
import json
import logging
import os
import time
from pathlib import Path

import law
import luigi
import pytest

import tasks.gpu
from analysis.errors import ResourceError
from tasks.base import DiffanaTask
from tasks.gpu import GpuWorkflow
from tasks.train import TrainModel

N_BRANCHES = 4
SLEEP_S = 1.0



class SleepOnGpu(DiffanaTask, GpuWorkflow):
    """Stand-in GPU task: each branch records its start, end and CUDA environment."""

    def create_branch_map(self) -> dict[int, int]:
        return {b: b for b in range(N_BRANCHES)}

    def output(self) -> law.LocalFileTarget:
        return self.target(f"branch{self.branch}.json")

    def run(self) -> None:
        start = time.monotonic()
        time.sleep(SLEEP_S)
        env = {k: v for k, v in os.environ.items() if k.startswith("CUDA_")}
        self.output().parent.touch()
        self.output().dump({"start": start, "end": time.monotonic(), "env": env,
                            "pid": os.getpid()}, formatter="json")


_RUNS = itertools.count()


def run_local(share: str, workers: int) -> list[dict]:
    # a new version per run: law remembers per process (and task id) that a local workflow has
    # started its branches, and the share is not part of the task id
    task = SleepOnGpu(version=f"v{next(_RUNS)}", config="tth_bb_tiny", gpu_share=share)
    assert luigi.build([task], local_scheduler=True, workers=workers, log_level="WARNING")
    return [json.loads(Path(t.abspath).read_text())
            for t in task.output()["collection"].targets.values()]


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
@pytest.mark.parametrize(("share", "peak"), [("0.5", 2), ("1", 1)])
def test_workers_pack_by_gpu_slots(share: str, peak: int, store: Path,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """--workers 4 with [resources] gpu = 100: two 0.5 shares at a time, whole GPUs one by one."""
    monkeypatch.setattr(tasks.gpu, "gpu_count", lambda: 0)
    assert luigi.configuration.get_config().getint("resources", "gpu") == 100
    records = run_local(share, workers=4)
    assert len({r["pid"] for r in records}) == N_BRANCHES  # separate worker processes
    assert max_concurrent(records) == peak


def test_without_gpu_warns_and_runs_on_cpu(store: Path, monkeypatch: pytest.MonkeyPatch,
                                           caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(tasks.gpu, "gpu_count", lambda: 0)
    for key in [k for k in os.environ if k.startswith("CUDA_")]:
        monkeypatch.delenv(key)
    with caplog.at_level(logging.WARNING, logger="tasks.gpu"):
        records = run_local("0.25", workers=1)
    assert "SleepOnGpu: no GPU visible, training on the CPU (GPU share 0.25 not applied)" in \
        caplog.text
    assert all(r["env"] == {} for r in records)  # no MPS limits, no device selection
    assert not (store / "mps").exists()  # no daemon


def test_with_gpu_starts_and_stops_mps_daemon(store: Path, fake_mps: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """A (pretended) GPU and a fake control binary: the workflow starts the daemon under the
    store, each branch gets its client limits, and the daemon is stopped at the end."""
    calls = fake_mps
    monkeypatch.setattr(tasks.gpu, "gpu_count", lambda: 1)
    for key in [k for k in os.environ if k.startswith("CUDA_")]:
        monkeypatch.delenv(key)
    records = run_local("0.25", workers=2)
    pipe = store / "mps" / "pipe"
    assert calls.read_text().splitlines() == [f"start {pipe} {store / 'mps' / 'log'}",
                                              f"quit {pipe}"]
    assert not (pipe / "control").exists() and not (pipe / "owner").exists()
    for record in records:
        assert record["env"] == {"CUDA_MPS_PIPE_DIRECTORY": str(pipe),
                                 "CUDA_MPS_ACTIVE_THREAD_PERCENTAGE": "25",
                                 "CUDA_MPS_PINNED_DEVICE_MEM_LIMIT": "0=20G"}
    # a daemon that someone else runs is used and left running
    pipe.mkdir(parents=True, exist_ok=True)
    (pipe / "control").touch()
    calls.unlink()
    for key in records[0]["env"]:  # workers=1 runs the branches in this process: restore after
        monkeypatch.setenv(key, "")
    run_local("0.25", workers=1)
    assert not calls.exists() and (pipe / "control").exists()
