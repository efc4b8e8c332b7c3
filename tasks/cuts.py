"""LearnCuts -> ReduceEvents: the learned skim (Watts, CHEP 2023) and its trade-off report."""

from __future__ import annotations

import os
from typing import Any

import law
import luigi

from analysis.config import OBJECT_SHIFTS
from analysis.errors import ConfigError
from analysis.io import read_json, write_json, write_text
from analysis.plotting.selection import plot_learning, plot_tradeoff
from analysis.selection.learn import (
    LearnedSelection,
    learn_selection,
    selection_tradeoff,
)
from analysis.selection.reduce import (
    load_selection_samples,
    reduce_tables,
    save_selection_samples,
    tradeoff_markdown,
    tradeoff_records,
)
from analysis.selection.samples import selection_samples
from tasks.base import SKIM_SECTIONS, UNCERTAINTY_SECTIONS, DiffanaTask
from tasks.skim import Skim

__all__ = ["LearnCuts", "ReduceEvents", "SelectionMixin", "event_tables"]


def event_tables(events: Any) -> dict[str, dict[str, str]]:
    """dataset -> shift -> Parquet path, from an input that is the Skim workflow's output
    (``{"collection": ...}``) or ReduceEvents' (``{"tables": ...}``)."""
    if "tables" in events:
        return {d: {s: t.abspath for s, t in shifts.items()}
                for d, shifts in events["tables"].items()}
    # a Skim branch writes <dataset>/<shift>.parquet: its folder names the dataset
    return {outputs["nominal"].parent.basename: {s: outputs[s].abspath for s in OBJECT_SHIFTS}
            for outputs in events["collection"].targets.values()}


class LearnCuts(DiffanaTask):
    """Thresholds of the config's ``cuts:`` learned on all skimmed events.

    Outputs: ``cuts.json`` (thresholds, start, objective before and after, provenance), the
    optimisation curve ``learning.png``/``.pdf`` and the samples it learned on
    (``selection_samples.pt``), which ReduceEvents scans the trade-off on.
    """

    config_dependencies = (*SKIM_SECTIONS, *UNCERTAINTY_SECTIONS, "cuts")

    def requires(self) -> law.Task:
        return Skim.req(self, branch=-1)

    def output(self) -> dict[str, law.LocalFileTarget]:
        return {"cuts": self.target("cuts.json"), "plot": self.target("learning.png"),
                "samples": self.target("selection_samples.pt")}

    @law.decorator.safe_output
    def run(self) -> None:
        settings = self.analysis_config.cuts
        if settings is None:
            raise ConfigError(f"{self.analysis_config.source}: no 'cuts:' section: add one, or "
                              f"run the analysis with --learned-cuts false")
        samples = selection_samples(event_tables(self.input()), self.analysis_config)
        selection = learn_selection(samples, settings,
                                    progress=self.progress(settings.steps, "LearnCuts", "step"))
        outputs = self.output()
        outputs["cuts"].parent.touch()
        save_selection_samples(outputs["samples"].abspath, samples)
        plot_learning(selection, os.path.splitext(outputs["plot"].abspath)[0])
        write_json(outputs["cuts"].abspath, {
            **selection.as_dict(), "columns": list(samples.columns),
            "provenance": self.provenance()})
        self.publish_message(f"learned cuts: {selection.summary()}")


class ReduceEvents(DiffanaTask):
    """The skims with the learned cuts applied hard, and the trade-off they were chosen from.

    Outputs per dataset and shift a Parquet table like Skim's, plus ``tradeoff.json``,
    ``tradeoff.md`` and ``tradeoff.png``/``.pdf``: data size kept, signal efficiency and expected
    sigma_mu (stat only and with systematics) from no cut through the learned cuts to tighter ones.
    """

    config_dependencies = (*SKIM_SECTIONS, *UNCERTAINTY_SECTIONS, "cuts")

    def requires(self) -> dict[str, law.Task]:
        return {"skim": Skim.req(self, branch=-1), "cuts": LearnCuts.req(self)}

    def output(self) -> dict[str, Any]:
        datasets = {d: {shift: self.target(d, f"{shift}.parquet") for shift in OBJECT_SHIFTS}
                    for d in self.analysis_config.datasets}
        return {"tables": datasets, "tradeoff": self.target("tradeoff.json"),
                "table": self.target("tradeoff.md"), "plot": self.target("tradeoff.png")}

    @law.decorator.safe_output
    def run(self) -> None:
        learned = self.input()["cuts"]
        selection = LearnedSelection.from_dict(read_json(learned["cuts"].abspath))
        samples = load_selection_samples(learned["samples"].abspath)
        settings = self.analysis_config.cuts
        if settings is None:  # LearnCuts checked it; a config edited in between
            raise ConfigError(f"{self.analysis_config.source}: no 'cuts:' section")
        tradeoff = selection_tradeoff(samples, selection, settings)
        outputs, provenance = self.output(), self.provenance()
        outputs["table"].parent.touch()
        for targets in outputs["tables"].values():
            next(iter(targets.values())).parent.touch()
        kept, total = reduce_tables(event_tables(self.input()["skim"]),
                                    event_tables(outputs), selection, provenance)
        plot_tradeoff(tradeoff, os.path.splitext(outputs["plot"].abspath)[0])
        write_text(outputs["table"].abspath, tradeoff_markdown(tradeoff, selection))
        write_json(outputs["tradeoff"].abspath, {
            "points": tradeoff_records(tradeoff), "selection": selection.as_dict(),
            "kept_events": kept, "skimmed_events": total, "provenance": provenance})
        self.publish_message(f"ReduceEvents: kept {kept} of {total} skimmed events")


class SelectionMixin:
    """``--learned-cuts`` (default) reads ReduceEvents' tables; ``--learned-cuts false`` the Skim's.

    The choice is part of the output path, so both variants live side by side in one store.
    """

    learned_cuts = luigi.BoolParameter(default=True, parsing=luigi.BoolParameter.EXPLICIT_PARSING,
                                       description="use the learned skim (ReduceEvents); false: "
                                       "the Skim's selection only; default: true")

    def config_sections(self) -> tuple[str, ...]:
        sections = super().config_sections()  # type: ignore[misc]
        # the learned skim, or cuts learned jointly with a network (training.joint_cuts)
        uses_cuts = self.learned_cuts or self.analysis_config.training.joint_cuts
        return (*sections, "cuts") if uses_cuts else sections

    def selection_label(self) -> str:
        return "learned_cuts" if self.learned_cuts else "skim_cuts"

    def store_parts(self) -> tuple[str, ...]:
        return (*super().store_parts(), self.selection_label())  # type: ignore[misc]

    def selection_requires(self) -> law.Task:
        if self.learned_cuts:
            return ReduceEvents.req(self)
        return Skim.req(self, branch=-1)

    def selection_tables(self, events: Any) -> dict[str, dict[str, str]]:
        """dataset -> shift -> Parquet path of the events this task works on, from the input
        of :meth:`selection_requires`."""
        return event_tables(events)
