"""Learnable cuts: thresholds relaxed into sigmoid or erf weights, annealed from soft to hard.

After G. Watts, "Learning to cut", CHEP 2023, EPJ Web Conf. 295 (2024) 09011: a cut
``feature > t`` (or ``< t``) becomes the weight ``F(slope * (feature - t) / scale)`` with ``F`` a
sigmoid or a normal CDF, a selection is the product of its cuts' weights, and the slope is raised
during training (:func:`slope_schedule`) until the soft selection equals the hard one.

Two failure modes are handled:

1. A threshold outside the data sees ``F' ~ 0`` for every event and never moves.
   :meth:`LearnableCuts.init_from_quantiles` puts each threshold at a weighted quantile of its
   feature, inside the data.
2. A loss that is blind to the selected yield (e.g. one built from normalised shapes) leaves the
   overall efficiency a flat or noise-driven direction, and the thresholds drift, typically until
   nothing is selected. Two measures hold them: the per-cut ``scales`` are frozen buffers set once
   from the initial data (never re-estimated on the selected events, which would let the
   relaxation move with the cut), and :meth:`LearnableCuts.anchor_penalty` adds
   ``anchor_strength * (eff(t) / eff(t_0) - 1)**2``, tying the soft selection efficiency at the
   current thresholds ``t`` to that at the initial ones ``t_0`` (same events, same slope, so the
   penalty is exactly 0 at ``t_0`` at every point of the schedule). A loss with a real preference
   still moves the cuts against a finite ``anchor_strength``; a yield-blind direction is pinned.

Errors: unknown ``direction``/``relaxation`` strings or feature specs raise ``ConfigError``; bad
shapes, NaN, slopes or scales <= 0, quantiles outside (0, 1) raise ``InputDataError``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from analysis.errors import ConfigError, EmptySelectionError, InputDataError

__all__ = ["DIRECTIONS", "RELAXATIONS", "LearnableCuts", "slope_schedule", "soft_cut_weight"]

DIRECTIONS: tuple[str, ...] = (">", "<")
"""``">"`` keeps events above the threshold, ``"<"`` below it (strictly, in the hard limit)."""

RELAXATIONS: tuple[str, ...] = ("sigmoid", "erf")
"""Smooth step functions; both have derivative ``slope / 4`` at the threshold."""

_ERF_FACTOR = math.sqrt(math.pi) / 4  # 0.5 * erfc(-a z) has derivative 1/4 at z = 0 for this a


def _relax(z: torch.Tensor, relaxation: str) -> torch.Tensor:
    """Smooth step of ``z`` (dimensionless): 0 for ``z -> -inf``, 1/2 at 0, 1 for ``z -> inf``."""
    if relaxation == "sigmoid":
        return torch.sigmoid(z)
    return 0.5 * torch.erfc(-_ERF_FACTOR * z)  # erfc keeps relative precision in the lower tail


def _check_options(name: str, direction: str, relaxation: str) -> None:
    """Raise ConfigError for an unknown direction or relaxation."""
    if direction not in DIRECTIONS:
        raise ConfigError(f"{name}: direction = {direction!r}: must be one of {DIRECTIONS}")
    if relaxation not in RELAXATIONS:
        raise ConfigError(f"{name}: relaxation = {relaxation!r}: must be one of {RELAXATIONS}")


def _check_slope(name: str, slope: float) -> float:
    """Return ``slope`` as a float; raise InputDataError unless finite and > 0."""
    if not (math.isfinite(value := float(slope)) and value > 0):
        raise InputDataError(f"{name}: slope = {slope}: must be finite and > 0 (per unit of scale)")
    return value


def slope_schedule(start: float, end: float, n_steps: int) -> np.ndarray:
    """Geometric slope annealing from soft (``start``) to hard (``end``) over ``n_steps`` steps.

    Args:
        start: slope of the first step, per unit of feature scale; finite and > 0.
        end: slope of the last step; finite and > 0 (``end < start`` anneals the other way).
        n_steps: number of steps, >= 1; with 1 the schedule is ``[start]``.

    Returns:
        ``(n_steps,)`` float64 slopes, ``start * (end / start) ** (k / (n_steps - 1))``.

    Raises:
        InputDataError: if a slope is not finite and > 0, or ``n_steps < 1``.

    Example:
        >>> slope_schedule(1.0, 100.0, 3)
        array([  1.,  10., 100.])
    """
    _check_slope("slope_schedule (start)", start)
    _check_slope("slope_schedule (end)", end)
    if isinstance(n_steps, bool) or not isinstance(n_steps, (int, np.integer)) or n_steps < 1:
        raise InputDataError(f"slope_schedule: n_steps = {n_steps!r}: must be an integer >= 1")
    return np.geomspace(float(start), float(end), int(n_steps))


def soft_cut_weight(values: torch.Tensor, threshold: torch.Tensor | float, slope: float,
                    direction: str = ">", relaxation: str = "sigmoid",
                    scale: torch.Tensor | float = 1.0) -> torch.Tensor:
    """Relaxed cut ``F(±slope * (values - threshold) / scale)``, differentiable in the threshold.

    Args:
        values: ``(...)`` feature values in feature units (e.g. GeV).
        threshold: cut value in feature units; a float or a tensor broadcastable to ``values``.
        slope: steepness per unit of ``scale``; finite and > 0. The weight goes from 0.27 to 0.73
            (sigmoid) over ``2 * scale / slope`` around the threshold.
        direction: ``">"`` keeps ``values > threshold``, ``"<"`` keeps ``values < threshold``.
        relaxation: ``"sigmoid"`` (logistic) or ``"erf"`` (normal CDF, same slope at threshold).
        scale: feature spread in feature units (e.g. an IQR), > 0; float or broadcastable tensor.

    Returns:
        ``(...)`` weights in ``[0, 1]``, shape and dtype of ``values``.

    Raises:
        ConfigError: for an unknown ``direction`` or ``relaxation``.
        InputDataError: if ``slope`` or ``scale`` is not > 0, or shapes do not broadcast to
            ``values``.

    Example:
        >>> soft_cut_weight(torch.tensor([10.0, 25.0, 40.0]), 25.0, slope=1e3, scale=10.0)
        tensor([0.0000, 0.5000, 1.0000])
    """
    name = "soft_cut_weight"
    _check_options(name, direction, relaxation)
    slope = _check_slope(name, slope)
    if not isinstance(values, torch.Tensor) or not values.is_floating_point():
        raise InputDataError(f"{name}: values must be a floating-point tensor")
    threshold_t = torch.as_tensor(threshold).to(values)
    scale_t = torch.as_tensor(scale).to(values)
    problem = (f"{name}: threshold {tuple(threshold_t.shape)} and scale {tuple(scale_t.shape)} "
               f"do not broadcast to values {tuple(values.shape)}")
    try:
        shape = np.broadcast_shapes(values.shape, threshold_t.shape, scale_t.shape)
    except ValueError as err:
        raise InputDataError(problem) from err
    if shape != tuple(values.shape):
        raise InputDataError(problem)
    if not bool((scale_t > 0).all()):
        raise InputDataError(f"{name}: scale must be > 0 (feature units)")
    sign = 1.0 if direction == ">" else -1.0
    return _relax(sign * slope * (values - threshold_t) / scale_t, relaxation)


def _weighted_quantiles(values: torch.Tensor, weights: torch.Tensor,
                        quantiles: torch.Tensor) -> torch.Tensor:
    """Weighted quantiles ``(n_q,)`` of ``values (n,)`` with weights ``(n,) >= 0``, interpolated."""
    keep = weights > 0
    values, weights = values[keep], weights[keep]
    order = torch.argsort(values)
    values, weights = values[order], weights[order]
    cdf = (torch.cumsum(weights, 0) - 0.5 * weights) / weights.sum()  # mid-point ECDF
    if values.numel() == 1:
        return values.expand(quantiles.shape).clone()
    upper = torch.searchsorted(cdf, quantiles).clamp(1, values.numel() - 1)
    lower = upper - 1
    span = (cdf[upper] - cdf[lower]).clamp_min(torch.finfo(cdf.dtype).tiny)
    frac = ((quantiles - cdf[lower]) / span).clamp(0.0, 1.0)
    return values[lower] + frac * (values[upper] - values[lower])


class LearnableCuts(nn.Module):
    """A selection of rectangular cuts with learnable thresholds (Watts, EPJ Web Conf. 295, 09011).

    The weight of event ``j`` is ``prod_k F(s_k * slope * (x[j, f_k] - t_k) / scale_k)`` with
    ``s_k = +1`` for ``">"`` and ``-1`` for ``"<"``. Thresholds ``t_k`` (the ``thresholds``
    parameter) live in feature units; ``scales`` (a frozen buffer, feature units) make one
    ``slope`` mean the same steepness for features of different units. Set ``slope`` from
    :func:`slope_schedule` during training; :meth:`hard` is the final selection.

    Anti-drift (module docstring, failure mode 2): ``scales`` stay as :meth:`init_from_quantiles`
    set them; :meth:`anchor_penalty`, added to a yield-blind loss, pins the efficiency to that of
    ``anchor_thresholds``. Adam moves a threshold ~``lr`` feature units a step: scale ``lr``.

    Args:
        features: columns of ``x`` to cut on, as indices, or as names when ``columns`` is given.
            A feature may appear twice (a window: one ``">"`` and one ``"<"`` cut).
        directions: one of :data:`DIRECTIONS` per feature, or one string for all.
        relaxation: ``"sigmoid"`` or ``"erf"``.
        columns: names of the ``n_features`` columns of ``x``; required for named features.
        slope: initial steepness per unit of scale, > 0.
        anchor_strength: weight of :meth:`anchor_penalty`, >= 0.

    Raises:
        ConfigError: for unknown directions or relaxation, no features, unknown names, negative
            indices, or a length mismatch between features and directions.
        InputDataError: for ``slope <= 0`` or ``anchor_strength < 0``.

    Example:
        >>> cuts = LearnableCuts(["pt", "eta"], [">", "<"], columns=["pt", "eta"], slope=1e3)
        >>> x = torch.tensor([[10.0, 0.5], [40.0, 0.5], [50.0, 3.0], [60.0, -1.0]])
        >>> cuts.init_from_quantiles(x, quantile=[0.3, 0.7])
        >>> cuts.thresholds.data, cuts.hard(x)
        (tensor([31.0000,  1.2500]), tensor([0., 1., 0., 1.]))
    """

    thresholds: nn.Parameter
    scales: torch.Tensor
    signs: torch.Tensor
    feature_index: torch.Tensor
    anchor_thresholds: torch.Tensor

    def __init__(self, features: Sequence[int] | Sequence[str], directions: Sequence[str] | str,
                 relaxation: str = "sigmoid", *, columns: Sequence[str] | None = None,
                 slope: float = 1.0, anchor_strength: float = 0.0) -> None:
        super().__init__()
        name = "LearnableCuts"
        feature_list: list[int | str] = list(features)
        if not feature_list:
            raise ConfigError(f"{name}: features is empty: need at least one cut")
        if isinstance(directions, str):
            directions = [directions] * len(feature_list)
        directions = list(directions)
        if len(directions) != len(feature_list):
            raise ConfigError(f"{name}: {len(feature_list)} features, {len(directions)} directions")
        for direction in directions:
            _check_options(name, direction, relaxation)
        self.columns = list(columns) if columns is not None else None
        self.feature_names = [str(f) for f in feature_list]
        self.relaxation = relaxation
        self.directions = directions
        self.slope = slope
        if not (math.isfinite(anchor_strength) and anchor_strength >= 0):
            raise InputDataError(f"{name}: anchor_strength = {anchor_strength}: must be >= 0")
        self.anchor_strength = float(anchor_strength)
        n_cuts = len(feature_list)
        self.thresholds = nn.Parameter(torch.zeros(n_cuts))
        index = self._resolve(feature_list)
        self._n_columns_needed = max(index) + 1
        self.register_buffer("feature_index", torch.tensor(index))
        self.register_buffer("signs", torch.tensor([1.0 if d == ">" else -1.0 for d in directions]))
        self.register_buffer("scales", torch.ones(n_cuts))
        self.register_buffer("anchor_thresholds", torch.full((n_cuts,), float("nan")))

    def _resolve(self, features: list[int | str]) -> list[int]:
        """Column index of every feature."""
        columns = self.columns
        if all(isinstance(f, str) for f in features):
            missing = [f for f in features if columns is None or f not in columns]
            if columns is None or missing:
                raise ConfigError(f"LearnableCuts: features {missing} not in columns {columns}; "
                                  f"named features need columns")
            return [columns.index(str(f)) for f in features]
        indices = [int(f) for f in features
                   if isinstance(f, (int, np.integer)) and not isinstance(f, bool)]
        if len(indices) != len(features):
            raise ConfigError(f"LearnableCuts: features {features} must be all indices or names")
        n_columns = len(columns) if columns is not None else None
        bad = [i for i in indices if i < 0 or (n_columns is not None and i >= n_columns)]
        if bad:
            raise ConfigError(f"LearnableCuts: feature indices {bad} out of range")
        return indices

    @property
    def slope(self) -> float:
        """Steepness per unit of feature scale (dimensionless), > 0; set by the schedule."""
        return self._slope

    @slope.setter
    def slope(self, value: float) -> None:
        self._slope = _check_slope("LearnableCuts", value)

    def _cut_values(self, x: torch.Tensor, name: str) -> torch.Tensor:
        """Validate ``x (n_events, n_features)``; return its ``(n_events, n_cuts)`` cut columns."""
        if not isinstance(x, torch.Tensor) or x.dim() != 2 or not x.is_floating_point():
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise InputDataError(f"LearnableCuts.{name}: x must be a floating (n_events, "
                                 f"n_features) tensor, got {shape}")
        if self.columns is not None and x.shape[1] != len(self.columns):
            raise InputDataError(f"LearnableCuts.{name}: x has {x.shape[1]} feature columns, "
                                 f"expected exactly {len(self.columns)} ({self.columns})")
        if x.shape[1] < self._n_columns_needed:
            raise InputDataError(f"LearnableCuts.{name}: x has {x.shape[1]} feature columns, "
                                 f"expected at least {self._n_columns_needed}")
        return x[:, self.feature_index.to(x.device)]

    def _event_weights(self, x: torch.Tensor, weights: torch.Tensor | None, name: str
                       ) -> torch.Tensor:
        """Return ``(n_events,)`` weights in the dtype of ``x``, checked; ones if None."""
        if weights is None:
            return torch.ones(x.shape[0], dtype=x.dtype, device=x.device)
        if not isinstance(weights, torch.Tensor) or weights.shape != (x.shape[0],):
            shape = tuple(weights.shape) if isinstance(weights, torch.Tensor) else weights
            raise InputDataError(f"LearnableCuts.{name}: weights must be ({x.shape[0]},), "
                                 f"got {shape}")
        return weights.to(x.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Soft selection: ``(n_events,)`` weights in ``[0, 1]``, dtype and device of ``x``.

        Raises ``InputDataError`` unless ``x`` is a floating ``(n_events, n_features)`` tensor.
        """
        return self._soft(self._cut_values(x, "forward"), self.thresholds)

    def weights_at(self, x: torch.Tensor, thresholds: torch.Tensor) -> torch.Tensor:
        """Soft selection ``(n_events,)`` at other ``thresholds (n_cuts,)`` (feature units).

        For a reparametrised optimisation (e.g. steps in units of ``scales``): differentiable in
        ``thresholds``; the module's own thresholds are not used.
        """
        if thresholds.shape != self.thresholds.shape:
            raise InputDataError(f"LearnableCuts.weights_at: thresholds {tuple(thresholds.shape)},"
                                 f" expected {tuple(self.thresholds.shape)}")
        return self._soft(self._cut_values(x, "weights_at"), thresholds)

    def _soft(self, values: torch.Tensor, thresholds: torch.Tensor) -> torch.Tensor:
        """Soft weights ``(n_events,)`` of cut columns ``(n_events, n_cuts)`` at ``thresholds``."""
        z = self.slope * self.signs.to(values) * (values - thresholds.to(values))
        return _relax(z / self.scales.to(values), self.relaxation).prod(dim=1)

    def hard(self, x: torch.Tensor) -> torch.Tensor:
        """Hard selection: ``(n_events,)`` 0/1 in the dtype of ``x (n_events, n_features)``."""
        values = self._cut_values(x, "hard")
        margin = self.signs.to(x) * (values - self.thresholds.detach().to(x))
        return (margin > 0).all(dim=1).to(x.dtype)

    @torch.no_grad()
    def init_from_quantiles(self, x: torch.Tensor, weights: torch.Tensor | None = None,
                            quantile: float | Sequence[float] = 0.5) -> None:
        """Start each threshold at a weighted quantile of its feature; set scales and the anchor.

        Threshold ``k`` becomes the ``quantile[k]`` quantile of its feature under ``|weights|``
        (so a ``">"`` cut alone keeps ``1 - quantile`` of the weight, a ``"<"`` cut ``quantile``);
        ``scales[k]`` becomes the feature's weighted interquartile range (its standard deviation
        if the IQR is 0); ``anchor_thresholds`` become a copy of the thresholds.

        Args:
            x: ``(n_events, n_features)`` features of the training sample.
            weights: ``(n_events,)`` event weights (default 1); must have a positive sum.
            quantile: one value in ``(0, 1)`` for all cuts, or one per cut.

        Raises:
            InputDataError: for bad shapes, NaN features, non-finite weights, a non-positive
                weight sum, quantiles outside ``(0, 1)``, or a constant feature.
            EmptySelectionError: if no weight passes the initial hard selection.
        """
        name = "init_from_quantiles"
        values = self._cut_values(x, name)
        w = self._event_weights(x, weights, name)
        total = float(w.sum())  # 0 without events, non-finite with a non-finite weight
        if bool(torch.isnan(values).any()) or not (math.isfinite(total) and total > 0):
            raise InputDataError(f"LearnableCuts.{name}: need NaN-free features and finite "
                                 f"weights with a positive sum, got sum {total}")
        n_cuts = self.thresholds.numel()
        if isinstance(quantile, (int, float)):
            quantile = [quantile] * n_cuts
        q_list = [float(q) for q in quantile]
        if len(q_list) != n_cuts or not all(0 < q < 1 for q in q_list):
            raise InputDataError(f"LearnableCuts.{name}: quantile = {quantile}: need one value, or "
                                 f"{n_cuts}, each in (0, 1)")
        thresholds, scales = torch.empty_like(values[0]), torch.empty_like(values[0])
        for k, q in enumerate(q_list):  # into locals first: an error leaves the module unchanged
            quantiles = torch.tensor([q, 0.25, 0.75], dtype=x.dtype, device=x.device)
            thresholds[k], low, high = _weighted_quantiles(values[:, k], w.abs(), quantiles)
            mean = (w.abs() * values[:, k]).sum() / w.abs().sum()
            std = ((w.abs() * (values[:, k] - mean) ** 2).sum() / w.abs().sum()).sqrt()
            scales[k] = high - low if float(high - low) > 0 else std  # IQR, else std
            if not float(scales[k]) > 0:
                raise InputDataError(f"LearnableCuts.{name}: feature {self.feature_names[k]!r} "
                                     f"is constant: cannot cut on it or set its scale")
        passed = (self.signs.to(x) * (values - thresholds) > 0).all(dim=1)
        if not float((w * passed).sum()) > 0:
            raise EmptySelectionError(f"LearnableCuts.{name}: no weight passes the initial cuts "
                                      f"at quantiles {q_list}")
        self.thresholds.copy_(thresholds)
        self.scales.copy_(scales)
        self.anchor_thresholds.copy_(thresholds)

    def anchor_penalty(self, x: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
        """Anti-drift penalty ``anchor_strength * (eff(t) / eff(t_0) - 1)**2``.

        ``eff(t) = sum(w * soft(x; t)) / sum(w)`` at the current ``slope``, ``t`` the thresholds,
        ``t_0`` the ``anchor_thresholds``; ``eff(t_0)`` is taken on the same events, no gradient.

        Args:
            x: ``(n_events, n_features)`` features.
            weights: ``(n_events,)`` event weights (default 1).

        Returns:
            Scalar tensor (dimensionless) in the dtype of ``x``, differentiable in
            ``thresholds``; 0 if ``anchor_strength`` is 0.

        Raises:
            InputDataError: for bad shapes, or if no anchor was set (call
                :meth:`init_from_quantiles` first) while ``anchor_strength > 0``.
            EmptySelectionError: if nothing passes the anchor cuts in ``x``.
        """
        values = self._cut_values(x, "anchor_penalty")
        w = self._event_weights(x, weights, "anchor_penalty")
        if self.anchor_strength == 0:
            return x.new_zeros(())
        with torch.no_grad():
            reference = (w * self._soft(values, self.anchor_thresholds)).sum()
        state = reference.item()  # NaN: no anchor yet
        if math.isnan(state):
            raise InputDataError("LearnableCuts.anchor_penalty: no anchor thresholds: call "
                                 "init_from_quantiles first")
        if not state > 0:
            raise EmptySelectionError("LearnableCuts.anchor_penalty: no weight passes the anchor "
                                      "cuts in these events")
        current = (w * self._soft(values, self.thresholds)).sum()
        return self.anchor_strength * (current / reference - 1.0) ** 2

    def extra_repr(self) -> str:
        """One-line summary for ``repr``: the cuts, relaxation and slope."""
        cuts = ", ".join(f"{f} {d}" for f, d in zip(self.feature_names, self.directions,
                                                    strict=True))
        return f"cuts=[{cuts}], relaxation={self.relaxation!r}, slope={self.slope:g}"
