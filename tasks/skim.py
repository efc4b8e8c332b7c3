"""Skim: the coffea processor over each dataset, per shift a Parquet table and a cutflow."""

from __future__ import annotations

import contextlib

import law
import luigi

from analysis.config import OBJECT_SHIFTS
from analysis.io import write_json, write_parquet
from tasks.base import SKIM_SECTIONS, DiffanaTask
from tasks.batch import BatchWorkflow
from tasks.generate import ExternalDataset, GenerateEvents

__all__ = ["Skim"]

# coffea (analysis.skim.processor) is imported in run(): a law process that only schedules,
# checks completeness or submits jobs does not load it


class Skim(DiffanaTask, BatchWorkflow):
    """Selected events with features and systematic variations, one branch per dataset.

    ``--workflow slurm`` (or ``htcondor``) sends each dataset to a batch job, after the events it
    needs (GenerateEvents runs with the same ``--workflow``); with law.cfg's
    ``[diffana] dask_scheduler`` set, each branch runs its chunks on that Dask cluster instead of
    in its own process.
    """

    config_dependencies = SKIM_SECTIONS

    skim_workers = luigi.IntParameter(default=law.NO_INT, significant=False,
                                      description="processes for coffea's futures executor "
                                      "within a branch; default: law.cfg [diffana] skim_workers")

    def create_branch_map(self) -> dict[int, str]:
        return dict(enumerate(self.analysis_config.datasets))

    def workflow_requires(self) -> dict[str, law.Task]:
        reqs = super().workflow_requires()
        if any(d.generator for d in self.analysis_config.datasets.values()):
            # its own branching: Skim's --branches, --tasks-per-job, ... mean other things there
            reqs["events"] = GenerateEvents.req_different_branching(self)
        return reqs

    def requires(self) -> dict[str, list[law.Task]] | law.Task:
        dataset = self.branch_data
        if self.analysis_config.datasets[dataset].files:
            return ExternalDataset.req(self, dataset=dataset)
        branches = GenerateEvents.req(self, branch=0).get_branch_map()
        complement = self.analysis_config.filter_complement(dataset)
        return {key: [GenerateEvents.req(self, branch=b) for b, (name, _) in branches.items()
                      if name == wanted] for key, wanted in (("events", dataset),
                                                             ("complement", complement))}

    def output(self) -> dict[str, law.LocalFileTarget]:
        dataset = self.branch_data
        outputs = {shift: self.target(dataset, f"{shift}.parquet") for shift in OBJECT_SHIFTS}
        outputs["cutflow"] = self.target(dataset, "cutflow.json")
        return outputs

    @law.decorator.safe_output
    def run(self) -> None:
        from analysis.skim.processor import run_skim

        requirement = self.requires()
        if isinstance(requirement, ExternalDataset):
            files, complement = requirement.files(), []
        else:
            files, complement = ([t["events"].abspath for t in self.input()[key]]
                                 for key in ("events", "complement"))
        with self._dask_client() as client:
            result = run_skim(self.analysis_config, self.branch_data, files, self._workers(),
                              dask_client=client, complement_files=complement)
        outputs = self.output()
        outputs["cutflow"].parent.touch()
        provenance = self.provenance()
        for shift, table in result.tables.items():
            write_parquet(outputs[shift].abspath, table, provenance)
        write_json(outputs["cutflow"].abspath, {
            "cutflow": result.cutflow, "sum_gen_weight": result.sum_gen_weight,
            "n_events": result.n_events, "files": files, "provenance": provenance})
        self.publish_message(f"{self.branch_data}: {result.n_events} -> "
                             f"{len(result.tables['nominal'])} events")

    def _workers(self) -> int:
        if self.skim_workers != law.NO_INT:
            return self.skim_workers
        return law.config.get_expanded_int("diffana", "skim_workers", default=1)

    def _dask_client(self) -> contextlib.AbstractContextManager:
        """A client of the Dask scheduler named in law.cfg, closed after use; else nothing."""
        address = law.config.get_expanded("diffana", "dask_scheduler", default="")
        if not address:
            return contextlib.nullcontext()
        from distributed import Client

        return Client(address)
