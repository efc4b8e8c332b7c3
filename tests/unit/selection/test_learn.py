"""The learned skim: objectives improve, the trade-off scan is consistent, masks match."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from analysis.config import AnalysisConfig, Cut, LearnedCutsSettings
from analysis.errors import InputDataError
from analysis.selection.cut_samples import SelectionSamples, class_normsys
from analysis.selection.learn import (
    LearnedSelection,
    _Objective,
    learn_selection,
    selection_mask,
    selection_tradeoff,
)

COLUMNS = ("a", "b", "disc")
CLASSES = ("tth", "ttbb", "ttother")  # of the synthetic samples, the signal class first


def _samples(seed: int = 3, n: int = 3000) -> SelectionSamples:
    """Signal at large a and b, backgrounds at small; a discriminant that separates a little;
    a 'jes' variation that scales a by 1.03 and the weights by 1.01."""
    generator = np.random.default_rng(seed)
    means = {"tth": (2.0, 1.5, 1.0), "ttbb": (0.5, 0.5, 0.5), "ttother": (0.0, 0.0, 0.0)}
    yields = {"tth": 50.0, "ttbb": 400.0, "ttother": 3000.0}
    x, w, varied = {}, {}, {"jes": {}}
    for cls in CLASSES:
        values = generator.normal(means[cls], 1.0, size=(n, 3))
        x[cls] = torch.as_tensor(values, dtype=torch.float64)
        w[cls] = torch.full((n,), yields[cls] / n, dtype=torch.float64)
        up, down = x[cls].clone(), x[cls].clone()
        up[:, 0] *= 1.03
        down[:, 0] *= 0.97
        varied["jes"][cls] = ((up, w[cls] * 1.01), (down, w[cls] * 0.99))
    normsys = {"xsec_ttbb": {"ttbb": (1.5, 0.5)}, "lumi": {c: (1.02, 0.98) for c in CLASSES}}
    return SelectionSamples(COLUMNS, x, w, varied, normsys)


def _settings(objective: str, steps: int = 60) -> LearnedCutsSettings:
    return LearnedCutsSettings(cuts=(Cut("a", ">"), Cut("b", ">")), objective=objective,
                               discriminant="disc", n_bins=4, steps=steps, learning_rate=0.1,
                               slope_start=2.0, slope_end=30.0, n_tradeoff_points=7,
                               min_background=5.0)


@pytest.mark.parametrize("objective", ["significance", "sigma_mu"])
def test_learning_improves_the_hard_objective(objective: str) -> None:
    samples = _samples()
    selection = learn_selection(samples, _settings(objective))
    if objective == "significance":
        assert selection.hard_value > 1.3 * selection.initial_hard_value
    else:
        assert selection.hard_value < 0.9 * selection.initial_hard_value
    # the cuts tightened from the loose start (signal sits at larger a and b)
    assert all(t > t0 for t, t0 in zip(selection.thresholds, selection.initial_thresholds,
                                       strict=True))
    assert len(selection.history) == len(selection.slopes) == 60
    assert selection.slopes[0] == pytest.approx(2.0) and selection.slopes[-1] == pytest.approx(30)


def test_tradeoff_scan_is_consistent() -> None:
    samples = _samples()
    settings = _settings("significance", steps=40)
    selection = learn_selection(samples, settings)
    points = selection_tradeoff(samples, selection, settings)
    assert [p.t for p in points] == pytest.approx(np.linspace(0, 1.5, 7).tolist())
    first = points[0]
    assert first.data_fraction == 1.0  # "no cut" keeps every event
    assert first.signal_efficiency == pytest.approx(1.0)
    assert first.background_efficiency == pytest.approx(1.0)
    sizes = [p.data_fraction for p in points]
    assert sizes == sorted(sizes, reverse=True)  # tightening never keeps more
    learned = next(p for p in points if p.t == pytest.approx(1.0))
    assert learned.thresholds == pytest.approx(selection.thresholds)
    assert learned.significance == pytest.approx(selection.hard_value, rel=1e-9)
    # the no-cut sigma_mu (stat only) is that of the unselected binned model: finite, positive
    assert 0 < first.sigma_mu_stat < first.sigma_mu
    # the mask of a table equals the hard cut on the samples
    kept = sum(int(selection_mask(dict(zip(COLUMNS, x.T.numpy(), strict=True)), selection).sum())
               for x in samples.x.values())
    assert kept / samples.n_events == pytest.approx(learned.data_fraction)


def test_selection_round_trip_and_family() -> None:
    selection = LearnedSelection(("a", "b"), (">", "<"), (1.0, 2.0), (0.5, 3.0), (-5.0, 9.0),
                                 "significance", [1.0], [2.0], 3.0, 1.0)
    assert LearnedSelection.from_dict(selection.as_dict()) == selection
    assert selection.at(0.0) == (-5.0, 9.0)
    assert selection.at(1.0) == (1.0, 2.0)
    mask = selection_mask({"a": np.array([0.5, 1.5, 1.5]), "b": np.array([1.0, 1.0, 2.5])},
                          selection)
    assert mask.tolist() == [False, True, False]


def test_class_normsys_weights_the_cross_section_uncertainties(
        tiny_config: AnalysisConfig) -> None:
    names = tiny_config.process_names
    # yields 1 (tt_b), 3 (tt_cc), 6 (tt_lf): the tt+other uncertainty is their weighted mean
    labels = np.array([names.index(p) for p in ("tt_b", "tt_cc", "tt_cc", "tt_cc")
                       ] + [names.index("tt_lf")] * 6)
    table = {"label": labels, "weight": np.ones(len(labels))}
    result = class_normsys({"tt": {"nominal": table}}, tiny_config)
    u = {p: tiny_config.processes[p].cross_section.uncertainty for p in names}
    expected = (u["tt_b"] + 3 * u["tt_cc"] + 6 * u["tt_lf"]) / 10
    assert result["xsec_ttother"]["ttother"] == pytest.approx((1 + expected, 1 - expected))
    assert "xsec_ttbb" not in result  # no tt+bb events here
    assert result["lumi"]["tth"] == pytest.approx((1.02, 0.98))
    assert not math.isnan(expected)


def test_settings_are_validated(tiny_config: AnalysisConfig, tmp_path: Path) -> None:
    from analysis.config import load_config
    from analysis.errors import ConfigError

    text = Path(tiny_config.source).read_text().replace("feature: met_pt", "feature: nope")
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=r"cuts\.cuts\[2\]\.feature"):
        load_config(str(path))


def test_a_signal_efficiency_floor_keeps_the_skim_loose() -> None:
    """cuts.min_signal_efficiency: the learned cuts keep at least about that fraction of the
    expected signal, where the unconstrained sigma_mu objective cuts deeper."""
    import dataclasses

    from analysis.relax.cut_config import config_cuts
    from analysis.selection.learn import _hard_select, _Objective

    samples = _samples()

    def efficiency(settings: LearnedCutsSettings) -> float:
        selection = learn_selection(samples, settings)
        select = _hard_select(config_cuts(settings, samples.columns), selection.thresholds)
        return float(_Objective(samples, settings).signal_efficiency(select))

    free = efficiency(_settings("sigma_mu"))
    floored = efficiency(dataclasses.replace(_settings("sigma_mu"), min_signal_efficiency=0.9))
    assert free < 0.85
    assert floored > 0.85 and floored > free + 0.05


def _heavy_tail_samples() -> SelectionSamples:
    """Signal at large ``a``; a background bulk at small ``a`` simulated with many light events,
    and a few heavy simulated events at the signal's ``a`` (a filtered sample's tail)."""
    generator = np.random.default_rng(1)
    n = 2000
    signal = np.column_stack([generator.normal(2.0, 1.0, n), generator.normal(0, 1, n)])
    bulk = np.column_stack([generator.normal(0.0, 1.0, n), generator.normal(0, 1, n)])
    tail = np.column_stack([generator.normal(2.5, 0.7, 20), generator.normal(0, 1, 20)])
    x = {"tth": torch.tensor(signal), "ttother": torch.tensor(np.vstack([bulk, tail]))}
    w = {"tth": torch.full((n,), 50.0 / n, dtype=torch.float64),
         "ttother": torch.tensor(np.r_[np.full(n, 3000.0 / n), np.full(20, 10.0)])}
    groups = {c: torch.arange(len(w[c])) for c in x}
    return SelectionSamples(("a", "disc"), x, w, {}, {"lumi": {c: (1.02, 0.98) for c in x}},
                            event_groups=groups)


def test_the_mc_stat_objective_keeps_away_from_few_heavy_simulated_events() -> None:
    samples = _heavy_tail_samples()
    settings = {mc: LearnedCutsSettings(cuts=(Cut("a", ">"),), discriminant="disc", n_bins=4,
                                        steps=80, learning_rate=0.1, slope_start=2.0,
                                        slope_end=30.0, n_tradeoff_points=7, mc_stat=mc)
                for mc in (False, True)}
    learned = {mc: learn_selection(samples, s) for mc, s in settings.items()}
    heavy = samples.x["ttother"][-20:, 0].numpy()
    kept = {mc: int((heavy > sel.thresholds[0]).sum()) for mc, sel in learned.items()}
    assert kept[False] >= 15 and kept[True] <= 3  # the plain objective cuts into them
    # the same likelihood as the fit's: the MC-stat cuts beat the plain ones on it
    plain_on_mc = next(p for p in selection_tradeoff(samples, learned[False], settings[True])
                       if p.t == pytest.approx(1.0))
    assert learned[True].hard_value < 0.95 * plain_on_mc.sigma_mu  # 1.13 against 1.27
    assert plain_on_mc.sigma_mu > 1.3 * learned[False].hard_value  # MC stat. is in it


def test_the_mc_stat_objective_needs_event_groups() -> None:
    samples = _samples()
    settings = dataclasses.replace(_settings("sigma_mu", steps=2), mc_stat=True)
    with pytest.raises(InputDataError, match="mc_stat"):
        learn_selection(samples, settings)


def test_a_soft_cut_counts_the_mc_variance_of_the_hard_cut_it_stands_for() -> None:
    """Keeping every event with weight 1/2 stands for a hard selection of half the events: the
    staterror's variance is sum w^2 / 2, not sum (w / 2)^2 = sum w^2 / 4."""
    samples = _heavy_tail_samples()
    settings = LearnedCutsSettings(cuts=(Cut("a", ">"),), discriminant="disc", n_bins=4,
                                   mc_stat=True)
    objective = _Objective(samples, settings)
    half = objective.binned(lambda x: torch.full((x.shape[0],), 0.5, dtype=x.dtype), True)
    full = objective.binned(lambda x: torch.ones(x.shape[0], dtype=x.dtype), True)
    for h, f in zip(half.channels[0].samples, full.channels[0].samples, strict=True):
        (h_error,) = [m.uncertainty for m in h.modifiers if m.kind == "staterror"]
        (f_error,) = [m.uncertainty for m in f.modifiers if m.kind == "staterror"]
        torch.testing.assert_close(h.nominal, 0.5 * f.nominal)
        torch.testing.assert_close(h_error**2, 0.5 * f_error**2)


