"""Watts' two-feature cut toy: learned rectangular cuts against a fine grid scan of the same cuts.

Toy (G. Watts, "Differentiable Programming: Neural Networks and Selection Cuts Working Together",
CHEP 2023, EPJ Web Conf. 295 (2024) 09011; the sample definition is that of the paper's code,
github.com/gordonwatts/diff-prog-intro, ``book/samples.py``): signal ``N((1.5, 2), [[0.5, 0.2],
[0.2, 0.5]])``, background ``N(0, 9 I)``, 10k events each. Each sample is normalised to 10k
expected events (``weight = 10000 / n``), so at full size every event has weight 1, the
unweighted counts that code uses.

Cuts: ``lo_0 < x_0 < hi_0`` and ``lo_1 < x_1 < hi_1`` (:class:`LearnableCuts`, sigmoid), learned
with Adam for S/sqrt(B) and for the Asimov significance with a 10 % background uncertainty
(:mod:`analysis.selection.objectives`), from quantile initialisations (a few restarts), with the
slope annealed geometrically from soft to hard. Both objectives floor the background at
``MIN_BACKGROUND`` expected events (the tiny-``b`` divergence of a finite sample); the grid uses
the same objective functions, so the same floor.

Grid: the four thresholds over all combinations, exactly (per-threshold indicator matrices and
2-D tables of weighted counts, ``count = A[hi0, hi1] - B[lo0, hi1] - C[hi0, lo1] + D[lo0, lo1]``),
first ``COARSE_POINTS`` values per threshold over the signal's central ``1 - 2 * COARSE_TAIL``,
then ``FINE_STEP`` steps within ``FINE_HALF_WIDTH`` of the best, repeated while the best lies on
the edge of the fine window. The learned cuts' hard value is computed with ``LearnableCuts.hard``
on the very events the grid scans. ``benchmarks/reproduce_watts_cuts.py`` prints the table.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from analysis.relax.cuts import LearnableCuts, slope_schedule
from analysis.selection.objectives import (
    asimov_significance,
    s_over_sqrt_b,
    selected_yield,
)

__all__ = [
    "BACKGROUND_COV",
    "BACKGROUND_MEAN",
    "CHUNK",
    "COARSE_POINTS",
    "COARSE_TAIL",
    "DIRECTIONS",
    "EXPECTED_EVENTS",
    "FEATURES",
    "FINE_HALF_WIDTH",
    "FINE_STEP",
    "INIT_QUANTILES",
    "MAX_REFINE",
    "MIN_BACKGROUND",
    "NAMES",
    "N_CANDIDATES",
    "N_TOP",
    "OBJECTIVES",
    "RELATIVE_UNCERTAINTY",
    "Result",
    "SIGNAL_COV",
    "SIGNAL_MEAN",
    "SLOPE_END",
    "SLOPE_STARTS",
    "Sample",
    "grid_scan",
    "hard_result",
    "learn_cuts",
    "new_cuts",
    "scan",
    "toy_sample",
]

SIGNAL_MEAN = (1.5, 2.0)
SIGNAL_COV = ((0.5, 0.2), (0.2, 0.5))
BACKGROUND_MEAN = (0.0, 0.0)
BACKGROUND_COV = ((9.0, 0.0), (0.0, 9.0))
EXPECTED_EVENTS = 10_000.0  # each sample normalised to this many expected events
MIN_BACKGROUND = 10.0  # expected background events: floor of both objectives
RELATIVE_UNCERTAINTY = 0.1  # sigma_b / b of the Asimov objective

FEATURES = (0, 0, 1, 1)
DIRECTIONS = (">", "<", ">", "<")
NAMES = ("lo_0", "hi_0", "lo_1", "hi_1")
INIT_QUANTILES = (0.05, 0.15, 0.25, 0.35)  # signal quantile q for lower, 1 - q for upper cuts
SLOPE_STARTS = (0.5, 10.0)  # per unit of the feature's signal IQR; restarts: quantiles x starts
SLOPE_END = 300.0
LR_START, LR_END = 0.05, 0.002  # feature units per Adam step, geometric decay

COARSE_POINTS = 81
COARSE_TAIL = 1e-3
FINE_STEP = 0.005  # feature units; the signal's standard deviation is 0.71
FINE_HALF_WIDTH = 0.1
MAX_REFINE = 4
N_CANDIDATES = 3  # distinct coarse optima (>= 2 coarse steps apart) refined
N_TOP = 200  # best coarse combinations the candidates are drawn from
CHUNK = 4  # lower-edge values of feature 0 per vectorised block

Objective = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
OBJECTIVES: dict[str, Objective] = {
    "S/sqrt(B)": functools.partial(s_over_sqrt_b, min_background=MIN_BACKGROUND),
    "Z_A (10 % bkg)": functools.partial(asimov_significance,
                                        relative_uncertainty=RELATIVE_UNCERTAINTY,
                                        min_background=MIN_BACKGROUND),
}


@dataclass(frozen=True)
class Sample:
    """Signal and background features ``(n, 2)`` and weights ``(n,)``, float64."""

    x_sig: torch.Tensor
    w_sig: torch.Tensor
    x_bkg: torch.Tensor
    w_bkg: torch.Tensor


@dataclass(frozen=True)
class Result:
    """Thresholds ``(lo_0, hi_0, lo_1, hi_1)`` and their hard value, s and b."""

    thresholds: tuple[float, float, float, float]
    value: float
    s: float
    b: float


def toy_sample(n_per_class: int, generator: torch.Generator) -> Sample:
    """Watts' toy with ``n_per_class`` events per class, each class weighted to 10k events."""
    def draw(mean: Sequence[float], cov: Sequence[Sequence[float]]) -> torch.Tensor:
        chol = torch.linalg.cholesky(torch.tensor(cov, dtype=torch.float64))
        z = torch.randn(n_per_class, 2, generator=generator, dtype=torch.float64)
        return torch.tensor(mean, dtype=torch.float64) + z @ chol.T

    weight = torch.full((n_per_class,), EXPECTED_EVENTS / n_per_class, dtype=torch.float64)
    return Sample(draw(SIGNAL_MEAN, SIGNAL_COV), weight, draw(BACKGROUND_MEAN, BACKGROUND_COV),
                  weight.clone())


