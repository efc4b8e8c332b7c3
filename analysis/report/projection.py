"""How much simulation a target sigma_mu needs, projected from one fit's uncertainty split.

A fit gives the total expected ``sigma_mu`` and the same fit without the simulated samples'
statistical uncertainty (``sigma_mu_no_mcstat``). Their quadrature difference is the MC
statistical part, whose variance falls as ``1 / N`` with the number of simulated events ``N``
(all samples scaled together, the same selection and binning):

    sigma_mc^2 = sigma_total^2 - sigma_no_mcstat^2
    sigma(k N)^2 ~= sigma_no_mcstat^2 + sigma_mc^2 / k

so the target ``sigma_t`` needs ``k = sigma_mc^2 / (sigma_t^2 - sigma_no_mcstat^2)`` times the
simulation, if ``sigma_no_mcstat < sigma_t``; otherwise no amount of simulation reaches it (the
data statistics and systematics are the floor). This is an extrapolation: a larger sample also
lets the binning get finer and the network train better, which the formula does not include.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["GenerationCost", "SimulationProjection", "generation_cost", "project_simulation",
           "projection_sentence"]


@dataclass(frozen=True)
class SimulationProjection:
    """The simulation that a target ``sigma_mu`` needs (:func:`project_simulation`).

    Attributes:
        target: the target sigma_mu (POI units).
        sigma_mu: today's total sigma_mu; ``sigma_no_mcstat`` the same without MC statistics.
        sigma_mc: their quadrature difference, the MC statistical part.
        factor: times today's simulated events that reach the target: 1 if it is reached,
            ``inf`` if the floor ``sigma_no_mcstat`` is at or above it, NaN if undetermined.
        cpu_hours: ``factor`` times today's generation CPU time, in hours (NaN if unknown).
    """

    target: float
    sigma_mu: float
    sigma_no_mcstat: float
    sigma_mc: float
    factor: float
    cpu_hours: float

    def sentence(self, n_events: int | None = None) -> str:
        """The projection in words, e.g. for the report's first section."""
        if not math.isfinite(self.sigma_mu) or not math.isfinite(self.sigma_no_mcstat):
            return (f"σ_μ ≤ {self.target:g}: not projected (σ_μ or σ_μ without MC stat. "
                    f"is undetermined).")
        if self.factor <= 1.0:
            return f"σ_μ ≤ {self.target:g} is reached (σ_μ = {self.sigma_mu:.3g})."
        split = (f"σ_μ = {self.sigma_mu:.3g} = {self.sigma_no_mcstat:.3g} (without MC stat.) "
                 f"⊕ {self.sigma_mc:.3g} (MC stat.)")
        if math.isinf(self.factor):
            return (f"σ_μ ≤ {self.target:g} is out of reach of more simulation: {split}; the "
                    f"data statistics and systematics alone give {self.sigma_no_mcstat:.3g}.")
        events = (f" ≈ {self.factor * n_events:.3g} generated events" if n_events else "")
        cost = (f", ≈ {self.cpu_hours:.3g} CPU-hours of generation at this run's cost per "
                f"event (a cluster job: GenerateEvents --workflow htcondor|slurm)"
                if math.isfinite(self.cpu_hours) else "")
        return (f"σ_μ ≤ {self.target:g} needs ≈ {self.factor:.3g}× this run's simulated "
                f"events{events}{cost}, projected from {split} with the MC statistical "
                f"variance falling as 1/N.")


