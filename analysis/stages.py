"""What each stage of the analysis reads of the config, and the tag that names its outputs.

A task's outputs live under ``cfg-<hash>``, the hash of the config sections its stage and the
stages before it read (:func:`config_tag`), so that a config change reruns exactly the tasks that
depend on it. ``"section:part"`` names the part of a section that a stage reads
(:func:`section_content`): a cross-section uncertainty, first read by the losses, does not rerun
the skim, and a plot label does not rerun the training.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterable
from typing import Any

from analysis.config import AnalysisConfig
from analysis.errors import ConfigError

__all__ = ["CLASS_SECTIONS", "FOLD_SECTIONS", "GENERATION_SECTIONS", "INFERENCE_SECTIONS",
           "MODEL_SECTIONS", "SKIM_SECTIONS", "TRAINING_SECTIONS", "UNCERTAINTY_SECTIONS", "config_tag",
           "section_content"]


def _plain(value: Any) -> Any:
    """Dataclasses (and their nesting) as plain JSON-ready data."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


# the fields of ``inference`` that model_spec reads (the training losses' model)
_MODEL_FIELDS = ("n_bins", "systematics", "categories", "free_normalisations", "free_shapes",
                 "max_background_mc_stat", "prune_shape_chi2")

# config sections per stage, each including the stages before it
GENERATION_SECTIONS = ("sqrt_s", "datasets", "detector", "objects")  # objects: b-tag WPs
SKIM_SECTIONS = (*GENERATION_SECTIONS, "selection", "features", "systematics", "processes:skim",
                 "luminosity:value", "nanoaod")
UNCERTAINTY_SECTIONS = ("processes:uncertainty", "luminosity:uncertainty")  # the likelihood's
FOLD_SECTIONS = ("training:n_folds",)  # the learned skim: one cut set per fold
CLASS_SECTIONS = ("classes",)  # the network's output nodes: the learned skim's and the losses'
# the statistical model that the yield-aware losses are built from (analysis.inference.model_spec):
# its categories, bins, modifiers and constraints; not the fits' settings (scan, limits, engine)
MODEL_SECTIONS = ("inference:model",)
TRAINING_SECTIONS = (*SKIM_SECTIONS, *UNCERTAINTY_SECTIONS, *CLASS_SECTIONS, *MODEL_SECTIONS,
                     "training")
INFERENCE_SECTIONS = (*TRAINING_SECTIONS, "inference", "processes:plot")


def section_content(config: AnalysisConfig, entry: str) -> Any:
    """What a stage reads of a config section: ``name`` (all of it) or ``name:part``.

    Raises:
        ConfigError: an unknown ``name:part``.
    """
    name, _, part = entry.partition(":")
    if not part:
        return _plain(getattr(config, name))
    if name == "training" and part == "n_folds":
        return config.training.n_folds
    if name == "inference" and part == "model":
        settings = config.inference
        return {key: _plain(getattr(settings, key)) for key in _MODEL_FIELDS}
    if name == "luminosity":
        return getattr(config.luminosity, {"value": "value", "uncertainty": "uncertainty"}[part])
    if name == "processes":
        processes = config.processes
        if part == "skim":  # the label index follows the order of the processes
            return {"order": list(processes), **{
                p: {"role": spec.role, "cross_section": spec.cross_section.value,
                    "gen_ttbar_id": _plain(spec.gen_ttbar_id)} for p, spec in processes.items()}}
        if part == "uncertainty":
            return {p: spec.cross_section.uncertainty for p, spec in processes.items()}
        if part == "plot":
            return {p: [spec.label, spec.color] for p, spec in processes.items()}
    raise ConfigError(f"config tag: unknown section part {entry!r} (a task's "
                      f"config_dependencies names it)")


def config_tag(config: AnalysisConfig, sections: Iterable[str]) -> str:
    """``cfg-<8 hex>``: the SHA-256 of what ``sections`` (:func:`section_content` entries) hold.

    Args:
        config: the analysis config.
        sections: the entries a task's outputs depend on, its inputs' included; order and
            repetition do not matter.

    Returns:
        The tag: a change to a cut changes the tag of LearnCuts and of every task after it,
        and changing it back finds the old outputs again.
    """
    content = {entry: section_content(config, entry) for entry in sorted(set(sections))}
    digest = hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode())
    return f"cfg-{digest.hexdigest()[:8]}"
