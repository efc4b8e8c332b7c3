"""GenerateEvents: Pythia 8 events in NanoAOD format, one branch per dataset x chunk."""

from __future__ import annotations

import time

import law
import luigi

from analysis.events.generate import chunk_event_counts, chunk_seed, generate_chunk
from analysis.io import write_json
from tasks.base import DiffanaTask
from tasks.batch import BatchWorkflow

__all__ = ["GenerateEvents", "ExternalDataset"]


class GenerateEvents(DiffanaTask, BatchWorkflow):
    """Generated datasets of the config, chunk by chunk; reruns are bit-identical per branch.

    One branch per (dataset, chunk) of the config's ``generator`` sections (``n_events`` in
    chunks of ``chunk_size``), each with its own seed (:func:`chunk_seed`), so a chunk gives the
    same bytes on a batch node as on this machine: 1000 chunks on 1000 slots
    (``--workflow slurm`` or ``htcondor``) are the 1000 chunks of a local run.
    """

    def create_branch_map(self) -> dict[int, tuple[str, int]]:
        branches = []
        for name, dataset in self.analysis_config.datasets.items():
            if dataset.generator is not None:
                branches += [(name, chunk) for chunk in range(len(chunk_event_counts(dataset)))]
        return dict(enumerate(branches))

    def branch_label(self, branch: int) -> str:
        dataset, chunk = self.branch_map[branch]
        return f"chunk {dataset}[{chunk}] (branch {branch})"

    def output(self) -> dict[str, law.LocalFileTarget]:
        dataset, chunk = self.branch_data
        # the CPU time in a file of its own: the summary stays byte-reproducible
        return {"events": self.target(dataset, f"events_{chunk}.root"),
                "summary": self.target(dataset, f"events_{chunk}.json"),
                "cost": self.target(dataset, f"events_{chunk}_cost.json")}

    @law.decorator.safe_output
    def run(self) -> None:
        dataset, chunk = self.branch_data
        outputs = self.output()
        outputs["events"].parent.touch()
        n_events = chunk_event_counts(self.analysis_config.datasets[dataset])[chunk]
        cpu_start = time.process_time()
        runs = generate_chunk(self.analysis_config, dataset, chunk, outputs["events"].abspath,
                              progress=self.progress(n_events, f"{dataset}[{chunk}]"))
        seed = chunk_seed(self.analysis_config.datasets[dataset], chunk)
        write_json(outputs["summary"].abspath,
                          {"runs": runs, "provenance": self.provenance(seed)})
        write_json(outputs["cost"].abspath, {"cpu_seconds": time.process_time() - cpu_start,
                                             "events": runs["genEventCount"]})
        self.publish_message(f"{dataset}[{chunk}]: {runs['genEventCount']} events, filter "
                             f"{runs['genFilterPassed']}/{runs['genFilterTried']}")


class ExternalDataset(DiffanaTask, law.ExternalTask):
    """NanoAOD files that a dataset of the config lists (local paths, relative to the config)."""

    dataset = luigi.Parameter(description="dataset name from the config")

    def output(self) -> list[law.LocalFileTarget]:
        # remote files (root://, https://) cannot be checked here; uproot opens them in Skim
        return [law.LocalFileTarget(path) for path in self.files() if "://" not in path]

    def files(self) -> list[str]:
        """Local paths resolved against the config's folder; URLs as they are."""
        import os

        base = os.path.dirname(self.analysis_config.source)
        return [f if "://" in f else os.path.normpath(os.path.join(base, os.path.expandvars(f)))
                for f in self.analysis_config.datasets[self.dataset].files]
