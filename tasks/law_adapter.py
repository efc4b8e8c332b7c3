"""The one place where diffana touches law's private internals, each use commented.

Checked against law 0.1.21 (``pip show law`` in the project's venv).

law has no public API for five things the project needs:

- whether a local workflow has already yielded its branches (its run() is entered twice: once to
  yield them, once after they ran);
- forgetting that record in a process that builds several workflows (the tests, which behave like
  a fresh ``law run`` per test);
- which ``--workflow`` names a workflow class defines (law only resolves one name, falling back
  to the first workflow for an unknown one);
- which remote jobs failed after their retries, with their branches and attempts (law keeps them
  in its job bookkeeping, whose dict layout is not a documented interface);
- the names of a remote job's files: law appends ``_<first branch>To<last branch + 1>`` to the
  job's stdout/stderr names (law/contrib/*/workflow.py), not an exposed function.

If law changes any of them, only this module has to follow.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

__all__ = ["FailedJob", "failed_remote_jobs", "forget_yielded_local_workflows",
           "job_file_postfix", "local_workflow_has_yielded", "workflow_types"]


@dataclass(frozen=True)
class FailedJob:
    """A remote job that law gave up on: its job number, batch id, branches and attempts."""

    job_num: int
    job_id: Any
    branches: list[int]
    attempts: int  # submissions so far, the first included


def local_workflow_has_yielded(workflow: Any) -> bool:
    """True once the local workflow ``workflow`` has yielded its branches in this ``law run``.

    law's ``LocalWorkflowProxy`` keeps the flag as the private property
    ``_local_workflow_has_yielded`` (backed by a process-wide dict, so forked luigi workers share
    it); ``local_workflow_pre_run`` sees the first pass (before the branches) and the second pass
    (after them), and tells them apart by it.

    Args:
        workflow: a ``law.LocalWorkflow`` task (not a branch) running ``--workflow local``.
    """
    # private: law.workflow.local.LocalWorkflowProxy._local_workflow_has_yielded
    return bool(workflow.workflow_proxy._local_workflow_has_yielded)


def forget_yielded_local_workflows() -> None:
    """Forget, in this process, which local workflows have yielded their branches.

    law records it per live task id in ``law.util.mp_manager``'s dict
    ``"local_workflow_tasks_yielded"`` for the life of the process. A new ``law run`` process
    starts empty; a process that builds the same workflow again (e.g. the tests, each with a new
    store) must clear it, or the workflow would not run its branches a second time.
    """
    # private: the key "local_workflow_tasks_yielded" of law.util.mp_manager (law.workflow.local)
    from law.workflow import local

    local.mp_manager.get("local_workflow_tasks_yielded", "dict").clear()


def workflow_types(workflow_cls: type) -> list[str]:
    """The ``--workflow`` names (``local``, ``htcondor``, ...) that ``workflow_cls`` defines.

    law's workflow metaclass marks each class that defines its own ``workflow_proxy_cls`` with
    the private class attribute ``_defined_workflow_proxy``; the classes of the MRO so marked are
    the workflows the task can run, in law's order (the first is its default).

    Args:
        workflow_cls: a ``law.BaseWorkflow`` subclass.
    """
    # private: law.workflow.base.WorkflowRegister sets classdict["_defined_workflow_proxy"]
    names = (base.workflow_proxy_cls.workflow_type for base in inspect.getmro(workflow_cls)
             if getattr(base, "_defined_workflow_proxy", False))
    return [name for name in names if name]  # law's abstract bases have none


def failed_remote_jobs(workflow: Any) -> list[FailedJob]:
    """The jobs of the remote workflow ``workflow`` whose status is failed, by job number.

    law's ``BaseRemoteWorkflowProxy`` keeps ``job_data`` (``jobs``: job number -> dict with
    ``status``, ``job_id`` and ``branches``; ``attempts``: job number -> resubmissions so far)
    and compares a status with ``job_manager.FAILED``; the layout of those dicts is law's
    internal bookkeeping, not a documented interface.

    Args:
        workflow: a remote workflow task (``--workflow htcondor|slurm``), not a branch.
    """
    # internal layout: law.workflow.remote.JobData (keys "jobs", "attempts") and
    # law.job.base.BaseJobManager.FAILED
    proxy = workflow.workflow_proxy
    return [FailedJob(num, data["job_id"], list(data["branches"]),
                      proxy.job_data.attempts.get(num, 0) + 1)
            for num, data in sorted(proxy.job_data.jobs.items())
            if data["status"] == proxy.job_manager.FAILED]


def job_file_postfix(branches: list[int]) -> str:
    """What law appends to a remote job's file names (stdout, stderr, the job script) for the
    job that runs ``branches``: ``_<first>To<last + 1>`` (law 0.1.21,
    ``law.contrib.htcondor``/``slurm`` workflows' ``create_job_file``).

    Example:
        >>> job_file_postfix([3, 4, 5])
        '_3To6'
    """
    return f"_{branches[0]}To{branches[-1] + 1}"
