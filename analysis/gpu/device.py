"""Which CUDA devices a process sees, without creating a CUDA context (safe before a fork)."""

from __future__ import annotations

import logging

__all__ = ["gpu_count"]

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
