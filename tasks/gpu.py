"""GpuWorkflow: the base of every GPU task, :class:`~tasks.batch.BatchWorkflow` plus a GPU share.

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
  workflow ends). Without a GPU: a warning, the CPU.

**One process per share.** MPS limits apply per process and only before CUDA starts, so a branch
never runs its payload in the process that scheduled it: its ``run()`` starts a fresh
``python -m law run <module>.<Task> <its parameters> --branch <b>`` (a *share process*) whose
environment carries the share (:meth:`GpuWorkflow.share_environment`: locally the MPS pipe
directory and limits, or ``CUDA_VISIBLE_DEVICES`` for whole GPUs; in a batch job the MPS limits,
the devices being the batch system's), and waits for it. Inside, ``DIFFANA_SHARE_TASK`` names the
task, and that process runs the payload itself. The parent's ``os.environ`` is never changed, so
branches after one another under ``--workers 1`` each get their own share; the environment is
computed and passed even without a GPU (where it does nothing), so it can be checked on a CPU.
This is how law's sandboxes intercept ``run()`` too; law's own sandbox proxy needs a ``law run``
command line, which ``luigi.build`` does not have.

Everything that is not the share (CPUs, memory, runtime, the site sections' caps, the worker
bootstrap, the message of a job that failed after its retries) is :class:`~tasks.batch.BatchWorkflow`'s,
which every CPU task with many branches uses as it is.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from functools import cached_property
from typing import Any

import luigi

from analysis.batch import JobResources
from analysis.errors import ConfigError, DiffanaError, ResourceError
from analysis.gpu.device import device_memory_gb, gpu_count
from analysis.gpu.mps import MpsDaemon, client_environment
from analysis.gpu.share import (
    GpuShare,
    htcondor_submit_lines,
    local_environment,
    luigi_gpu_slots,
    mps_environment,
    slurm_options,
)
from analysis.threads import current_torch_threads
from tasks.base import store_root
from tasks.batch import REPO_ROOT, SLURM_SECTION, BatchWorkflow, option, section
from tasks.law_adapter import local_workflow_has_yielded

__all__ = ["GpuWorkflow", "REPO_ROOT", "SHARE_TASK_VARIABLE"]

log = logging.getLogger(__name__)

_GPU_SECTION = "diffana_gpu"
_OWNER_FILE = "owner"  # names the workflow that started the local MPS daemon
_MPS_LIMITS = ("CUDA_MPS_ACTIVE_THREAD_PERCENTAGE", "CUDA_MPS_PINNED_DEVICE_MEM_LIMIT")
# a failed task must fail the share process (luigi's default exit status is 0 for it)
_CHILD_RETCODES = ("--retcode-task-failed", "1", "--retcode-scheduling-error", "1",
                   "--retcode-missing-data", "1", "--retcode-not-run", "1")

SHARE_TASK_VARIABLE = "DIFFANA_SHARE_TASK"
"""Set in a share process to the id of the task it runs: that task runs its payload there."""


def _in_remote_job() -> bool:
    # law's job wrapper (law_job.sh) exports LAW_JOB_HOME in every batch job
    return bool(os.environ.get("LAW_JOB_HOME"))


class GpuWorkflow(BatchWorkflow):
    """Workflow base of GPU tasks: a GPU share, translated for local, HTCondor and Slurm runs."""

    gpu_share = luigi.Parameter(default="1", significant=False, description="share of one GPU "
                                "(0 < f < 1, via MPS) or a whole number of GPUs; default: law.cfg "
                                "[luigi_<TaskFamily>] gpu_share, else 1")
    gpu_memory_gb = luigi.FloatParameter(default=0.0, significant=False, description="device "
                                         "memory per GPU in GiB; 0: the share's fraction of "
                                         "[diffana_gpu] card_memory_gb; default: 0")
    exclude_params_req = {"gpu_share", "gpu_memory_gb"}

    def __getattribute__(self, name: str, *args: Any, **kwargs: Any) -> Any:
        # a branch's run() is its share process (module docstring), unless this process is it;
        # law forwards run() of workflows and sandboxed tasks by the same hook
        if name == "run" and super().__getattribute__("runs_in_share_process")():
            return super().__getattribute__("run_in_share_process")
        return super().__getattribute__(name, *args, **kwargs)

    @cached_property
    def share(self) -> GpuShare:
        """The validated share; ResourceError names the value and the limit."""
        # the site's card from law.cfg (a submit node may have none); a local run on a GPU
        # checks the request against the card it will really run on
        card = float(option(_GPU_SECTION, "card_memory_gb", "80"))
        if self.workflow == "local" and gpu_count() > 0:
            card = device_memory_gb() or card
        return GpuShare.parse(self.gpu_share, memory_gb=self.gpu_memory_gb or None,
                              cpus=self.cpus, host_memory_gb=self.memory_gb,
                              runtime_minutes=self.runtime_minutes, card_memory_gb=card)

    @property
    def job_resources(self) -> JobResources:  # type: ignore[override]
        """The share's CPUs, host memory and runtime."""
        return self.share.resources

    @property
    def data_parallel_size(self) -> int:
        """Processes for data-parallel training: one per whole GPU of the share (n >= 2 means
        :func:`~analysis.training.distributed.train_network_data_parallel`), 1 otherwise."""
        return 1 if self.share.is_fractional else self.share.n_gpus

    # -- local -------------------------------------------------------------------------------

    def process_resources(self) -> dict[str, int]:
        """luigi resource ``gpu`` of a local branch: ``[diffana_gpu] slots_per_gpu`` per GPU."""
        if not self.is_branch() or _in_remote_job() or os.environ.get(SHARE_TASK_VARIABLE):
            return {}  # the batch system, or the luigi worker of the share process's parent,
            # has already allotted the share
        # luigi counts an unconfigured resource as 1 unit and never runs a task that needs more
        total = luigi.configuration.get_config().getint("resources", "gpu", 0)
        if total < 1:
            log.warning("%s: no [luigi_resources] gpu in law.cfg: GPU shares are not packed",
                        self.task_family)
            return {}
        slots = luigi_gpu_slots(self.share, int(option(_GPU_SECTION, "slots_per_gpu", "100")))
        if slots > total:
            raise ResourceError(f"{self.task_family}: GPU share {self.share.spec!r} needs {slots} "
                                f"units of the luigi resource gpu, the machine has {total} "
                                f"([luigi_resources] gpu in law.cfg)")
        return {"gpu": slots}

    def mps_daemon(self) -> MpsDaemon:
        """The local MPS control daemon, with pipe and log directories under the store."""
        store = store_root()
        return MpsDaemon(os.path.join(store, "mps", "pipe"), os.path.join(store, "mps", "log"))

    def local_workflow_pre_run(self) -> None:
        if local_workflow_has_yielded(self):
            return  # second pass, after the branches: the SUCCESS handler stops the daemon
        if gpu_count() == 0:
            log.warning("%s: no GPU visible, running on the CPU (GPU share %s: its environment is "
                        "passed to each branch's process, where it has no effect)",
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

    # -- one process per share -----------------------------------------------------------------

    def share_environment(self) -> dict[str, str]:
        """Environment variables of this branch's share, set in its share process.

        Locally: the MPS client environment of a fraction (pipe directory of
        :meth:`mps_daemon`, thread percentage, pinned-memory limit) or ``CUDA_VISIBLE_DEVICES``
        of whole GPUs. In a batch job, where the batch system chose the devices and runs the MPS
        daemon: the MPS limits of a fraction (the same as the submit file's), nothing for whole
        GPUs.
        """
        if _in_remote_job():
            return mps_environment(self.share)
        if self.share.is_fractional:
            return client_environment(self.share, self.mps_daemon().pipe_dir)
        return local_environment(self.share)

    def runs_in_share_process(self) -> bool:
        """True for a branch whose ``run()`` must start its share process: every branch, but in
        the share process that runs it."""
        return self.is_branch() and os.environ.get(SHARE_TASK_VARIABLE) != self.task_id

    def share_process_command(self) -> list[str]:
        """``python -m law run <module>.<Task> <parameters> --workers 1 --local-scheduler``."""
        task = f"{type(self).__module__}.{type(self).__name__}"
        # as law's sandboxes do: the log file is the parent's
        parameters = [item for pair in self.cli_args(exclude={"log_file"}).items()
                      for item in pair]
        return [sys.executable, "-m", "law", "run", task, *parameters, "--workers", "1",
                "--local-scheduler", *_CHILD_RETCODES]

    def share_process_environment(self) -> dict[str, str]:
        """The environment of the share process: this one's, without MPS limits it inherited,
        plus :meth:`share_environment`, the store, the law config, the checkout on
        ``PYTHONPATH`` and :data:`SHARE_TASK_VARIABLE`."""
        env = {k: v for k, v in os.environ.items() if k not in _MPS_LIMITS}
        python_path = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
        # this task's share of the cores (set at START): the child runs --workers 1 and would
        # take every core, so 2 workers' children spin-waited on 2 cores (2.5x slower training)
        env.setdefault("DIFFANA_TORCH_THREADS", str(current_torch_threads()))
        return {**env, **self.share_environment(), SHARE_TASK_VARIABLE: self.task_id,
                "DIFFANA_STORE": store_root(), "PYTHONPATH": python_path,
                "LAW_CONFIG_FILE": env.get("LAW_CONFIG_FILE") or str(REPO_ROOT / "law.cfg")}

    def run_in_share_process(self) -> None:
        """Run this branch in a fresh process with its share's environment; wait for it.

        Raises:
            DiffanaError: the process failed or left the branch incomplete (its own error,
                e.g. an InputDataError naming the file, is printed above by that process).
        """
        share = self.share_environment()
        log.info("%s: share process (GPU share %s: %s)", self.task_id, self.share.spec,
                 " ".join(f"{k}={v}" for k, v in sorted(share.items())) or "no variables")
        result = subprocess.run(self.share_process_command(), check=False,
                                env=self.share_process_environment())
        if result.returncode != 0 or not self.complete():
            outcome = (f"exited with status {result.returncode}" if result.returncode else
                       "left the branch incomplete")
            raise DiffanaError(f"{self.task_id}: its share process (law run of the branch with "
                               f"GPU share {self.share.spec}) {outcome}; its error is printed "
                               f"above")

    # -- remote: the share's lines on top of the resources' ----------------------------------

    def htcondor_submit_lines(self) -> dict[str, str]:
        """The share's submit lines (``request_gpus`` ...), the resources' and the site's."""
        return htcondor_submit_lines(self.share, self.htcondor_site())

    def slurm_options(self) -> list[str]:
        """The share's ``sbatch`` options: ``--gres`` only where ``[slurm_site] request_gres``
        is true (a cluster without GPU gres: the rest of the share still applies)."""
        gres = section(SLURM_SECTION).get("request_gres", "true").lower()
        if gres not in ("true", "false"):
            raise ConfigError(f"law.cfg [{SLURM_SECTION}] request_gres = {gres!r}: must be "
                              f"true or false")
        return [item for item in slurm_options(self.share)
                if not (item.startswith("--gres") and gres == "false")]


@GpuWorkflow.event_handler(luigi.Event.SUCCESS)
def _stop_mps_on_success(task: GpuWorkflow) -> None:
    if not task.is_branch() and task.effective_workflow == "local":
        task.stop_own_mps_daemon()


@GpuWorkflow.event_handler(luigi.Event.FAILURE)
def _stop_mps_on_failure(task: GpuWorkflow, exception: BaseException) -> None:
    if not task.is_branch() and task.effective_workflow == "local":
        task.stop_own_mps_daemon()
