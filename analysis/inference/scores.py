"""Held-out scores: every event scored once by the fold network that never saw it, and its AUC.

Each fold's network scores its own held-out fold; :func:`merge_fold_scores` joins the folds back
into one table per dataset and shift, sorted by event number so that the result does not depend
on the order in which the folds were scored. :func:`signal_auc` is the weighted ROC AUC
(:func:`weighted_auc`) of the ttH score on the nominal events, pooled over the folds;
:func:`fold_aucs` gives each fold's own.

The two differ when the fold networks' outputs are scaled differently: the pooled AUC then ranks
one network's events against another's (the full analysis's histograms pool them too), while
each fold's AUC measures one network alone (the usual k-fold estimate).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from analysis.errors import InputDataError
from analysis.inference.score_histograms import fold_scores

__all__ = ["fold_aucs", "merge_fold_scores", "signal_auc", "weighted_auc"]

Columns = Mapping[str, np.ndarray]
Scores = Mapping[str, Mapping[str, Columns]]  # dataset -> shift -> column -> (n_events,)


def merge_fold_scores(per_fold: Sequence[Scores]) -> dict[str, dict[str, dict[str, np.ndarray]]]:
    """Join the folds' scored events, sorted by event number (stable).

    Args:
        per_fold: per fold, dataset -> shift -> columns (``event``, ``label``, ``weight*``,
            ``p_<class>``), each ``(n_events_in_fold,)``.

    Returns:
        dataset -> shift -> columns over all folds, ``(n_events,)``, in increasing ``event``.

    Raises:
        InputDataError: no fold, or folds whose columns differ.

    Example:
        >>> a = {"tt": {"nominal": {"event": np.array([4, 0]), "p_tth": np.array([.4, .0])}}}
        >>> b = {"tt": {"nominal": {"event": np.array([1]), "p_tth": np.array([.1])}}}
        >>> merge_fold_scores([a, b])["tt"]["nominal"]["p_tth"].tolist()
        [0.0, 0.1, 0.4]
    """
    if not per_fold:
        raise InputDataError("merge_fold_scores: no fold was scored")
    merged: dict[str, dict[str, dict[str, np.ndarray]]] = {}
    for dataset, shifts in per_fold[0].items():
        merged[dataset] = {}
        for shift, columns in shifts.items():
            names = set(columns)
            for k, fold in enumerate(per_fold[1:], start=1):
                if set(fold.get(dataset, {}).get(shift, {})) != names:
                    raise InputDataError(f"merge_fold_scores: fold {k} has other columns than "
                                         f"fold 0 for dataset {dataset}, shift {shift}")
            joined = {name: np.concatenate([np.asarray(f[dataset][shift][name])
                                            for f in per_fold]) for name in columns}
            order = np.argsort(joined["event"], kind="stable")
            merged[dataset][shift] = {name: values[order] for name, values in joined.items()}
    return merged


def signal_auc(scores: Scores, signal_labels: Sequence[int], score: str) -> float:
    """Weighted ROC AUC of ``score``: signal against every background, nominal events.

    Args:
        scores: dataset -> shift -> columns with ``label`` (process index), ``weight``
            (expected events) and ``score``; only the ``nominal`` shift is read.
        signal_labels: the process indices that are signal.
        score: the column that separates them (unitless; the signal class's
            :func:`~analysis.classes.score_column`).

    Returns:
        The area under the ROC curve, in [0, 1] (0.5: no separation).
    """
    signal_values, signal_weights, background_values, background_weights = [], [], [], []
    for shifts in scores.values():
        columns = shifts["nominal"]
        is_signal = np.isin(np.asarray(columns["label"]), np.asarray(signal_labels))
        values, weights = np.asarray(columns[score]), np.asarray(columns["weight"])
        signal_values.append(values[is_signal])
        signal_weights.append(weights[is_signal])
        background_values.append(values[~is_signal])
        background_weights.append(weights[~is_signal])
    return weighted_auc(np.concatenate(signal_values), np.concatenate(signal_weights),
                        np.concatenate(background_values), np.concatenate(background_weights))


def fold_aucs(scores: Scores, signal_labels: Sequence[int], score: str,
              n_folds: int) -> list[float]:
    """:func:`signal_auc` of each fold's events alone (``event % n_folds == k``).

    Args:
        scores: as :func:`signal_auc`, with an ``event`` column (merged held-out scores,
            :func:`merge_fold_scores`).
        signal_labels, score: as :func:`signal_auc`.
        n_folds: number of folds (``training.n_folds``), >= 1.

    Returns:
        ``n_folds`` AUCs in [0, 1], fold order; NaN for a fold without signal or background.

    Raises:
        InputDataError: ``n_folds < 1`` or no ``event`` column.
    """
    if n_folds < 1:
        raise InputDataError(f"fold_aucs: n_folds = {n_folds}: must be >= 1")
    nominal = {dataset: {"nominal": shifts["nominal"]} for dataset, shifts in scores.items()}
    out = []
    for fold in range(n_folds):
        try:
            part = fold_scores(nominal, fold, n_folds, scale=False)
        except KeyError as err:
            raise InputDataError(f"fold_aucs: the scores need the {err} column") from err
        try:
            out.append(signal_auc(part, signal_labels, score))
        except InputDataError:  # a fold without signal or background events
            out.append(float("nan"))
    return out


def weighted_auc(signal_scores: np.ndarray, signal_weights: np.ndarray,
                 background_scores: np.ndarray, background_weights: np.ndarray) -> float:
    """Area under the weighted ROC curve: P(score_signal > score_background), ties count 1/2.

    Args:
        signal_scores, signal_weights: ``(n_s,)`` scores and event weights (expected events).
        background_scores, background_weights: ``(n_b,)`` likewise.

    Returns:
        The AUC in [0, 1] (0.5: no separation). Negative weights count with their sign.

    Raises:
        InputDataError: if a class has no positive total weight.

    Example:
        >>> weighted_auc(np.array([0.9, 0.8]), np.ones(2), np.array([0.1, 0.85]), np.ones(2))
        0.75
    """
    w_s, w_b = float(np.sum(signal_weights)), float(np.sum(background_weights))
    if not (w_s > 0 and w_b > 0):
        raise InputDataError(f"weighted_auc: total weights {w_s} (signal), {w_b} (background) "
                             f"must be > 0")
    scores = np.concatenate([signal_scores, background_scores])
    unique, inverse = np.unique(scores, return_inverse=True)
    per_signal = np.bincount(inverse[:len(signal_scores)], weights=signal_weights,
                             minlength=len(unique))
    per_background = np.bincount(inverse[len(signal_scores):], weights=background_weights,
                                 minlength=len(unique))
    background_below = np.cumsum(per_background) - per_background  # strictly lower scores
    pairs = per_signal * (background_below + 0.5 * per_background)
    return float(pairs.sum() / (w_s * w_b))
