"""Batch resources of one job (CPUs, memory, runtime) and their translations for HTCondor and Slurm.

Every heavy task asks for :class:`JobResources`; a GPU task adds a share of a GPU on top
(:mod:`analysis.gpu.share`, which builds on this module). One model, two translations:

=====================  ====================================  ====================================
resource               HTCondor submit file                  Slurm job file
=====================  ====================================  ====================================
CPUs                   ``request_cpus = n``                  ``--cpus-per-task=n``
memory (GiB)           ``request_memory = <MiB>``            ``--mem=<MiB>M``
runtime (minutes)      the site's runtime attribute          ``--time=HH:MM:00``
                       (``+MaxRuntime``, seconds or minutes)
=====================  ====================================  ====================================

A site section (law.cfg's ``[htcondor_site]``, ``[slurm_site]``) may cap what a job can get
(:class:`SiteLimits`: ``max_cpus``, ``max_memory_gb``, ``max_runtime_minutes``); a request beyond
a cap is refused before anything is submitted, naming the setting and the cap. Units: "GB" means
GiB, HTCondor's and Slurm's ``M`` MiB. Every translation is a pure function returning data;
writing files and submitting is the caller's job (``tasks/``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields

from analysis.errors import ConfigError, ResourceError

__all__ = ["HTCondorSite", "JobResources", "SiteLimits", "htcondor_resource_lines",
           "slurm_resource_options"]

_MB_PER_GB = 1024
_SECONDS_PER_MINUTE = 60
_RUNTIME_UNITS = ("s", "min")


@dataclass(frozen=True)
class JobResources:
    """What one batch job of a task asks for.

    Attributes:
        cpus: CPU cores, >= 1.
        memory_gb: host memory in GiB, > 0.
        runtime_minutes: wall-clock limit in minutes, >= 1.

    Raises:
        ResourceError: a value out of its range, naming it.

    Example:
        >>> JobResources(cpus=2, memory_gb=3, runtime_minutes=90).memory_gb
        3
        >>> JobResources(cpus=0, memory_gb=3, runtime_minutes=90)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        analysis.errors.ResourceError: cpus = 0: must be an integer >= 1
    """

    cpus: int
    memory_gb: float
    runtime_minutes: int

    def __post_init__(self) -> None:
        for name in ("cpus", "runtime_minutes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ResourceError(f"{name} = {value!r}: must be an integer >= 1")
        if not (isinstance(self.memory_gb, (int, float)) and math.isfinite(self.memory_gb)
                and self.memory_gb > 0):
            raise ResourceError(f"memory_gb = {self.memory_gb!r}: must be > 0 GiB")


@dataclass(frozen=True)
class SiteLimits:
    """The most a job can get at a site; ``None``: no cap.

    Attributes:
        max_cpus: CPU cores of the largest slot or node.
        max_memory_gb: host memory in GiB of the largest slot or node.
        max_runtime_minutes: the longest wall-clock limit the site accepts.
    """

    max_cpus: int | None = None
    max_memory_gb: float | None = None
    max_runtime_minutes: int | None = None

    KEYS = ("max_cpus", "max_memory_gb", "max_runtime_minutes")

    @classmethod
    def from_section(cls, section: Mapping[str, str], name: str) -> SiteLimits:
        """Read the ``max_*`` keys of a config section (empty or absent: no cap).

        Raises:
            ConfigError: a cap that is not a positive number, naming ``[name] key``.

        Example:
            >>> SiteLimits.from_section({"max_cpus": "16", "partition": "cpu"}, "slurm_site")
            SiteLimits(max_cpus=16, max_memory_gb=None, max_runtime_minutes=None)
        """
        values: dict[str, float | int] = {}
        for spec in fields(cls):
            text = str(section.get(spec.name, "") or "").strip()
            if not text:
                continue
            try:
                value = float(text) if spec.name == "max_memory_gb" else int(text)
            except ValueError as err:
                raise ConfigError(f"law.cfg [{name}] {spec.name} = {text!r}: not a number") \
                    from err
            if value <= 0:
                raise ConfigError(f"law.cfg [{name}] {spec.name} = {text!r}: must be > 0")
            values[spec.name] = value
        return cls(**values)  # type: ignore[arg-type]

    def check(self, resources: JobResources, site: str, task: str = "the task") -> None:
        """Refuse ``resources`` that this site cannot give.

        Args:
            resources: the request.
            site: the section the caps come from (``slurm_site``), for the message.
            task: who asks, for the message (a task family and where its request comes from).

        Raises:
            ResourceError: naming the request, the cap and its setting.

        Example:
            >>> limits = SiteLimits(max_memory_gb=8)
            >>> limits.check(JobResources(1, 16, 60), "slurm_site", "Skim")  # doctest: +ELLIPSIS
            Traceback (most recent call last):
            ...
            analysis.errors.ResourceError: Skim: memory_gb = 16 GiB exceeds law.cfg [slurm_site] max_memory_gb = 8...
        """
        requests = (("cpus", resources.cpus, self.max_cpus, ""),
                    ("memory_gb", resources.memory_gb, self.max_memory_gb, " GiB"),
                    ("runtime_minutes", resources.runtime_minutes, self.max_runtime_minutes,
                     " minutes"))
        for name, value, cap, unit in requests:
            if cap is not None and value > cap:
                raise ResourceError(f"{task}: {name} = {value:g}{unit} exceeds law.cfg [{site}] "
                                    f"max_{name} = {cap:g}{unit}: ask for less (--{name.replace('_', '-')}"
                                    f" or the task's law.cfg section) or raise the site's cap")


@dataclass(frozen=True)
class HTCondorSite:
    """Site specifics of an HTCondor pool, filled by the caller from a ``law.cfg`` section.

    Attributes:
        accounting_group: ``accounting_group`` submit command, or ``None`` to leave it out.
        requirements: a ClassAd ``requirements`` expression, or ``None``.
        runtime_attribute: job attribute that carries the runtime, e.g. ``+MaxRuntime``
            (seconds, CERN) or ``+RequestWalltime``.
        runtime_unit: ``"s"`` or ``"min"``, the unit that attribute expects.
        share_attribute: job attribute that names a GPU share, e.g. ``+DiffanaGpuShare`` (GPU
            tasks only).
        extra_lines: further ``(command, value)`` submit lines, in order.
        limits: the pool's caps (``max_*`` keys of the section).
    """

    accounting_group: str | None = None
    requirements: str | None = None
    runtime_attribute: str = "+MaxRuntime"
    runtime_unit: str = "s"
    share_attribute: str = "+DiffanaGpuShare"
    extra_lines: tuple[tuple[str, str], ...] = ()
    limits: SiteLimits = SiteLimits()

    def __post_init__(self) -> None:
        if self.runtime_unit not in _RUNTIME_UNITS:
            raise ConfigError(f"HTCondor site runtime_unit = {self.runtime_unit!r}: must be one "
                              f"of {_RUNTIME_UNITS}")

    @classmethod
    def from_section(cls, section: Mapping[str, str],
                     name: str = "htcondor_site") -> HTCondorSite:
        """Build from the options of a config section (e.g. ``law.cfg``'s ``[htcondor_site]``).

        Known keys fill the attributes, ``max_*`` keys the :class:`SiteLimits`; every other key
        becomes an extra submit line, so a site adds e.g. ``+SingularityImage`` without code.
        Empty values mean "leave out".

        Raises:
            ConfigError: on a bad ``runtime_unit`` or cap, naming the section.

        Example:
            >>> section = {"accounting_group": "cms.higgs", "universe": "vanilla"}
            >>> site = HTCondorSite.from_section(section)
            >>> site.accounting_group, site.extra_lines
            ('cms.higgs', (('universe', 'vanilla'),))
        """
        known = {"accounting_group", "requirements", "runtime_attribute", "runtime_unit",
                 "share_attribute"}
        values = {k: v for k, v in section.items() if k in known and v != ""}
        extra = tuple((k, v) for k, v in section.items()
                      if k not in known and k not in SiteLimits.KEYS and v != "")
        try:
            return cls(**values, extra_lines=extra,
                       limits=SiteLimits.from_section(section, name))
        except ConfigError as err:
            raise ConfigError(f"[{name}]: {err}") from err


def htcondor_resource_lines(resources: JobResources, site: HTCondorSite | None = None,
                            generated: Mapping[str, str] | None = None) -> dict[str, str]:
    """Submit-description commands for a job with ``resources`` on an HTCondor ``site``.

    Args:
        resources: CPUs, memory, runtime.
        site: the pool's specifics; default :class:`HTCondorSite` ().
        generated: commands that come first (a GPU share's ``request_gpus`` ...); site lines may
            not replace them either.

    Returns:
        ``{command: value}`` in order; ``"\\n".join(f"{k} = {v}" ...)`` is part of a valid
        submit description. No ``request_gpus`` unless ``generated`` has it.

    Raises:
        ConfigError: a site extra line would replace a generated command.

    Example:
        >>> htcondor_resource_lines(JobResources(2, 3.5, 90))
        {'request_cpus': '2', 'request_memory': '3584', '+MaxRuntime': '5400'}
    """
    site = site or HTCondorSite()
    runtime = resources.runtime_minutes * (_SECONDS_PER_MINUTE if site.runtime_unit == "s" else 1)
    lines = dict(generated or {})
    lines.update({
        "request_cpus": str(resources.cpus),
        "request_memory": str(math.ceil(resources.memory_gb * _MB_PER_GB)),
        site.runtime_attribute: str(runtime),
    })
    if site.accounting_group:
        lines["accounting_group"] = site.accounting_group
    if site.requirements:
        lines["requirements"] = site.requirements
    for command, value in site.extra_lines:
        if command.lower() in {k.lower() for k in lines}:
            raise ConfigError(f"HTCondor site extra line {command!r}: would replace the "
                              f"generated {command!r}; set it through the task's resources or "
                              f"the site field")
        lines[command] = value
    return lines


def slurm_resource_options(resources: JobResources) -> list[str]:
    """``sbatch`` options for a job with ``resources`` (no ``--gres``).

    Example:
        >>> slurm_resource_options(JobResources(cpus=8, memory_gb=2, runtime_minutes=90))
        ['--cpus-per-task=8', '--mem=2048M', '--time=01:30:00']
    """
    hours, minutes = divmod(resources.runtime_minutes, _SECONDS_PER_MINUTE)
    return [f"--cpus-per-task={resources.cpus}",
            f"--mem={math.ceil(resources.memory_gb * _MB_PER_GB)}M",
            f"--time={hours:02d}:{minutes:02d}:00"]
