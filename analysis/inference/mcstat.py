"""MC statistical uncertainty of binned yields when events carry several detector replicas.

A generated event with K detector realisations (``generator.replicas``) enters the histograms
K times with weight ``w / K`` each. The replicas share the hadronised event, so they are
correlated: resampling the simulation resamples whole events. The variance of a bin's yield is
then the Poisson (bootstrap) variance of a sum over *events* of each event's contribution::

    sigma^2_bin = sum_events ( sum_{replicas of the event in the bin} w )^2

which is ``sum w^2`` (hist's Weight storage) plus the cross terms between replicas of one event
in the same bin. Without replicas every group has one row and the cross terms are exactly 0.
"""

from __future__ import annotations

import numpy as np
import torch

from analysis.errors import InputDataError

__all__ = ["effective_event_count", "grouped_cross_terms", "mc_stat_variance",
           "replica_cross_terms"]


def _groups(bin_index: np.ndarray, weights: np.ndarray, event_ids: np.ndarray,
            n_bins: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per (event, bin) group: its bin, its sum of weights and its sum of squared weights."""
    bins = np.asarray(bin_index, dtype=np.int64)
    w = np.asarray(weights, dtype=np.float64)
    ids = np.asarray(event_ids)
    ids = ids.reshape(len(ids), -1) if ids.ndim <= 2 else ids
    if bins.ndim != 1 or w.shape != bins.shape or ids.ndim != 2 or len(ids) != len(bins):
        raise InputDataError(f"mcstat: need (n,) bin indices and weights and (n,) or (n, k) event "
                             f"ids, got {bins.shape}, {w.shape}, {np.shape(event_ids)}")
    if len(bins) and (bins.min() < 0 or bins.max() >= n_bins):
        raise InputDataError(f"mcstat: bin indices must be in [0, {n_bins}), got "
                             f"[{bins.min()}, {bins.max()}]")
    keys = np.column_stack([ids.astype(np.int64), bins])
    _, group = np.unique(keys, axis=0, return_inverse=True)
    group = group.reshape(-1)
    n_groups = int(group.max()) + 1 if len(group) else 0
    group_bin = np.zeros(n_groups, dtype=np.int64)
    group_bin[group] = bins
    return (group_bin, np.bincount(group, weights=w, minlength=n_groups),
            np.bincount(group, weights=w * w, minlength=n_groups))


def mc_stat_variance(bin_index: np.ndarray, weights: np.ndarray, event_ids: np.ndarray,
                     n_bins: int) -> np.ndarray:
    """Per-bin MC statistical variance with the replicas of one event treated as correlated.

    Args:
        bin_index: ``(n_rows,)`` bin of each row (a replica of an event), in ``[0, n_bins)``.
        weights: ``(n_rows,)`` expected events per row (``genWeight / K`` x normalisation).
        event_ids: ``(n_rows,)`` or ``(n_rows, n_keys)`` integers that identify the hadronised
            event, e.g. ``column_stack([dataset_index, event])``; replicas share them.
        n_bins: number of bins.

    Returns:
        ``(n_bins,)`` variance in expected events squared: ``sum_events (sum_replicas w)^2``.

    Raises:
        InputDataError: shapes that differ or a bin index outside ``[0, n_bins)``.

    Example:
        >>> mc_stat_variance(np.array([0, 0, 1]), np.array([.5, .5, 1.]), np.array([7, 7, 8]), 2)
        array([1., 1.])
    """
    group_bin, sums, _ = _groups(bin_index, weights, event_ids, n_bins)
    return np.bincount(group_bin, weights=sums * sums, minlength=n_bins)


def replica_cross_terms(bin_index: np.ndarray, weights: np.ndarray, event_ids: np.ndarray,
                        n_bins: int) -> np.ndarray:
    """What the replicas' correlation adds to ``sum w^2`` per bin: ``mc_stat_variance - sum w^2``.

    Exactly 0 in every bin when no two rows share an event id and a bin (no replicas), so adding
    it to a histogram's Weight-storage variances leaves samples without replicas bit-identical.

    Args:
        bin_index, weights, event_ids, n_bins: as :func:`mc_stat_variance`.

    Returns:
        ``(n_bins,)`` sum over events of ``(sum w)^2 - sum w^2`` in the bin (>= 0 for w >= 0).

    Example:
        >>> replica_cross_terms(np.array([0, 0, 1]), np.array([.5, .5, 1.]), np.array([7, 7, 8]), 2)
        array([0.5, 0. ])
    """
    group_bin, sums, squares = _groups(bin_index, weights, event_ids, n_bins)
    return np.bincount(group_bin, weights=sums * sums - squares, minlength=n_bins)


def grouped_cross_terms(contributions: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
    """The replicas' cross terms of a (soft or hard) histogram's MC variance, differentiable.

    ``sum_events [(sum_replicas c)^2 - sum_replicas c^2]`` per bin, where ``c`` is a row's
    contribution to the bin (weight times bin membership,
    :func:`~analysis.relax.histograms.bin_memberships`). Added to the ``sum w^2`` histogram it
    gives :func:`mc_stat_variance` for hard memberships; for soft ones it keeps the soft
    histogram's ``sum w^2 m`` convention for a lone row and adds the replicas' correlation, so
    that the training loss and the workspace treat replicas alike. 0 where no two rows share
    an event.

    Args:
        contributions: ``(n_rows, n_bins)`` expected events each row puts into each bin.
        groups: ``(n_rows,)`` int64 event index of each row in ``[0, n_events)``; the replicas
            of one event share it.

    Returns:
        ``(n_bins,)`` in expected events squared, in ``contributions``' dtype and device.

    Raises:
        InputDataError: shapes that do not match, or a negative group index.

    Example:
        >>> grouped_cross_terms(torch.tensor([[.5, 0.], [.5, 0.], [0., 1.]]), torch.tensor([7, 7, 8]))
        tensor([0.5000, 0.0000])
    """
    if (contributions.dim() != 2 or groups.shape != contributions.shape[:1]
            or groups.dtype != torch.int64):
        raise InputDataError(f"grouped_cross_terms: need (n_rows, n_bins) contributions and "
                             f"(n_rows,) int64 groups, got {tuple(contributions.shape)} and "
                             f"{tuple(groups.shape)} {groups.dtype}")
    if groups.numel() == 0:
        return contributions.new_zeros(contributions.shape[1])
    if int(groups.min()) < 0:
        raise InputDataError("grouped_cross_terms: group indices must be >= 0")
    summed = contributions.new_zeros(int(groups.max()) + 1, contributions.shape[1])
    summed = summed.index_add(0, groups.to(contributions.device), contributions)
    return (summed * summed).sum(dim=0) - (contributions * contributions).sum(dim=0)


def effective_event_count(weights: np.ndarray, event_ids: np.ndarray) -> float:
    """Effective number of simulated events of a weighted selection, replicas counted as one.

    Kish's ``(sum w)^2 / sum w^2`` generalised to correlated replicas: ``(sum w)^2 /
    sum_events (sum_replicas w)^2``, the number of unweighted events with the same relative MC
    statistical uncertainty. Kish's formula on the rows would count replicas as independent.

    Args:
        weights: ``(n_rows,)`` expected events per row.
        event_ids: ``(n_rows,)`` or ``(n_rows, n_keys)`` event identity, as :func:`mc_stat_variance`.

    Returns:
        The effective count (0 for an empty selection).

    Example:
        >>> effective_event_count(np.full(4, .25), np.array([1, 1, 2, 2]))  # 2 events, 2 replicas
        2.0
    """
    w = np.asarray(weights, dtype=np.float64)
    if len(w) == 0:
        return 0.0
    variance = mc_stat_variance(np.zeros(len(w), dtype=np.int64), w, event_ids, 1)[0]
    return float(w.sum() ** 2 / variance) if variance > 0 else 0.0
