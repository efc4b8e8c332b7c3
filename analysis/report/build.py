"""The analysis report's content: per-network summaries from the fit outputs, and the page.

:func:`network_summary` reads what the Fit, Evaluate and BuildWorkspace tasks wrote (their JSON,
never their Markdown) into one flat record per network; :func:`build_report` turns those records,
the learned-skim trade-off and the figures into the page's blocks, which
:mod:`analysis.report.blocks` renders.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from analysis.config import INFERENCE, AnalysisConfig
from analysis.report.blocks import Block, Heading, Image, Paragraph, Table, image_name
from analysis.report.comparison import (
    PairedComparison,
    SigmaMuPoint,
    StrategyPairing,
    fold_sigma_mu,
    mean_and_standard_error,
    paired_records,
    strategy_pairings,
    uncertainty_breakdown,
)
from analysis.report.dependence import systematic_dependence
from analysis.report.matched_size import AUC_TOLERANCE, dnn_gnn_auc_table, per_fold_auc
from analysis.report.projection import GenerationCost, projection_sentence
from analysis.selection.cut_tables import threshold_cells, tradeoff_cells

__all__ = ["COMPARISON_MEASURES", "NetworkFigures", "build_report", "comparison_points",
           "dependence_table", "format_number", "headline", "impact_cell", "network_key",
           "network_summary", "pairing_table", "pruned_shapes_cell", "tradeoff_table",
           "verdict_details", "verdict_pairing"]

# what the report keeps of a Fit task's results.json
_FIT_KEYS = ("sigma_mu", "sigma_mu_stat", "sigma_mu_syst", "expected_significance",
             "expected_limit", "observed_limit", "mu_hat", "mu_uncertainty", "impacts",
             "sigma_mu_folds", "sigma_mu_no_mcstat", "sigma_mu_no_mcstat_folds")
# absent from results.json of older versions (fold_labels: before seeds, seed index 0)
_OPTIONAL_FIT_KEYS: dict[str, Any] = {"normalisations": {}, "fold_labels": None}
COMPARISON_MEASURES = {"sigma_mu": "σ_μ total (incl. MC stat.)",
                       "sigma_mu_no_mcstat": "σ_μ without MC stat."}
"""The report's words for the two measures of :data:`~analysis.report.comparison.MEASURES`."""
RESOLVE_CHANGE = 0.12  # CMS-PAS-MLG-23-005: 12-16 % lower sigma_mu; the change to resolve
TARGET_NETWORK = ("dnn", INFERENCE, True)  # model, strategy, learned cuts: the headline's verdict
_BOUND_TOLERANCE = 1e-2  # in units of mu: an impact this close to the room left is at the bound


def network_key(learned_cuts: bool, model: str, strategy: str) -> str:
    """The key of one network in the summary, e.g. ``cuts_dnn_inference``."""
    return f"{'cuts' if learned_cuts else 'nocuts'}_{model}_{strategy}"


def network_summary(fit: Mapping[str, Any], evaluation: Mapping[str, Any],
                    binning: Mapping[str, Any], *, learned_cuts: bool, model: str,
                    strategy: str) -> dict[str, Any]:
    """One network's record for the report.

    Args:
        fit: the Fit task's ``results.json`` (sigma_mu etc. in units of mu).
        evaluation: the Evaluate task's ``evaluation.json`` (``auc`` of seed index 0,
            ``auc_seeds`` per seed index, folds pooled; ``auc_folds`` per seed index and fold,
            absent from results written before it).
        binning: the BuildWorkspace task's ``binning.json`` (``n_bins`` over all channels,
            ``poi_bounds``, ``pruned_shapes`` as ``[channel, process, systematic]``,
            ``channels`` of the workspace by name).
        learned_cuts, model, strategy: what identifies the network.

    Returns:
        The flat record that :func:`build_report` and :mod:`analysis.report.comparison` read.
    """
    return {"learned_cuts": learned_cuts, "model": model, "strategy": strategy,
            "auc": evaluation["auc"], "auc_seeds": evaluation.get("auc_seeds",
                                                                  [evaluation["auc"]]),
            # per (seed index, fold): each fold network's AUC on its own held-out events
            "auc_folds": [a for seed in evaluation.get("auc_folds", []) for a in seed],
            "n_bins": binning["n_bins"],
            "poi_bounds": binning["poi_bounds"], "pruned_shapes": binning["pruned_shapes"],
            # the workspace's channels (empty channels dropped); absent from older binning.json
            "workspace_channels": list(binning.get("channels", {})),
            **{key: fit[key] for key in _FIT_KEYS},
            **{key: fit.get(key, default) for key, default in _OPTIONAL_FIT_KEYS.items()}}


