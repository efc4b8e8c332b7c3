"""LearnCuts -> ReduceEvents: the learned skim (Watts, CHEP 2023), one cut set per fold, and its
trade-off report."""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Any

import law
import luigi

from analysis.config import OBJECT_SHIFTS
from analysis.errors import ConfigError, InputDataError
from analysis.io import read_json, write_json, write_text
from analysis.stages import CLASS_SECTIONS, FOLD_SECTIONS
from tasks.base import SKIM_SECTIONS, UNCERTAINTY_SECTIONS, DiffanaTask
from tasks.batch import BatchWorkflow
from tasks.skim import Skim

__all__ = ["LearnCuts", "ReduceEvents", "SelectionMixin", "event_tables"]

# analysis modules that import torch, pyhf, coffea or matplotlib are imported in run(): a law
# process that only schedules, checks completeness or submits jobs does not load them


def event_tables(events: Any, fold: int | None = None) -> dict[str, dict[str, str]]:
    """dataset -> shift -> Parquet path, from an input that is the Skim workflow's output
    (``{"collection": ...}``) or ReduceEvents' (``{"folds": ...}``: fold ``fold``'s tables).

    Raises:
        InputDataError: ReduceEvents' tables without a fold, or a fold it does not have.
    """
    if "folds" in events:
        if fold is None or not 0 <= fold < len(events["folds"]):
            raise InputDataError(f"the learned skim has one table set per fold (training."
                                 f"n_folds = {len(events['folds'])}); asked for fold {fold}")
        return {d: {s: t.abspath for s, t in shifts.items()}
                for d, shifts in events["folds"][fold].items()}
    # a Skim branch writes <dataset>/<shift>.parquet: its folder names the dataset
    return {outputs["nominal"].parent.basename: {s: outputs[s].abspath for s in OBJECT_SHIFTS}
            for outputs in events["collection"].targets.values()}


class LearnCuts(DiffanaTask, BatchWorkflow):
    """Thresholds of the config's ``cuts:``, one set per fold: cuts_k learned on the events
    outside fold ``k`` (``event % n_folds != k``), the ones network ``k`` trains on.

    Fold ``k`` evaluates network ``k``, so the cuts it is selected by never saw it (held-out
    honesty). One branch per fold (``training.n_folds``); outputs per branch under ``fold<k>/``:
    ``cuts.json`` (thresholds, start, objective before and after, the nominal events learned on
    per class, provenance; the run time goes to the task's message), the optimisation curve
    ``learning.png``/``.pdf`` and the samples it learned on (``selection_samples.pt``, with their
    event numbers), which ReduceEvents scans the trade-off on.
    """

    config_dependencies = (*SKIM_SECTIONS, *UNCERTAINTY_SECTIONS, *FOLD_SECTIONS, *CLASS_SECTIONS,
                           "cuts")

    def create_branch_map(self) -> dict[int, int]:
        return {fold: fold for fold in range(self.analysis_config.training.n_folds)}

    def workflow_requires(self) -> dict[str, law.Task]:
        reqs = super().workflow_requires()
        reqs["skim"] = Skim.req(self, branch=-1)
        return reqs

    def requires(self) -> law.Task:
        return Skim.req(self, branch=-1)

    def output(self) -> dict[str, law.LocalFileTarget]:
        fold = f"fold{self.branch_data}"
        return {"cuts": self.target(fold, "cuts.json"), "plot": self.target(fold, "learning.png"),
                "samples": self.target(fold, "selection_samples.pt")}

    @law.decorator.safe_output
    def run(self) -> None:
        from analysis.plotting.selection import plot_learning
        from analysis.selection.cut_samples import selection_samples
        from analysis.selection.learn import learn_selection
        from analysis.selection.reduce import save_selection_samples

        settings, fold = self.analysis_config.cuts, self.branch_data
        if settings is None:
            raise ConfigError(f"{self.analysis_config.source}: no 'cuts:' section: add one, or "
                              f"run the analysis with --learned-cuts false")
        samples = selection_samples(event_tables(self.input()), self.analysis_config, fold)
        start = time.perf_counter()
        selection = learn_selection(samples, settings, progress=self.progress(
            settings.steps, f"LearnCuts fold {fold}", "step"))
        seconds = time.perf_counter() - start
        outputs = self.output()
        outputs["cuts"].parent.touch()
        save_selection_samples(outputs["samples"].abspath, samples)
        plot_learning(selection, os.path.splitext(outputs["plot"].abspath)[0])
        write_json(outputs["cuts"].abspath, {
            **selection.as_dict(), "columns": list(samples.columns), "fold": fold,
            "n_folds": self.analysis_config.training.n_folds,
            "n_events": {c: len(e) for c, e in samples.events.items()},
            "provenance": self.provenance()})  # no run time: outputs are byte-reproducible
        self.publish_message(f"learned cuts of fold {fold} (without its events) in "
                             f"{seconds:.1f} s: {selection.summary()}")


