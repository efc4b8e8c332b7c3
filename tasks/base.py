"""Base of every diffana task: one store, a required version, the analysis config, provenance."""

from __future__ import annotations

import logging
import os
import platform
import re
from collections.abc import Callable
from contextlib import ExitStack
from importlib import metadata
from typing import Any

import law
import luigi

from analysis.config import AnalysisConfig, load_config
from analysis.errors import DiffanaError
from analysis.stages import (
    GENERATION_SECTIONS,
    INFERENCE_SECTIONS,
    SKIM_SECTIONS,
    TRAINING_SECTIONS,
    UNCERTAINTY_SECTIONS,
    config_tag,
)
from analysis.threads import torch_thread_count, torch_threads

__all__ = ["GENERATION_SECTIONS", "INFERENCE_SECTIONS", "SKIM_SECTIONS", "TRAINING_SECTIONS",
           "UNCERTAINTY_SECTIONS", "DiffanaTask", "store_root", "torch_threads"]

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
        return config_tag(self.analysis_config, self.config_sections())

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


# ---- torch threads: the cores shared by the luigi workers, for the time a task runs --------
# luigi brackets a run with START and SUCCESS/FAILURE in the process that runs it (a forked one
# with --workers > 1); the count is set at START and the process's own count given back after.
# A local workflow's run() is entered twice (it yields its branches, without SUCCESS in
# between), and its second START first gives back the count of the first.
def _restore_torch_threads(task: DiffanaTask, *_: object) -> None:
    stack = task.__dict__.pop("_torch_threads", None)
    if stack is not None:
        stack.close()


@DiffanaTask.event_handler(luigi.Event.START)
def _share_cores_between_workers(task: DiffanaTask) -> None:
    _restore_torch_threads(task)
    if task.run is None:  # an external task runs nothing
        return
    setting = os.environ.get("DIFFANA_TORCH_THREADS") or str(
        law.config.get_expanded("diffana", "torch_threads", default="auto"))
    stack = ExitStack()
    stack.enter_context(torch_thread_count(torch_threads(setting,
                                                         luigi.interface.core().workers)))
    task.__dict__["_torch_threads"] = stack


DiffanaTask.event_handler(luigi.Event.SUCCESS)(_restore_torch_threads)
DiffanaTask.event_handler(luigi.Event.FAILURE)(_restore_torch_threads)


# ---- user-facing errors: on the command line the message, not a traceback -------------------
# A DiffanaError (bad config, bad input, empty selection, ...) names the file, key or branch and
# says what to do; a traceback around it only hides it. luigi logs a task's failure through
# "luigi-interface", with exc_info from run() and with the traceback inside the text from
# complete() or deps(); this filter reduces both to the task and the message. Other exceptions
# keep their tracebacks.
_DIFFANA_ERROR_LINE = re.compile(r"^analysis\.errors\.(\w+): (.*)$", re.MULTILINE)


class _DiffanaErrorMessageOnly(logging.Filter):
    """Replaces the traceback of a DiffanaError in luigi's log records by its message."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, DiffanaError):
            record.msg, record.args = "%s\n%s: %s", (record.getMessage(), type(error).__name__,
                                                      error)
            record.exc_info, record.exc_text = None, None
        elif "Traceback (most recent call last)" in str(record.msg):
            found = _DIFFANA_ERROR_LINE.findall(record.getMessage())
            if found:
                head = record.getMessage().split("\n", 1)[0].rstrip(":")
                record.msg, record.args = "%s\n%s: %s", (head, *found[-1])
        return True


logging.getLogger("luigi-interface").addFilter(_DiffanaErrorMessageOnly())