def format_number(value: Any, digits: str = ".3f") -> str:
    """``value`` formatted with ``digits``, or ``n/a`` for None and non-finite floats."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return format(value, digits)


def impact_cell(result: Mapping[str, Any], nuisance: str) -> str:
    """The impact of ``nuisance`` on mu-hat as a table cell: ``max |Δμ̂|`` over its two sides.

    A refit that ended on the range of mu gives only a lower bound: the cell then reads
    ``≥ x (μ at its bound)``.

    Args:
        result: a :func:`network_summary` record (``impacts``: name -> (up, down) in units of
            mu; ``poi_bounds``: the range of mu).
        nuisance: the nuisance's name.
    """
    if nuisance not in result["impacts"]:
        return "n/a"
    value = max(abs(v) for v in result["impacts"][nuisance])
    low, high = result["poi_bounds"]
    room = min(high - 1.0, 1.0 - low)  # the Asimov fit's mu-hat is 1
    if value >= room - _BOUND_TOLERANCE:
        return f"≥ {value:.1f} (μ at its bound)"
    return format_number(value)


def tradeoff_table(points: Sequence[Mapping[str, Any]], features: Sequence[str],
                   directions: Sequence[str]) -> Table:
    """The learned skim's trade-off (ReduceEvents' ``tradeoff.json``) as a table.

    Args:
        points: per scale ``t`` of the learned thresholds (0: no cut, 1: learned), as
            :func:`~analysis.selection.reduce.tradeoff_records` writes them.
        features, directions: the cut features and their directions (``>``/``<``).
    """
    return Table(*tradeoff_cells(points, features, directions))


TAYLOR_SHOWN = 5  # Taylor coefficients named per network: the figure has the 20 largest


@dataclass(frozen=True)
class NetworkFigures:
    """What the report shows of one network besides numbers.

    Attributes:
        score_plot: the stacked score histogram (PNG path).
        impacts_plot: the impacts (PNG path).
        postfit_plot: the pre- and post-fit yields per category (PNG path), if any.
        taylor_ranked: the Taylor coefficients, ``(name, value)`` in ranked order (the report
            shows the first :data:`TAYLOR_SHOWN`).
    """

    score_plot: str
    impacts_plot: str
    taylor_ranked: Sequence[tuple[str, float]]
    postfit_plot: str | None = None


def _label(r: Mapping[str, Any]) -> str:
    return f"{'cuts' if r['learned_cuts'] else 'no cuts'} / {r['model']} / {r['strategy']}"


def _name(r: Mapping[str, Any]) -> str:
    return (f"{r['model'].upper()} {r['strategy']} "
            f"({'learned cuts' if r['learned_cuts'] else 'skim only'})")


def _mean_cell(r: Mapping[str, Any], key: str) -> str:
    """Mean ± standard error (clustered by fold) of a measure over the (seed index, fold)
    networks, and how many."""
    values = list(fold_sigma_mu(r, key).values())
    mean, error = seeds_folds_sigma_mu(r, key)
    n = sum(math.isfinite(v) for v in values)
    return f"{format_number(mean, '.3g')} ± {format_number(error, '.2g')} ({n}/{len(values)})"


def _auc_folds_cell(r: Mapping[str, Any]) -> str:
    """Mean ± standard error of the per-fold AUCs over seeds × folds (n/a before they were
    written)."""
    mean, error = per_fold_auc(r)
    if not math.isfinite(mean):
        return "n/a"
    return f"{format_number(mean, '.4f')} ± {format_number(error, '.2g')}"


def _results_table(summary: Mapping[str, Mapping[str, Any]]) -> Table:
    header = ["selection", "model", "strategy", "σ_μ stat", "σ_μ total",
              "σ_μ total, seeds × folds", "σ_μ without MC stat.",
              "σ_μ without MC stat., seeds × folds", "σ_μ syst (without MC stat.)",
              "σ_μ MC stat.", "Z expected", "95% CLs limit exp.", "limit (pseudo-data)",
              "AUC (folds pooled)", "AUC per fold, seeds × folds", "μ̂ (pseudo-data)"]
    f = format_number
    rows = [[("learned cuts" if r["learned_cuts"] else "skim only"), r["model"].upper(),
             r["strategy"], f(r["sigma_mu_stat"]), f(r["sigma_mu"]), _mean_cell(r, "sigma_mu"),
             f(r["sigma_mu_no_mcstat"]), _mean_cell(r, "sigma_mu_no_mcstat"),
             *map(f, uncertainty_breakdown(r)), f(r["expected_significance"], ".2f"),
             f(r["expected_limit"], ".2f"), f(r["observed_limit"], ".2f"), f(r["auc"], ".4f"),
             _auc_folds_cell(r), f"{f(r['mu_hat'], '.2f')} ± {f(r['mu_uncertainty'], '.2f')}"]
            for r in summary.values()]
    return Table(header, rows)


def headline(summary: Mapping[str, Mapping[str, Any]],
             pairings: Sequence[StrategyPairing]) -> str:
    """The report's first sentences: the best network's expected sigma_mu and the verdict.

    The best network is the one with the smallest determined ``sigma_mu`` (total: statistics,
    every systematic and the simulated samples' MC statistics; Asimov at mu = 1; seed index
    0's networks on all events); its seeds × folds mean ± standard error follows, with the
    networks it is not distinguished from, paired over seeds × folds
    (:func:`indistinguishable_networks`): one full fit has no error bar, so a lowest value
    alone is no ranking. The verdict is that of :func:`verdict_pairing` (the
    inference-aware DNN with the learned skim against its CE), for both measures: the mean
    change ± its standard error and the verdict word. How the pairs, errors and verdicts are
    made, and what the comparison says about CMS's 12 %, is :func:`verdict_details`' text.

    Args:
        summary: :func:`network_key` -> :func:`network_summary` record.
        pairings: :func:`~analysis.report.comparison.strategy_pairings` of ``summary``.

    Returns:
        Two sentences of plain text (the second says there is nothing to compare where
        ``pairings`` is empty).
    """
    best = _best_network(summary)
    if best is not None:
        text = (f"Lowest expected σ_μ total: "
                f"{_name(summary[best])}, {summary[best]['sigma_mu']:.3g} in the full fit"
                f"{_distinction(summary, best)}.")
    else:
        text = ("No network has a determined expected σ_μ (every interval reaches the range "
                "of μ).")
    if not pairings:
        return text + " No systematic-aware strategy to compare with CE."
    chosen = verdict_pairing(summary, pairings)
    verdicts = "; ".join(f"{COMPARISON_MEASURES[m]} {c.short_sentence()}"
                         for m, c in chosen.comparisons.items())
    return f"{text} Verdict, {_name(summary[chosen.key])} against CE: {verdicts}."


def seeds_folds_sigma_mu(record: Mapping[str, Any], key: str = "sigma_mu"
                         ) -> tuple[float, float]:
    """Mean ± standard error (clustered by fold, :func:`mean_and_standard_error`) of one
    network's ``key`` over its (seed index, fold) networks, in units of mu (NaN without)."""
    per_network = fold_sigma_mu(record, key)
    return mean_and_standard_error(list(per_network.values()),
                                   [fold for _, fold in per_network])


def paired_against_all(summary: Mapping[str, Mapping[str, Any]], best: str
                       ) -> dict[str, list[tuple[str, PairedComparison]]]:
    """Every other network's sigma_mu total against ``best``'s, paired over seeds × folds
    (:func:`~analysis.report.comparison.paired_records`: the change ``key / best - 1``),
    grouped by verdict.

    Args:
        summary: :func:`network_key` -> :func:`network_summary` record.
        best: the key of the reference network.

    Returns:
        verdict (``"not resolved"``: not distinguished; ``"better"``: lower than ``best``;
        ``"worse"``; ``"undetermined"``) -> ``(key, comparison)`` pairs, smallest change first.
    """
    grouped: dict[str, list[tuple[str, PairedComparison]]] = {}
    for key in summary:
        if key != best:
            comparison = paired_records(summary[key], summary[best], "sigma_mu")
            grouped.setdefault(comparison.verdict, []).append((key, comparison))
    return {v: sorted(items, key=lambda item: item[1].mean) for v, items in grouped.items()}


def indistinguishable_networks(summary: Mapping[str, Mapping[str, Any]], best: str
                               ) -> list[tuple[str, PairedComparison]]:
    """The networks whose sigma_mu total is not distinguished from ``best``'s: paired over
    seeds × folds (:func:`paired_against_all`), the change is "not resolved" at 2 standard errors.

    Returns:
        ``(key, comparison)`` of each such network other than ``best``, smallest change
        first.
    """
    return paired_against_all(summary, best).get("not resolved", [])


def _short_names(summary: Mapping[str, Mapping[str, Any]],
                 items: Sequence[tuple[str, PairedComparison]]) -> str:
    """'DNN penalty (+3 % ± 2 %), …' for the first two, then how many more."""
    names = [f"{_name(summary[k])} ({100 * c.mean:+.1f} % ± {100 * c.standard_error:.1f} %)"
             for k, c in items[:2]]
    if len(items) > 2:
        names.append(f"{len(items) - 2} more")
    return ", ".join(names)


def _distinction(summary: Mapping[str, Mapping[str, Any]], best: str) -> str:
    """', m ± e over seeds × folds' and, paired over seeds × folds, the networks it is not
    distinguished from, those that are lower, or that every other one is higher."""
    mean, error = seeds_folds_sigma_mu(summary[best])
    if not math.isfinite(error):
        return ""
    text = f", {format_number(mean, '.3g')} ± {format_number(error, '.2g')} over seeds × folds"
    grouped = paired_against_all(summary, best)
    if grouped.get("not resolved"):
        text += f"; not distinguished from {_short_names(summary, grouped['not resolved'])}"
    if grouped.get("better"):
        text += f"; lower, paired over seeds × folds: {_short_names(summary, grouped['better'])}"
    if set(grouped) == {"worse"}:
        text += "; every other network is higher, paired over seeds × folds"
    return text


def _best_network(summary: Mapping[str, Mapping[str, Any]]) -> str | None:
    """The key of the network with the smallest determined total sigma_mu, or None."""
    determined = [k for k, r in summary.items() if math.isfinite(r["sigma_mu"])]
    return min(determined, key=lambda k: summary[k]["sigma_mu"]) if determined else None


def _by_change(p: StrategyPairing) -> tuple[bool, float]:
    """Sort key: the change of sigma_mu total, undetermined ones last."""
    mean = p.comparisons["sigma_mu"].mean
    return (not math.isfinite(mean), mean if math.isfinite(mean) else 0.0)


def verdict_pairing(summary: Mapping[str, Mapping[str, Any]],
                    pairings: Sequence[StrategyPairing]) -> StrategyPairing:
    """The comparison the headline gives the verdict of.

    The inference-aware DNN with the learned skim against its CE (:data:`TARGET_NETWORK`, the
    question the demo asks, after CMS-PAS-MLG-23-005); without it the best network's own
    comparison, else the one with the largest reduction of the total sigma_mu.

    Args:
        summary: :func:`network_key` -> :func:`network_summary` record.
        pairings: :func:`~analysis.report.comparison.strategy_pairings` of ``summary``, not
            empty.

    Returns:
        One of ``pairings``.
    """
    best = _best_network(summary)
    return (next((p for p in pairings if _is_target(summary[p.key])), None)
            or next((p for p in pairings if p.key == best), None)
            or min(pairings, key=_by_change))


def verdict_details(summary: Mapping[str, Mapping[str, Any]],
                    pairings: Sequence[StrategyPairing]) -> str:
    """The headline's verdict in full, for the section of the paired comparison.

    Args:
        summary: :func:`network_key` -> :func:`network_summary` record.
        pairings: :func:`~analysis.report.comparison.strategy_pairings` of ``summary``.

    Returns:
        Plain text, empty without ``pairings``: the :func:`verdict_pairing`'s verdicts with
        their pairs, folds and signs; for each measure whose verdict is "not resolved",
        whether a 12 % reduction is disfavoured or what would resolve it
        (:meth:`~analysis.report.comparison.PairedComparison.sample_factor_to_resolve`); and,
        where another comparison shows a larger, "better" reduction, that one, with the folds'
        degrees of freedom.
    """
    if not pairings:
        return ""
    chosen = verdict_pairing(summary, pairings)
    verdicts = "; ".join(f"{COMPARISON_MEASURES[m]} {c.sentence()}"
                         for m, c in chosen.comparisons.items())
    resolution = "".join(_resolution_sentence(c, COMPARISON_MEASURES[m])
                         for m, c in chosen.comparisons.items())
    text = (f"The headline's verdict, {_name(summary[chosen.key])} against CE, in full: "
            f"{verdicts}.{resolution}")
    largest = min(pairings, key=_by_change)
    if largest is not chosen and largest.comparisons["sigma_mu"].verdict == "better":
        c = largest.comparisons["sigma_mu"]
        text += (f" The largest reduction among the {len(pairings)} comparisons: "
                 f"{_name(summary[largest.key])}, σ_μ total {c.sentence()}"
                 + (f"; with {c.n_clusters} folds the clustered standard error has "
                    f"{c.n_clusters - 1} degrees of freedom, so 2 standard errors is not a "
                    f"95 % test" if 1 < c.n_clusters < 10 else "") + ".")
    return text


def _is_target(r: Mapping[str, Any]) -> bool:
    """The comparison the demo is built to answer: the inference-aware DNN with the learned
    skim (CMS-PAS-MLG-23-005 measured 12-16 % lower sigma_mu with such training)."""
    return (r["model"], r["strategy"], bool(r["learned_cuts"])) == TARGET_NETWORK


def _resolution_sentence(comparison: PairedComparison, measure: str) -> str:
    """What a "not resolved" comparison says about a :data:`RESOLVE_CHANGE` reduction of the
    ``measure`` (words, e.g. "σ_μ total (incl. MC stat.)"): disfavoured (how many standard
    errors away), or what would resolve it."""
    # a zero error: identical sigma_mu on both sides in every pair, nothing to resolve
    if (comparison.verdict != "not resolved" or not math.isfinite(comparison.standard_error)
            or comparison.standard_error <= 0):
        return ""
    factor = comparison.sample_factor_to_resolve(RESOLVE_CHANGE)
    percent, error = 100 * RESOLVE_CHANGE, 100 * comparison.standard_error
    if factor <= 1.0:
        distance = (comparison.mean + RESOLVE_CHANGE) / comparison.standard_error
        start = (f" In {measure}, a {percent:.0f} % reduction (what CMS measured) lies "
                 f"{distance:.1f} standard errors from this change")
        if distance >= comparison.significance:
            return (f"{start}: the standard error ({error:.1f} %) is small enough to see it, "
                    f"and the change is smaller, which disfavours a {percent:.0f} % gain here "
                    f"(with {comparison.n_clusters} folds, {comparison.n_clusters - 1} degrees "
                    f"of freedom).")
        return (f"{start}: the standard error ({error:.1f} %) could resolve it, but this change "
                f"is compatible with both no gain and a {percent:.0f} % gain.")
    return (f" To resolve a {percent:.0f} % change of {measure} (what CMS measured) at "
            f"{comparison.significance:g} standard errors, the standard error must fall from "
            f"{error:.1f} % to {percent / comparison.significance:.1f} %: about {factor:.2g}× "
            f"the independent folds, i.e. × the simulated events at this fold size (an upper "
            f"estimate: larger folds also shrink each pair's MC noise).")


def pairing_table(summary: Mapping[str, Mapping[str, Any]],
                  pairings: Sequence[StrategyPairing]) -> Table:
    """Each systematic-aware network against its CE: one row, both measures.

    Args:
        summary: :func:`network_key` -> :func:`network_summary` record.
        pairings: :func:`~analysis.report.comparison.strategy_pairings` of ``summary``.

    Returns:
        Columns per measure: mean relative change of sigma_mu ± its standard error (%), the
        fraction of pairs with the sign of the mean, the verdict; and the number of pairs.
    """
    header = ["selection / model / strategy", "pairs"]
    for words in COMPARISON_MEASURES.values():
        header += [f"{words}: change vs CE", "same sign", "verdict"]
    rows = []
    for p in pairings:
        row = [_label(summary[p.key]), str(p.comparisons["sigma_mu"].n_pairs)]
        for measure in COMPARISON_MEASURES:
            c = p.comparisons[measure]
            change = (f"{100 * c.mean:+.1f} %" if math.isfinite(c.mean) else "n/a") + (
                f" ± {100 * c.standard_error:.1f} %" if math.isfinite(c.standard_error) else "")
            row += [change, format_number(100 * c.same_sign, ".0f") + " %"
                    if math.isfinite(c.same_sign) else "n/a", c.verdict_words()]
        rows.append(row)
    return Table(header, rows)


def comparison_points(summary: Mapping[str, Mapping[str, Any]]) -> list[SigmaMuPoint]:
    """The networks of the comparison figure: per network its (seed index, fold) sigma_mu.

    Args:
        summary: :func:`network_key` -> :func:`network_summary` record, in display order.

    Returns:
        One :class:`~analysis.report.comparison.SigmaMuPoint` per network, grouped by
        model and selection (the networks that share a CE), values keyed by
        :data:`COMPARISON_MEASURES`' words.
    """
    def group(r: Mapping[str, Any]) -> str:
        return f"{r['model'].upper()}, {'cuts' if r['learned_cuts'] else 'no cuts'}"
    groups = list(dict.fromkeys(group(r) for r in summary.values()))
    # both measures have the same (seed index, fold) labels: the folds cluster the errors
    return [SigmaMuPoint(group(r), r["strategy"],
                         {words: list(fold_sigma_mu(r, m).values())
                          for m, words in COMPARISON_MEASURES.items()},
                         clusters=[fold for _, fold in fold_sigma_mu(r, "sigma_mu")])
            for g in groups for r in summary.values() if group(r) == g]


def dependence_table(summary: Mapping[str, Mapping[str, Any]],
                     histograms: Mapping[str, Mapping[str, Any]]) -> Table:
    """Per network, :func:`~analysis.report.dependence.systematic_dependence` of its output.

    Args:
        summary: :func:`network_key` -> :func:`network_summary` record.
        histograms: the same keys -> CreateHistograms' ``channels`` (networks without one are
            left out).

    Returns:
        One row per network, one ``up / down`` column per systematic, in percent.
    """
    dependence = {k: systematic_dependence(histograms[k]) for k in summary if k in histograms}
    names = list(dict.fromkeys(n for d in dependence.values() for n in d))

    def cell(sides: tuple[float, float] | None, folds: Sequence[Sequence[float]] | None) -> str:
        if sides is None:
            return "n/a"
        text = " / ".join(format_number(100 * v, ".2f") for v in sides)
        if folds:  # the seeds × folds mean ± standard error, up / down
            text += " (" + " / ".join(f"{format_number(100 * m, '.1f')} ± "
                                      f"{format_number(100 * e, '.1f')}" for m, e in folds) + ")"
        return text
    return Table(["selection / model / strategy", *(f"{n} up / down (%)" for n in names)],
                 [[_label(summary[k]), *(cell(d.get(n), summary[k].get("dependence_folds", {})
                                              .get(n)) for n in names)]
                  for k, d in dependence.items()])


def _workspace_blocks(summary: Mapping[str, Mapping[str, Any]],
                      config: AnalysisConfig) -> list[Block]:
    settings = config.inference
    merging = (f"merged from {settings.n_bins} until the background's relative MC "
               f"statistical uncertainty is at most {settings.max_background_mc_stat:.0%} "
               "per bin" if settings.max_background_mc_stat is not None
               else f"{settings.n_bins}, not merged")
    pruning = (f"a histosys is dropped (its normsys kept) when its shape change is below "
               f"{settings.prune_shape_chi2:g} MC-stat. variances per bin"
               if settings.prune_shape_chi2 is not None else "no shape is pruned")
    return [Paragraph(f"Workspaces: score bins {merging}; {pruning}. Histosys pruned: of the "
                      "channels × processes × systematics, and the systematics pruned in every "
                      "channel and process ('everywhere'); which ones per network: pruned_shapes "
                      "in the report's summary.json and BuildWorkspace's binning.json."),
            Table(["selection / model / strategy", "bins", "histosys pruned"], [
                [_label(r), str(r["n_bins"]),
                 pruned_shapes_cell(r["pruned_shapes"], r.get("workspace_channels", []),
                                    list(config.processes), settings.systematics)]
                for r in summary.values()])]


def pruned_shapes_cell(pruned: Sequence[Sequence[str]], channels: Sequence[str],
                       processes: Sequence[str], systematics: Sequence[str]) -> str:
    """How many histosys the workspace pruned, as a table cell, and the systematics pruned in
    every channel and process (the full list stays in ``binning.json`` and the report's
    ``summary.json``, ``pruned_shapes``).

    Args:
        pruned: ``[channel, process, systematic]`` of each pruned histosys.
        channels: the workspace's channels (empty: unknown, results written before they were
            recorded).
        processes, systematics: the config's processes and shape systematics.

    Returns:
        E.g. ``61 of 75; everywhere: jes, jer`` (75 = channels × processes × systematics, the
        histosys before pruning; a process without events in a channel has none there, so
        it is an upper bound), ``none of 75``, or ``61`` without ``channels``.

    Example:
        >>> pruned_shapes_cell([["a", "tt", "jes"], ["b", "tt", "jes"], ["a", "tt", "fsr"]],
        ...                    ["a", "b"], ["tt"], ["jes", "fsr"])
        '3 of 4; everywhere: jes'
    """
    if not channels:
        return str(len(pruned)) if pruned else "none"
    count = f"{len(pruned) or 'none'} of {len(channels) * len(processes) * len(systematics)}"
    where = {(c, p) for c in channels for p in processes}
    everywhere = [s for s in systematics
                  if where <= {(c, p) for c, p, v in pruned if v == s}]
    return count + (f"; everywhere: {', '.join(everywhere)}" if everywhere else "")


def _matched_size_blocks(summary: Mapping[str, Mapping[str, Any]],
                         parameters: Mapping[str, int], target_parameters: int) -> list[Block]:
    """The DNN vs GNN section: parameter counts, and the AUC table with the GNN's target
    (:func:`~analysis.report.matched_size.dnn_gnn_auc_table`) where both models ran."""
    blocks: list[Block] = [
        Heading("DNN vs GNN at matched size (arXiv:2402.17386)"),
        Paragraph("Trainable parameters: " + ", ".join(
            f"{m.upper()} {n}" for m, n in sorted(parameters.items()))
            + f" (target {target_parameters}).")]
    table = dnn_gnn_auc_table(summary)
    if not table.rows:
        return blocks
    return [*blocks, Paragraph(
        f"The target: the GNN's held-out AUC within {AUC_TOLERANCE:g} of the DNN's, or above "
        "it. Three readings, all on held-out events: pooled (every event scored by its fold's "
        "network, all folds ranked together, what the full fit's histograms see) of seed 0 "
        "and the mean over seeds (± the seeds' standard error); per fold (each fold network on "
        "its own events, mean ± standard error over seeds × folds, clustered by fold). GNN − "
        "DNN compares the means. A pooled AUC below the per-fold one means the fold networks "
        "rank events well but output different scales, which pooling, and the full fit's "
        "histograms, mix."), table]


def _impact_blocks(summary: Mapping[str, Mapping[str, Any]]) -> list[Block]:
    nuisances = sorted({n for r in summary.values() for n in r["impacts"]})
    return [Heading("Impact of each systematic on μ̂"), Paragraph(
        "Asimov data; each nuisance fixed on each side where its profile likelihood rises "
        "by 1 (its post-fit uncertainty, at most the prior width 1) and the rest refitted: "
        "max |Δμ̂|. 'MC stat.' is the simulated samples' statistical uncertainty as a whole, "
        "sqrt(σ_μ total² − σ_μ without MC stat.²) (n/a where σ_μ total is beyond the range of "
        "μ). '≥ x (μ at its bound)': the refit ended on the range of μ, so the impact is at "
        "least x."),
        Table(["selection / model / strategy", "MC stat.", *nuisances],
              [[_label(r), format_number(uncertainty_breakdown(r)[1]),
                *(impact_cell(r, n) for n in nuisances)] for r in summary.values()])]


def _normalisation_blocks(summary: Mapping[str, Mapping[str, Any]]) -> list[Block]:
    names = sorted({n for r in summary.values() for n in r["normalisations"]})
    if not names:
        return []
    return [Heading("Free normalisations after the fit"), Paragraph(
        "Processes normalised freely in the fit (normfactors, inference.free_normalisations), "
        "fitted to the pseudo-data with the other categories as control regions: value ± its "
        "parabolic uncertainty (1 is the cross section of the config)."),
        Table(["selection / model / strategy", *names],
              [[_label(r), *(f"{format_number(r['normalisations'][n][0], '.2f')} ± "
                             f"{format_number(r['normalisations'][n][1], '.2f')}"
                             if n in r["normalisations"] else "n/a" for n in names)]
               for r in summary.values()])]


def _fold_cut_blocks(tradeoff: Mapping[str, Any]) -> list[Block]:
    """Every fold's learned thresholds (``tradeoff.json``'s ``selections``, one row per fold)."""
    if "selections" not in tradeoff:  # tradeoff.json of a version with one cut set
        return []
    return [Paragraph("Held-out honesty: the cuts of fold k (cuts_k) are learned on the events "
                      "outside fold k, the ones network k trains on; network k is evaluated on "
                      "fold k's events passing cuts_k, so no held-out event chose a cut. One row "
                      "per fold: the thresholds, the objective of the hard cuts before and after "
                      "learning (on the training events), and fold k's events kept by cuts_k."),
            Table(*threshold_cells(tradeoff["selections"], tradeoff.get("folds")))]


def build_report(config: AnalysisConfig, summary: Mapping[str, Mapping[str, Any]],
                 parameters: Mapping[str, int], figures: Mapping[str, NetworkFigures], *,
                 version: str, provenance: Mapping[str, Any],
                 tradeoff: Mapping[str, Any] | None = None,
                 tradeoff_plot: str | None = None, comparison_plot: str | None = None,
                 histograms: Mapping[str, Mapping[str, Any]] | None = None,
                 generation: GenerationCost | None = None) -> list[Block]:
    """The report page as blocks.

    The first section is the result: the :func:`headline` and the comparison figure, then the
    paired comparison against CE (:func:`pairing_table`), the numbers per network and the
    output's dependence on each systematic (:func:`dependence_table`); the details follow.

    Args:
        config: the analysis config (names, luminosity, seeds, inference settings).
        summary: :func:`network_key` -> :func:`network_summary` record, in display order.
        parameters: model name -> trainable parameters.
        figures: ``"<model>_<strategy>"`` -> its :class:`NetworkFigures` (of the first
            selection variant), in display order.
        version: the output version (``--version``).
        provenance: config hash, package versions (``packages``), ``python``.
        tradeoff: ReduceEvents' ``tradeoff.json`` (``points`` and ``selection`` with
            ``features``, ``directions``), or None without learned cuts.
        tradeoff_plot: its PNG, shown with the table.
        comparison_plot: the PNG of
            :func:`~analysis.plotting.sigma_mu.plot_sigma_mu_comparison` of
            :func:`comparison_points`, shown under the headline.
        histograms: :func:`network_key` -> CreateHistograms' ``channels`` (seed index 0),
            for :func:`dependence_table`; None: no such table.
        generation: this run's generated events and their CPU time, for the projection of
            the simulation that sigma_mu <= 1 needs
            (:func:`~analysis.report.projection.projection_sentence`); None: without its cost.

    Returns:
        Headings, paragraphs, tables and images, in page order; each image named for the
        report's directory (:func:`~analysis.report.blocks.copy_images` puts it there).
    """
    training = config.training
    pairings = strategy_pairings(summary)
    details = verdict_details(summary, pairings)
    blocks: list[Block] = [
        Heading(f"diffana: {config.description or config.name}", 1),
        Heading("Result"),
        Paragraph(headline(summary, pairings)),
        *([Image(comparison_plot, image_name(comparison_plot, "report"),
                 "σ_μ per model × strategy: mean ± standard error over seeds × folds, "
                 "clustered by fold and never below the independent one (each "
                 "fold's network on its held-out events at the full luminosity); dashed: CE")]
          if comparison_plot is not None else []),
        Paragraph(projection_sentence(summary, generation)),
        Paragraph(f"Config {config.name} (sha256 {config.digest[:16]}...), version {version}, "
                  f"{training.seeds} seed{'s' * (training.seeds != 1)} (training.seed "
                  f"{training.seed}) × {training.n_folds} folds per network, luminosity "
                  f"{config.luminosity.value:g} fb^-1. Expected results use the Asimov dataset "
                  f"at mu = 1; 'observed' ones use pseudo-data (seed "
                  f"{config.inference.pseudo_data_seed})."),
        Heading("Each strategy against CE, paired over seeds × folds"),
        Paragraph("A pair is one (seed, fold): the strategy's network and CE's, trained with "
                  "the same seed on the same folds, σ_μ fitted on the same held-out fold (at "
                  "the full luminosity). Change: mean of σ_μ / σ_μ(CE) − 1 over the pairs ± its "
                  "standard error. The seeds of one fold share its held-out events, so their "
                  "changes are correlated: the standard error is clustered by fold "
                  "(cluster-robust, CR1), and the number of folds, not of pairs, limits it; with "
                  "k folds it has k − 1 degrees of freedom, so 2 standard errors is a "
                  "convention, not a 95 % test. With so few folds CR1 can fall below the pairs' "
                  "scatter by chance, so the error is never taken below the independent one. "
                  "'better'/'worse' when the change is ≥ 2 standard errors from 0, "
                  "else 'not resolved at ±2 standard errors'; 'undetermined' with fewer than 2 "
                  "pairs or 2 folds with a number. 'Without MC stat.' is the same fit without the "
                  "simulated samples' statistical uncertainty, the result if the simulation "
                  "were much larger than the data. CMS measured 12-16 % lower σ_μ with such "
                  "training on a real analysis."),
        pairing_table(summary, pairings),
        *([Paragraph(details)] if details else []),
        Heading("Results per network"),
        Paragraph("σ_μ stat, total, without MC stat., Z, limits and μ̂: seed index 0's "
                  "networks on all events (the full fit); 'seeds × folds': mean ± standard "
                  "error, clustered by fold and never below the independent one "
                  "(determined/all), of the (seed, fold) networks' σ_μ."),
        _results_table(summary),
        *([Heading("Dependence of each network's output on the systematics"), Paragraph(
            "Relative change of the score histograms' shape (all processes, every channel and "
            "bin; the varied histogram scaled to the nominal total) under each systematic's up "
            "and down variation: Σ|N_var − N_nom| / ΣN_nom, in %. The penalty of "
            "arXiv:1907.11674 trains to reduce it. First seed index 0's networks on every "
            "event; in brackets the mean ± standard error over seeds × folds (each fold "
            "network on its held-out fold; clustered by fold), which a difference between two "
            "rows must exceed to be an effect. The brackets read higher: a fold holds a third "
            "of the events, and the MC noise of the varied histograms adds to the difference."),
            dependence_table(summary, histograms)]
          if histograms is not None else []),
        *_workspace_blocks(summary, config),
        *_matched_size_blocks(summary, parameters, config.training.target_parameters),
        *_normalisation_blocks(summary),
        *_impact_blocks(summary)]
    if tradeoff is not None:
        selection = tradeoff["selection"]
        blocks += [Heading("Learned skim (LearnCuts, Watts CHEP 2023): the trade-off"),
                   *_fold_cut_blocks(tradeoff),
                   Paragraph("Thresholds scaled from no cut (t = 0) through the learned ones "
                             f"(t = 1) of fold {tradeoff.get('scanned_fold', 0)}, on its "
                             "training events; σ_μ of the binned discriminant "
                             f"{config.cuts.discriminant if config.cuts else ''}."),
                   tradeoff_table(tradeoff["points"], selection["features"],
                                  selection["directions"])]
        if tradeoff_plot is not None:
            blocks.append(Image(tradeoff_plot, image_name(tradeoff_plot, "reduce"),
                                "Data kept vs signal efficiency and expected σ_μ"))
    blocks.append(Heading("Key plots"))
    for tag, figure in figures.items():
        model, strategy = tag.split("_", 1)
        title = f"{model.upper()} {strategy}"
        blocks += [Image(figure.score_plot, image_name(figure.score_plot, tag),
                         f"{title}: score histogram"),
                   Image(figure.impacts_plot, image_name(figure.impacts_plot, tag),
                         f"{title}: impacts"),
                   *([Image(figure.postfit_plot, image_name(figure.postfit_plot, tag),
                            f"{title}: pre- and post-fit yields per category")]
                     if figure.postfit_plot else []),
                   Paragraph(f"{title}: largest Taylor coefficients: " + ", ".join(
                       f"{name} {value:.3g}"
                       for name, value in figure.taylor_ranked[:TAYLOR_SHOWN]))]
    blocks += [Heading("Provenance"), Paragraph(
        "Packages: " + ", ".join(f"{k} {v}" for k, v in provenance["packages"].items() if v)
        + f"; Python {provenance['python']}.")]
    return blocks
