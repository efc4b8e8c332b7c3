"""LearnCuts -> ReduceEvents: the learned skim (Watts, CHEP 2023) and its trade-off report."""

from __future__ import annotations

import dataclasses
import json
import math
import os
from typing import Any

import awkward as ak
import law
import luigi

from analysis.io import write_json, write_parquet, write_text
from analysis.plotting.selection import plot_learning, plot_tradeoff
from analysis.selection.learn import (
    LearnedSelection,
    learn_selection,
    selection_mask,
    selection_samples,
    selection_tradeoff,
)
from analysis.skim.objects import OBJECT_SHIFTS
from tasks.base import SKIM_SECTIONS, UNCERTAINTY_SECTIONS, DiffanaTask
from tasks.skim import Skim

__all__ = ["LearnCuts", "ReduceEvents", "SelectionMixin", "skim_tables"]


def skim_tables(task: law.Task) -> dict[str, dict[str, str]]:
    """dataset -> shift -> Parquet path of every Skim branch (all shifts)."""
    skim = Skim.req(task, branch=-1)
    targets = skim.output()["collection"].targets
    datasets = skim.get_branch_map()
    return {datasets[b]: {shift: targets[b][shift].abspath for shift in OBJECT_SHIFTS}
            for b in targets}


class LearnCuts(DiffanaTask):
    """Thresholds of the config's ``cuts:`` learned on all skimmed events.

    Outputs: ``cuts.json`` (thresholds, start, objective before and after, provenance) and the
    optimisation curve ``learning.png``/``.pdf``.
    """

    config_dependencies = (*SKIM_SECTIONS, *UNCERTAINTY_SECTIONS, "cuts")

    def requires(self) -> law.Task:
        return Skim.req(self, branch=-1)

    def output(self) -> dict[str, law.LocalFileTarget]:
        return {"cuts": self.target("cuts.json"), "plot": self.target("learning.png")}

    @law.decorator.safe_output
    def run(self) -> None:
        settings = self.analysis_config.cuts
        if settings is None:
            raise ValueError(f"{self.analysis_config.source}: no 'cuts:' section; run the "
                             f"analysis with --no-learned-cuts or add one")
        samples = selection_samples(_read(skim_tables(self)), self.analysis_config)
        selection = learn_selection(samples, settings,
                                    progress=self.progress(settings.steps, "LearnCuts", "step"))
        outputs = self.output()
        outputs["cuts"].parent.touch()
        plot_learning(selection, os.path.splitext(outputs["plot"].abspath)[0])
        write_json(outputs["cuts"].abspath, {
            **selection.as_dict(), "columns": list(samples.columns),
            "provenance": self.provenance()})
        cuts = ", ".join(f"{f} {d} {t:.4g}" for f, d, t in zip(
            selection.features, selection.directions, selection.thresholds, strict=True))
        self.publish_message(f"learned cuts: {cuts}; {selection.objective} "
                             f"{selection.initial_hard_value:.4g} -> {selection.hard_value:.4g}")


def _read(paths: dict[str, dict[str, str]]) -> dict[str, dict[str, ak.Array]]:
    return {d: {s: ak.from_parquet(p) for s, p in shifts.items()} for d, shifts in paths.items()}


def _markdown_table(points: list[dict[str, Any]], selection: LearnedSelection) -> str:
    def number(x: float, digits: str = ".4g") -> str:
        return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, digits)

    header = " | ".join(f"{f} {d}" for f, d in zip(selection.features, selection.directions,
                                                     strict=True))
    lines = [f"| t | {header} | events kept | signal eff. | background eff. | "
             f"σ_μ stat | σ_μ total | Z_A |",
             "|" + "---|" * (7 + len(selection.features))]
    for p in points:
        cuts = " | ".join(number(t) for t in p["thresholds"])
        mark = " (learned)" if abs(p["t"] - 1.0) < 1e-9 else ""
        lines.append(f"| {p['t']:.3g}{mark} | {cuts} | {p['data_fraction']:.3f} | "
                     f"{p['signal_efficiency']:.3f} | {p['background_efficiency']:.3f} | "
                     f"{number(p['sigma_mu_stat'])} | {number(p['sigma_mu'])} | "
                     f"{number(p['significance'], '.3f')} |")
    return "\n".join(lines) + "\n"


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

    def tables(self) -> dict[str, dict[str, str]]:
        """dataset -> shift -> Parquet path of the reduced tables."""
        return {d: {s: t.abspath for s, t in shifts.items()}
                for d, shifts in self.output()["tables"].items()}

    @law.decorator.safe_output
    def run(self) -> None:
        with open(self.input()["cuts"]["cuts"].abspath) as stream:
            selection = LearnedSelection.from_dict(json.load(stream))
        tables = _read(skim_tables(self))
        samples = selection_samples(tables, self.analysis_config)
        settings = self.analysis_config.cuts
        assert settings is not None  # LearnCuts checked it
        tradeoff = selection_tradeoff(samples, selection, settings)
        points = [dataclasses.asdict(p) | {"thresholds": list(p.thresholds)} for p in tradeoff]
        outputs = self.output()
        provenance = self.provenance()
        kept, total = 0, 0
        for dataset, shifts in tables.items():
            for shift, table in shifts.items():
                target = outputs["tables"][dataset][shift]
                target.parent.touch()
                mask = selection_mask({f: table[f] for f in selection.features}, selection)
                if shift == "nominal":
                    kept, total = kept + int(mask.sum()), total + len(mask)
                write_parquet(target.abspath, table[mask], provenance)
        plot_tradeoff(tradeoff, os.path.splitext(outputs["plot"].abspath)[0])
        write_text(outputs["table"].abspath, _markdown_table(points, selection))
        write_json(outputs["tradeoff"].abspath, {
            "points": points, "selection": selection.as_dict(), "kept_events": kept,
            "skimmed_events": total, "provenance": provenance})
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

    def selection_tables(self) -> dict[str, dict[str, str]]:
        """dataset -> shift -> Parquet path of the events this task works on."""
        if self.learned_cuts:
            return ReduceEvents.req(self).tables()
        return skim_tables(self)
