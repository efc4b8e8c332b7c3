"""Torch threads per task process: the machine's cores shared by the luigi workers, for the time
a task runs (the process's own count comes back afterwards)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import law
import luigi
import pytest
import torch

from analysis.errors import ConfigError
from tasks.base import DiffanaTask, torch_threads
from tests.integration.conftest import REPO, law_run


class ThreadCount(DiffanaTask):
    """Writes the torch thread count of the process that runs it."""

    index = luigi.IntParameter()

    def output(self) -> law.LocalFileTarget:
        return self.target(f"threads_{self.index}.json")

    def run(self) -> None:
        import torch

        self.output().parent.touch()
        self.output().dump({"threads": torch.get_num_threads(), "pid": os.getpid()},
                           formatter="json")


class ThreadCounts(DiffanaTask, law.WrapperTask):
    """Two :class:`ThreadCount` tasks, to be run at once by two workers."""

    def requires(self) -> list[ThreadCount]:
        return [ThreadCount.req(self, index=i) for i in range(2)]


def test_auto_divides_the_cores_by_the_workers() -> None:
    assert torch_threads("auto", workers=2, cpus=2) == 1
    assert torch_threads("auto", workers=1, cpus=16) == 16
    assert torch_threads("", workers=4, cpus=16) == 4
    assert torch_threads("auto", workers=8, cpus=2) == 1  # never 0
    assert torch_threads("3", workers=2, cpus=2) == 3  # an explicit number is kept
    for bad in ("0", "many", "-2"):
        with pytest.raises(ConfigError, match="must be 'auto' or an integer >= 1"):
            torch_threads(bad, workers=1, cpus=2)


@pytest.mark.parametrize("workers", [1, 2])
def test_law_run_gives_each_worker_its_share_of_the_cores(store: Path, workers: int) -> None:
    law_run(["tests.integration.test_torch_threads.ThreadCounts", "--version", f"w{workers}",
             "--config", "tth_bb_tiny", "--workers", str(workers)],
            env={"DIFFANA_STORE": str(store), "DIFFANA_TORCH_THREADS": "auto",
                 "PYTHONPATH": str(REPO)}, cwd=REPO)
    records = [json.loads(path.read_text()) for path in sorted(store.rglob("threads_*.json"))]
    assert len(records) == 2
    assert [r["threads"] for r in records] == [max(1, (os.cpu_count() or 1) // workers)] * 2


def test_a_task_in_this_process_gives_its_threads_back(store: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    # one worker runs the tasks in this process: the count holds while they run, not after
    monkeypatch.setenv("DIFFANA_TORCH_THREADS", "3")
    before = torch.get_num_threads()
    assert before != 3  # else the check below is void (tests/conftest.py sets 1)
    assert luigi.build([ThreadCounts(version="inproc", config="tth_bb_tiny")],
                       local_scheduler=True, workers=1)
    records = [json.loads(path.read_text()) for path in sorted(store.rglob("threads_*.json"))]
    assert [(r["threads"], r["pid"]) for r in records] == [(3, os.getpid())] * 2
    assert torch.get_num_threads() == before


def test_a_share_process_runs_with_this_tasks_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    """A GPU task's branch runs in a child ``law run --workers 1``, which would take every core:
    its environment passes the parent task's own count (2 workers' children each took both of
    2 cores, and the demo's training ran 2.5x slower)."""
    from analysis.threads import torch_thread_count
    from tasks.train import TrainModel

    monkeypatch.delenv("DIFFANA_TORCH_THREADS", raising=False)
    task = TrainModel(version="threads", config="tth_bb_tiny", branch=0)
    with torch_thread_count(3):
        assert task.share_process_environment()["DIFFANA_TORCH_THREADS"] == "3"
    monkeypatch.setenv("DIFFANA_TORCH_THREADS", "5")  # the user's own setting wins
    assert task.share_process_environment()["DIFFANA_TORCH_THREADS"] == "5"
