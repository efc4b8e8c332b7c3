"""Evaluate -> CreateHistograms -> BuildWorkspace -> Fit, per model and training strategy."""

from __future__ import annotations

import os
import time
from typing import Any

import law
import luigi

from analysis.config import (
    MODEL_KINDS,
    OBJECT_SHIFTS,
    REFERENCE_STRATEGY,
    STRATEGIES,
    YIELD_AWARE,
)
from analysis.io import read_columns, read_json, read_tables, write_json, write_parquet
from analysis.training.branches import JOINT_CUTS_SUFFIX
from tasks.base import INFERENCE_SECTIONS, TRAINING_SECTIONS, DiffanaTask
from tasks.batch import BatchWorkflow
from tasks.cuts import SelectionMixin
from tasks.train import TrainModel

__all__ = ["BuildWorkspace", "CreateHistograms", "Evaluate", "Fit", "ModelTask"]

# analysis.inference (pyhf, hist, scipy) and analysis.plotting (matplotlib) are imported in
# run(): a law process that only schedules, checks completeness or submits jobs does not load
# them, nor torch (TrainModel's branch map and JOINT_CUTS_SUFFIX are in analysis.training.branches)


class ModelTask(SelectionMixin, DiffanaTask):
    """A task about one trained network kind and strategy (all its folds)."""

    config_dependencies = TRAINING_SECTIONS

    model = luigi.ChoiceParameter(choices=MODEL_KINDS, default="dnn",
                                  description="network: dnn or gnn; default: dnn")
    strategy = luigi.ChoiceParameter(
        choices=(*STRATEGIES, *(f"{s}{JOINT_CUTS_SUFFIX}" for s in YIELD_AWARE)),
        default=REFERENCE_STRATEGY, description=f"training strategy ({JOINT_CUTS_SUFFIX}: with "
        f"cuts learned jointly); default: {REFERENCE_STRATEGY}")

    def store_parts(self) -> tuple[str, ...]:
        return (*super().store_parts(), f"{self.model}_{self.strategy}")

    def title(self) -> str:
        cuts = "learned cuts" if self.learned_cuts else "no learned cuts"
        return f"{self.model.upper()}, {self.strategy}, {cuts}"

    def network_requires(self) -> dict[int, list[TrainModel]]:
        """The TrainModel branches of this model and strategy: seed index -> one per fold, in
        fold order (TrainModel's branch map: seed index, then fold, then network variant)."""
        by_seed: dict[int, list[TrainModel]] = {
            seed: [] for seed in range(self.analysis_config.training.seeds)}
        training = TrainModel.req(self, branch=0)
        for branch, (seed, _fold, model, strategy) in training.get_branch_map().items():
            if (model, strategy) == (self.model, self.strategy):
                by_seed[seed].append(TrainModel.req(self, branch=branch))
        return by_seed


