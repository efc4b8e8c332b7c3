"""The one place where diffana touches law's private internals (law 0.1.x), each use commented.

law has no public API for two things the project needs: whether a local workflow has already
yielded its branches (its run() is entered twice: once to yield them, once after they ran), and
forgetting that record in a process that builds several workflows (the tests, which behave like a
fresh ``law run`` per test). Both live in ``law.workflow.local``; if law changes them, only this
module has to follow.
"""

from __future__ import annotations

from typing import Any

__all__ = ["forget_yielded_local_workflows", "local_workflow_has_yielded"]


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
