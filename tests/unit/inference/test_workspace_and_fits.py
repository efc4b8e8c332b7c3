"""Score histograms, the pyhf workspace (schema, command line) and the fits against closed forms."""

from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import norm

from analysis.config import AnalysisConfig
from analysis.inference.fits import (
    PyhfEngine,
    asimov_sigma_mu,
    fit_network,
    fit_steps,
    fit_workspace,
)
from analysis.inference.score_histograms import (
    VARIATIONS,
    fold_histograms,
    fold_scores,
    histogram_dict,
    score_histograms,
)
from analysis.inference.scores import weighted_auc
from analysis.inference.workspace import (
    build_workspace,
    merge_bins,
    poi_bounds,
    validate_workspace,
)


def _scores(rng: np.random.Generator, n_processes: int) -> dict:
    """One dataset, all shifts, random labels, scores and weights."""
    shifts = {}
    for shift in ("nominal", "jes_up", "jes_down", "jer_up", "jer_down"):
        n = 400
        columns = {"label": rng.integers(0, n_processes, n), "p_tth": rng.uniform(0, 1, n),
                   "weight": rng.uniform(0.5, 1.5, n)}
        for syst in ("btag", "isr", "fsr"):
            for d in ("up", "down"):
                columns[f"weight_{syst}_{d}"] = columns["weight"] * rng.uniform(0.9, 1.1, n)
        columns["p_tth"][0] = 1.0  # the top edge belongs to the last bin
        shifts[shift] = columns
    return {"tt": shifts}


def test_score_histograms_equal_numpy(rng: np.random.Generator,
                                      tiny_config: AnalysisConfig) -> None:
    processes = tiny_config.process_names
    scores = _scores(rng, len(processes))
    result = histogram_dict(score_histograms(scores, processes, 4, "p_tth"))
    edges = np.linspace(0, 1, 5)
    assert result["edges"] == pytest.approx(edges.tolist())
    for k, process in enumerate(processes):
        for variation in VARIATIONS:
            syst, _, _ = variation.rpartition("_")
            shift = variation if syst in ("jes", "jer") else "nominal"
            weight = f"weight_{variation}" if syst in ("btag", "isr", "fsr") else "weight"
            columns = scores["tt"][shift]
            chosen = columns["label"] == k
            values = np.clip(columns["p_tth"][chosen], 0, np.nextafter(1, 0))
            expected, _ = np.histogram(values, edges, weights=columns[weight][chosen])
            variances, _ = np.histogram(values, edges, weights=columns[weight][chosen] ** 2)
            got = result["processes"][process][variation]
            assert got["values"] == pytest.approx(expected.tolist(), rel=1e-12)
            assert got["variances"] == pytest.approx(variances.tolist(), rel=1e-12)


def test_fold_histograms_add_up_to_the_full_one(rng: np.random.Generator,
                                                tiny_config: AnalysisConfig) -> None:
    processes = tiny_config.process_names
    scores = _scores(rng, len(processes))
    for shifts in scores.values():
        for columns in shifts.values():
            columns["event"] = rng.integers(0, 10**6, len(columns["label"]))
    full = histogram_dict(score_histograms(scores, processes, 4, "p_tth"))
    folds = [histogram_dict(score_histograms(fold_scores(scores, k, 2), processes, 4, "p_tth"))
             for k in range(2)]
    for process in processes:
        for variation in VARIATIONS:
            total = np.add(*(np.asarray(f["processes"][process][variation]["values"])
                             for f in folds))
            # each fold stands for the full luminosity: the two together count twice
            assert total == pytest.approx(2 * np.asarray(
                full["processes"][process][variation]["values"]), rel=1e-12)
    # filled once per fold, the full histogram summed from the folds: the same numbers
    summed, once = fold_histograms(scores, processes, 4, 2, "p_tth")
    for got, want in ((summed, full), *zip(once, folds, strict=True)):
        got = histogram_dict(got)
        for process in processes:
            for variation in VARIATIONS:
                for kind in ("values", "variances"):
                    assert got["processes"][process][variation][kind] == pytest.approx(
                        want["processes"][process][variation][kind], rel=1e-12, abs=1e-12)


