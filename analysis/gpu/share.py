"""GPU shares: one request model for a fraction of a GPU or whole GPUs, and its translations.

A GPU task asks for a *share*: either a fraction ``0 < f <= 1`` of ONE GPU, shared with other jobs
through NVIDIA MPS (multi-process service), or ``n >= 1`` whole GPUs. Beside it stand the device
memory the job may pin (per GPU), CPUs, host memory and a runtime. One model, three translations
(the table of ``DESIGN.md``):

=====================  =====================================  =====================  ===============
share                  HTCondor submit file                   Slurm                  local
=====================  =====================================  =====================  ===============
f < 1 of a GPU, m GB   ``request_gpus = 1`` on a divided      ``--gres=mps:<pct>``   luigi resource
                       slot, ``gpus_minimum_memory``, the                            ``gpu`` slots +
                       MPS environment                                               a managed MPS
                       (``CUDA_MPS_ACTIVE_THREAD_PERCENTAGE``,                       daemon
                       ``CUDA_MPS_PINNED_DEVICE_MEM_LIMIT``),
                       a custom attribute naming the share
n >= 1 whole GPUs      ``request_gpus = n``                   ``--gres=gpu:n``       ``CUDA_VISIBLE
                                                                                     _DEVICES``
=====================  =====================================  =====================  ===============

Every translation is a pure function returning data (submit lines, command-line options, an
environment); writing files and submitting is the caller's job (``tasks/``). A fraction of exactly
1 is treated as one whole GPU. Units: "GB" means GiB (2**30 bytes), as HTCondor's ``MB`` (2**20
bytes) and the ``G`` suffix of ``CUDA_MPS_PINNED_DEVICE_MEM_LIMIT`` count them; the thread
percentage and Slurm's ``mps`` count are ``round(100 * f)`` (Slurm's ``gres.conf`` gives each GPU
``Count=100`` mps units, so one unit is one percent). Inside a job the allocated GPU is device 0
(HTCondor and Slurm set ``CUDA_VISIBLE_DEVICES``), hence the ``0=`` of the memory limit.

Errors: an impossible request (``f <= 0``, ``f > 1`` that is not a whole number, a fraction that
rounds to 0 %, memory beyond the card, non-positive CPUs, memory or runtime) raises
:class:`~analysis.errors.ResourceError` naming the value and the limit; a site section whose extra
lines collide with generated ones raises :class:`~analysis.errors.ConfigError`. The CPUs, host
memory and runtime translate as every batch job's do (:mod:`analysis.batch`, whose
:class:`~analysis.batch.HTCondorSite` is re-exported here).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from analysis.batch import (
    HTCondorSite,
    JobResources,
    htcondor_resource_lines,
    slurm_resource_options,
)
from analysis.errors import ResourceError

__all__ = [
    "MIN_FRACTION",
    "GpuShare",
    "HTCondorSite",
    "htcondor_submit_lines",
    "local_environment",
    "luigi_gpu_slots",
    "mps_environment",
    "slurm_options",
]

MIN_FRACTION = 0.01
"""Smallest share of one GPU: one percent of its threads (MPS and Slurm count whole percents)."""

_MB_PER_GB = 1024
_PERCENT = 100


@dataclass(frozen=True)
class GpuShare:
    """A share of ONE GPU (``fraction``) or ``n_gpus`` whole GPUs, with the job's other resources.

    Attributes:
        fraction: share of one GPU, ``0.01 <= fraction <= 1``, with ``n_gpus == 1``; ``None`` for
            whole GPUs.
        n_gpus: number of whole GPUs (1 for a fraction).
        memory_gb: device memory the job may pin, per GPU, in GiB.
        cpus: CPU cores.
        host_memory_gb: host memory in GiB.
        runtime_minutes: wall-clock limit in minutes.

    Raises:
        ResourceError: if a value is out of its range (see :meth:`parse` for the card memory).

    Example:
        >>> GpuShare(0.25, 1, memory_gb=8, cpus=2, host_memory_gb=4, runtime_minutes=60).spec
        '0.25'
    """

    fraction: float | None
    n_gpus: int
    memory_gb: float
    cpus: int
    host_memory_gb: float
    runtime_minutes: int

    def __post_init__(self) -> None:
        f = self.fraction
        if f is not None:
            if not (math.isfinite(f) and MIN_FRACTION <= f <= 1):
                raise ResourceError(f"GPU share fraction = {f}: must be a share of one GPU, "
                                    f"{MIN_FRACTION} <= fraction <= 1 (more than one GPU: ask "
                                    f"for a whole number of GPUs)")
            if self.n_gpus != 1:
                raise ResourceError(f"GPU share fraction = {f} with n_gpus = {self.n_gpus}: a "
                                    f"fraction is a share of ONE GPU, n_gpus must be 1")
        if isinstance(self.n_gpus, bool) or not isinstance(self.n_gpus, int) or self.n_gpus < 1:
            raise ResourceError(f"GPU share n_gpus = {self.n_gpus!r}: must be an integer >= 1")
        _check_positive("memory_gb", self.memory_gb, "GiB")
        _check_positive("host_memory_gb", self.host_memory_gb, "GiB")
        if isinstance(self.cpus, bool) or not isinstance(self.cpus, int) or self.cpus < 1:
            raise ResourceError(f"GPU share cpus = {self.cpus!r}: must be an integer >= 1")
        if (isinstance(self.runtime_minutes, bool) or not isinstance(self.runtime_minutes, int)
                or self.runtime_minutes < 1):
            raise ResourceError(f"GPU share runtime_minutes = {self.runtime_minutes!r}: must be "
                                f"an integer >= 1")

    @classmethod
    def parse(cls, spec: str, *, memory_gb: float | None = None, cpus: int = 1,
              host_memory_gb: float = 4.0, runtime_minutes: int = 60,
              card_memory_gb: float | None = None) -> GpuShare:
        """Read a share from a string: ``"0.25"`` (a quarter of one GPU), ``"1"``, ``"2"`` (GPUs).

        Args:
            spec: a number; ``0 < x < 1`` is a fraction of one GPU, a whole number ``x >= 1``
                (``"2"`` or ``"2.0"``) is that many whole GPUs.
            memory_gb: device memory per GPU in GiB; default ``x * card_memory_gb`` for a fraction,
                the whole card for whole GPUs (then ``card_memory_gb`` is required).
            cpus: CPU cores.
            host_memory_gb: host memory in GiB.
            runtime_minutes: wall-clock limit in minutes.
            card_memory_gb: memory of one card in GiB (80 for an H100); ``memory_gb`` must not
                exceed it. ``None`` skips that check.

        Returns:
            The share.

        Raises:
            ResourceError: if ``spec`` is not a number, ``<= 0``, ``> 1`` and not whole, below
                one percent, or the memory exceeds the card (or cannot be defaulted).

        Example:
            >>> GpuShare.parse("0.25", card_memory_gb=80).memory_gb
            20.0
            >>> GpuShare.parse("2", memory_gb=40).n_gpus
            2
            >>> GpuShare.parse("1.5", memory_gb=8)  # doctest: +ELLIPSIS
            Traceback (most recent call last):
            ...
            analysis.errors.ResourceError: GPU share '1.5': ... whole number of GPUs (1, 2, ...)...
        """
        try:
            value = float(spec)
        except (TypeError, ValueError) as err:
            raise ResourceError(f"GPU share {spec!r}: not a number; expected a fraction of one "
                                f"GPU (e.g. '0.25') or a whole number of GPUs (e.g. '2')") from err
        if not math.isfinite(value) or value <= 0:
            raise ResourceError(f"GPU share {spec!r}: must be > 0 (a fraction 0 < f <= 1 of one "
                                f"GPU or a whole number of GPUs), got {value}")
        if value >= 1 and not value.is_integer():
            raise ResourceError(f"GPU share {spec!r}: more than one GPU must be a whole number of "
                                f"GPUs (1, 2, ...), got {value}")
        fraction, n_gpus = (value, 1) if value < 1 else (None, int(value))
        if memory_gb is None:
            if card_memory_gb is None:
                raise ResourceError(f"GPU share {spec!r}: give memory_gb or card_memory_gb to "
                                    f"derive the device memory from")
            memory_gb = round(card_memory_gb * (fraction or 1.0), 3)
        if card_memory_gb is not None and memory_gb > card_memory_gb:
            raise ResourceError(f"GPU share {spec!r}: memory_gb = {memory_gb} GiB exceeds the "
                                f"card's {card_memory_gb} GiB")
        return cls(fraction, n_gpus, memory_gb=float(memory_gb), cpus=cpus,
                   host_memory_gb=float(host_memory_gb), runtime_minutes=runtime_minutes)

    @property
    def resources(self) -> JobResources:
        """The job's CPUs, host memory and runtime, as every batch job asks for them."""
        return JobResources(self.cpus, self.host_memory_gb, self.runtime_minutes)

    @property
    def is_fractional(self) -> bool:
        """True for a share of less than one GPU, the case that needs MPS."""
        return self.fraction is not None and self.fraction < 1

    @property
    def percent(self) -> int:
        """Percent of one GPU's threads (``round(100 * f)``; 100 per whole GPU)."""
        if self.fraction is None:
            return _PERCENT * self.n_gpus
        return max(1, round(_PERCENT * self.fraction))

    @property
    def spec(self) -> str:
        """The share as :meth:`parse` reads it: ``"0.25"`` or ``"2"``."""
        return f"{self.fraction:g}" if self.is_fractional else str(self.n_gpus)


