"""Stand-in GPU tasks of the GPU-workflow tests, importable by the share processes that run their
branches (``python -m law run tests.integration.gpu_tasks.RecordShare ...``)."""

from __future__ import annotations

import os
import time

import law
import luigi

from analysis.errors import InputDataError
from tasks.base import DiffanaTask
from tasks.gpu import SHARE_TASK_VARIABLE, GpuWorkflow

N_BRANCHES = 4
SLEEP_S = 1.0


class RecordShare(DiffanaTask, GpuWorkflow):
    """Each branch sleeps, then records its start, end, process and what it saw of the GPU
    environment (``CUDA_*`` and the share-process marker)."""

    label = luigi.Parameter(default="a", description="tells instances with different shares "
                            "apart (the share is not significant); default: a")
    n_branches = luigi.IntParameter(default=N_BRANCHES, description="number of branches")
    fail = luigi.BoolParameter(default=False, description="the payload fails")

    def store_parts(self) -> tuple[str, ...]:
        return super().store_parts() + (self.label,)

    def create_branch_map(self) -> dict[int, int]:
        return {b: b for b in range(self.n_branches)}

    def output(self) -> law.LocalFileTarget:
        return self.target(f"branch{self.branch}.json")

    def run(self) -> None:
        if self.fail:
            raise InputDataError(f"{self.task_family} branch {self.branch}: failing on purpose")
        start = time.monotonic()
        time.sleep(SLEEP_S)
        env = {k: v for k, v in os.environ.items()
               if k.startswith("CUDA_") or k == SHARE_TASK_VARIABLE}
        self.output().parent.touch()
        self.output().dump({"start": start, "end": time.monotonic(), "env": env,
                            "pid": os.getpid(), "task_id": self.task_id}, formatter="json")
