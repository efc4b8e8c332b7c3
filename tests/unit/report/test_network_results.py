"""analysis/report/network_results.py: each network's task outputs gathered into the report's
summary, figures (only where Taylor coefficients were computed) and histograms, in the given order."""

from __future__ import annotations

from analysis.report import (
    NetworkFigures,
    NetworkResults,
    collect_networks,
    network_summary,
    parameter_counts,
)

_FIT = {key: 1.5 for key in ("sigma_mu", "sigma_mu_stat", "sigma_mu_syst",
                             "expected_significance", "expected_limit", "observed_limit",
                             "mu_hat", "mu_uncertainty", "sigma_mu_no_mcstat")} | {
    "impacts": {"fsr": [0.3, -0.2]}, "sigma_mu_folds": [1.0, 2.0],
    "sigma_mu_no_mcstat_folds": [1.0, 1.0]}
_BINNING = {"n_bins": 4, "poi_bounds": [-5, 10], "pruned_shapes": []}


def _network(cuts: bool, model: str, strategy: str, sigma_mu: float,
             taylor: list[tuple[str, float]] | None) -> NetworkResults:
    base = f"/store/{model}_{strategy}_{cuts}"
    return NetworkResults(cuts, model, strategy, fit=_FIT | {"sigma_mu": sigma_mu},
                          evaluation={"auc": 0.7, "auc_seeds": [0.7]}, binning=_BINNING,
                          channels={"cat_tth": {"sigma_mu": sigma_mu}},
                          score_plot=f"{base}/score.png", impacts_plot=f"{base}/impacts.png",
                          postfit_plot=f"{base}/postfit.png", taylor_ranked=taylor)


def test_summary_figures_and_histograms_per_network_in_order() -> None:
    networks = [_network(True, "gnn", "inference", 1.1, [("ht", 0.5)]),
                _network(True, "dnn", "ce", 1.3, [("n_jets", 0.2), ("ht", 0.1)]),
                _network(False, "gnn", "inference", 1.2, None)]
    summary, figures, histograms = collect_networks(networks)
    assert list(summary) == ["cuts_gnn_inference", "cuts_dnn_ce", "nocuts_gnn_inference"]
    # the network's record, and its output's dependence over seeds × folds (no folds here)
    assert summary["nocuts_gnn_inference"] == network_summary(
        networks[2].fit, networks[2].evaluation, _BINNING, learned_cuts=False, model="gnn",
        strategy="inference") | {"dependence_folds": {}}
    assert [r["sigma_mu"] for r in summary.values()] == [1.1, 1.3, 1.2]
    # figures only of the networks with Taylor coefficients (the first selection variant)
    assert figures == {
        "gnn_inference": NetworkFigures("/store/gnn_inference_True/score.png",
                                        "/store/gnn_inference_True/impacts.png", [("ht", 0.5)],
                                        "/store/gnn_inference_True/postfit.png"),
        "dnn_ce": NetworkFigures("/store/dnn_ce_True/score.png",
                                 "/store/dnn_ce_True/impacts.png",
                                 [("n_jets", 0.2), ("ht", 0.1)],
                                 "/store/dnn_ce_True/postfit.png")}
    assert list(figures) == ["gnn_inference", "dnn_ce"]
    assert {k: h["cat_tth"]["sigma_mu"] for k, h in histograms.items()} == {
        "cuts_gnn_inference": 1.1, "cuts_dnn_ce": 1.3, "nocuts_gnn_inference": 1.2}


def test_parameter_counts_per_model_kind() -> None:
    metadata = ({"model": m, "n_parameters": n, "fold": k}
                for k, (m, n) in enumerate([("dnn", 4000), ("gnn", 4100), ("dnn", 4000)]))
    assert parameter_counts(metadata) == {"dnn": 4000, "gnn": 4100}
    assert parameter_counts([]) == {}