def new_cuts() -> LearnableCuts:
    """Lower and upper cut on each of the two features."""
    return LearnableCuts(list(FEATURES), list(DIRECTIONS), relaxation="sigmoid")


def hard_result(thresholds: Sequence[float], sample: Sample, objective: Objective) -> Result:
    """Objective of the hard cuts at ``thresholds`` via ``LearnableCuts.hard`` on ``sample``."""
    cuts = new_cuts()
    with torch.no_grad():
        cuts.thresholds.copy_(torch.tensor(list(thresholds), dtype=torch.float64))
    s = selected_yield(cuts.hard(sample.x_sig), sample.w_sig)
    b = selected_yield(cuts.hard(sample.x_bkg), sample.w_bkg)
    value = float(objective(s, b))
    return Result(tuple(float(t) for t in thresholds), value, float(s), float(b))  # type: ignore[arg-type]


def learn_cuts(sample: Sample, objective: Objective, steps: int,
               quantiles: Sequence[float] = INIT_QUANTILES) -> Result:
    """Best (by hard value) of Adam runs from each initial quantile and start slope."""
    results = []
    for q, slope_start in itertools.product(quantiles, SLOPE_STARTS):
        slopes = slope_schedule(slope_start, SLOPE_END, steps)
        cuts = new_cuts()
        cuts.init_from_quantiles(sample.x_sig, sample.w_sig, quantile=[q, 1 - q, q, 1 - q])
        optimiser = torch.optim.Adam(cuts.parameters(), lr=LR_START)
        decay = (LR_END / LR_START) ** (1 / max(steps - 1, 1))
        scheduler = torch.optim.lr_scheduler.ExponentialLR(optimiser, gamma=decay)
        for slope in slopes:
            cuts.slope = float(slope)
            optimiser.zero_grad()
            s = selected_yield(cuts(sample.x_sig), sample.w_sig)
            b = selected_yield(cuts(sample.x_bkg), sample.w_bkg)
            (-objective(s, b)).backward()  # type: ignore[no-untyped-call]
            optimiser.step()
            scheduler.step()
        results.append(hard_result(cuts.thresholds.detach().tolist(), sample, objective))
    return max(results, key=lambda r: r.value)


def _tables(x: torch.Tensor, w: torch.Tensor, edges: Sequence[torch.Tensor]
            ) -> tuple[torch.Tensor, ...]:
    """Weighted counts A, B, C, D of ``[x0 ? e0] & [x1 ? e1]`` for the four edge lists.

    ``edges = (lo_0, hi_0, lo_1, hi_1)``; upper edges use ``x < e``, lower edges ``x <= e``, so
    ``A[j, l] - B[i, l] - C[j, k] + D[i, k]`` is the weight with ``lo_0[i] < x0 < hi_0[j]`` and
    ``lo_1[k] < x1 < hi_1[l]`` whenever ``lo < hi`` on both features.
    """
    lo0 = (x[:, 0:1] <= edges[0]).to(w)
    hi0 = (x[:, 0:1] < edges[1]).to(w)
    lo1 = (x[:, 1:2] <= edges[2]).to(w)
    hi1 = (x[:, 1:2] < edges[3]).to(w)
    return ((hi0 * w[:, None]).T @ hi1, (lo0 * w[:, None]).T @ hi1,
            (hi0 * w[:, None]).T @ lo1, (lo0 * w[:, None]).T @ lo1)


