"""GpuWorkflow: the base of every GPU task, one GPU share run locally, on HTCondor or on Slurm.

A task that derives from ``DiffanaTask`` and :class:`GpuWorkflow` gets the share parameters
(``--gpu-share 0.25 --gpu-memory-gb 8 --cpus 2 --memory-gb 8 --runtime-minutes 120``, defaults
per task in law.cfg's ``[luigi_<TaskFamily>]``) and runs with ``--workflow local|htcondor|slurm``:

- ``htcondor``: the submit file carries :func:`~analysis.gpu.share.htcondor_submit_lines` of the
  share and the site section ``[htcondor_site]``;
- ``slurm``: the job file carries :func:`~analysis.gpu.share.slurm_options` (``--gres`` only where
  ``[slurm_site] request_gres`` is true) and the options of ``[slurm_site]``;
- ``local``: each branch takes :func:`~analysis.gpu.share.luigi_gpu_slots` of the luigi resource
  ``gpu`` (``[luigi_resources] gpu``), so ``--workers N`` packs fractions on one GPU; a fractional
  share starts an MPS control daemon under ``<store>/mps`` unless one runs (and stops it when the
  workflow ends), and each branch gets the MPS client limits. Without a GPU: a warning, the CPU.

Remote jobs run law's job wrapper with :file:`tasks/bootstrap.sh` (``[diffana_remote]``), which
activates the virtual environment and sets ``DIFFANA_STORE``, ``PYTHONPATH`` and
``LAW_CONFIG_FILE`` as they were at submission (a shared file system is assumed).
"""

from __future__ import annotations

import logging
import os
from functools import cached_property
from pathlib import Path
from typing import Any

import law
import luigi

from analysis.errors import ConfigError, ResourceError
from analysis.gpu.device import device_memory_gb, gpu_count
from analysis.gpu.mps import MpsDaemon, client_environment
from analysis.gpu.share import (
    GpuShare,
    HTCondorSite,
    htcondor_submit_lines,
    local_environment,
    luigi_gpu_slots,
    slurm_options,
)

law.contrib.load("htcondor", "slurm")

__all__ = ["GpuWorkflow", "REPO_ROOT"]

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[1]
"""Root of the checkout: relative paths in law.cfg's diffana sections are relative to it."""

_GPU_SECTION = "diffana_gpu"
_REMOTE_SECTION = "diffana_remote"
_HTCONDOR_SECTION = "htcondor_site"
_SLURM_SECTION = "slurm_site"
_SLURM_KNOWN = {"partition", "request_gres"}
_OWNER_FILE = "owner"  # names the workflow that started the local MPS daemon


def _section(name: str) -> dict[str, str]:
    cfg = law.config.Config.instance()
    return dict(cfg.items(name)) if cfg.has_section(name) else {}


def _option(section: str, option: str, default: str) -> str:
    value = _section(section).get(option, "")
    return value if value != "" else default


def _repo_path(path: str) -> str:
    return path if os.path.isabs(path) else str(REPO_ROOT / path)


def _in_remote_job() -> bool:
    # law's job wrapper (law_job.sh) exports LAW_JOB_HOME in every batch job
    return bool(os.environ.get("LAW_JOB_HOME"))