def _histograms(config: AnalysisConfig, signal: list[float], background: list[float],
                shape_shift: float = 0.0) -> dict:
    """Signal in the first process, all background in the last, the rest empty."""
    names = config.process_names
    n_bins = len(signal)
    out = {"edges": np.linspace(0, 1, n_bins + 1).tolist(), "processes": {}}
    for k, name in enumerate(names):
        values = np.asarray(signal if k == 0 else background if k == len(names) - 1
                            else [0.0] * n_bins, dtype=float)
        hists = {"nominal": {"values": values.tolist(), "variances": (values * 1e-6).tolist()}}
        for variation in VARIATIONS[1:]:
            sign = 1.0 if variation.endswith("up") else -1.0
            tilt = 1.0 + sign * shape_shift * np.linspace(-1, 1, n_bins)
            hists[variation] = {"values": (values * tilt * (1 + 0.02 * sign)).tolist(),
                                "variances": (values * 1e-6).tolist()}
        out["processes"][name] = hists
    return out


@pytest.mark.parametrize(("values", "variances", "max_relative", "groups"), [
    # from the top: 5/10, sqrt(50)/20 = 0.35, sqrt(75)/30 = 0.29 closes; bin 0 alone is fine
    ([100, 10, 10, 10], [1, 25, 25, 25], 0.3, [0, 1, 1, 1]),
    # the same without a good bin 0: the leftover joins the group above it
    ([10, 10, 10, 10], [25, 25, 25, 25], 0.3, [0, 0, 0, 0]),
    # an empty top bin cannot stand alone
    ([100, 50, 0], [1, 1, 0], 0.1, [0, 1, 1]),
    # every bin good on its own: unchanged
    ([100, 100], [1, 1], 0.2, [0, 1]),
    # nothing ever good enough: one bin
    ([0, 0], [0, 0], 0.2, [0, 0]),
])
def test_merge_bins(values: list[float], variances: list[float], max_relative: float,
                    groups: list[int]) -> None:
    assert merge_bins(np.array(values, float), np.array(variances, float),
                      max_relative).tolist() == groups


def test_poi_bounds_keep_every_bin_positive() -> None:
    # B/S = 10 in the second bin: mu >= -5 keeps half of its background
    assert poi_bounds(np.array([1.0, 10.0]), np.array([1000.0, 100.0])) == (-5.0, 50.0)
    # background-dominated everywhere: the full symmetric range
    assert poi_bounds(np.array([1.0, 1.0]), np.array([1000.0, 400.0])) == (-50.0, 50.0)
    # a bin of signal alone (over a floored background) keeps mu >= 0 nearly: a lower bound
    # of -5 there made the expected events negative and -log L undefined
    assert poi_bounds(np.array([1.0]), np.array([1.0]))[0] == -0.5
    assert -1e-5 < poi_bounds(np.array([1000.0, 1.0]), np.array([1e-3, 100.0]))[0] < 0


def test_workspace_mu_range_from_config_and_positivity(tiny_config: AnalysisConfig) -> None:
    """``inference.poi_max`` is the upper end of mu; the lower end stops where the most
    signal-like bin would keep half of its background (B/S = 400 / 5 there: mu >= -40)."""
    histograms = _histograms(tiny_config, [1.0, 5.0], [1000.0, 400.0])
    wide = dataclasses.replace(tiny_config, inference=dataclasses.replace(
        tiny_config.inference, poi_max=200.0))
    for config, expected in ((tiny_config, [-40.0, 50.0]), (wide, [-40.0, 200.0])):
        details: dict = {}
        spec = build_workspace(histograms, config, pseudo_data_seed=3, details=details)
        assert details["poi_bounds"] == pytest.approx(expected)
        mu = next(p for p in spec["measurements"][0]["config"]["parameters"]
                  if p["name"] == "mu")
        assert mu["bounds"] == [pytest.approx(expected)]


def test_workspace_merges_bins_for_mc_statistics(tiny_config: AnalysisConfig) -> None:
    histograms = _histograms(tiny_config, [5.0, 20.0, 40.0, 30.0], [400.0, 100.0, 20.0, 10.0])
    background = tiny_config.process_names[-1]
    # relative MC stat. 1 %, 10 %, 50 %, 50 %: the top two bins together still exceed 30 %
    # (sqrt(100 + 25) / 30 = 0.37), the top three do not (sqrt(225) / 130 = 0.115)
    variances = [16.0, 100.0, 100.0, 25.0]
    for variation in histograms["processes"][background].values():
        variation["variances"] = variances
    details: dict = {}
    spec = build_workspace(histograms, tiny_config, pseudo_data_seed=3,
                           max_background_mc_stat=0.3, details=details)
    validate_workspace(spec)
    samples = {s["name"]: s for s in spec["channels"][0]["samples"]}
    assert samples[background]["data"] == pytest.approx([400.0, 130.0])
    assert samples[tiny_config.process_names[0]]["data"] == pytest.approx([5.0, 90.0])
    staterror = next(m for m in samples[background]["modifiers"] if m["type"] == "staterror")
    assert staterror["data"] == pytest.approx([4.0, 15.0])
    assert details["channels"]["nn_score"]["edges"] == pytest.approx([0.0, 0.25, 1.0])
    assert len(spec["observations"][0]["data"]) == 2


