"""Output paths carry a hash of the config sections a task depends on: change a cut, and only
LearnCuts and what follows it get new paths (and rerun); the skim and the events stay."""

from __future__ import annotations

from pathlib import Path

import pytest

from analysis.config import resolve_config_path
from tasks.cuts import LearnCuts, ReduceEvents
from tasks.generate import GenerateEvents
from tasks.inference import CreateHistograms, Fit
from tasks.report import Report
from tasks.skim import Skim
from tasks.train import TrainModel


def _paths(config: str) -> dict[str, str]:
    tasks = {"generate": GenerateEvents(version="v1", config=config),
             "skim": Skim(version="v1", config=config),
             "learn": LearnCuts(version="v1", config=config),
             "reduce": ReduceEvents(version="v1", config=config),
             "train": TrainModel(version="v1", config=config),
             "train_without_cuts": TrainModel(version="v1", config=config, learned_cuts=False),
             "histograms": CreateHistograms(version="v1", config=config),
             "fit_without_cuts": Fit(version="v1", config=config, learned_cuts=False),
             "report": Report(version="v1", config=config)}
    return {name: task.target().abspath.split("/v1/", 1)[1] for name, task in tasks.items()}


def _variant(tmp_path: Path, old: str, new: str) -> str:
    text = resolve_config_path("tth_bb_tiny").read_text()
    assert old in text
    path = tmp_path / "tth_bb_tiny.yaml"  # same analysis name, other content
    path.write_text(text.replace(old, new, 1))
    return str(path)


@pytest.mark.parametrize(("old", "new", "changed"), [
    # tth_bb_tiny also trains cuts jointly with the DNN: the networks without the learned skim
    # depend on the cuts too
    ("- {feature: met_pt, direction: \">\"}", "- {feature: met_pt, direction: \"<\"}",
     {"learn", "reduce", "train", "train_without_cuts", "histograms", "fit_without_cuts",
      "report"}),
    ("jes: 0.03", "jes: 0.05",
     {"skim", "learn", "reduce", "train", "train_without_cuts", "histograms",
      "fit_without_cuts", "report"}),
    # the statistical model's binning: the yield-aware losses are built from it (one model for
    # training and fit), so the networks too
    ("n_bins: 3", "n_bins: 4",
     {"train", "train_without_cuts", "histograms", "fit_without_cuts", "report"}),
    # a fit setting, not the model: only the fit stage
    ("scan_points: 5", "scan_points: 7", {"histograms", "fit_without_cuts", "report"}),
    # the folds: one learned cut set per fold (held-out honesty), so the learned skim too
    ("n_folds: 2", "n_folds: 3",
     {"learn", "reduce", "train", "train_without_cuts", "histograms", "fit_without_cuts",
      "report"}),
    # a training setting the learned skim does not read
    ("ce_steps: 20", "ce_steps: 21",
     {"train", "train_without_cuts", "histograms", "fit_without_cuts", "report"}),
    # a systematic left out of the statistical model: the fit and the losses built from it
    ("  n_bins: 3\n", "  n_bins: 3\n  systematics: [jes, jer, btag, isr]\n",
     {"train", "train_without_cuts", "histograms", "fit_without_cuts", "report"}),
    # a cross-section uncertainty: the losses (LearnCuts, training) read it, the skim does not
    ("      uncertainty: 0.50", "      uncertainty: 0.40",
     {"learn", "reduce", "train", "train_without_cuts", "histograms", "fit_without_cuts",
      "report"}),
    ("  uncertainty: 0.02     # relative", "  uncertainty: 0.025",
     {"learn", "reduce", "train", "train_without_cuts", "histograms", "fit_without_cuts",
      "report"}),
    # the network's classes: the learned skim's samples and the networks' outputs
    ("  - {name: ttbb, processes: [tt_bb]}\n  - {name: ttother, processes: [tt_b, tt_cc, tt_lf]}",
     "  - {name: ttbb, processes: [tt_bb, tt_b]}\n  - {name: ttother, processes: [tt_cc, tt_lf]}",
     {"learn", "reduce", "train", "train_without_cuts", "histograms", "fit_without_cuts",
      "report"}),
    # a plot label: only what draws or writes it
    ("label: \"$t\\\\bar{t}+b$\"", "label: \"tt+b\"", {"histograms", "fit_without_cuts", "report"}),
    ("btag_loose: 0.0583", "btag_loose: 0.06",  # the detector model tags at these points
     {"generate", "skim", "learn", "reduce", "train", "train_without_cuts", "histograms",
      "fit_without_cuts", "report"}),
])
def test_a_config_change_moves_only_what_depends_on_it(tmp_path: Path, old: str, new: str,
                                                       changed: set[str]) -> None:
    before = _paths("tth_bb_tiny")
    after = _paths(_variant(tmp_path, old, new))
    assert {name for name in before if before[name] != after[name]} == changed
