"""What the report reads of each network: its tasks' parsed JSON and figures, gathered into the
summary, figures and histograms that :func:`~analysis.report.build.build_report` takes."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from analysis.report.build import NetworkFigures, network_key, network_summary
from analysis.report.dependence import dependence_over_folds

__all__ = ["NetworkResults", "collect_networks", "parameter_counts"]


@dataclass(frozen=True)
class NetworkResults:
    """One network's outputs, as the report reads them (JSON already parsed).

    Attributes:
        learned_cuts, model, strategy: what identifies the network.
        fit: Fit's ``results.json`` (sigma_mu etc. in units of mu).
        evaluation: Evaluate's ``evaluation.json`` (``auc``, ``auc_seeds``).
        binning: BuildWorkspace's ``binning.json``.
        channels: CreateHistograms' ``channels`` (seed index 0): channel -> process ->
            variation -> ``values``/``variances`` per bin (expected events).
        fold_channels: CreateHistograms' ``folds``: ``{"seed", "fold", "channels"}`` of each
            (seed index, fold) network on its held-out fold; empty where not read.
        score_plot, impacts_plot, postfit_plot: PNG paths of CreateHistograms' and Fit's figures.
        taylor_ranked: TaylorAnalysis' ``ranked`` coefficients, ``(name, value)``; None where
            the report shows no figures of this network (a second selection variant).
    """

    learned_cuts: bool
    model: str
    strategy: str
    fit: Mapping[str, Any]
    evaluation: Mapping[str, Any]
    binning: Mapping[str, Any]
    channels: Mapping[str, Any]
    score_plot: str
    impacts_plot: str
    postfit_plot: str | None = None
    taylor_ranked: Sequence[tuple[str, float]] | None = None
    fold_channels: Sequence[Mapping[str, Any]] = ()

    @property
    def key(self) -> str:
        """:func:`~analysis.report.build.network_key` of this network."""
        return network_key(self.learned_cuts, self.model, self.strategy)


def collect_networks(networks: Sequence[NetworkResults]
                     ) -> tuple[dict[str, dict[str, Any]], dict[str, NetworkFigures],
                                dict[str, Mapping[str, Any]]]:
    """The report's per-network inputs, in the order of ``networks``.

    Args:
        networks: one per (selection variant, model, strategy), in display order.

    Returns:
        ``(summary, figures, histograms)``: network key ->
        :func:`~analysis.report.build.network_summary` record with ``dependence_folds``
        (:func:`~analysis.report.dependence.dependence_over_folds`); ``"<model>_<strategy>"`` ->
        :class:`~analysis.report.build.NetworkFigures` for the networks with ``taylor_ranked``;
        network key -> its ``channels``.
    """
    summary = {n.key: network_summary(n.fit, n.evaluation, n.binning,
                                      learned_cuts=n.learned_cuts, model=n.model,
                                      strategy=n.strategy) for n in networks}
    for n in networks:  # the output's systematic dependence over seeds × folds, with its error
        summary[n.key]["dependence_folds"] = dependence_over_folds(n.fold_channels)
    figures = {f"{n.model}_{n.strategy}": NetworkFigures(n.score_plot, n.impacts_plot,
                                                         n.taylor_ranked, n.postfit_plot)
               for n in networks if n.taylor_ranked is not None}
    histograms = {n.key: n.channels for n in networks}
    return summary, figures, histograms


def parameter_counts(metadata: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """Trainable parameters per model kind, from TrainModel's ``model.json`` of its networks.

    Args:
        metadata: ``model.json`` records with ``model`` (kind) and ``n_parameters``; every
            network of one kind has the same architecture, so any of them gives the count.

    Returns:
        model kind -> trainable parameters.

    Example:
        >>> parameter_counts([{"model": "dnn", "n_parameters": 5}, {"model": "gnn",
        ...                   "n_parameters": 6}, {"model": "dnn", "n_parameters": 5}])
        {'dnn': 5, 'gnn': 6}
    """
    return {m["model"]: m["n_parameters"] for m in metadata}