def test_workspace_prunes_shapes_within_mc_statistics(tiny_config: AnalysisConfig) -> None:
    background = tiny_config.process_names[-1]

    def kinds(spec: dict) -> set:
        sample = next(s for s in spec["channels"][0]["samples"] if s["name"] == background)
        return {(m["name"], m["type"]) for m in sample["modifiers"]}

    # a 5 % tilt: with 0.0001 % MC stat. it is a real shape, with 10 % it is not
    precise = _histograms(tiny_config, [5.0, 20.0, 40.0], [400.0, 100.0, 20.0], 0.05)
    details: dict = {}
    kept = build_workspace(precise, tiny_config, pseudo_data_seed=3, prune_shape_chi2=1.0,
                           details=details)
    assert ("jes", "histosys") in kinds(kept) and details["pruned_shapes"] == []
    coarse = json.loads(json.dumps(precise))
    for variation in coarse["processes"][background].values():
        variation["variances"] = [(0.1 * v) ** 2 for v in variation["values"]]
    details = {}
    pruned = build_workspace(coarse, tiny_config, pseudo_data_seed=3, prune_shape_chi2=1.0,
                             details=details)
    validate_workspace(pruned)
    assert ("jes", "histosys") not in kinds(pruned) and ("jes", "normsys") in kinds(pruned)
    assert ["nn_score", background, "jes"] in details["pruned_shapes"]


