"""The comparison of training strategies: relative changes of sigma_mu against CE, paired over
(seed index, fold) networks, and the clustered mean and standard error the report and its
figure give for each network (:func:`mean_and_standard_error`, :class:`SigmaMuPoint`)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from analysis.config import REFERENCE_STRATEGY
from analysis.errors import InputDataError

__all__ = ["MEASURES", "PairedComparison", "SigmaMuPoint", "StrategyPairing", "fold_sigma_mu",
           "mean_and_standard_error", "paired_comparison", "paired_records", "strategy_pairings",
           "uncertainty_breakdown"]


@dataclass(frozen=True)
class SigmaMuPoint:
    """One network in the figure.

    Attributes:
        group: what shares a CE reference, e.g. ``"DNN, learned cuts"``.
        strategy: the training strategy (``"ce"`` is the group's reference).
        values: measure label -> sigma_mu of each (seed index, fold) network (units of mu;
            NaN: undetermined, left out).
        clusters: the fold of each of those networks, in the same order (its seeds share the
            held-out events: :func:`mean_and_standard_error` clusters them); None: independent.
    """

    group: str
    strategy: str
    values: Mapping[str, Sequence[float]]
    clusters: Sequence[int] | None = None


def mean_and_standard_error(values: Sequence[float], clusters: Sequence[Any] | None = None
                            ) -> tuple[float, float]:
    """Mean of the finite ``values`` and its standard error, clustered where values share events.

    Without ``clusters`` every value is independent: ``std(ddof=1) / sqrt(n)``. With them,
    values of one cluster (e.g. the seeds of one fold, evaluated on the same held-out events)
    are correlated, and the error is the cluster-robust one (CR1),
    ``sqrt(G / (G - 1) * sum_g (sum_{i in g} (v_i - mean))^2) / n`` over the ``G`` clusters
    that hold a finite value, but never below the independent one. With few clusters CR1 is
    itself noisy (``G - 1`` degrees of freedom) and falls far below the values' scatter when
    the cluster means agree by chance (the demo: 9 values from 0.37 to 2.87 in 3 folds whose
    means are 1.38-1.42, CR1 0.013 against 0.28 independent); taking the larger of the robust
    and the conventional error is the usual guard (Angrist and Pischke, *Mostly Harmless
    Econometrics*, 2009, ch. 8). With one value per cluster both are the same.

    Args:
        values: ``(n,)`` numbers (NaN allowed: left out).
        clusters: ``(n,)`` the cluster of each value (any hashable), or None.

    Returns:
        ``(mean, standard error)``; NaN mean without a finite value, NaN error with fewer
        than two values or two clusters.

    Raises:
        ValueError: ``clusters`` and ``values`` differ in length (a programming error).

    Example:
        >>> mean_and_standard_error([1.0, 3.0, float("nan")])
        (2.0, 1.0)
        >>> mean_and_standard_error([1.0, 1.0, 3.0, 3.0], clusters=[0, 0, 1, 1])
        (2.0, 1.0)
    """
    if clusters is None:
        clusters = range(len(values))
    elif len(clusters) != len(values):
        raise ValueError(f"mean_and_standard_error: {len(clusters)} clusters for "
                         f"{len(values)} values")
    finite = [(v, g) for v, g in zip(values, clusters) if math.isfinite(v)]
    n = len(finite)
    if not n:
        return math.nan, math.nan
    mean = sum(v for v, _ in finite) / n
    residuals: dict[Any, float] = {}
    for v, g in finite:
        residuals[g] = residuals.get(g, 0.0) + (v - mean)
    n_clusters = len(residuals)
    if n < 2 or n_clusters < 2:
        return mean, math.nan
    clustered = n_clusters / (n_clusters - 1) * sum(r * r for r in residuals.values()) / n ** 2
    independent = sum((v - mean) ** 2 for v, _ in finite) / (n - 1) / n
    return mean, math.sqrt(max(clustered, independent))


MEASURES: dict[str, str] = {"sigma_mu": "with MC stat.",
                             "sigma_mu_no_mcstat": "without MC stat."}
"""The two sigma_mu of every comparison: result key (its per-(seed, fold) values under
``<key>_folds``) -> words (total, and without the MC statistical uncertainty of the simulated
samples)."""


@dataclass(frozen=True)
class PairedComparison:
    """A strategy's relative change of sigma_mu against CE over paired (seed, fold) networks.

    Attributes:
        n_pairs: pairs with a number on both sides (a fold where either is NaN is left out).
        mean: mean of ``sigma_mu / sigma_mu_CE - 1`` over the pairs (dimensionless; -0.12 is
            12 % lower); NaN without pairs.
        standard_error: the standard error of ``mean``, clustered by fold (the seeds of one
            fold share its held-out events, so their changes are correlated; see
            :func:`mean_and_standard_error`); NaN with fewer
            than 2 pairs or 2 folds.
        same_sign: fraction of the pairs whose change has the sign of ``mean``.
        verdict: ``"better"`` / ``"worse"`` when ``|mean| >= significance x standard_error``,
            else ``"not resolved"``; ``"undetermined"`` with fewer than 2 pairs or 2 folds.
        significance: the number of standard errors the verdict asks for.
        n_clusters: the folds the pairs come from (independent pairs: ``n_pairs``).
    """

    n_pairs: int
    mean: float
    standard_error: float
    same_sign: float
    verdict: str
    significance: float
    n_clusters: int = -1

    def sentence(self) -> str:
        """The verdict in words, e.g. ``better: -14.2 % +- 3.1 % (9 pairs in 3 folds, 89 % same
        sign)``
        or ``not resolved at +-6.2 %`` (the resolution: ``significance`` standard errors)."""
        if self.verdict == "undetermined":
            where = (f" in {self.n_clusters} fold" if 0 < self.n_clusters < self.n_pairs
                     else "")
            return f"undetermined ({self.n_pairs} pair{'s' * (self.n_pairs != 1)}{where})"
        folds = f" in {self.n_clusters} folds" if 0 < self.n_clusters < self.n_pairs else ""
        numbers = (f"{100 * self.mean:+.1f} % ± {100 * self.standard_error:.1f} % "
                   f"({self.n_pairs} pairs{folds}, {100 * self.same_sign:.0f} % same sign)")
        if self.verdict == "not resolved":
            return (f"not resolved at ±{100 * self.significance * self.standard_error:.1f} %: "
                    f"{numbers}")
        return f"{self.verdict}: {numbers}"

    def verdict_words(self) -> str:
        """The verdict as a table cell: ``better``, ``worse``, ``undetermined``, or ``not
        resolved at +-8.3 %`` (the resolution: ``significance`` standard errors, in %)."""
        if self.verdict == "not resolved":
            return f"not resolved at ±{100 * self.significance * self.standard_error:.1f} %"
        return self.verdict

    def short_sentence(self) -> str:
        """The change and the verdict for the headline, e.g. ``-2.2 % ± 4.2 %, not resolved at
        ±8.3 %`` or ``-14.2 % ± 3.1 %, better``; :meth:`sentence` where undetermined."""
        if self.verdict == "undetermined":
            return self.sentence()
        return (f"{100 * self.mean:+.1f} % ± {100 * self.standard_error:.1f} %, "
                f"{self.verdict_words()}")

    def sample_factor_to_resolve(self, change: float = 0.12) -> float:
        """How many times the independent folds (at this fold size, so this many times the
        simulated events) would resolve a relative ``change`` (dimensionless, e.g. 0.12, the
        12 % CMS measured) at ``significance`` standard errors.

        The clustered standard error falls as 1/sqrt(folds): the factor is ``(significance x
        standard_error / change)^2``. An upper estimate: larger held-out folds also shrink each
        pair's MC-statistical noise. NaN where the standard error is; at most 1 means this run
        already resolves such a change.

        Example:
            >>> PairedComparison(9, -0.02, 0.075, 0.6, "not resolved", 2.0, 3
            ...                  ).sample_factor_to_resolve(0.12)
            1.5625
        """
        if not math.isfinite(self.standard_error) or change <= 0:
            return math.nan
        return (self.significance * self.standard_error / change) ** 2


def paired_comparison(values: Sequence[float], references: Sequence[float],
                      significance: float = 2.0, clusters: Sequence[int] | None = None
                      ) -> PairedComparison:
    """Paired relative change of sigma_mu against CE, its standard error and a verdict.

    Each pair is one (seed, fold): the strategy's network and CE's network trained with the
    same seed on the same fold, evaluated on the same held-out events. The spread of the
    changes over pairs includes the seed's and the sample's fluctuations, so the standard error
    of their mean is what a difference must exceed (issue 17: "better" needs >= 2 standard
    errors). The seeds of one fold are evaluated on the same held-out events, so their changes
    are correlated: with ``clusters`` (the fold of each pair) the standard error is the
    cluster-robust one, which is what the number of folds, not of pairs, limits.

    Args:
        values: ``(n_pairs,)`` sigma_mu of the strategy's networks (units of mu; NaN allowed).
        references: ``(n_pairs,)`` sigma_mu of CE's networks, in the same order.
        significance: standard errors that a "better"/"worse" verdict needs.
        clusters: ``(n_pairs,)`` the fold of each pair, or None (independent pairs).

    Returns:
        :class:`PairedComparison`.

    Raises:
        InputDataError: ``values``, ``references`` and ``clusters`` differ in length.
    """
    if len(values) != len(references) or (clusters is not None
                                          and len(clusters) != len(values)):
        raise InputDataError(f"paired_comparison: {len(values)} values against "
                             f"{len(references)} CE references"
                             + (f" and {len(clusters)} folds" if clusters is not None else "")
                             + "; pairs must match")
    labels = list(clusters) if clusters is not None else list(range(len(values)))
    pairs = [(_relative(a, b), g) for a, b, g in zip(values, references, labels)]
    pairs = [(c, g) for c, g in pairs if math.isfinite(c)]
    changes = [c for c, _ in pairs]
    n, n_clusters = len(changes), len({g for _, g in pairs})
    if n < 2 or n_clusters < 2:
        mean = sum(changes) / n if changes else math.nan
        return PairedComparison(n, mean, math.nan, 1.0 if n else math.nan, "undetermined",
                                significance, n_clusters)
    mean, error = mean_and_standard_error(changes, [g for _, g in pairs])
    same = sum((c > 0) == (mean > 0) and c != 0 for c in changes) / n
    if abs(mean) >= significance * error and mean != 0:
        verdict = "better" if mean < 0 else "worse"
    else:
        verdict = "not resolved"
    return PairedComparison(n, mean, error, same, verdict, significance, n_clusters)


def _ce_reference(results: Mapping[str, Mapping[str, Any]], r: Mapping[str, Any]
                  ) -> Mapping[str, Any] | None:
    return next((c for c in results.values() if c["strategy"] == REFERENCE_STRATEGY
                 and c["model"] == r["model"] and c["learned_cuts"] == r["learned_cuts"]), None)


def _relative(a: float, b: float) -> float:
    return a / b - 1.0 if math.isfinite(a) and math.isfinite(b) and b > 0 else math.nan


def uncertainty_breakdown(result: Mapping[str, Any]) -> tuple[float, float]:
    """The systematic and the MC-statistical parts of the expected sigma_mu.

    Subtracted in quadrature (exact only for a parabolic likelihood; the fits' profile
    intervals are close to it where sigma_mu is determined).

    Args:
        result: ``sigma_mu`` (all nuisances), ``sigma_mu_no_mcstat`` (without the staterror
            modifiers) and ``sigma_mu_stat`` (every nuisance fixed), in units of mu.

    Returns:
        ``(syst, mc_stat)``: ``sqrt(no_mcstat^2 - stat^2)`` and ``sqrt(total^2 -
        no_mcstat^2)``, 0 where rounding makes the difference negative, NaN where an input
        is.
    """
    def quadrature(a: float, b: float) -> float:
        return math.sqrt(max(a * a - b * b, 0.0)) if math.isfinite(a) and math.isfinite(b) \
            else math.nan
    return (quadrature(result["sigma_mu_no_mcstat"], result["sigma_mu_stat"]),
            quadrature(result["sigma_mu"], result["sigma_mu_no_mcstat"]))


def fold_sigma_mu(result: Mapping[str, Any], key: str) -> dict[tuple[int, int], float]:
    """sigma_mu of each (seed index, fold) network of one network record.

    Args:
        result: a record with ``<key>_folds`` (sigma_mu per fold workspace, units of mu) and
            ``fold_labels`` (``[seed index, fold]`` of each; absent in results written before
            seeds: seed index 0 and the fold its position).
        key: ``"sigma_mu"`` or ``"sigma_mu_no_mcstat"`` (:data:`MEASURES`).

    Returns:
        ``(seed index, fold) -> sigma_mu`` (NaN where undetermined).

    Example:
        >>> fold_sigma_mu({"sigma_mu_folds": [2.0, 3.0]}, "sigma_mu")
        {(0, 0): 2.0, (0, 1): 3.0}
    """
    values = result[f"{key}_folds"]
    labels = result.get("fold_labels") or [[0, k] for k in range(len(values))]
    if len(labels) != len(values):
        raise InputDataError(f"fold_sigma_mu: {len(labels)} fold labels for {len(values)} "
                             f"values of {key}_folds")
    return {(int(s), int(k)): float(v) for (s, k), v in zip(labels, values)}


@dataclass(frozen=True)
class StrategyPairing:
    """One network against CE of the same model and selection, per measure.

    Attributes:
        key: the network's key in the summary.
        reference_key: CE's key.
        comparisons: :data:`MEASURES` key -> :class:`PairedComparison` over the (seed index,
            fold) networks both have.
    """

    key: str
    reference_key: str
    comparisons: Mapping[str, PairedComparison]


def strategy_pairings(results: Mapping[str, Mapping[str, Any]], significance: float = 2.0
                      ) -> list[StrategyPairing]:
    """:func:`paired_comparison` of every non-CE network against its CE, for both measures.

    A pair is one (seed index, fold): both networks trained with the same seed on the same
    training folds, their sigma_mu fitted on the same held-out fold (its workspace at the full
    luminosity); pairs that only one side has are left out. The standard errors are clustered
    by fold (:func:`paired_comparison`).

    Args:
        results: key -> record with ``learned_cuts``, ``model``, ``strategy``, the per-fold
            sigma_mu of each :data:`MEASURES` key and ``fold_labels``
            (:func:`fold_sigma_mu`), in display order.
        significance: standard errors that a "better"/"worse" verdict needs.

    Returns:
        One :class:`StrategyPairing` per non-CE network that has a CE of its model and
        selection, in the order of ``results``.
    """
    pairings = []
    for key, r in results.items():
        reference = _ce_reference(results, r)
        if r["strategy"] == REFERENCE_STRATEGY or reference is None:
            continue
        reference_key = next(k for k, v in results.items() if v is reference)
        comparisons = {measure: paired_records(r, reference, measure, significance)
                       for measure in MEASURES}
        pairings.append(StrategyPairing(key, reference_key, comparisons))
    return pairings


def paired_records(record: Mapping[str, Any], reference: Mapping[str, Any], measure: str,
                   significance: float = 2.0) -> PairedComparison:
    """:func:`paired_comparison` of two networks' ``measure`` over the (seed index, fold)
    networks both have (the same seeds and held-out events), clustered by fold: the change
    ``record / reference - 1``.

    Args:
        record, reference: network records with ``<measure>_folds`` and ``fold_labels``
            (:func:`fold_sigma_mu`).
        measure: a :data:`MEASURES` key.
        significance: standard errors that a "better"/"worse" verdict needs.
    """
    mine, theirs = fold_sigma_mu(record, measure), fold_sigma_mu(reference, measure)
    common = [label for label in theirs if label in mine]
    return paired_comparison([mine[c] for c in common], [theirs[c] for c in common],
                             significance, clusters=[fold for _, fold in common])