class Evaluate(ModelTask):
    """Class probabilities of every event from the model that did not train on it.

    Each fold's network scores its held-out fold, so every event of every dataset and shift is
    scored once, by a network that never saw it; so for each seed index (``training.seeds``).
    Outputs a Parquet table per dataset and shift (event, label, weights, ``p_<class>``) of seed
    index 0 (``scores``, the networks of the full analysis), the same of every other seed index
    under ``seed<s>/`` (``seed_scores``), and ``evaluation.json`` with the weighted ROC AUC of
    the ttH score (ttH against every background, nominal events): ``auc`` of seed index 0,
    ``auc_seeds`` per seed index (folds pooled), ``auc_folds`` per seed index the AUC of each
    fold's events alone (:func:`~analysis.inference.scores.fold_aucs`).
    """

    def requires(self) -> dict[str, Any]:
        return {"models": self.network_requires(), "events": self.selection_requires()}

    def _score_targets(self, *prefix: str) -> dict[str, dict[str, law.LocalFileTarget]]:
        return {d: {s: self.target(*prefix, d, f"{s}.parquet") for s in OBJECT_SHIFTS}
                for d in self.analysis_config.datasets}

    def output(self) -> dict[str, Any]:
        return {"scores": self._score_targets(),
                "seed_scores": {seed: self._score_targets(f"seed{seed}")
                                for seed in range(1, self.analysis_config.training.seeds)},
                "evaluation": self.target("evaluation.json")}

    @law.decorator.safe_output
    def run(self) -> None:
        from analysis.classes import score_column, signal_class, signal_labels
        from analysis.inference.scores import fold_aucs, merge_fold_scores, signal_auc

        config = self.analysis_config
        # fold k's events behind cuts_k (the cuts learned without them), read once per fold
        tables: dict[int, Any] = {}
        outputs = self.output()
        provenance = self.provenance(config.training.seed)
        signal = signal_labels(config)
        aucs, per_fold = [], []
        for seed, models in self.input()["models"].items():
            merged = merge_fold_scores([self._fold_scores(target, tables) for target in models])
            written = outputs["seed_scores"][seed] if seed else outputs["scores"]
            for dataset, shifts in merged.items():
                for shift, columns in shifts.items():
                    written[dataset][shift].parent.touch()
                    write_parquet(written[dataset][shift].abspath, columns, provenance)
            column = score_column(signal_class(config))
            aucs.append(signal_auc(merged, signal, column))
            per_fold.append(fold_aucs(merged, signal, column, config.training.n_folds))
        write_json(outputs["evaluation"].abspath, {"auc": aucs[0], "auc_seeds": aucs,
                                                   "auc_folds": per_fold}, provenance=provenance)
        self.publish_message(f"{self.title()}: AUC {aucs[0]:.4f} (seeds: "
                             f"{', '.join(f'{a:.4f}' for a in aucs)}; per fold, seed 0: "
                             f"{', '.join(f'{a:.4f}' for a in per_fold[0])})")

    def _fold_scores(self, target: dict[str, Any], tables: dict[int, Any]) -> Any:
        """The held-out scores of one fold's network (TrainModel output ``target``); ``tables``
        caches each fold's selected events."""
        config = self.analysis_config
        metadata = read_json(target["metadata"].abspath)
        if metadata["fold"] not in tables:
            tables[metadata["fold"]] = read_tables(
                self.selection_tables(self.input()["events"], metadata["fold"]))
        from analysis.training.network import load_network, score_tables

        network = load_network(target["model"].abspath, metadata,
                               config.training.target_parameters)
        return score_tables(network, tables[metadata["fold"]], config, metadata["fold"],
                            self.model, metadata.get("joint_cuts"))


class CreateHistograms(ModelTask):
    """Per channel (event category), its node's output per process and variation, with ``hist``.

    Channels and binning from the config (``inference.categories``, ``inference.n_bins``;
    :mod:`analysis.inference.model`). Outputs ``histograms.json`` (``channels``: values and
    variances per channel, process and variation, of seed index 0; ``folds``: the same per
    (seed index, fold), each with its ``seed`` and ``fold``, every fold at the full luminosity)
    and the stacked nominal histogram of the signal's channel ``score.png``/``.pdf``.
    """

    config_dependencies = INFERENCE_SECTIONS

    def requires(self) -> Evaluate:
        return Evaluate.req(self)

    def output(self) -> dict[str, law.LocalFileTarget]:
        return {"histograms": self.target("histograms.json"), "plot": self.target("score.png")}

    @law.decorator.safe_output
    def run(self) -> None:
        from analysis.inference.model import model_spec
        from analysis.inference.score_histograms import seed_histograms
        from analysis.plotting.inference import plot_score_stack

        config, inputs, outputs = self.analysis_config, self.input(), self.output()
        spec = model_spec(config)
        scores = ({d: {s: read_columns(t.abspath) for s, t in shifts.items()}
                   for d, shifts in (inputs["seed_scores"][seed] if seed else
                                     inputs["scores"]).items()}
                  for seed in range(config.training.seeds))  # one seed's scores at a time
        histograms = seed_histograms(scores, spec, config.training.n_folds)
        outputs["histograms"].parent.touch()
        plot_score_stack(histograms["channels"][spec.signal_channel],
                         {p: s.label for p, s in config.processes.items()},
                         {p: s.color for p, s in config.processes.items()}, spec.signal,
                         f"{self.title()}, {spec.signal_channel}",
                         os.path.splitext(outputs["plot"].abspath)[0])
        write_json(outputs["histograms"].abspath, histograms, provenance=self.provenance())