def scan(sample: Sample, objective: Objective, edges: Sequence[torch.Tensor], n_top: int = 1
         ) -> list[tuple[float, tuple[float, float, float, float]]]:
    """The ``n_top`` best (value, thresholds) over all combinations of ``edges`` values.

    ``edges = (lo_0, hi_0, lo_1, hi_1)`` candidate values; combinations with ``lo >= hi`` on a
    feature are excluded. Values come from the count tables, not from ``LearnableCuts.hard``.
    """
    a_s, b_s, c_s, d_s = _tables(sample.x_sig, sample.w_sig, edges)
    a_b, b_b, c_b, d_b = _tables(sample.x_bkg, sample.w_bkg, edges)
    valid_1 = edges[2][:, None] < edges[3][None, :]  # (lo_1, hi_1)
    top: list[tuple[float, tuple[float, float, float, float]]] = []
    for start in range(0, len(edges[0]), CHUNK):
        i = slice(start, start + CHUNK)

        def count(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor, d: torch.Tensor
                  ) -> torch.Tensor:  # (chunk, hi_0, lo_1, hi_1)
            return (a[None, :, None, :] - b[i, None, None, :] - c[None, :, :, None]
                    + d[i, None, :, None])

        value = objective(count(a_s, b_s, c_s, d_s), count(a_b, b_b, c_b, d_b))
        valid = (edges[0][i, None] < edges[1][None, :])[:, :, None, None] & valid_1[None, None]
        value = torch.where(valid, value, -math.inf)
        best = torch.topk(value.reshape(-1), min(n_top, value.numel()))
        for v, flat in zip(best.values.tolist(), best.indices.tolist(), strict=True):
            index = np.unravel_index(flat, tuple(value.shape))
            index = (start + int(index[0]), *(int(k) for k in index[1:]))
            top.append((v, tuple(float(e[k]) for e, k in zip(edges, index, strict=True))))  # type: ignore[misc]
        top = sorted(top, reverse=True)[:n_top]
    return top


def _distinct(top: list[tuple[float, tuple[float, float, float, float]]], min_distance: float
              ) -> list[tuple[float, float, float, float]]:
    """Up to ``N_CANDIDATES`` thresholds from ``top`` (best first), pairwise >= min_distance apart
    in at least one threshold."""
    chosen: list[tuple[float, float, float, float]] = []
    for _, thresholds in top:
        if all(max(abs(a - b) for a, b in zip(thresholds, c, strict=True)) >= min_distance
               for c in chosen):
            chosen.append(thresholds)
        if len(chosen) == N_CANDIDATES:
            break
    return chosen


def _refine(sample: Sample, objective: Objective, thresholds: tuple[float, float, float, float]
            ) -> tuple[tuple[float, float, float, float], int]:
    """Fine scan around ``thresholds``, re-centred while the best lies on the window's edge."""
    offsets = torch.arange(-FINE_HALF_WIDTH, FINE_HALF_WIDTH + FINE_STEP / 2, FINE_STEP,
                           dtype=torch.float64)
    n_evaluated = 0
    for _ in range(MAX_REFINE):
        edges = [t + offsets for t in thresholds]
        centre = thresholds
        thresholds = scan(sample, objective, edges)[0][1]
        n_evaluated += math.prod(len(e) for e in edges)
        if all(abs(t - c) < FINE_HALF_WIDTH - FINE_STEP / 2
               for t, c in zip(thresholds, centre, strict=True)):
            break
    return thresholds, n_evaluated


def grid_scan(sample: Sample, objective: Objective) -> tuple[Result, int]:
    """Coarse-to-fine grid scan; returns the best and the number of combinations evaluated.

    The hard value of the best is recomputed with ``LearnableCuts.hard`` (:func:`hard_result`).
    """
    q = torch.tensor([COARSE_TAIL, 1 - COARSE_TAIL], dtype=torch.float64)
    ranges = [torch.quantile(sample.x_sig[:, f], q) for f in (0, 1)]
    coarse = [torch.linspace(float(r[0]), float(r[1]), COARSE_POINTS, dtype=torch.float64)
              for r in ranges]
    edges = [coarse[f] for f in FEATURES]
    n_evaluated = math.prod(len(e) for e in edges)
    step = min(float(c[1] - c[0]) for c in coarse)
    results = []
    for candidate in _distinct(scan(sample, objective, edges, N_TOP), 2 * step - 1e-12):
        thresholds, n = _refine(sample, objective, candidate)
        n_evaluated += n
        results.append(hard_result(thresholds, sample, objective))
    return max(results, key=lambda r: r.value), n_evaluated
