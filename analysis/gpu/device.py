"""Which CUDA devices a process sees, without creating a CUDA context (safe before a fork)."""

from __future__ import annotations

import functools
import logging
import os
import shutil
import subprocess

__all__ = ["device_memory_gb", "gpu_count"]

log = logging.getLogger(__name__)


def gpu_count() -> int:
    """Number of CUDA devices this process sees (0 without a GPU or without a CUDA build of torch).

    ``torch.cuda.device_count`` asks the driver for the count but does not initialise CUDA in this
    process, so a task may call it and then fork luigi workers that use the GPU.

    Returns:
        The device count, honouring ``CUDA_VISIBLE_DEVICES``.

    Example:
        >>> gpu_count() >= 0
        True
    """
    import torch

    if not torch.backends.cuda.is_built():
        return 0
    return int(torch.cuda.device_count())


@functools.cache
def device_memory_gb(index: int | None = None) -> float | None:
    """Total memory of a CUDA device as the driver reports it, in GiB.

    Asks ``nvidia-smi`` rather than torch, which would create a CUDA context in this process.
    Cached: the card does not change while the process runs. On a MIG slice it reports the
    whole card.

    Args:
        index: the device as ``nvidia-smi`` counts it; default the first one of
            ``CUDA_VISIBLE_DEVICES`` where that is a number, else 0.

    Returns:
        The memory in GiB (about 79.6 for an H100 80GB), or None where there is no
        ``nvidia-smi``, no such device or the query fails.
    """
    command = shutil.which("nvidia-smi")
    if command is None:
        return None
    if index is None:
        first = os.environ.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0].strip()
        index = int(first) if first.isdigit() else 0
    try:
        result = subprocess.run([command, f"--id={index}", "--query-gpu=memory.total",
                                 "--format=csv,noheader,nounits"], capture_output=True,
                                text=True, timeout=30, check=True)
        return float(result.stdout.strip().splitlines()[0]) / 1024.0  # MiB
    except (OSError, subprocess.SubprocessError, ValueError, IndexError) as err:
        log.warning("device_memory_gb: nvidia-smi gave no memory for device %d (%s)", index, err)
        return None