def test_workspace_schema_cli_and_modifiers(tiny_config: AnalysisConfig, tmp_path: Path) -> None:
    histograms = _histograms(tiny_config, [5.0, 20.0, 40.0], [400.0, 100.0, 20.0], 0.05)
    spec = build_workspace(histograms, tiny_config, pseudo_data_seed=3)
    validate_workspace(spec)
    assert spec == build_workspace(histograms, tiny_config, pseudo_data_seed=3)  # seeded
    samples = {s["name"]: s for s in spec["channels"][0]["samples"]}
    assert set(samples) == {tiny_config.process_names[0], tiny_config.process_names[-1]}
    background = samples[tiny_config.process_names[-1]]
    modifiers = {(m["name"], m["type"]): m["data"] for m in background["modifiers"]}
    uncertainty = tiny_config.processes[tiny_config.process_names[-1]].cross_section.uncertainty
    assert modifiers[(f"xsec_{tiny_config.process_names[-1]}", "normsys")] == pytest.approx(
        {"hi": 1 + uncertainty, "lo": 1 - uncertainty})
    lumi = tiny_config.luminosity.uncertainty
    assert modifiers[("lumi", "normsys")] == pytest.approx({"hi": 1 + lumi, "lo": 1 - lumi})
    # each variation = normsys (the yield ratio) x histosys (the shape at the nominal yield)
    nominal = np.array(background["data"])
    up = np.array(histograms["processes"][tiny_config.process_names[-1]]["jes_up"]["values"])
    assert modifiers[("jes", "normsys")]["hi"] == pytest.approx(up.sum() / nominal.sum())
    assert sum(modifiers[("jes", "histosys")]["hi_data"]) == pytest.approx(nominal.sum())
    assert ("mu", "normfactor") in {(m["name"], m["type"])
                                    for m in samples[tiny_config.process_names[0]]["modifiers"]}
    path = tmp_path / "workspace.json"
    path.write_text(json.dumps(spec))
    pyhf_cli = str(Path(sys.executable).with_name("pyhf"))
    for command in (["cls", str(path)], ["fit", str(path)]):
        run = subprocess.run([pyhf_cli, *command], capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, run.stderr
    assert "CLs_obs" in subprocess.run([pyhf_cli, "cls", str(path)], capture_output=True,
                                       text=True, timeout=120).stdout


def test_fits_match_closed_forms(tiny_config: AnalysisConfig) -> None:
    """One bin, systematics negligible: sigma_mu = sqrt(s + b) / s and the Asimov Z of
    Cowan et al. (arXiv:1007.1727, Eq. 97); a tighter CLs limit with more signal."""
    s, b = 30.0, 100.0
    config = _quiet(tiny_config)
    spec = build_workspace(_histograms(config, [s], [b]), config, pseudo_data_seed=1,
                           systematics=())
    results = fit_workspace(spec, scan_points=5, limit_max=5.0)
    assert results.sigma_mu_stat == pytest.approx(math.sqrt(s + b) / s, rel=0.02)
    z_cowan = math.sqrt(2 * ((s + b) * math.log(1 + s / b) - s))
    assert results.expected_significance == pytest.approx(z_cowan, rel=0.01)
    assert results.asimov_mu_hat == pytest.approx(1.0, abs=1e-3)
    # -2 ln(lambda) of the Asimov scan at mu = 0 is Z^2
    assert results.scan_asimov[0] == pytest.approx(z_cowan**2, rel=0.02)
    # sigma_mu from the profile likelihood's -2 Delta ln L = 1 interval: the same here
    assert results.sigma_mu == pytest.approx(math.sqrt(s + b) / s, rel=0.01)
    assert asimov_sigma_mu(spec) == pytest.approx(results.sigma_mu, rel=1e-3)
    # pseudo-data: mu-hat's uncertainty from its own profile, about sqrt(n) / s
    observed = spec["observations"][0]["data"][0]
    assert results.mu_uncertainty == pytest.approx(math.sqrt(observed) / s, rel=0.05)
    assert results.observed_significance**2 == pytest.approx(
        results.scan_observed[0], rel=0.02, abs=1e-3) or results.mu_hat <= 0
    # the expected band: pyhf's own limit routine on background-only Asimov data, each limit
    # the root of CLs - 0.05 found by bracketing (TOMS 748), not read off a grid
    import pyhf

    workspace = pyhf.Workspace(spec)
    model = workspace.model()
    pars = np.asarray(model.config.suggested_init(), dtype=float)
    pars[model.config.poi_index] = 0.0
    _, reference = pyhf.infer.intervals.upper_limits.toms748_scan(
        model.expected_data(pars), model, 0.0, 5.0, rtol=1e-5)
    assert results.expected_band == pytest.approx([float(x) for x in reference], rel=1e-3)
    assert results.expected_band == sorted(results.expected_band)
    # and roughly the textbook 1.96 sqrt(b) / s (exact only for s << b)
    assert results.expected_limit == pytest.approx(1.96 * math.sqrt(b) / s, rel=0.1)
    stronger = fit_workspace(build_workspace(_histograms(config, [3 * s], [b]), config,
                                             pseudo_data_seed=1, systematics=()),
                             scan_points=5, limit_max=5.0)
    assert stronger.expected_limit < results.expected_limit


def _quiet(config: AnalysisConfig) -> AnalysisConfig:
    """The config with 0.1 % cross-section and luminosity uncertainties (stat-dominated)."""
    processes = {name: dataclasses.replace(p, cross_section=dataclasses.replace(
        p.cross_section, uncertainty=0.001)) for name, p in config.processes.items()}
    return dataclasses.replace(config, processes=processes, luminosity=dataclasses.replace(
        config.luminosity, uncertainty=0.001))


def test_impacts_rank_the_larger_normalisation_first(tiny_config: AnalysisConfig) -> None:
    spec = build_workspace(_histograms(tiny_config, [20.0, 60.0], [500.0, 200.0], 0.1),
                           tiny_config, pseudo_data_seed=2)
    results = fit_workspace(spec, scan_points=3, limit_max=5.0)
    ranked = list(results.impacts)
    background = tiny_config.process_names[-1]
    # the background's cross-section uncertainty dominates the 2 % luminosity one
    assert ranked.index(f"xsec_{background}") < ranked.index("lumi")
    up, down = results.impacts[f"xsec_{background}"]
    assert up * down < 0  # opposite shifts of mu-hat
    assert results.sigma_mu > results.sigma_mu_stat
    assert set(results.pulls) == set(results.impacts)


def test_post_fit_impact_is_the_systematic_part_of_sigma_mu(
        tiny_config: AnalysisConfig) -> None:
    """One nuisance that matters (a 3 % background normalisation, the rest 0.1 %, no shapes,
    no MC statistics): the data constrain it below its prior, and its impact where its profile
    likelihood rises by 1 is sqrt(sigma_mu^2 - sigma_mu_stat^2), as for a Gaussian
    likelihood."""
    config = _quiet(tiny_config)
    background = config.process_names[-1]
    process = config.processes[background]
    config = dataclasses.replace(config, processes={**config.processes, background:
                                 dataclasses.replace(process, cross_section=dataclasses.replace(
                                     process.cross_section, uncertainty=0.03))})
    spec = build_workspace(_histograms(config, [20.0, 60.0], [2000.0, 300.0]), config,
                           pseudo_data_seed=2, systematics=())
    results = fit_workspace(spec, scan_points=3, limit_max=5.0)
    name = f"xsec_{background}"
    assert list(results.impacts)[0] == name
    # constrained by the signal-poor bin, as much on both sides (a linear normsys)
    up_width, down_width = results.impact_widths[name]
    assert 0.3 < up_width < 0.9 and down_width == pytest.approx(up_width, rel=0.1)
    up, down = results.impacts[name]
    syst = math.sqrt(results.sigma_mu**2 - results.sigma_mu_stat**2)
    # 10 %: the profile interval is not exactly parabolic
    assert max(abs(up), abs(down)) == pytest.approx(syst, rel=0.1)
    assert up * down < 0


def test_significance_agrees_with_the_scan_when_mc_statistics_dominate(
        tiny_config: AnalysisConfig) -> None:
    """A 30 % MC statistical uncertainty per bin and a 1 % signal: the likelihood is flat in
    mu; Z from q0 must still be the square root of the scan's -2 Delta ln L at mu = 0."""
    background = tiny_config.process_names[-1]
    histograms = _histograms(tiny_config, [10.0, 30.0, 50.0], [5000.0, 3000.0, 2000.0], 0.05)
    for variation in histograms["processes"][background].values():
        variation["variances"] = [(0.3 * v) ** 2 for v in variation["values"]]
    spec = build_workspace(histograms, tiny_config, pseudo_data_seed=4)
    results = fit_workspace(spec, scan_points=3, scan_max=1.0, limit_max=50.0)
    assert results.scan_mu[0] == 0.0
    assert results.expected_significance**2 == pytest.approx(results.scan_asimov[0], rel=0.02,
                                                             abs=1e-3)
    assert results.expected_significance < 0.5  # nothing to see with 30 % MC stat.
    # data statistics alone: sqrt(s + b) / s per bin, about 0.8 combined; the MC statistical
    # uncertainty makes it several times wider (or NaN, beyond the range of mu)
    assert results.sigma_mu_stat == pytest.approx(0.8, rel=0.1)
    assert not results.sigma_mu < 3 * results.sigma_mu_stat


def test_weighted_auc_equals_pair_counting(rng: np.random.Generator) -> None:
    s, b = rng.normal(1, 1, 300), rng.normal(0, 1, 200)
    ws, wb = rng.uniform(0, 2, 300), rng.uniform(0, 2, 200)
    s[:10] = b[:10]  # ties count one half
    pairs = (ws[:, None] * wb[None, :] * ((s[:, None] > b[None, :])
                                          + 0.5 * (s[:, None] == b[None, :]))).sum()
    assert weighted_auc(s, ws, b, wb) == pytest.approx(pairs / (ws.sum() * wb.sum()), rel=1e-12)
    # the binormal AUC Phi(delta / sqrt(2)) for unit weights and many events
    big_s, big_b = rng.normal(1, 1, 20000), rng.normal(0, 1, 20000)
    assert weighted_auc(big_s, np.ones(20000), big_b, np.ones(20000)) == pytest.approx(
        norm.cdf(1 / math.sqrt(2)), abs=0.01)


def test_workspace_rejects_missing_process(tiny_config: AnalysisConfig) -> None:
    from analysis.errors import InputDataError

    histograms = _histograms(tiny_config, [1.0], [10.0])
    del histograms["processes"][tiny_config.process_names[1]]
    with pytest.raises(InputDataError, match="no histograms for processes"):
        build_workspace(histograms, tiny_config, pseudo_data_seed=1)



def test_fold_labels_must_match_the_fold_workspaces(tiny_config: AnalysisConfig) -> None:
    from analysis.errors import InputDataError

    spec = build_workspace(_histograms(tiny_config, [20.0, 60.0], [500.0, 200.0], 0.1),
                           tiny_config, pseudo_data_seed=2)
    with pytest.raises(InputDataError, match="1 fold labels for 2 fold workspaces"):
        fit_network(spec, [spec, spec], scan_points=3, scan_max=3.0, limit_max=5.0,
                    fold_labels=[(0, 0)])


def test_a_callers_pyhf_backend_survives_the_fits(tiny_config: AnalysisConfig) -> None:
    import pyhf

    # normalisation systematics and MC statistics only: pyhf's fits of the impacts are the
    # time of this test, and what it checks is the backend around them
    spec = build_workspace(_histograms(tiny_config, [20.0, 60.0], [500.0, 200.0]),
                           tiny_config, pseudo_data_seed=2, systematics=())
    before = pyhf.get_backend()
    pyhf.set_backend("numpy", pyhf.optimize.scipy_optimizer(maxiter=321))
    try:
        mine = pyhf.get_backend()
        results = fit_network(spec, [spec], scan_points=3, scan_max=3.0, limit_max=5.0,
                              engine="pyhf", fold_labels=[(2, 1)])
        assert pyhf.get_backend()[1] is mine[1]  # the very optimiser object the caller set
        assert pyhf.get_backend()[1].maxiter == 321
        # the per-fold sigma_mu of a fold equal to the whole is the whole's
        assert results["sigma_mu_folds"] == [pytest.approx(results["sigma_mu"], rel=1e-3)]
        assert results["fold_labels"] == [[2, 1]]  # (seed index, fold) of each fold entry
        assert results["sigma_mu_no_mcstat"] <= results["sigma_mu"] * (1 + 1e-4)
        assert fit_steps(spec) == 5 + 2 * len(results["impacts"])
        # each public method of the pyhf engine, called directly, leaves the caller's backend too
        engine = PyhfEngine(spec)
        best = engine.fit(engine.observed, uncertainties=True)
        assert pyhf.get_backend()[1] is mine[1]
        assert engine.twice_nll(best.pars, engine.observed) == pytest.approx(best.twice_nll,
                                                                             rel=1e-6)
        assert engine.expected_data(best.pars).shape == engine.observed.shape
        observed_cls, expected = engine.cls(1.0, engine.observed, engine.bounds)
        assert 0.0 < observed_cls <= 1.0 and len(expected) == 5
        assert pyhf.get_backend()[1] is mine[1] and pyhf.get_backend()[1].maxiter == 321
    finally:
        pyhf.set_backend(*before)


def test_fit_and_write_writes_the_fit_tasks_outputs(tiny_config: AnalysisConfig,
                                                    tmp_path: Path) -> None:
    """What Fit.run computes: fit_network's results, as results.json with the provenance, and
    the four plots as PNG and PDF; the copies without MC statistics, not validated again,
    give what a validated copy gives."""
    from analysis.inference.fit_outputs import FIT_PLOTS, fit_and_write
    from analysis.inference.fits import asimov_sigma_mu, without_staterror

    spec = build_workspace(_histograms(tiny_config, [20.0, 60.0], [500.0, 200.0]),
                           tiny_config, pseudo_data_seed=2, systematics=())
    results, seconds = fit_and_write(
        spec, [spec], scan_points=3, scan_max=3.0, limit_max=5.0, engine="torch",
        title="dnn", labels={"tth_bb": "ttH"}, colors={"tth_bb": "red"},
        results_path=tmp_path / "results.json",
        plot_bases={name: tmp_path / name for name in FIT_PLOTS}, provenance={"seed": 2})
    written = json.loads((tmp_path / "results.json").read_text())
    assert written["provenance"] == {"seed": 2}
    assert written["sigma_mu"] == pytest.approx(results["sigma_mu"], rel=1e-12)
    assert results["sigma_mu"] == pytest.approx(fit_network(
        spec, [spec], scan_points=3, scan_max=3.0, limit_max=5.0)["sigma_mu"], rel=1e-9)
    for name in FIT_PLOTS:
        assert (tmp_path / f"{name}.png").stat().st_size > 0
        assert (tmp_path / f"{name}.pdf").stat().st_size > 0
    assert set(seconds) == {"fits", "outputs"} and all(v > 0 for v in seconds.values())
    assert results["sigma_mu_no_mcstat"] == pytest.approx(
        asimov_sigma_mu(without_staterror(spec), validate=True), rel=1e-12)
