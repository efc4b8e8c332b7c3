"""TaylorAnalysis and Report: what the networks learned, and the comparison that matters."""

from __future__ import annotations

import os
from typing import Any

import law
import luigi

from analysis.io import read_json, write_json, write_text
from analysis.report import (
    NetworkResults,
    build_report,
    collect_networks,
    comparison_points,
    copy_images,
    network_key,
    parameter_counts,
    render_html,
    render_markdown,
)
from analysis.report.build import COMPARISON_MEASURES
from analysis.report.projection import generation_cost
from analysis.training.branches import network_variants
from tasks.base import INFERENCE_SECTIONS, DiffanaTask
from tasks.cuts import ReduceEvents
from tasks.generate import GenerateEvents
from tasks.inference import BuildWorkspace, CreateHistograms, Evaluate, Fit, ModelTask
from tasks.train import TrainModel

__all__ = ["Report", "TaylorAnalysis"]


class TaylorAnalysis(ModelTask):
    """First- and second-order Taylor coefficients (arXiv:1803.08782) of the ttH probability.

    The network of seed index 0 and fold 0 on (a seeded random subset of up to 2000 of) its
    held-out nominal events, weighted by ``|w|``; ``taylor.json`` (all coefficients, ranked)
    and the 20 largest as ``taylor.png``/``.pdf``.
    """

    def requires(self) -> dict[str, Any]:
        return {"model": self.network_requires()[0][0], "events": self.selection_requires()}

    def output(self) -> dict[str, law.LocalFileTarget]:
        return {"coefficients": self.target("taylor.json"), "plot": self.target("taylor.png")}

    @law.decorator.safe_output
    def run(self) -> None:
        config = self.analysis_config
        trained = self.input()["model"]
        metadata = read_json(trained["metadata"].abspath)
        # torch and matplotlib only where a branch runs, not when law builds the graph
        from analysis.interpret.network_taylor import (
            signal_taylor_coefficients,
            taylor_inputs,
        )
        from analysis.interpret.taylor import write_coefficients
        from analysis.plotting.inference import plot_taylor
        from analysis.training.network import load_network

        network = load_network(trained["model"].abspath, metadata,
                               config.training.target_parameters)
        tables = self.selection_tables(self.input()["events"], 0)
        x, w, names = taylor_inputs(tables, config, self.model, fold=0)
        coefficients = signal_taylor_coefficients(network, x, w, names,
                                                  progress=self.progress(len(x), "Taylor"))
        outputs = self.output()
        outputs["coefficients"].parent.touch()
        plot_taylor(coefficients.ranked(), f"{self.title()}: Taylor coefficients",
                    os.path.splitext(outputs["plot"].abspath)[0])
        write_coefficients(outputs["coefficients"].abspath, coefficients, self.provenance())