def mps_environment(share: GpuShare) -> dict[str, str]:
    """MPS client limits of a fractional share (empty for whole GPUs).

    Example:
        >>> mps_environment(GpuShare.parse("0.25", memory_gb=8))
        {'CUDA_MPS_ACTIVE_THREAD_PERCENTAGE': '25', 'CUDA_MPS_PINNED_DEVICE_MEM_LIMIT': '0=8G'}
    """
    if not share.is_fractional:
        return {}
    return {"CUDA_MPS_ACTIVE_THREAD_PERCENTAGE": str(share.percent),
            "CUDA_MPS_PINNED_DEVICE_MEM_LIMIT": f"0={_mps_memory(share.memory_gb)}"}


def htcondor_submit_lines(share: GpuShare, site: HTCondorSite | None = None) -> dict[str, str]:
    """Submit-description commands for ``share`` on an HTCondor ``site``, in order.

    A fraction asks for one GPU of a divided slot (``GPU_DISCOVERY_EXTRA = -divide N``) and carries
    the MPS client limits in ``environment``; whole GPUs ask for ``request_gpus = n``.

    Returns:
        ``{command: value}``; ``"\\n".join(f"{k} = {v}" ...)`` is a valid submit description part.

    Raises:
        ConfigError: if a site extra line would replace a generated command.

    Example:
        >>> lines = htcondor_submit_lines(GpuShare.parse("0.5", memory_gb=40, cpus=4))
        >>> lines["request_gpus"], lines["gpus_minimum_memory"], lines["+DiffanaGpuShare"]
        ('1', '40960', '0.5')
    """
    site = site or HTCondorSite()
    lines = {
        "request_gpus": str(share.n_gpus),
        "gpus_minimum_memory": str(math.ceil(share.memory_gb * _MB_PER_GB)),
        site.share_attribute: share.spec,
    }
    env = mps_environment(share)
    if env:
        lines["environment"] = '"' + " ".join(f"{k}={v}" for k, v in env.items()) + '"'
    return htcondor_resource_lines(share.resources, site, generated=lines)