def test_the_mc_stat_objective_of_hard_cuts_that_empty_a_bin_is_defined() -> None:
    """A hard selection that empties discriminant bins: sigma_mu of the other bins, finite."""
    samples = _heavy_tail_samples()
    settings = LearnedCutsSettings(cuts=(Cut("a", ">"),), discriminant="disc", n_bins=4,
                                   mc_stat=True)
    objective = _Objective(samples, settings)

    def upper_disc(x: torch.Tensor) -> torch.Tensor:  # empties the lower discriminant bins
        return (x[:, -1] > 0.5).to(x.dtype)

    model = objective.binned(upper_disc, True)
    assert model.channels[0].samples[0].nominal.shape[0] < 4
    assert math.isfinite(float(objective.sigma_mu(upper_disc).detach()))


def test_the_mc_stat_objective_sums_the_replicas_of_one_event_as_the_workspace() -> None:
    """Four detector replicas per generated event: behind a hard cut, the objective's
    staterror^2 per bin is the workspace's sum_events (sum_replicas w)^2
    (:func:`~analysis.inference.mcstat.mc_stat_variance`), not sum w^2."""
    from analysis.inference.mcstat import mc_stat_variance

    base = _heavy_tail_samples()
    x = {c: base.x[c][:2000] for c in base.classes}
    # replicas: the same discriminant smeared a little, the cut feature shared
    x = {c: v.clone() for c, v in x.items()}
    for v in x.values():
        v[:, 1] = v[::4, 1].repeat_interleave(4) + 0.05 * v[:, 1]
        v[:, 0] = v[::4, 0].repeat_interleave(4)
    w = {c: base.w[c][:2000] for c in base.classes}
    groups = {c: torch.arange(2000) // 4 for c in base.classes}
    samples = SelectionSamples(("a", "disc"), x, w, {}, base.normsys, event_groups=groups)
    settings = LearnedCutsSettings(cuts=(Cut("a", ">"),), discriminant="disc", n_bins=4,
                                   mc_stat=True)
    objective = _Objective(samples, settings)

    def cut(v: torch.Tensor) -> torch.Tensor:
        return (v[:, 0] > 0.5).to(v.dtype)

    model = objective.binned(cut, True)
    for sample in model.channels[0].samples:
        keep = cut(x[sample.name]).bool()
        bins = np.digitize(objective._score(x[sample.name][keep]).numpy(),
                           objective.edges[1:-1].numpy())
        expected = mc_stat_variance(bins, w[sample.name][keep].numpy(),
                                    groups[sample.name][keep].numpy(), 4)
        (error,) = [m.uncertainty for m in sample.modifiers if m.kind == "staterror"]
        assert error.detach().numpy() ** 2 == pytest.approx(expected, rel=1e-9)
        alone = np.bincount(bins, weights=w[sample.name][keep].numpy() ** 2, minlength=4)
        assert expected.sum() > 2 * alone.sum()  # the replicas mostly share a bin