class Report(DiffanaTask):
    """One HTML page (self-contained) and its Markdown twin with the analysis's comparison.

    It opens with the headline (the best network's expected sigma_mu, the verdict of the
    paired comparison against CE) and the comparison figure (``comparison.png``/``.pdf``),
    then: CE vs penalty vs inference-aware training paired over seeds x folds, DNN vs GNN at
    matched size, with and without the learned cuts: expected sigma_mu (stat only, with
    systematics), significance, CLs limit, AUC, each output's dependence on the systematics,
    the impact of each systematic, the learned-skim trade-off, Taylor coefficients, provenance.
    """

    config_dependencies = (*INFERENCE_SECTIONS, "cuts")

    # off by default: with seeds x folds every network is trained seeds x n_folds times, and
    # the skim-only copies would double the demo's run time; the learned skim's own effect is
    # ReduceEvents' trade-off table
    compare_without_cuts = luigi.BoolParameter(
        default=False, parsing=luigi.BoolParameter.EXPLICIT_PARSING,
        description="also run every network without the learned cuts; default: false")

    def _variants(self) -> list[bool]:
        has_cuts = self.analysis_config.cuts is not None
        return [True, False] if has_cuts and self.compare_without_cuts else [has_cuts]

    def _combinations(self) -> list[tuple[bool, str, str]]:
        return [(cuts, model, strategy) for cuts in self._variants()
                for model, strategy in network_variants(self.analysis_config)]

    def requires(self) -> dict[str, Any]:
        reqs: dict[str, Any] = {}
        for cuts, model, strategy in self._combinations():
            params = {"learned_cuts": cuts, "model": model, "strategy": strategy}
            key = network_key(cuts, model, strategy)
            reqs[key] = {"fit": Fit.req(self, branch=0, **params),
                         "evaluate": Evaluate.req(self, **params),
                         "histograms": CreateHistograms.req(self, **params),
                         "workspace": BuildWorkspace.req(self, **params)}
            if cuts == self._variants()[0]:
                reqs[key]["taylor"] = TaylorAnalysis.req(self, **params)
        if self.analysis_config.cuts is not None:
            reqs["reduce"] = ReduceEvents.req(self)
        if any(d.generator is not None for d in self.analysis_config.datasets.values()):
            reqs["generation"] = GenerateEvents.req(self)  # its CPU time: the projection
        reqs["training"] = [TrainModel.req(self, learned_cuts=cuts, branch=-1)
                            for cuts in self._variants()]
        return reqs

    def output(self) -> dict[str, law.LocalFileTarget]:
        return {"html": self.target("report.html"), "markdown": self.target("report.md"),
                "summary": self.target("summary.json"),
                "comparison": self.target("comparison.png")}

    @law.decorator.safe_output
    def run(self) -> None:
        from analysis.plotting.sigma_mu import plot_sigma_mu_comparison

        config, inputs, outputs = self.analysis_config, self.input(), self.output()
        summary, figures, histograms = collect_networks(
            [self._network_results(inputs[network_key(*c)], *c) for c in self._combinations()])
        parameters = parameter_counts(read_json(t["metadata"].abspath) for t in
                                      inputs["training"][0]["collection"].targets.values())
        reduce = inputs.get("reduce")
        generation = generation_cost(read_json(t["cost"].abspath) for t in
                                     inputs["generation"]["collection"].targets.values()
                                     ) if "generation" in inputs else None
        provenance = self.provenance(config.training.seed)
        outputs["html"].parent.touch()
        plot_sigma_mu_comparison(comparison_points(summary), list(COMPARISON_MEASURES.values()),
                                 f"{config.name}: expected σ_μ against CE",
                                 os.path.splitext(outputs["comparison"].abspath)[0])
        blocks = build_report(
            config, summary, parameters, figures, version=self.version, provenance=provenance,
            tradeoff=read_json(reduce["tradeoff"].abspath) if reduce else None,
            tradeoff_plot=reduce["plot"].abspath if reduce else None,
            comparison_plot=outputs["comparison"].abspath, histograms=histograms,
            generation=generation)
        copy_images(blocks, outputs["html"].parent.abspath)
        write_text(outputs["markdown"].abspath, render_markdown(blocks))
        write_text(outputs["html"].abspath, render_html(blocks, f"diffana report: {config.name}"))
        write_json(outputs["summary"].abspath, {"results": summary, "parameters": parameters},
                   provenance=provenance)

    @staticmethod
    def _network_results(network: dict[str, Any], learned_cuts: bool, model: str,
                         strategy: str) -> NetworkResults:
        """The outputs of one network's tasks (``network``: its part of the input), read."""
        taylor = network.get("taylor")  # only the first selection variant has one
        histograms = read_json(network["histograms"]["histograms"].abspath)
        return NetworkResults(
            learned_cuts, model, strategy, fit=read_json(network["fit"]["results"].abspath),
            evaluation=read_json(network["evaluate"]["evaluation"].abspath),
            binning=read_json(network["workspace"]["binning"].abspath),
            channels=histograms["channels"], fold_channels=histograms.get("folds", []),
            score_plot=network["histograms"]["plot"].abspath,
            impacts_plot=network["fit"]["impacts"].abspath,
            postfit_plot=network["fit"]["postfit"].abspath,
            taylor_ranked=read_json(taylor["coefficients"].abspath)["ranked"] if taylor else None)
