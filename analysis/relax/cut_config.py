"""The config's cuts as :class:`~analysis.relax.cuts.LearnableCuts` started inside the data, and
the project's one hard-cut rule on a table.

Used by the learned skim (:mod:`analysis.selection.learn`) and by the cuts trained jointly with a
network (:mod:`analysis.training.network`); it sits in ``relax/``, below both, so that training
does not import the selection package.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from analysis.config import LearnedCutsSettings
from analysis.errors import InputDataError
from analysis.relax.cuts import LearnableCuts

__all__ = ["config_cuts", "hard_cut_mask", "initial_cuts"]


def config_cuts(settings: LearnedCutsSettings, columns: Sequence[str]) -> LearnableCuts:
    """The config's cuts (``cuts.cuts``: feature, direction) on ``columns``, at threshold 0 and
    slope ``slope_start``; :func:`initial_cuts` starts them inside the data."""
    return LearnableCuts([c.feature for c in settings.cuts], [c.direction for c in settings.cuts],
                         columns=list(columns), slope=settings.slope_start)


def initial_cuts(settings: LearnedCutsSettings, columns: Sequence[str], x: torch.Tensor,
                 weights: torch.Tensor) -> LearnableCuts:
    """The config's cuts on ``columns``, started at the loose quantile of the events.

    A ``">"`` cut starts at the ``initial_quantile`` of its feature under ``|weights|``, a ``"<"``
    cut at ``1 - initial_quantile``, so every cut starts inside the data and gets a gradient;
    the slope starts at ``slope_start`` (LearnCuts and the cuts trained with a network alike).

    Args:
        settings: the config's ``cuts`` section.
        columns: names of the columns of ``x``.
        x: ``(n_events, len(columns))`` features (any units; the cuts take their dtype).
        weights: ``(n_events,)`` event weights.

    Returns:
        :class:`~analysis.relax.cuts.LearnableCuts` in the dtype of ``x``.

    Raises:
        InputDataError: a cut feature not among ``columns``, or a constant feature.
    """
    q = settings.initial_quantile
    cuts = config_cuts(settings, columns).to(x.dtype)
    cuts.init_from_quantiles(x, weights.abs(),
                             quantile=[q if c.direction == ">" else 1 - q for c in settings.cuts])
    return cuts


def hard_cut_mask(columns: Mapping[str, Any], features: Sequence[str],
                  directions: Sequence[str], thresholds: Sequence[float]) -> np.ndarray:
    """Hard cuts on a table: ``(n_events,)`` bool, ``True`` where every cut passes.

    The one hard-cut rule of the project, :meth:`~analysis.relax.cuts.LearnableCuts.hard`:
    ``value > threshold`` for ``">"``, ``value < threshold`` for ``"<"``, in float64; NaN fails.

    Args:
        columns: column name -> ``(n_events,)`` values (e.g. a skim table).
        features, directions, thresholds: the cuts, one entry each (feature units).

    Raises:
        InputDataError: a cut feature missing from ``columns``, or no cut.

    Example:
        >>> hard_cut_mask({"ht": [100.0, 300.0, 500.0]}, ["ht", "ht"], [">", "<"], [200.0, 400.0])
        array([False,  True, False])
    """
    if not features:
        raise InputDataError("hard_cut_mask: no cut given")
    names = list(dict.fromkeys(features))
    try:
        x = np.stack([np.asarray(columns[f], dtype=np.float64) for f in names], axis=1)
    except (KeyError, ValueError) as err:
        raise InputDataError(f"hard_cut_mask: no column {err} to cut on; have "
                             f"{sorted(columns)[:20]}") from err
    cuts = LearnableCuts(list(features), list(directions), columns=names).to(torch.float64)
    with torch.no_grad():
        cuts.thresholds.copy_(torch.tensor(list(thresholds), dtype=torch.float64))
    return cuts.hard(torch.from_numpy(x)).numpy().astype(bool)
