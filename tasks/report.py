"""TaylorAnalysis and Report: what the networks learned, and the comparison that matters."""

from __future__ import annotations

import json
import math
import os
import shutil
from typing import Any

import law
import luigi

from analysis.interpret.network import signal_taylor_coefficients, taylor_inputs
from analysis.interpret.taylor import write_coefficients
from analysis.io import write_json, write_text
from analysis.plotting.inference import plot_taylor
from analysis.report import (
    Heading,
    Image,
    Paragraph,
    Table,
    render_html,
    render_markdown,
    strategy_comparison,
    strategy_verdict,
    uncertainty_breakdown,
)
from analysis.training.network import load_network, network_variants
from tasks.base import INFERENCE_SECTIONS, DiffanaTask
from tasks.cuts import ReduceEvents
from tasks.inference import BuildWorkspace, CreateHistograms, Evaluate, Fit, ModelTask
from tasks.train import TrainModel

__all__ = ["Report", "TaylorAnalysis"]

_MAX_TAYLOR_EVENTS = 2000  # per-event Hessians: enough events for stable means, bounded time


class TaylorAnalysis(ModelTask):
    """First- and second-order Taylor coefficients (arXiv:1803.08782) of the ttH probability.

    The fold-0 network on (a seeded random subset of up to 2000 of) its held-out nominal events,
    weighted by ``|w|``;
    ``taylor.json`` (all coefficients, ranked) and the 20 largest as ``taylor.png``/``.pdf``.
    """

    def requires(self) -> dict[str, Any]:
        training = TrainModel.req(self, branch=0)
        branch = next(b for b, (fold, model, strategy) in training.get_branch_map().items()
                      if fold == 0 and model == self.model and strategy == self.strategy)
        return {"model": TrainModel.req(self, branch=branch), "events": self.selection_requires()}

    def output(self) -> dict[str, law.LocalFileTarget]:
        return {"coefficients": self.target("taylor.json"), "plot": self.target("taylor.png")}

    @law.decorator.safe_output
    def run(self) -> None:
        config = self.analysis_config
        trained = self.input()["model"]
        with open(trained["metadata"].abspath) as stream:
            metadata = json.load(stream)
        network = load_network(trained["model"].abspath, metadata,
                               config.training.target_parameters)
        x, w, names = taylor_inputs(self.selection_tables(), config, self.model, fold=0,
                                    max_events=_MAX_TAYLOR_EVENTS)
        coefficients = signal_taylor_coefficients(network, x, w, names,
                                                  progress=self.progress(len(x), "Taylor"))
        outputs = self.output()
        outputs["coefficients"].parent.touch()
        plot_taylor(coefficients.ranked(), f"{self.title()}: Taylor coefficients",
                    os.path.splitext(outputs["plot"].abspath)[0])
        write_coefficients(outputs["coefficients"].abspath, coefficients, self.provenance())


def _fmt(value: Any, digits: str = ".3f") -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return format(value, digits)


