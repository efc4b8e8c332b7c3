"""The learned skim of the analysis: rectangular cuts optimised for the final result.

Watts (CHEP 2023, EPJ Web Conf. 295, 09011) replaces hand-tuned preselection cuts by thresholds
learned with soft (sigmoid) cuts whose slope is annealed from soft to hard. Here the thresholds
act on the skim's event features (:class:`~analysis.config.LearnedCutsSettings`) and optimise
either

- ``"sigma_mu"``: the expected uncertainty of the signal strength of the binned likelihood of a
  discriminating feature (the config's ``discriminant``), with every systematic of the skim (JES
  and JER from the re-run selections, b-tag/ISR/FSR weights, as histosys) and the cross-section
  and luminosity normalisations (normsys); each event enters with weight ``w * cut(x)``. With
  ``mc_stat`` also the simulated samples' statistical uncertainty, as the fit has it (one
  staterror per bin, the detector replicas of one event correlated; bins the cuts empty are
  dropped); without it, nothing stops the cuts from choosing a corner of phase space that a
  few simulated events populate; or
- ``"significance"``: the Asimov discovery significance of the selected yields with a relative
  background uncertainty (Cowan's formula, :func:`~analysis.selection.objectives.asimov_significance`).

Both objectives see the yields, so a cut cannot drift without changing the loss (the failure
mode of a yield-blind loss, :mod:`analysis.relax.cuts`); thresholds start at a loose quantile of
the data so every cut starts inside the data and gets a gradient. Steps are taken in units of
each feature's interquartile range, so one learning rate serves GeV and jet counts alike.

:func:`selection_tradeoff` then scans the family of selections between "no cut" and (beyond) the
learned one with hard cuts, giving the data size kept, the signal efficiency and the expected
``sigma_mu`` of each, so the analyst can choose the trade-off.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from analysis.config import LearnedCutsSettings
from analysis.errors import EmptySelectionError, FitError, InputDataError
from analysis.relax.cut_config import config_cuts, hard_cut_mask, initial_cuts
from analysis.relax.cuts import LearnableCuts, slope_schedule
from analysis.relax.likelihood import sigma_mu
from analysis.selection.cut_samples import SelectionSamples
from analysis.selection.objectives import asimov_significance, selected_yield
from analysis.training.losses import binned_model_from_scores

__all__ = [
    "LearnedSelection",
    "TradeoffPoint",
    "learn_selection",
    "selection_mask",
    "selection_tradeoff",
]

log = logging.getLogger(__name__)

_DTYPE = torch.float64  # yields and likelihoods in double precision
_Pair = tuple[torch.Tensor, torch.Tensor]


@dataclass
class LearnedSelection:
    """Learned thresholds and how they were found.

    Attributes:
        features, directions: the cuts (``">"`` keeps larger values).
        thresholds: learned thresholds, in feature units.
        initial_thresholds: where training started (the ``initial_quantile`` of the data).
        loose_thresholds: thresholds that keep every event (the "no cut" end of the trade-off).
        objective: ``"sigma_mu"`` (POI units, minimised) or ``"significance"`` (maximised).
        history: objective value of the soft selection before each step.
        slopes: the annealed slope of each step (per unit of interquartile range).
        hard_value: the objective of the hard cuts at ``thresholds``.
        initial_hard_value: the objective of the hard cuts at ``initial_thresholds``.
    """

    features: tuple[str, ...]
    directions: tuple[str, ...]
    thresholds: tuple[float, ...]
    initial_thresholds: tuple[float, ...]
    loose_thresholds: tuple[float, ...]
    objective: str
    history: list[float] = field(default_factory=list)
    slopes: list[float] = field(default_factory=list)
    hard_value: float = math.nan
    initial_hard_value: float = math.nan

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (lists of floats)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LearnedSelection:
        """Inverse of :meth:`as_dict`."""
        fields = {f.name for f in dataclasses.fields(cls)}
        values = {k: tuple(v) if isinstance(v, list) and k not in ("history", "slopes") else v
                  for k, v in data.items() if k in fields}
        return cls(**values)

    def summary(self) -> str:
        """One line: the cuts and the hard objective before and after.

        Example:
            >>> LearnedSelection(("ht",), (">",), (312.5,), (250.0,), (0.0,), "sigma_mu",
            ...                  hard_value=0.41, initial_hard_value=0.5).summary()
            'ht > 312.5; sigma_mu 0.5 -> 0.41'
        """
        cuts = ", ".join(f"{f} {d} {t:.4g}" for f, d, t in zip(
            self.features, self.directions, self.thresholds, strict=True))
        return (f"{cuts}; {self.objective} {self.initial_hard_value:.4g} -> "
                f"{self.hard_value:.4g}")

    def at(self, t: float) -> tuple[float, ...]:
        """Thresholds ``loose + t * (learned - loose)``: ``t = 0`` no cut, ``t = 1`` learned."""
        return tuple(lo + t * (hi - lo) for lo, hi in zip(self.loose_thresholds, self.thresholds,
                                                           strict=True))


@dataclass(frozen=True)
class TradeoffPoint:
    """One hard selection of the trade-off scan.

    Attributes:
        t: position along the family (0: no cut, 1: the learned cuts).
        thresholds: the cuts' thresholds (feature units).
        data_fraction: fraction of skimmed events kept (all datasets, nominal).
        signal_efficiency, background_efficiency: fraction of the expected yields kept.
        sigma_mu_stat, sigma_mu: expected sigma_mu without and with systematics (and with
            ``cuts.mc_stat`` the MC statistical uncertainty) (POI units);
            NaN where the selection leaves a class empty.
        significance: Asimov significance of the selected yields (standard deviations).
    """

    t: float
    thresholds: tuple[float, ...]
    data_fraction: float
    signal_efficiency: float
    background_efficiency: float
    sigma_mu_stat: float
    sigma_mu: float
    significance: float


def _discriminant_range(samples: SelectionSamples) -> tuple[float, float]:
    """0.5 % and 99.5 % weighted quantiles of the discriminant over all classes (nominal)."""
    values = torch.cat([x[:, -1] for x in samples.x.values()]).numpy()
    weights = torch.cat(list(samples.w.values())).abs().numpy()
    order = np.argsort(values)
    cdf = np.cumsum(weights[order]) / weights.sum()
    low, high = np.interp([0.005, 0.995], cdf, values[order])
    if not high > low:
        raise InputDataError(f"LearnCuts: discriminant {samples.columns[-1]!r} is constant")
    return float(low), float(high)


class _Objective:
    """The objective of a (soft or hard) selection function ``x -> weights``."""

    def __init__(self, samples: SelectionSamples, settings: LearnedCutsSettings) -> None:
        self.samples, self.settings = samples, settings
        low, high = _discriminant_range(samples) if settings.objective == "sigma_mu" else (0, 1)
        self.low, self.span = low, high - low
        self.edges = torch.linspace(0.0, 1.0, settings.n_bins + 1, dtype=_DTYPE)
        # the discriminant does not depend on the cuts: its scores once, not at every step
        self.scores = {c: self._score(samples.x[c]) for c in samples.classes}
        self.scores_varied = {n: {c: (self._score(up[0]), self._score(down[0]))
                                  for c, (up, down) in per.items()}
                              for n, per in samples.varied.items()}

    def _score(self, x: torch.Tensor) -> torch.Tensor:
        return ((x[:, -1] - self.low) / self.span).clamp(0.0, 1.0)

    def binned(self, select: Callable[[torch.Tensor], torch.Tensor], systematics: bool):
        """The binned model of the discriminant with the selection's weights."""
        s = self.samples
        kept = {c: select(s.x[c]) for c in s.classes}
        weights = {c: s.w[c] * kept[c] for c in s.classes}
        shifted = {n: {c: ((self.scores_varied[n][c][0], up[1] * select(up[0])),
                           (self.scores_varied[n][c][1], down[1] * select(down[0])))
                       for c, (up, down) in per.items()}
                   for n, per in s.varied.items()} if systematics else None
        bandwidth = 0.5 / self.settings.n_bins  # the straight-through gradient's width
        mc_stat = systematics and self.settings.mc_stat
        if mc_stat and set(s.event_groups) != set(s.classes):
            raise InputDataError("LearnCuts: cuts.mc_stat needs each class's event groups "
                                 "(selection_samples records them)")
        # a soft cut keeps an event with probability sel: the variance of the hard selection
        # it stands for is sum w^2 sel; sum (w sel)^2 shrinks as fast as the yield and rewards
        # leaving many events half-selected (fold 0 of the demo: 6 where the hard cuts had 46)
        squares = {c: s.w[c] ** 2 * kept[c] for c in s.classes} if mc_stat else None
        return binned_model_from_scores(self.scores, weights, self.edges, bandwidth, s.signal,
                                        shifted=shifted,
                                        normsys=s.normsys if systematics else None,
                                        histogram="straight_through", staterror=mc_stat,
                                        event_groups=s.event_groups if mc_stat else None,
                                        squared_weights=squares, drop_empty=True)

    def sigma_mu(self, select: Callable[[torch.Tensor], torch.Tensor],
                 systematics: bool = True) -> torch.Tensor:
        return sigma_mu(self.binned(select, systematics))  # its empty bins already left out

    def yields(self, select: Callable[[torch.Tensor], torch.Tensor]
               ) -> tuple[torch.Tensor, torch.Tensor]:
        s = self.samples
        signal = selected_yield(select(s.x[s.signal]), s.w[s.signal])
        background = sum(selected_yield(select(s.x[c]), s.w[c]) for c in s.classes[1:])
        return signal, background  # type: ignore[return-value]

    def significance(self, select: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        signal, background = self.yields(select)
        return asimov_significance(signal, background,
                                   relative_uncertainty=self.settings.background_uncertainty,
                                   min_background=self.settings.min_background)

    def signal_efficiency(self, select: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """Fraction of the expected signal that ``select`` keeps (nominal events)."""
        s = self.samples
        return selected_yield(select(s.x[s.signal]), s.w[s.signal]) / s.w[s.signal].sum()

    def efficiency_penalty(self, select: Callable[[torch.Tensor], torch.Tensor]
                           ) -> torch.Tensor:
        """1 while the signal efficiency is at least ``min_signal_efficiency``, else
        ``exp(min_signal_penalty * shortfall / min_signal_efficiency)``: a factor on the
        objective (sigma_mu grows, the significance's minus sign keeps it a penalty only for
        sigma_mu; the significance objective has its own floor, min_background)."""
        floor = self.settings.min_signal_efficiency
        if floor <= 0 or self.settings.objective != "sigma_mu":
            return torch.ones((), dtype=_DTYPE)
        shortfall = torch.relu(floor - self.signal_efficiency(select)) / floor
        return torch.exp(self.settings.min_signal_penalty * shortfall)

    def loss(self, select: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """Minimised: sigma_mu, or minus the significance."""
        if self.settings.objective == "sigma_mu":
            return self.sigma_mu(select)
        return -self.significance(select)


def _hard_select(cuts: LearnableCuts, thresholds: Sequence[float]
                 ) -> Callable[[torch.Tensor], torch.Tensor]:
    """``x -> (n_events,)`` 0/1 of ``cuts`` at ``thresholds`` (:meth:`LearnableCuts.hard`)."""
    fixed = copy.deepcopy(cuts).to(_DTYPE)
    with torch.no_grad():
        fixed.thresholds.copy_(torch.as_tensor(list(thresholds), dtype=_DTYPE))
    return fixed.hard


def learn_selection(samples: SelectionSamples, settings: LearnedCutsSettings,
                    progress: Callable[[int], None] | None = None) -> LearnedSelection:
    """Learn the thresholds of ``settings.cuts`` by Adam on the soft-cut objective.

    Thresholds start at the ``initial_quantile`` (``">"`` cuts) or ``1 - initial_quantile``
    (``"<"``) of the pooled nominal events; the slope (per interquartile range of the feature)
    anneals geometrically from ``slope_start`` to ``slope_end``; each step moves a threshold by
    about ``learning_rate`` interquartile ranges at most.

    Args:
        samples: from :func:`~analysis.selection.cut_samples.selection_samples`.
        settings: the cuts, objective and schedule.
        progress: called with the number of steps done.

    Returns:
        The :class:`LearnedSelection`, with the hard objective before and after.

    Raises:
        EmptySelectionError: the initial cuts keep nothing. FitError: a singular likelihood.
    """
    columns = samples.columns
    x_all = torch.cat(list(samples.x.values()))
    w_all = torch.cat(list(samples.w.values()))
    cuts = initial_cuts(settings, columns, x_all.to(_DTYPE), w_all)
    initial = cuts.thresholds.detach().clone()
    scales = cuts.scales.clone()
    values = x_all[:, cuts.feature_index]
    loose = torch.where(cuts.signs > 0, values.min(dim=0).values - 1e-6 * scales,
                        values.max(dim=0).values + 1e-6 * scales)
    objective = _Objective(samples, settings)
    offset = torch.zeros_like(initial, requires_grad=True)  # in units of the scales
    optimiser = torch.optim.Adam([offset], lr=settings.learning_rate)
    slopes = slope_schedule(settings.slope_start, settings.slope_end, settings.steps)
    result = LearnedSelection(tuple(c.feature for c in settings.cuts),
                              tuple(c.direction for c in settings.cuts), (), tuple(initial.tolist()),
                              tuple(loose.tolist()), settings.objective)
    for step, slope in enumerate(slopes):
        cuts.slope = float(slope)
        thresholds = initial + offset * scales

        def soft(x: torch.Tensor, t: torch.Tensor = thresholds) -> torch.Tensor:
            return cuts.weights_at(x, t)

        optimiser.zero_grad()
        loss = objective.loss(soft) * objective.efficiency_penalty(soft)
        if not torch.isfinite(loss):
            raise FitError(f"LearnCuts: the {settings.objective} objective is not finite at step "
                           f"{step} (thresholds {thresholds.detach().tolist()})")
        loss.backward()  # type: ignore[no-untyped-call]
        optimiser.step()
        value = float(loss.detach())
        result.history.append(value if settings.objective == "sigma_mu" else -value)
        result.slopes.append(float(slope))
        if progress is not None:
            progress(step + 1)
    result.thresholds = tuple((initial + offset.detach() * scales).tolist())
    result.hard_value = _hard_value(objective, cuts, result.thresholds)
    result.initial_hard_value = _hard_value(objective, cuts, result.initial_thresholds)
    log.info("LearnCuts: %s %.4g -> %.4g (hard cuts)", settings.objective,
             result.initial_hard_value, result.hard_value)
    return result


def _hard_value(objective: _Objective, cuts: LearnableCuts, thresholds: Sequence[float]) -> float:
    select = _hard_select(cuts, thresholds)
    with torch.no_grad():
        signal, _ = objective.yields(select)
        if not float(signal) > 0:
            raise EmptySelectionError(f"LearnCuts: no signal passes the cuts {thresholds}")
    if objective.settings.objective == "sigma_mu":
        return float(objective.sigma_mu(select).detach())
    return float(objective.significance(select).detach())


def selection_tradeoff(samples: SelectionSamples, selection: LearnedSelection,
                       settings: LearnedCutsSettings, t_max: float = 1.5
                       ) -> list[TradeoffPoint]:
    """Hard selections from no cut (``t = 0``) through the learned cuts (``t = 1``) to tighter.

    Args:
        samples: from :func:`~analysis.selection.cut_samples.selection_samples`.
        selection: the learned cuts.
        settings: ``n_tradeoff_points`` and the objective's binning.
        t_max: the tightest point, in units of the learned step from "no cut".

    Returns:
        One :class:`TradeoffPoint` per ``t`` in ``linspace(0, t_max, n_tradeoff_points)``.
    """
    cuts = config_cuts(settings, samples.columns)
    sigma_settings = dataclasses.replace(settings, objective="sigma_mu")
    objective = _Objective(samples, sigma_settings)
    sig_objective = _Objective(samples, dataclasses.replace(settings, objective="significance"))
    n_total = samples.n_events
    with torch.no_grad():
        s_all, b_all = objective.yields(lambda x: torch.ones(x.shape[0], dtype=x.dtype))
    points = []
    for t in np.linspace(0.0, t_max, settings.n_tradeoff_points):
        thresholds = selection.at(float(t))
        select = _hard_select(cuts, thresholds)
        with torch.no_grad():
            kept = sum(float(select(x).sum()) for x in samples.x.values())
            s, b = objective.yields(select)
        values = []
        for systematics in (False, True):
            try:
                values.append(float(objective.sigma_mu(select, systematics).detach())
                              if float(s) > 0 and float(b) > 0 else math.nan)
            except (FitError, InputDataError):
                values.append(math.nan)  # a class emptied: no defined sigma_mu
        significance = float(sig_objective.significance(select)) if float(s) > 0 else 0.0
        points.append(TradeoffPoint(float(t), thresholds, kept / n_total, float(s / s_all),
                                    float(b / b_all), values[0], values[1], significance))
    return points


def selection_mask(columns: Mapping[str, Any], selection: LearnedSelection) -> np.ndarray:
    """Hard selection of a table: ``(n_events,)`` bool, ``True`` where every cut passes.

    Args:
        columns: column name -> ``(n_events,)`` values (e.g. a skim table).
        selection: the cuts (:func:`hard_cut_mask`).

    Raises:
        InputDataError: a cut feature missing from ``columns``.
    """
    return hard_cut_mask(columns, selection.features, selection.directions,
                         selection.thresholds)