def slurm_options(share: GpuShare) -> list[str]:
    """``sbatch`` options for ``share``: ``--gres=mps:<percent>`` or ``--gres=gpu:n``, and more.

    Slurm sets ``CUDA_MPS_ACTIVE_THREAD_PERCENTAGE`` itself for an ``mps`` allocation; the pinned
    memory limit is exported explicitly.

    Example:
        >>> slurm_options(GpuShare.parse("2", memory_gb=80, cpus=8, runtime_minutes=90))
        ['--gres=gpu:2', '--cpus-per-task=8', '--mem=4096M', '--time=01:30:00']
    """
    if share.is_fractional:
        gres = [f"--gres=mps:{share.percent}", "--export=ALL,CUDA_MPS_PINNED_DEVICE_MEM_LIMIT="
                f"{mps_environment(share)['CUDA_MPS_PINNED_DEVICE_MEM_LIMIT']}"]
    else:
        gres = [f"--gres=gpu:{share.n_gpus}"]
    return gres + slurm_resource_options(share.resources)


def local_environment(share: GpuShare, device_ids: Sequence[int] | None = None) -> dict[str, str]:
    """Environment of a local job: MPS limits for a fraction, the visible devices for whole GPUs.

    Args:
        share: the share.
        device_ids: physical GPU indices to use; default ``0 .. n_gpus - 1`` for whole GPUs and
            no ``CUDA_VISIBLE_DEVICES`` for a fraction (any one GPU the MPS daemon serves).

    Raises:
        ResourceError: if ``device_ids`` does not hold exactly ``n_gpus`` distinct ids >= 0.

    Example:
        >>> local_environment(GpuShare.parse("2", memory_gb=80), device_ids=[2, 3])
        {'CUDA_VISIBLE_DEVICES': '2,3'}
    """
    env: dict[str, str] = {}
    if device_ids is None and not share.is_fractional:
        device_ids = range(share.n_gpus)
    if device_ids is not None:
        ids = list(device_ids)
        if len(ids) != share.n_gpus or len(set(ids)) != len(ids) or min(ids) < 0:
            raise ResourceError(f"GPU share {share.spec!r}: device_ids = {ids} must hold "
                                f"{share.n_gpus} distinct GPU indices >= 0")
        env["CUDA_VISIBLE_DEVICES"] = ",".join(str(i) for i in ids)
    env.update(mps_environment(share))
    return env