class GpuWorkflow(law.LocalWorkflow, law.htcondor.HTCondorWorkflow, law.slurm.SlurmWorkflow):
    """Workflow base of GPU tasks: a GPU share, translated for local, HTCondor and Slurm runs."""

    gpu_share = luigi.Parameter(default="1", significant=False, description="share of one GPU "
                                "(0 < f < 1, via MPS) or a whole number of GPUs; default: law.cfg "
                                "[luigi_<TaskFamily>] gpu_share, else 1")
    gpu_memory_gb = luigi.FloatParameter(default=0.0, significant=False, description="device "
                                         "memory per GPU in GiB; 0: the share's fraction of "
                                         "[diffana_gpu] card_memory_gb; default: 0")
    cpus = luigi.IntParameter(default=1, significant=False, description="CPU cores; default: 1")
    memory_gb = luigi.FloatParameter(default=4.0, significant=False,
                                     description="host memory in GiB; default: 4")
    runtime_minutes = luigi.IntParameter(default=60, significant=False,
                                         description="wall-clock limit in minutes; default: 60")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.share  # an impossible request fails here, before anything runs or is submitted

    @cached_property
    def share(self) -> GpuShare:
        """The validated share; ResourceError names the value and the limit."""
        # the site's card from law.cfg (a submit node may have none); a local run on a GPU
        # checks the request against the card it will really run on
        card = float(_option(_GPU_SECTION, "card_memory_gb", "80"))
        if self.workflow == "local" and gpu_count() > 0:
            card = device_memory_gb() or card
        return GpuShare.parse(self.gpu_share, memory_gb=self.gpu_memory_gb or None,
                              cpus=self.cpus, host_memory_gb=self.memory_gb,
                              runtime_minutes=self.runtime_minutes, card_memory_gb=card)

    @property
    def data_parallel_size(self) -> int:
        """Processes for data-parallel training: one per whole GPU of the share (n >= 2 means
        :func:`~analysis.training.distributed.train_network_data_parallel`), 1 otherwise."""
        return 1 if self.share.is_fractional else self.share.n_gpus

    def _store_dir(self, *parts: str) -> str:
        return os.path.abspath(self.target(*parts).path)

    # -- local -------------------------------------------------------------------------------

    def process_resources(self) -> dict[str, int]:
        """luigi resource ``gpu`` of a local branch: ``[diffana_gpu] slots_per_gpu`` per GPU."""
        if not self.is_branch() or _in_remote_job():
            return {}  # inside a batch job the batch system has already allotted the share
        # luigi counts an unconfigured resource as 1 unit and never runs a task that needs more
        total = luigi.configuration.get_config().getint("resources", "gpu", 0)
        if total < 1:
            log.warning("%s: no [luigi_resources] gpu in law.cfg: GPU shares are not packed",
                        self.task_family)
            return {}
        slots = luigi_gpu_slots(self.share, int(_option(_GPU_SECTION, "slots_per_gpu", "100")))
        if slots > total:
            raise ResourceError(f"{self.task_family}: GPU share {self.share.spec!r} needs {slots} "
                                f"units of the luigi resource gpu, the machine has {total} "
                                f"([luigi_resources] gpu in law.cfg)")
        return {"gpu": slots}

    def mps_daemon(self) -> MpsDaemon:
        """The local MPS control daemon, with pipe and log directories under the store."""
        store = os.path.abspath(os.environ.get("DIFFANA_STORE") or law.config.get_expanded(
            "diffana", "store", default="data/store"))
        return MpsDaemon(os.path.join(store, "mps", "pipe"), os.path.join(store, "mps", "log"))

    def local_workflow_pre_run(self) -> None:
        if self.workflow_proxy._local_workflow_has_yielded:
            return  # second pass, after the branches: the SUCCESS handler stops the daemon
        if gpu_count() == 0:
            log.warning("%s: no GPU visible, training on the CPU (GPU share %s not applied)",
                        self.task_family, self.share.spec)
            return
        if self.share.is_fractional:
            daemon = self.mps_daemon()
            if daemon.start():
                (daemon.pipe_dir / _OWNER_FILE).write_text(self.live_task_id)

    def stop_own_mps_daemon(self) -> None:
        """Stop the local MPS daemon if this workflow started it (no-op otherwise)."""
        daemon = self.mps_daemon()
        owner = daemon.pipe_dir / _OWNER_FILE
        if owner.exists() and owner.read_text() == self.live_task_id:
            daemon.stop()
            owner.unlink()

    def apply_local_share(self) -> None:
        """Put the share's client environment into this process (a local branch on a GPU)."""
        if not self.is_branch() or _in_remote_job() or gpu_count() == 0:
            return
        if self.share.is_fractional:
            os.environ.update(client_environment(self.share, self.mps_daemon().pipe_dir))
        else:
            os.environ.update(local_environment(self.share))

    # -- remote: shared by HTCondor and Slurm -------------------------------------------------

    def _bootstrap_file(self) -> law.JobInputFile:
        path = _repo_path(_option(_REMOTE_SECTION, "bootstrap_file", "tasks/bootstrap.sh"))
        return law.JobInputFile(path, share=True, render_job=True)

    def _with_worker_setup(self, config: Any) -> Any:
        """The job config with what the bootstrap script needs on the worker (the checkout,
        store, venv and law.cfg) and the job's stdout/stderr beside its submission data."""
        store = os.environ.get("DIFFANA_STORE") or law.config.get_expanded(
            "diffana", "store", default="data/store")
        law_cfg = os.environ.get("LAW_CONFIG_FILE") or str(REPO_ROOT / "law.cfg")
        config.render_variables.update({
            "diffana_base": str(REPO_ROOT), "diffana_store": os.path.abspath(store),
            "diffana_venv": _repo_path(_option(_REMOTE_SECTION, "venv", ".venv")),
            "diffana_law_config": os.path.abspath(law_cfg)})
        config.stdout, config.stderr = "stdout.txt", "stderr.txt"
        return config

    # -- HTCondor ------------------------------------------------------------------------------

    def htcondor_output_directory(self) -> law.LocalDirectoryTarget:
        return law.LocalDirectoryTarget(self._store_dir("jobs", "htcondor"))

    def htcondor_bootstrap_file(self) -> law.JobInputFile:
        return self._bootstrap_file()

    def htcondor_job_config(self, config: Any, job_num: Any, branches: Any) -> Any:
        section = _section(_HTCONDOR_SECTION)
        config.universe = section.pop("universe", "") or config.universe  # law writes it itself
        site = HTCondorSite.from_section(section, _HTCONDOR_SECTION)
        config.custom_content.extend(htcondor_submit_lines(self.share, site).items())
        return self._with_worker_setup(config)

    # -- Slurm ---------------------------------------------------------------------------------

    def slurm_output_directory(self) -> law.LocalDirectoryTarget:
        return law.LocalDirectoryTarget(self._store_dir("jobs", "slurm"))

    def slurm_bootstrap_file(self) -> law.JobInputFile:
        return self._bootstrap_file()

    def slurm_job_config(self, config: Any, job_num: Any, branches: Any) -> Any:
        section = _section(_SLURM_SECTION)
        if section.get("partition") and not config.partition:
            config.partition = section["partition"]
        gres = section.get("request_gres", "true").lower()
        if gres not in ("true", "false"):
            raise ConfigError(f"law.cfg [{_SLURM_SECTION}] request_gres = {gres!r}: must be "
                              f"true or false")
        for option in slurm_options(self.share):
            key, _, value = option[2:].partition("=")
            if key == "gres" and gres == "false":
                continue  # a CPU-only cluster (the tests): the rest of the share still applies
            config.custom_content.append((key, value))
        config.custom_content.extend((k, v) for k, v in section.items()
                                     if k not in _SLURM_KNOWN and v != "")
        return self._with_worker_setup(config)


@GpuWorkflow.event_handler(luigi.Event.START)
def _apply_share_on_start(task: GpuWorkflow) -> None:
    task.apply_local_share()


@GpuWorkflow.event_handler(luigi.Event.SUCCESS)
def _stop_mps_on_success(task: GpuWorkflow) -> None:
    if not task.is_branch() and task.effective_workflow == "local":
        task.stop_own_mps_daemon()


@GpuWorkflow.event_handler(luigi.Event.FAILURE)
def _stop_mps_on_failure(task: GpuWorkflow, exception: BaseException) -> None:
    if not task.is_branch() and task.effective_workflow == "local":
        task.stop_own_mps_daemon()
