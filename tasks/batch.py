"""BatchWorkflow: the base of every task with many branches, run locally, on HTCondor or on Slurm.

A task that derives from ``DiffanaTask`` and :class:`BatchWorkflow` runs with
``--workflow local|htcondor|slurm`` and asks each batch job for ``--cpus``, ``--memory-gb`` and
``--runtime-minutes`` (defaults per task family in law.cfg's ``[luigi_<TaskFamily>]``, with
``retries``: how often law resubmits a failed job):

- ``htcondor``: the submit file carries :func:`~analysis.batch.htcondor_resource_lines`
  (``request_cpus``, ``request_memory``, the runtime attribute; no ``request_gpus``) and the site
  section ``[htcondor_site]``;
- ``slurm``: the job file carries :func:`~analysis.batch.slurm_resource_options` and the options
  of ``[slurm_site]``;
- ``local``: the branches run in this ``law run`` (``--workers N`` of them at once).

GPU tasks derive from :class:`~tasks.gpu.GpuWorkflow`, which is this base plus a GPU share.

Before anything runs or is submitted, a workflow name that does not exist and resources that the
site section's caps (``max_cpus``, ``max_memory_gb``, ``max_runtime_minutes``) cannot satisfy
are refused with a message naming the setting. A job that still fails after its retries stops
the run with a :class:`~analysis.errors.BatchJobError` that names the branches (for
GenerateEvents: the chunk), the attempts and the job's log files; the other branches' outputs
stay where they are, and a rerun submits only what is missing.

Remote jobs run law's job wrapper with :file:`tasks/bootstrap.sh` (``[diffana_remote]``), which
activates the virtual environment and sets ``DIFFANA_STORE`` (the submitting side's
:func:`~tasks.base.store_root`), ``PYTHONPATH`` and ``LAW_CONFIG_FILE`` as they were at submission
(a shared file system is assumed).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from functools import cached_property
from pathlib import Path
from typing import Any

import law
import luigi

from analysis.batch import (
    HTCondorSite,
    JobResources,
    SiteLimits,
    htcondor_resource_lines,
    slurm_resource_options,
)
from analysis.errors import BatchJobError, ConfigError, ResourceError
from tasks.base import store_root
from tasks.law_adapter import failed_remote_jobs, job_file_postfix, workflow_types

law.contrib.load("htcondor", "slurm")

__all__ = ["REPO_ROOT", "BatchWorkflow", "option", "section"]

REPO_ROOT = Path(__file__).resolve().parents[1]
"""Root of the checkout: relative paths in law.cfg's diffana sections are relative to it."""

REMOTE_SECTION = "diffana_remote"
HTCONDOR_SECTION = "htcondor_site"
SLURM_SECTION = "slurm_site"
_SLURM_KNOWN = {"partition", "request_gres", *SiteLimits.KEYS}
_RESOURCE_PARAMETERS = ("cpus", "memory_gb", "runtime_minutes")
# where a job's stdout and stderr go, beside law's submission records (law adds the job postfix)
_LOGS = ("stdout.txt", "stderr.txt")


def section(name: str) -> dict[str, str]:
    """The options of law.cfg's section ``name`` (empty if it has none)."""
    cfg = law.config.Config.instance()
    return dict(cfg.items(name)) if cfg.has_section(name) else {}


def option(section_name: str, key: str, default: str) -> str:
    """law.cfg's ``[section_name] key``; ``default`` where it is absent or empty."""
    value = section(section_name).get(key, "")
    return value if value != "" else default


def repo_path(path: str) -> str:
    """``path`` as it is if absolute, else relative to the checkout."""
    return path if os.path.isabs(path) else str(REPO_ROOT / path)