class BuildWorkspace(ModelTask):
    """The pyhf JSON workspace of the score histograms (validated against pyhf's schema).

    ``workspace.json`` is a plain pyhf workspace (no extra keys): ``pyhf cls workspace.json`` and
    ``pyhf fit workspace.json`` accept it as written. Its model is
    :func:`analysis.inference.model.build_model`'s, the one the inference-aware training
    losses use. ``binning.json`` records each channel's bin edges after merging, the pruned
    shapes (channel, process, systematic) and the range of mu; provenance goes beside it.
    """

    config_dependencies = INFERENCE_SECTIONS

    def requires(self) -> CreateHistograms:
        return CreateHistograms.req(self)

    def output(self) -> dict[str, law.LocalFileTarget]:
        return {"workspace": self.target("workspace.json"),
                "folds": self.target("workspace_folds.json"),
                "binning": self.target("binning.json"),
                "provenance": self.target("provenance.json")}

    @law.decorator.safe_output
    def run(self) -> None:
        from analysis.inference.workspace import (
            build_fold_workspaces,
            build_workspace,
            validate_workspace,
        )

        config = self.analysis_config
        histograms = read_json(self.input()["histograms"].abspath)
        seed = config.inference.pseudo_data_seed
        details: dict[str, Any] = {}
        spec = build_workspace(histograms, config, pseudo_data_seed=seed, details=details)
        validate_workspace(spec)
        # one workspace per (seed index, fold) (its own network's events at the full
        # luminosity): the paired comparison against CE reads their sigma_mu
        folds = build_fold_workspaces(histograms["folds"], config, pseudo_data_seed=seed)
        outputs = self.output()
        outputs["workspace"].parent.touch()
        write_json(outputs["workspace"].abspath, spec)
        write_json(outputs["folds"].abspath, {
            "workspaces": folds, "labels": [[h["seed"], h["fold"]] for h in histograms["folds"]]})
        write_json(outputs["binning"].abspath, details)
        write_json(outputs["provenance"].abspath,
                   self.provenance(config.inference.pseudo_data_seed))


class Fit(ModelTask, BatchWorkflow):
    """Asimov and pseudo-data fits of the workspace (the torch fitter): mu-hat, significance,
    CLs limits, a scan, pulls, the free normalisations, ranked impacts and the pre- and post-fit
    yields per category (``results.json``; ``scan``, ``pulls``, ``impacts``, ``postfit`` as
    PNG + PDF).

    A batch workflow of one branch (this model and strategy): ``--workflow slurm`` or
    ``htcondor`` runs the fit as a job with law.cfg's ``[luigi_Fit]`` resources; Report requires
    the branch itself.
    """

    config_dependencies = INFERENCE_SECTIONS

    def create_branch_map(self) -> dict[int, tuple[str, str]]:
        return {0: (self.model, self.strategy)}

    def workflow_requires(self) -> dict[str, law.Task]:
        return {**super().workflow_requires(), "workspace": BuildWorkspace.req(self)}

    def requires(self) -> BuildWorkspace:
        return BuildWorkspace.req(self)

    def output(self) -> dict[str, law.LocalFileTarget]:
        return {"results": self.target("results.json"), "scan": self.target("scan.png"),
                "pulls": self.target("pulls.png"), "impacts": self.target("impacts.png"),
                "postfit": self.target("postfit.png")}

    @law.decorator.safe_output
    def run(self) -> None:
        from analysis.inference.fit_outputs import FIT_PLOTS, fit_and_write
        from analysis.inference.fits import fit_steps

        start = time.perf_counter()  # the whole task's time goes to the message, not a file
        settings = self.analysis_config.inference
        spec = read_json(self.input()["workspace"].abspath)
        folds = read_json(self.input()["folds"].abspath)
        outputs = self.output()
        outputs["results"].parent.touch()
        processes = self.analysis_config.processes
        results, seconds = fit_and_write(
            spec, folds["workspaces"], fold_labels=folds["labels"],
            scan_points=settings.scan_points, scan_max=settings.scan_max,
            limit_max=settings.limit_max, engine=settings.fit_engine, title=self.title(),
            labels={p: s.label for p, s in processes.items()},
            colors={p: s.color for p, s in processes.items()},
            results_path=outputs["results"].abspath,
            plot_bases={name: os.path.splitext(outputs[name].abspath)[0] for name in FIT_PLOTS},
            provenance=self.provenance(settings.pseudo_data_seed),
            progress=self.progress(fit_steps(spec), "Fit", "fit"))
        self.publish_message(f"{self.title()}: sigma_mu {results['sigma_mu']:.3f} (stat "
                             f"{results['sigma_mu_stat']:.3f}), Z "
                             f"{results['expected_significance']:.2f}, limit "
                             f"{results['expected_limit']:.2f}; {time.perf_counter() - start:.1f} s"
                             f" (fits {seconds['fits']:.1f} s, plots and files "
                             f"{seconds['outputs']:.1f} s)")
