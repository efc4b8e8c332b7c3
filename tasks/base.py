"""Base of every diffana task: one store, a required version, the analysis config, provenance."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import platform
from collections.abc import Callable
from importlib import metadata
from typing import Any

import law
import luigi

from analysis.config import AnalysisConfig, load_config
from analysis.errors import ConfigError

__all__ = ["GENERATION_SECTIONS", "INFERENCE_SECTIONS", "SKIM_SECTIONS", "TRAINING_SECTIONS",
           "UNCERTAINTY_SECTIONS",
           "DiffanaTask", "store_root"]

_REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_VERSIONED_PACKAGES = ("diffana", "law", "luigi", "coffea", "uproot", "awkward", "numpy",
                       "pythia8mc", "fastjet", "torch", "pyhf")


def store_root() -> str:
    """Absolute path of the store: ``$DIFFANA_STORE``, else law.cfg's ``[diffana] store``.

    The one rule for every task and for batch jobs (which are given this path at submission): a
    relative store lives under the repository (law.cfg's directory), whatever the working
    directory, and ``~`` is expanded.
    """
    store = os.environ.get("DIFFANA_STORE") or law.config.get_expanded(
        "diffana", "store", default="data/store")
    return os.path.join(_REPOSITORY, os.path.expanduser(store))


def _plain(value: Any) -> Any:
    """Dataclasses (and their nesting) as plain JSON-ready data."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


# config sections per stage, each including the stages before it; "section:part" is the part
# of a section a stage reads (_section_content), so that e.g. a cross-section uncertainty, read
# first by the losses, does not rerun the skim, and a plot label does not rerun the training
GENERATION_SECTIONS = ("sqrt_s", "datasets", "detector", "objects")  # objects: b-tag WPs
SKIM_SECTIONS = (*GENERATION_SECTIONS, "selection", "features", "systematics", "processes:skim",
                 "luminosity:value")
UNCERTAINTY_SECTIONS = ("processes:uncertainty", "luminosity:uncertainty")  # the likelihood's
TRAINING_SECTIONS = (*SKIM_SECTIONS, *UNCERTAINTY_SECTIONS, "training")
INFERENCE_SECTIONS = (*TRAINING_SECTIONS, "inference", "processes:plot")


def _section_content(config: AnalysisConfig, entry: str) -> Any:
    """What a stage reads of a config section: ``name`` (all of it) or ``name:part``."""
    name, _, part = entry.partition(":")
    if not part:
        return _plain(getattr(config, name))
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
    raise ValueError(f"config tag: unknown section part {entry!r}")


class DiffanaTask(law.Task):
    """Base of every task: one store, a required version, the analysis config."""

    config = luigi.Parameter(default="tth_bb", description="config/<name>.yaml, or a path; "
                             "default: tth_bb")
    version = luigi.Parameter(description="output version, e.g. v1 (required)")

    @property
    def analysis_config(self) -> AnalysisConfig:
        """The validated config (cached per file); ConfigError names the file and key."""
        return load_config(self.config)

    #: the config sections this task's outputs depend on, its inputs' included (see
    #: :meth:`config_sections`); their hash is part of the output path
    config_dependencies: tuple[str, ...] = GENERATION_SECTIONS

    def config_sections(self) -> tuple[str, ...]:
        """Config sections (top-level keys) that determine this task's outputs and its inputs'."""
        return self.config_dependencies

    def config_tag(self) -> str:
        """``cfg-<8 hex>``: hash of :meth:`config_sections` of the config.

        Part of every output path: a change to a cut changes the tag of LearnCuts and of every
        task after it, so ``law run`` reruns exactly those and keeps the rest (the skim, the
        generated events); changing it back finds the old outputs again.
        """
        config = self.analysis_config
        content = {entry: _section_content(config, entry)
                   for entry in sorted(set(self.config_sections()))}
        digest = hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode())
        return f"cfg-{digest.hexdigest()[:8]}"

    def store_parts(self) -> tuple[str, ...]:
        return (self.analysis_config.name, self.task_family, self.version, self.config_tag())

    def target(self, *path: str) -> law.LocalFileTarget:
        return law.LocalFileTarget(os.path.join(store_root(), *self.store_parts(), *path))

    def provenance(self, seed: int | None = None) -> dict[str, Any]:
        """Config hash, package versions and seed: carried by every output with numbers."""
        versions = {}
        for name in _VERSIONED_PACKAGES:
            try:
                versions[name] = metadata.version(name)
            except metadata.PackageNotFoundError:
                versions[name] = None
        return {"config": self.analysis_config.name, "config_sha256": self.analysis_config.digest,
                "task": self.task_family, "version": self.version, "seed": seed,
                "python": platform.python_version(), "packages": versions}

    def progress(self, total: int, description: str, unit: str = "ev") -> Callable[[int], None]:
        """A callback ``f(n_done)`` that draws a terminal bar and publishes law's progress."""
        from tqdm import tqdm

        bar = tqdm(total=total, desc=description, unit=unit, leave=False, mininterval=1.0)
        step = max(total // 100, 1)

        def update(done: int) -> None:
            bar.update(done - bar.n)
            if done % step == 0 or done == total:
                self.publish_progress(100.0 * done / total)
            if done >= total:
                bar.close()

        return update


def torch_threads(setting: str, workers: int, cpus: int | None = None) -> int:
    """Intra-op threads of torch in one task process.

    Args:
        setting: ``"auto"`` (or empty) or a positive integer (law.cfg ``[diffana]
            torch_threads``, or ``$DIFFANA_TORCH_THREADS``).
        workers: luigi workers running tasks at once (``--workers``).
        cpus: cores of the machine (default: ``os.cpu_count()``).

    Returns:
        The integer setting, or for ``auto`` the cores shared by the workers (at least 1):
        with more threads than cores, torch's threads spin-wait for each other and every
        process slows down (measured: GNN training steps 10x slower with 2 workers x 2 threads
        on 2 cores).

    Raises:
        ConfigError: a setting that is neither ``auto`` nor a positive integer.
    """
    if setting.strip() in ("", "auto"):
        return max(1, (cpus or os.cpu_count() or 1) // max(1, workers))
    try:
        value = int(setting)
    except ValueError:
        value = 0
    if value < 1:
        raise ConfigError(f"torch_threads = {setting!r}: must be 'auto' or an integer >= 1")
    return value


@DiffanaTask.event_handler(luigi.Event.START)
def _share_cores_between_workers(task: DiffanaTask) -> None:
    setting = os.environ.get("DIFFANA_TORCH_THREADS") or str(
        law.config.get_expanded("diffana", "torch_threads", default="auto"))
    threads = torch_threads(setting, luigi.interface.core().workers)
    os.environ["OMP_NUM_THREADS"] = str(threads)  # for the processes this task starts
    import torch  # loaded with the task modules anyway; set here, before the task runs

    torch.set_num_threads(threads)