class ReduceEvents(DiffanaTask):
    """Per fold ``k``, the skims with cuts_k applied hard, and the trade-off they were chosen
    from.

    Outputs per fold, dataset and shift a Parquet table like Skim's (``fold<k>/<dataset>/``: the
    events passing cuts_k, of every fold: network ``k`` trains on those outside fold ``k`` and is
    evaluated on those inside it), plus ``tradeoff.json`` (every fold's thresholds and event
    counts; fold 0's trade-off scan), ``tradeoff.md`` and ``tradeoff.png``/``.pdf``: data size
    kept, signal efficiency and expected sigma_mu (stat only and with systematics) from no cut
    through fold 0's learned cuts to tighter ones, on fold 0's training events.
    """

    config_dependencies = (*SKIM_SECTIONS, *UNCERTAINTY_SECTIONS, *FOLD_SECTIONS, *CLASS_SECTIONS,
                           "cuts")

    #: the fold whose trade-off is scanned (every fold's thresholds are tabulated)
    SCANNED_FOLD = 0

    def requires(self) -> dict[str, law.Task]:
        return {"skim": Skim.req(self, branch=-1), "cuts": LearnCuts.req(self)}

    def output(self) -> dict[str, Any]:
        folds = [{d: {shift: self.target(f"fold{k}", d, f"{shift}.parquet")
                      for shift in OBJECT_SHIFTS} for d in self.analysis_config.datasets}
                 for k in range(self.analysis_config.training.n_folds)]
        return {"folds": folds, "tradeoff": self.target("tradeoff.json"),
                "table": self.target("tradeoff.md"), "plot": self.target("tradeoff.png")}

    @law.decorator.safe_output
    def run(self) -> None:
        from analysis.plotting.selection import plot_tradeoff
        from analysis.selection.learn import LearnedSelection, selection_tradeoff
        from analysis.selection.reduce import (
            load_selection_samples,
            reduce_fold_tables,
            tradeoff_markdown,
            tradeoff_records,
        )

        learned = [t for _, t in sorted(self.input()["cuts"]["collection"].targets.items())]
        selections = [LearnedSelection.from_dict(read_json(t["cuts"].abspath)) for t in learned]
        samples = load_selection_samples(learned[self.SCANNED_FOLD]["samples"].abspath)
        settings = self.analysis_config.cuts
        if settings is None:  # LearnCuts checked it; a config edited in between
            raise ConfigError(f"{self.analysis_config.source}: no 'cuts:' section")
        scanned = selections[self.SCANNED_FOLD]
        tradeoff = selection_tradeoff(samples, scanned, settings)
        outputs, provenance = self.output(), self.provenance()
        outputs["table"].parent.touch()
        for fold in outputs["folds"]:
            for targets in fold.values():
                next(iter(targets.values())).parent.touch()
        destinations = [event_tables(outputs, k) for k in range(len(selections))]
        counts = reduce_fold_tables(event_tables(self.input()["skim"]), destinations, selections,
                                    provenance)
        plot_tradeoff(tradeoff, os.path.splitext(outputs["plot"].abspath)[0])
        write_text(outputs["table"].abspath, tradeoff_markdown(tradeoff, scanned))
        kept = sum(c.held_out_kept for c in counts)
        write_json(outputs["tradeoff"].abspath, {
            "points": tradeoff_records(tradeoff), "scanned_fold": self.SCANNED_FOLD,
            "selection": scanned.as_dict(), "selections": [s.as_dict() for s in selections],
            "folds": [dataclasses.asdict(c) for c in counts], "kept_events": kept,
            "skimmed_events": counts[0].total, "provenance": provenance})
        self.publish_message(f"ReduceEvents: kept {kept} of {counts[0].total} skimmed events "
                             f"(each fold behind the cuts learned without it)")


class SelectionMixin:
    """``--learned-cuts`` (default) reads ReduceEvents' tables; ``--learned-cuts false`` the Skim's.

    The choice is part of the output path, so both variants live side by side in one store.
    With the learned skim a task picks fold ``k``'s tables (:meth:`selection_tables`), the
    events passing cuts_k, which were learned without fold ``k``.
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

    def selection_tables(self, events: Any, fold: int) -> dict[str, dict[str, str]]:
        """dataset -> shift -> Parquet path of the events the network of fold ``fold`` trains
        and is evaluated on, from the input of :meth:`selection_requires`: with the learned
        skim, those passing cuts_k (learned without fold ``fold``); else every skimmed event."""
        return event_tables(events, fold)