class Report(DiffanaTask):
    """One HTML page (self-contained) and its Markdown twin with the analysis's comparison.

    CE vs penalty vs inference-aware training, DNN vs GNN at matched size, with and without the
    learned cuts: expected sigma_mu (stat only, with systematics), significance, CLs limit, AUC,
    the impact of each systematic, the learned-skim trade-off, Taylor coefficients, provenance.
    """

    config_dependencies = (*INFERENCE_SECTIONS, "cuts")

    compare_without_cuts = luigi.BoolParameter(
        default=True, parsing=luigi.BoolParameter.EXPLICIT_PARSING,
        description="also run every network without the learned cuts; default: true")

    def _variants(self) -> list[bool]:
        has_cuts = self.analysis_config.cuts is not None
        return [True, False] if has_cuts and self.compare_without_cuts else [has_cuts]

    def _combinations(self) -> list[tuple[bool, str, str]]:
        return [(cuts, model, strategy) for cuts in self._variants()
                for model, strategy in network_variants(self.analysis_config)]

    def requires(self) -> dict[str, Any]:
        reqs: dict[str, Any] = {}
        for cuts, model, strategy in self._combinations():
            key = f"{'cuts' if cuts else 'nocuts'}_{model}_{strategy}"
            params = {"learned_cuts": cuts, "model": model, "strategy": strategy}
            reqs[key] = {"fit": Fit.req(self, **params), "evaluate": Evaluate.req(self, **params),
                         "histograms": CreateHistograms.req(self, **params),
                         "workspace": BuildWorkspace.req(self, **params)}
            if cuts == self._variants()[0]:
                reqs[key]["taylor"] = TaylorAnalysis.req(self, **params)
        if self.analysis_config.cuts is not None:
            reqs["reduce"] = ReduceEvents.req(self)
        reqs["training"] = [TrainModel.req(self, learned_cuts=cuts, branch=-1)
                            for cuts in self._variants()]
        return reqs

    def output(self) -> dict[str, law.LocalFileTarget]:
        return {"html": self.target("report.html"), "markdown": self.target("report.md"),
                "summary": self.target("summary.json")}

    @law.decorator.safe_output
    def run(self) -> None:
        config = self.analysis_config
        inputs = self.input()
        outputs = self.output()
        directory = outputs["html"].parent
        directory.touch()
        summary = {}
        for cuts, model, strategy in self._combinations():
            key = f"{'cuts' if cuts else 'nocuts'}_{model}_{strategy}"
            with open(inputs[key]["fit"]["results"].abspath) as stream:
                fit = json.load(stream)
            with open(inputs[key]["evaluate"]["evaluation"].abspath) as stream:
                auc = json.load(stream)["auc"]
            with open(inputs[key]["workspace"]["binning"].abspath) as stream:
                binning = json.load(stream)
            summary[key] = {"learned_cuts": cuts, "model": model, "strategy": strategy,
                            "auc": auc, "n_bins": len(binning["edges"]) - 1,
                            "poi_bounds": binning["poi_bounds"],
                            "pruned_shapes": binning["pruned_shapes"], **{k: fit[k] for k in (
                                "sigma_mu", "sigma_mu_stat", "sigma_mu_syst",
                                "expected_significance", "expected_limit", "observed_limit",
                                "mu_hat", "mu_uncertainty", "impacts", "sigma_mu_folds",
                                "sigma_mu_no_mcstat", "sigma_mu_no_mcstat_folds")}}
        parameters = self._parameter_counts(inputs["training"][0])
        blocks = self._blocks(summary, parameters, inputs, directory.abspath)
        write_text(outputs["markdown"].abspath, render_markdown(blocks))
        write_text(outputs["html"].abspath, render_html(blocks, f"diffana report: {config.name}"))
        write_json(outputs["summary"].abspath, {
            "results": summary, "parameters": parameters,
            "provenance": self.provenance(config.training.seed)})

    def _parameter_counts(self, training: Any) -> dict[str, int]:
        counts = {}
        for target in training["collection"].targets.values():
            with open(target["metadata"].abspath) as stream:
                metadata = json.load(stream)
            counts[metadata["model"]] = metadata["n_parameters"]
        return counts

    def _blocks(self, summary: dict[str, Any], parameters: dict[str, int], inputs: dict[str, Any],
                directory: str) -> list[Any]:
        config = self.analysis_config
        provenance = self.provenance(config.training.seed)
        blocks: list[Any] = [
            Heading(f"diffana: {config.description or config.name}", 1),
            Paragraph(f"Config {config.name} (sha256 {config.digest[:16]}...), version "
                      f"{self.version}, seed {config.training.seed}, luminosity "
                      f"{config.luminosity.value:g} fb^-1. Expected results use the Asimov "
                      f"dataset at mu = 1; 'observed' ones use pseudo-data (seed "
                      f"{config.inference.pseudo_data_seed})."),
            Heading("Results per network"),
        ]
        header = ["selection", "model", "strategy", "σ_μ stat", "σ_μ total", "σ_μ per fold",
                  "σ_μ without MC stat.", "σ_μ syst (without MC stat.)", "σ_μ MC stat.",
                  "Z expected", "95% CLs limit exp.", "limit (pseudo-data)", "AUC",
                  "μ̂ (pseudo-data)"]
        rows = [[("learned cuts" if r["learned_cuts"] else "skim only"), r["model"].upper(),
                 r["strategy"], _fmt(r["sigma_mu_stat"]), _fmt(r["sigma_mu"]),
                 " / ".join(_fmt(x) for x in r["sigma_mu_folds"]),
                 _fmt(r["sigma_mu_no_mcstat"]), *map(_fmt, uncertainty_breakdown(r)),
                 _fmt(r["expected_significance"], ".2f"),
                 _fmt(r["expected_limit"], ".2f"), _fmt(r["observed_limit"], ".2f"),
                 _fmt(r["auc"], ".4f"),
                 f"{_fmt(r['mu_hat'], '.2f')} ± {_fmt(r['mu_uncertainty'], '.2f')}"]
                for r in summary.values()]
        blocks.append(Table(header, rows))
        blocks += self._workspace_blocks(summary)
        blocks += [Heading("Do the systematic-aware strategies help?"),
                   Paragraph(strategy_verdict(summary)), *self._strategy_sentences(summary)]
        blocks += [Heading("DNN vs GNN at matched size (arXiv:2402.17386)"),
                   Paragraph("Trainable parameters: " + ", ".join(
                       f"{m.upper()} {n}" for m, n in sorted(parameters.items()))
                             + f" (target {config.training.target_parameters}).")]
        blocks += [Heading("Impact of each systematic on μ̂"), Paragraph(
            "Asimov data; each nuisance fixed on each side where its profile likelihood rises "
            "by 1 (its post-fit uncertainty, at most the prior width 1) and the rest refitted: "
            "max |Δμ̂|. "
            "'MC stat.' is the simulated samples' statistical "
            "uncertainty as a whole, sqrt(σ_μ total² − σ_μ without MC stat.²) (n/a where "
            "σ_μ total is beyond the range of μ). '≥ x (μ at its bound)': the refit ended on "
            "the range of μ, so the impact is at least x.")]
        nuisances = sorted({n for r in summary.values() for n in r["impacts"]})

        def impact(r: dict[str, Any], name: str) -> str:
            if name not in r["impacts"]:
                return "n/a"
            value = max(abs(v) for v in r["impacts"][name])
            # a refit that ends on the bound of mu: the impact is at least this
            room = min(r["poi_bounds"][1] - 1.0, 1.0 - r["poi_bounds"][0])
            return f"≥ {value:.1f} (μ at its bound)" if value >= room - 1e-2 else _fmt(value)

        blocks.append(Table(["selection / model / strategy", "MC stat.", *nuisances], [
            [f"{'cuts' if r['learned_cuts'] else 'no cuts'} / {r['model']} / {r['strategy']}",
             _fmt(uncertainty_breakdown(r)[1]),
             *[impact(r, n) for n in nuisances]] for r in summary.values()]))
        if "reduce" in inputs:
            with open(inputs["reduce"]["table"].abspath) as stream:
                tradeoff = stream.read().strip().splitlines()
            cells = [[c.strip() for c in line.strip("|").split("|")] for line in tradeoff]
            blocks += [Heading("Learned skim (LearnCuts, Watts CHEP 2023): the trade-off"),
                       Paragraph("Thresholds scaled from no cut (t = 0) through the learned "
                                 "ones (t = 1); σ_μ of the binned discriminant "
                                 f"{config.cuts.discriminant if config.cuts else ''}."),
                       Table(cells[0], cells[2:]),
                       self._image(inputs["reduce"]["plot"].abspath, directory, "reduce",
                                   "Data kept vs signal efficiency and expected σ_μ")]
        blocks.append(Heading("Key plots"))
        first = self._variants()[0]
        for model, strategy in network_variants(config):
            key = f"{'cuts' if first else 'nocuts'}_{model}_{strategy}"
            tag = f"{model}_{strategy}"
            blocks.append(self._image(inputs[key]["histograms"]["plot"].abspath, directory,
                                      tag, f"{model.upper()} {strategy}: score histogram"))
            blocks.append(self._image(inputs[key]["fit"]["impacts"].abspath, directory, tag,
                                      f"{model.upper()} {strategy}: impacts"))
            taylor = inputs[key]["taylor"]
            with open(taylor["coefficients"].abspath) as stream:
                ranked = json.load(stream)["ranked"][:5]
            blocks.append(Paragraph(f"{model.upper()} {strategy}: largest Taylor "
                                    "coefficients: " + ", ".join(
                                        f"{name} {value:.3g}" for name, value in ranked)))
        blocks += [Heading("Provenance"), Paragraph(
            "Packages: " + ", ".join(f"{k} {v}" for k, v in provenance["packages"].items()
                                     if v) + f"; Python {provenance['python']}.")]
        return blocks

    def _workspace_blocks(self, summary: dict[str, Any]) -> list[Any]:
        settings = self.analysis_config.inference
        merging = (f"merged from {settings.n_bins} until the background's relative MC "
                   f"statistical uncertainty is at most {settings.max_background_mc_stat:.0%} "
                   "per bin" if settings.max_background_mc_stat is not None
                   else f"{settings.n_bins}, not merged")
        pruning = (f"a histosys is dropped (its normsys kept) when its shape change is below "
                   f"{settings.prune_shape_chi2:g} MC-stat. variances per bin"
                   if settings.prune_shape_chi2 is not None else "no shape is pruned")
        return [Paragraph(f"Workspaces: score bins {merging}; {pruning}."),
                Table(["selection / model / strategy", "bins", "shapes pruned"], [
                    [f"{'cuts' if r['learned_cuts'] else 'no cuts'} / {r['model']} / "
                     f"{r['strategy']}", str(r["n_bins"]),
                     ", ".join(f"{p}:{v}" for p, v in r["pruned_shapes"]) or "none"]
                    for r in summary.values()])]

    @staticmethod
    def _strategy_sentences(summary: dict[str, Any]) -> list[Paragraph]:
        return [Paragraph(
            "σ_μ 'with MC stat.' includes the statistical uncertainty of the simulated samples "
            "(the staterror modifiers); 'without MC stat.' is the same fit without it, the "
            "result if the simulation were much larger than the data. CMS measured 12-16 % "
            "lower σ_μ with such training on a real analysis."),
            *map(Paragraph, strategy_comparison(summary))]

    @staticmethod
    def _image(path: str, directory: str, tag: str, caption: str) -> Image:
        name = f"{tag}_{os.path.basename(path)}"
        shutil.copyfile(path, os.path.join(directory, name))
        return Image(path, name, caption)
