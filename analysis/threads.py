"""Torch's intra-op threads in one task process: how many (from the cores and the parallel
workers), and a context that sets them and gives the caller's count back afterwards."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from analysis.errors import ConfigError

__all__ = ["current_torch_threads", "torch_thread_count", "torch_threads"]


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


def current_torch_threads() -> int:
    """Torch's intra-op thread count in this process now (what a child process must be told:
    it starts with torch's default, every core)."""
    import torch  # here, not at import (see torch_thread_count)

    return torch.get_num_threads()


@contextmanager
def torch_thread_count(threads: int) -> Iterator[int]:
    """Torch's intra-op thread count set to ``threads`` inside the block; the caller's count is
    restored on exit, also on error.

    Only this process changes, and no environment variable: a process started inside the block
    (``torch.multiprocessing.spawn``) starts with torch's default and must be given its count
    explicitly (as :func:`~analysis.training.distributed.train_network_data_parallel` does).

    Args:
        threads: intra-op threads, >= 1 (e.g. from :func:`torch_threads`).

    Yields:
        ``threads``.

    Raises:
        ConfigError: ``threads < 1``.

    Example:
        >>> import torch
        >>> before = torch.get_num_threads()
        >>> with torch_thread_count(1):
        ...     torch.get_num_threads()
        1
        >>> torch.get_num_threads() == before
        True
    """
    if threads < 1:
        raise ConfigError(f"torch_threads = {threads}: must be 'auto' or an integer >= 1")
    import torch  # here, not at import: tasks/base.py imports this module for every task

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield threads
    finally:
        torch.set_num_threads(before)
