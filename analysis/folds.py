"""The k-fold split of the events: event number ``e`` belongs to fold ``e % n_folds``.

Network ``k`` (and the learned cuts ``cuts_k``) is trained on the other folds and evaluated on
fold ``k``; detector replicas and the shifted tables' rows of one event share its number, so
they always fall into the same fold. The one place the rule is written.
"""

from __future__ import annotations

import numpy as np

from analysis.errors import ConfigError

__all__ = ["fold_mask", "fold_of"]


def fold_of(event: np.ndarray, n_folds: int) -> np.ndarray:
    """``(n,)`` fold of each event number: ``event % n_folds``.

    Example:
        >>> fold_of(np.array([4, 7, 10]), 3).tolist()
        [1, 1, 1]
    """
    return np.asarray(event) % n_folds


def fold_mask(event: np.ndarray, fold: int, n_folds: int = 2) -> np.ndarray:
    """Events of fold ``fold``: ``event % n_folds == fold`` (event-number parity for 2 folds).

    A model of fold ``k`` is tested on fold ``k`` and trained on the others.

    Raises:
        ConfigError: for ``n_folds < 2`` or ``fold`` outside ``[0, n_folds)``.

    Example:
        >>> fold_mask(np.array([4, 7, 10]), 0)
        array([ True, False,  True])
    """
    if n_folds < 2 or not 0 <= fold < n_folds:
        raise ConfigError(f"fold_mask: fold = {fold}, n_folds = {n_folds}: need n_folds >= 2 "
                          f"and 0 <= fold < n_folds")
    return fold_of(event, n_folds) == fold
