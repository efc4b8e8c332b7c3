"""Held-out AUCs: pooled over the folds and per fold, where the fold networks' scales differ."""

from __future__ import annotations

import math

import numpy as np
import pytest

from analysis.errors import InputDataError
from analysis.inference.scores import fold_aucs, signal_auc, weighted_auc


def _scores(rng: np.random.Generator, n: int = 6000, n_folds: int = 3) -> dict:
    """One dataset; fold k's network outputs the same separation squeezed into a band of its
    own (k * 0.3 + 0.3 * sigmoid): each fold ranks well, the pooled scores mix the bands."""
    event = np.arange(n)
    label = rng.integers(0, 2, n)  # 0: signal, 1: background
    raw = rng.normal(1.0 - 2.0 * label, 1.5)
    fold = event % n_folds
    p = fold * 0.3 + 0.3 / (1.0 + np.exp(-raw))
    return {"sim": {"nominal": {"event": event, "label": label, "weight": rng.uniform(0.5, 1.5, n),
                                "p_tth": p}}}


def test_each_fold_is_its_own_network(rng: np.random.Generator) -> None:
    scores = _scores(rng)
    per_fold = fold_aucs(scores, [0], "p_tth", 3)
    columns = scores["sim"]["nominal"]
    for k, auc in enumerate(per_fold):  # each equals the AUC of that fold's rows alone
        keep = columns["event"] % 3 == k
        signal, background = keep & (columns["label"] == 0), keep & (columns["label"] == 1)
        assert auc == pytest.approx(weighted_auc(
            columns["p_tth"][signal], columns["weight"][signal],
            columns["p_tth"][background], columns["weight"][background]), rel=1e-12)
    # the same separation in every fold (about 0.83 for a shift of 2 / 1.5 sigma) ...
    assert np.ptp(per_fold) < 0.03 and min(per_fold) > 0.8
    # ... while pooling the three bands ranks one network's events against another's
    assert signal_auc(scores, [0], "p_tth") < np.mean(per_fold) - 0.15


def test_a_fold_without_signal_is_nan_and_bad_input_is_named(rng: np.random.Generator) -> None:
    scores = _scores(rng)
    columns = scores["sim"]["nominal"]
    columns["label"] = np.where(columns["event"] % 3 == 1, 1, columns["label"])
    aucs = fold_aucs(scores, [0], "p_tth", 3)
    assert math.isnan(aucs[1]) and all(math.isfinite(a) for a in (aucs[0], aucs[2]))
    with pytest.raises(InputDataError, match="n_folds"):
        fold_aucs(scores, [0], "p_tth", 0)
    without_event = {"sim": {"nominal": {k: v for k, v in columns.items() if k != "event"}}}
    with pytest.raises(InputDataError, match="event"):
        fold_aucs(without_event, [0], "p_tth", 3)
