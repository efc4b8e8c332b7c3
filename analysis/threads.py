"""Torch's intra-op threads in one task process, from the cores and the parallel workers."""

from __future__ import annotations

import os

from analysis.errors import ConfigError

__all__ = ["torch_threads"]


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