def luigi_gpu_slots(share: GpuShare, slots_per_gpu: int = _PERCENT) -> int:
    """Units of the luigi resource ``gpu`` that ``share`` takes, ``slots_per_gpu`` per GPU.

    With ``[resources] gpu = 100`` in ``luigi.cfg``/``law.cfg``, four 0.25 shares run at once on
    one GPU and a whole-GPU job runs alone.

    Raises:
        ResourceError: if ``slots_per_gpu < 1``.

    Example:
        >>> luigi_gpu_slots(GpuShare.parse("0.25", memory_gb=8))
        25
        >>> luigi_gpu_slots(GpuShare.parse("0.04", memory_gb=1), slots_per_gpu=10)
        1
    """
    if slots_per_gpu < 1:
        raise ResourceError(f"luigi_gpu_slots: slots_per_gpu = {slots_per_gpu}: must be >= 1")
    if share.fraction is None:
        return share.n_gpus * slots_per_gpu
    return max(1, round(share.fraction * slots_per_gpu))


def _check_positive(name: str, value: float, unit: str) -> None:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise ResourceError(f"GPU share {name} = {value!r}: must be > 0 {unit}")


def _mps_memory(memory_gb: float) -> str:
    """``8G`` for whole GiB, else MiB (``2560M``): MPS takes an integer with a unit suffix."""
    if float(memory_gb).is_integer():
        return f"{int(memory_gb)}G"
    return f"{math.ceil(memory_gb * _MB_PER_GB)}M"
