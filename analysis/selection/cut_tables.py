"""The learned cuts as table cells, from their JSON records: no torch, no awkward.

ReduceEvents writes the records (``tradeoff.json``: every fold's
:meth:`~analysis.selection.learn.LearnedSelection.as_dict`, the held-out events each keeps, and
fold 0's trade-off scan); ReduceEvents' Markdown and the report tabulate them with these, so the
report is built without importing the libraries that learned the cuts.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["threshold_cells", "tradeoff_cells"]


def _number(x: float | None, digits: str = ".4g") -> str:
    return "n/a" if x is None or not math.isfinite(x) else format(x, digits)


def tradeoff_cells(records: Sequence[Mapping[str, Any]], features: Sequence[str],
                   directions: Sequence[str]) -> tuple[list[str], list[list[str]]]:
    """The trade-off scan as table cells, one row per point, the learned one (t = 1) marked.

    Args:
        records: :func:`~analysis.selection.reduce.tradeoff_records` (as ``tradeoff.json``
            holds them).
        features, directions: the cut features and their directions (column headers).

    Returns:
        ``(header, rows)``: ``t``, each threshold, events kept, signal and background
        efficiency, sigma_mu stat only and total, Z_A.
    """
    header = ["t", *(f"{f} {d}" for f, d in zip(features, directions, strict=True)),
              "events kept", "signal eff.", "background eff.", "σ_μ stat", "σ_μ total", "Z_A"]
    rows = [[f"{p['t']:.3g}" + (" (learned)" if abs(p["t"] - 1.0) < 1e-9 else ""),
             *(_number(t) for t in p["thresholds"]), f"{p['data_fraction']:.3f}",
             f"{p['signal_efficiency']:.3f}", f"{p['background_efficiency']:.3f}",
             _number(p["sigma_mu_stat"]), _number(p["sigma_mu"]),
             _number(p["significance"], ".3f")] for p in records]
    return header, rows


def threshold_cells(selections: Sequence[Mapping[str, Any]],
                    reductions: Sequence[Mapping[str, Any]] | None = None
                    ) -> tuple[list[str], list[list[str]]]:
    """Every fold's learned thresholds as table cells, one row per fold.

    Args:
        selections: per fold, :meth:`~analysis.selection.learn.LearnedSelection.as_dict` of
            cuts_k (``features``, ``directions``, ``thresholds``, ``objective``,
            ``initial_hard_value``, ``hard_value``).
        reductions: per fold, :class:`~analysis.selection.reduce.FoldReduction` as a dict;
            adds the held-out events kept.

    Returns:
        ``(header, rows)``: the fold, each cut's threshold (feature units), the hard objective
        before and after learning, and (with ``reductions``) fold ``k``'s events kept by cuts_k.

    Example:
        >>> threshold_cells([{"features": ["ht"], "directions": [">"], "thresholds": [312.5],
        ...                   "objective": "sigma_mu", "initial_hard_value": 0.5,
        ...                   "hard_value": 0.41}])
        (['fold k', 'ht >', 'sigma_mu start', 'sigma_mu learned'], [['0', '312.5', '0.5', '0.41']])
    """
    first = selections[0]
    header = ["fold k", *(f"{f} {d}" for f, d in zip(first["features"], first["directions"],
                                                     strict=True)),
              f"{first['objective']} start", f"{first['objective']} learned"]
    if reductions is not None:
        header.append("fold k events kept")
    rows = []
    for k, selection in enumerate(selections):
        row = [str(k), *(_number(t) for t in selection["thresholds"]),
               _number(selection["initial_hard_value"]), _number(selection["hard_value"])]
        if reductions is not None:
            counts = reductions[k]
            row.append(f"{counts['held_out_kept']} of {counts['held_out_total']}")
        rows.append(row)
    return header, rows