def project_simulation(sigma_mu: float, sigma_no_mcstat: float, target: float = 1.0,
                       generation_cpu_seconds: float | None = None) -> SimulationProjection:
    """The factor of simulated events (and its CPU time) that brings ``sigma_mu`` to ``target``.

    Args:
        sigma_mu: total expected sigma_mu, with the MC statistical uncertainty (POI units).
        sigma_no_mcstat: the same fit without it (POI units); at most ``sigma_mu`` up to
            rounding (a larger one is taken as equal).
        target: the sigma_mu to reach, > 0.
        generation_cpu_seconds: CPU seconds that today's simulated events cost to generate;
            None: ``cpu_hours`` is NaN.

    Returns:
        :class:`SimulationProjection`.

    Raises:
        ValueError: ``target`` not finite and > 0 (a programming error: the report passes 1).

    Example:
        >>> p = project_simulation(5.0, 0.6, target=1.0, generation_cpu_seconds=3600.0)
        >>> round(p.factor, 2), round(p.cpu_hours, 1)
        (38.5, 38.5)
    """
    if not (math.isfinite(target) and target > 0):
        raise ValueError(f"project_simulation: target = {target}: must be finite and > 0")
    cost = (generation_cpu_seconds / 3600.0 if generation_cpu_seconds is not None
            else math.nan)
    if not (math.isfinite(sigma_mu) and math.isfinite(sigma_no_mcstat)):
        return SimulationProjection(target, sigma_mu, sigma_no_mcstat, math.nan, math.nan,
                                    math.nan)
    sigma_mc = math.sqrt(max(sigma_mu**2 - sigma_no_mcstat**2, 0.0))
    if sigma_mu <= target:
        factor = 1.0
    elif sigma_no_mcstat >= target:
        factor = math.inf
    else:
        factor = sigma_mc**2 / (target**2 - sigma_no_mcstat**2)
    return SimulationProjection(target, sigma_mu, sigma_no_mcstat, sigma_mc, factor,
                                factor * cost)


@dataclass(frozen=True)
class GenerationCost:
    """What this run's simulated events cost: hadronised events and CPU seconds, all chunks."""

    events: int
    cpu_seconds: float


def generation_cost(chunks: Iterable[Mapping[str, Any]]) -> GenerationCost:
    """Sum GenerateEvents' per-chunk cost records (``events``, ``cpu_seconds``).

    Example:
        >>> generation_cost([{"events": 400, "cpu_seconds": 40.0},
        ...                  {"events": 1000, "cpu_seconds": 9.5}])
        GenerationCost(events=1400, cpu_seconds=49.5)
    """
    events, seconds = 0, 0.0
    for chunk in chunks:
        events += int(chunk["events"])
        seconds += float(chunk["cpu_seconds"])
    return GenerationCost(events, seconds)


def projection_sentence(summary: Mapping[str, Mapping[str, Any]],
                        generation: GenerationCost | None, target: float = 1.0) -> str:
    """The report's sentence on the simulation that ``sigma_mu <= target`` needs.

    Projected (:func:`project_simulation`) from the network with the smallest determined total
    sigma_mu; its cost from this run's generation (``generation``; None: the events and
    CPU-hours are left out).

    Args:
        summary: network key -> record with ``sigma_mu``, ``sigma_mu_no_mcstat`` (POI units).
        generation: this run's :func:`generation_cost`.
        target: the sigma_mu to reach.
    """
    determined = [r for r in summary.values() if math.isfinite(r["sigma_mu"])]
    if not determined:
        return f"σ_μ ≤ {target:g}: not projected (no network has a determined σ_μ)."
    cpu_seconds = generation.cpu_seconds if generation is not None else None
    best = min(determined, key=lambda r: r["sigma_mu"])
    projection = project_simulation(best["sigma_mu"], best["sigma_mu_no_mcstat"], target,
                                    cpu_seconds)
    text = projection.sentence(generation.events if generation is not None else None)
    # one full fit per network, no error bar: how much the choice of network moves it
    others = [project_simulation(r["sigma_mu"], r["sigma_mu_no_mcstat"], target).factor
              for r in determined if r is not best]
    factors = sorted(f for f in others if math.isfinite(f) and f > 1)
    out_of_reach = sum(math.isinf(f) for f in others)
    if projection.factor > 1 and math.isfinite(projection.factor) and (factors or out_of_reach):
        text += " Projected from each other network instead:"
        if factors:
            text += f" {factors[0]:.3g}–{factors[-1]:.3g}× ({len(factors)})"
        if out_of_reach:
            text += (f"{';' if factors else ''} out of reach for {out_of_reach} (σ_μ without "
                     f"MC stat. ≥ {target:g})")
        text += "."
    return text