class BatchWorkflow(law.LocalWorkflow, law.htcondor.HTCondorWorkflow, law.slurm.SlurmWorkflow):
    """Workflow base of every task with many branches: local, HTCondor or Slurm, with resources."""

    cpus = luigi.IntParameter(default=1, significant=False, description="CPU cores per job; "
                              "default: law.cfg [luigi_<TaskFamily>] cpus, else 1")
    memory_gb = luigi.FloatParameter(default=4.0, significant=False, description="host memory "
                                     "per job in GiB; default: law.cfg [luigi_<TaskFamily>] "
                                     "memory_gb, else 4")
    runtime_minutes = luigi.IntParameter(default=60, significant=False, description="wall-clock "
                                         "limit per job in minutes; default: law.cfg "
                                         "[luigi_<TaskFamily>] runtime_minutes, else 60")

    # a required task keeps its own family's resources (law.cfg), not the requiring task's
    exclude_params_req = set(_RESOURCE_PARAMETERS)

    @classmethod
    def workflow_names(cls) -> list[str]:
        """The ``--workflow`` values this task takes (``local``, ``htcondor``, ``slurm``)."""
        return workflow_types(cls)

    @classmethod
    def modify_param_values(cls, params: dict[str, Any]) -> dict[str, Any]:
        # law falls back to the first workflow for an unknown name: a typo would run a
        # thousand chunks on this machine
        requested = params.get("workflow")
        if requested not in (None, law.NO_STR) and requested not in cls.workflow_names():
            raise ConfigError(f"{cls.__name__}: --workflow {requested!r} does not exist; "
                              f"choose one of {', '.join(cls.workflow_names())}")
        return super().modify_param_values(params)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.check_resources()  # an impossible request fails here, before anything is submitted

    # -- resources -----------------------------------------------------------------------------

    @cached_property
    def job_resources(self) -> JobResources:
        """CPUs, memory and runtime of one job; ResourceError names the parameter."""
        try:
            return JobResources(self.cpus, self.memory_gb, self.runtime_minutes)
        except ResourceError as err:
            raise ResourceError(f"{self.task_family}: {err} (from the command line or law.cfg "
                                f"[luigi_{self.task_family}])") from err

    def site_section(self) -> str | None:
        """law.cfg section of the chosen workflow's site (None for ``local``)."""
        return {"htcondor": HTCONDOR_SECTION, "slurm": SLURM_SECTION}.get(self.workflow)

    def check_resources(self) -> None:
        """Refuse, before anything is submitted, what the chosen site's caps cannot give.

        Raises:
            ResourceError: naming the request, the cap and its law.cfg setting.
            ConfigError: a cap that is not a positive number.
        """
        self.job_resources  # noqa: B018  # validates the request itself
        name = self.site_section()
        if name is not None and not self.is_branch():
            SiteLimits.from_section(section(name), name).check(
                self.job_resources, name, f"{self.task_family} (law.cfg [luigi_"
                f"{self.task_family}] or the command line)")

    # -- failures ------------------------------------------------------------------------------

    def branch_label(self, branch: int) -> str:
        """How the failure message names ``branch`` (GenerateEvents: its chunk)."""
        return f"branch {branch} ({self.branch_map[branch]})"

    def job_log_files(self, job_num: int, branches: list[int]) -> list[str]:
        """stdout and stderr files of the job that ran ``branches`` (law's postfix of them)."""
        postfix = job_file_postfix(branches)
        folder = self._store_dir("jobs", self.workflow)
        return [os.path.join(folder, f"{Path(name).stem}{postfix}{Path(name).suffix}")
                for name in _LOGS]

    @contextlib.contextmanager
    def failed_jobs_named(self) -> Iterator[None]:
        """Run context of the remote workflows: law's "tolerance exceeded for job(s) 3" becomes
        a :class:`BatchJobError` naming the branches, attempts and log files of each job that
        failed after its retries."""
        try:
            yield
        except Exception as err:
            failed = failed_remote_jobs(self)
            if not failed or isinstance(err, BatchJobError):
                raise
            lines = []
            for job in failed:
                logs = " and ".join(self.job_log_files(job.job_num, job.branches))
                names = ", ".join(self.branch_label(b) for b in job.branches)
                lines.append(f"{names}: failed {job.attempts} time(s) (job {job.job_id}, "
                             f"--retries {self.retries}); its log: {logs}")
            raise BatchJobError(
                f"{self.task_family} --workflow {self.workflow}: " + "; ".join(lines)
                + ". The other branches' outputs are kept; run the same command again to "
                "resubmit only what is missing") from err

    def htcondor_workflow_run_context(self) -> contextlib.AbstractContextManager[None]:
        return self.failed_jobs_named()

    def slurm_workflow_run_context(self) -> contextlib.AbstractContextManager[None]:
        return self.failed_jobs_named()

    # -- remote: shared by HTCondor and Slurm -------------------------------------------------

    def _store_dir(self, *parts: str) -> str:
        return os.path.abspath(self.target(*parts).path)

    def _bootstrap_file(self) -> law.JobInputFile:
        path = repo_path(option(REMOTE_SECTION, "bootstrap_file", "tasks/bootstrap.sh"))
        return law.JobInputFile(path, share=True, render_job=True)

    def _with_worker_setup(self, config: Any) -> Any:
        """The job config with what the bootstrap script needs on the worker (the checkout,
        store, venv and law.cfg) and the job's stdout/stderr beside its submission data."""
        law_cfg = os.environ.get("LAW_CONFIG_FILE") or str(REPO_ROOT / "law.cfg")
        config.render_variables.update({
            "diffana_base": str(REPO_ROOT), "diffana_store": store_root(),
            "diffana_venv": repo_path(option(REMOTE_SECTION, "venv", ".venv")),
            "diffana_law_config": os.path.abspath(law_cfg)})
        config.stdout, config.stderr = _LOGS
        return config

    def htcondor_output_directory(self) -> law.LocalDirectoryTarget:
        return law.LocalDirectoryTarget(self._store_dir("jobs", "htcondor"))

    def htcondor_bootstrap_file(self) -> law.JobInputFile:
        return self._bootstrap_file()

    def htcondor_site(self) -> HTCondorSite:
        """``[htcondor_site]`` of law.cfg (``universe`` is law's own setting)."""
        options = {k: v for k, v in section(HTCONDOR_SECTION).items() if k != "universe"}
        return HTCondorSite.from_section(options, HTCONDOR_SECTION)

    def htcondor_submit_lines(self) -> dict[str, str]:
        """The job's resource lines and the site's: no GPU for a CPU task."""
        return htcondor_resource_lines(self.job_resources, self.htcondor_site())

    def htcondor_job_config(self, config: Any, job_num: Any, branches: Any) -> Any:
        config.universe = section(HTCONDOR_SECTION).get("universe", "") or config.universe
        config.custom_content.extend(self.htcondor_submit_lines().items())
        return self._with_worker_setup(config)

    def slurm_output_directory(self) -> law.LocalDirectoryTarget:
        return law.LocalDirectoryTarget(self._store_dir("jobs", "slurm"))

    def slurm_bootstrap_file(self) -> law.JobInputFile:
        return self._bootstrap_file()

    def slurm_options(self) -> list[str]:
        """``sbatch`` options of the job's resources (a GPU task adds its ``--gres``)."""
        return slurm_resource_options(self.job_resources)

    def slurm_job_config(self, config: Any, job_num: Any, branches: Any) -> Any:
        site = section(SLURM_SECTION)
        if site.get("partition") and not config.partition:
            config.partition = site["partition"]
        for item in self.slurm_options():
            key, _, value = item[2:].partition("=")
            config.custom_content.append((key, value))
        config.custom_content.extend((k, v) for k, v in site.items()
                                     if k not in _SLURM_KNOWN and v != "")
        return self._with_worker_setup(config)
