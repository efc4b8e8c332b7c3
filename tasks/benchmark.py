"""BenchmarkGPUSharing: N concurrent trainings exclusive, time-sliced and under MPS, per intensity."""

from __future__ import annotations

import dataclasses
import os

import law
import luigi

from analysis.gpu.benchmark import (
    INTENSITIES,
    TINY_INTENSITIES,
    SharingRow,
    format_table,
    require_device,
    run_sharing_benchmark,
    write_rows,
)
from analysis.plotting.gpu import plot_sharing
from tasks.base import DiffanaTask
from tasks.gpu import GpuWorkflow

__all__ = ["BenchmarkGPUSharing"]


class BenchmarkGPUSharing(DiffanaTask, GpuWorkflow):
    """GPU-sharing benchmark (issue 5): one branch per intensity (``low``: the DNN, ``medium``:
    the GNN), N in ``--n-jobs`` concurrent trainings in each mode; a table (JSON, Markdown) and
    a plot per branch. Needs a whole GPU (law.cfg default share 1); refuses to run without one
    unless ``--device cpu`` (a smoke test, no MPS rows).

    The JSON and Markdown are rewritten after every measurement (``"finished": false`` until the
    end) and are kept when the run is interrupted; the plot, written last, completes the branch,
    so law reruns an interrupted branch (no ``safe_output``, which would delete the rows)."""

    device = luigi.ChoiceParameter(choices=("cuda", "cpu"), default="cuda",
                                   description="cuda (the benchmark) or cpu (smoke test); "
                                   "default: cuda")
    n_jobs = law.CSVParameter(cls=luigi.IntParameter, default=(1, 2, 4, 8),
                              description="numbers of concurrent trainings; default: 1,2,4,8")
    size = luigi.ChoiceParameter(choices=("full", "tiny"), default="full",
                                 description="full (issue 5's intensities) or tiny; default: full")

    def create_branch_map(self) -> dict[int, str]:
        return dict(enumerate(INTENSITIES))

    def store_parts(self) -> tuple[str, ...]:
        return super().store_parts() + (f"{self.device}_{self.size}",)

    def output(self) -> dict[str, law.LocalFileTarget]:
        name = self.branch_data
        return {"json": self.target(f"{name}.json"), "table": self.target(f"{name}.md"),
                "plot": self.target(f"{name}.png")}

    def run(self) -> None:
        require_device(self.device)  # before anything is written: a clear ResourceError
        intensity = (TINY_INTENSITIES if self.size == "tiny" else INTENSITIES)[self.branch_data]
        outputs = self.output()
        outputs["json"].parent.touch()
        base = os.path.splitext(outputs["json"].abspath)[0]  # <name>.json, .md, .png: one base
        metadata = {"intensity": dataclasses.asdict(intensity), "device": self.device}

        def keep(rows: list[SharingRow]) -> None:
            write_rows(base, rows, metadata, finished=False, provenance=self.provenance())

        rows = run_sharing_benchmark(self.device, tuple(self.n_jobs), (intensity,), on_row=keep)
        write_rows(base, rows, metadata, finished=True, provenance=self.provenance())
        plot_sharing(rows, base)
        self.publish_message(f"{intensity.name} intensity on {self.device}:\n"
                             f"{format_table(rows)}")
