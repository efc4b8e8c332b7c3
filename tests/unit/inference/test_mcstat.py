"""MC statistical variance with correlated detector replicas: exact cases and a brute force."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from analysis.config import Categories, load_config
from analysis.errors import InputDataError
from analysis.events.detector import draw_btag_discriminant
from analysis.inference.mcstat import (
    effective_event_count,
    grouped_cross_terms,
    mc_stat_variance,
    replica_cross_terms,
)
from analysis.inference.model import model_spec
from analysis.inference.score_histograms import (
    VARIATIONS,
    category_effective_counts,
    score_histograms,
)
from analysis.relax.histograms import bin_memberships, soft_histogram


def test_hand_computed_bins() -> None:
    # event 1: replicas in bins 0, 0, 1; event 2: 0, 1, 1; event 3 (no replicas): bin 1
    bins = np.array([0, 0, 1, 0, 1, 1, 1])
    weights = np.array([1, 1, 1, 2, 2, 2, 3]) / 3
    events = np.array([1, 1, 1, 2, 2, 2, 3])
    expected = np.array([(2 / 3) ** 2 + (2 / 3) ** 2, (1 / 3) ** 2 + (4 / 3) ** 2 + 1])
    assert np.allclose(mc_stat_variance(bins, weights, events, 2), expected, rtol=1e-14)
    naive = np.bincount(bins, weights=weights**2, minlength=2)
    assert np.allclose(replica_cross_terms(bins, weights, events, 2), expected - naive, rtol=1e-14)


def test_event_ids_with_several_keys() -> None:
    # the same event number in two datasets is two events
    ids = np.array([[0, 5], [1, 5]])
    assert mc_stat_variance(np.array([0, 0]), np.ones(2), ids, 1).tolist() == [2.0]
    assert mc_stat_variance(np.array([0, 0]), np.ones(2), np.array([5, 5]), 1).tolist() == [4.0]


def test_without_replicas_cross_terms_are_exactly_zero() -> None:
    rng = np.random.default_rng(1)
    weights = rng.exponential(size=1000)
    bins = rng.integers(0, 7, size=1000)
    assert np.all(replica_cross_terms(bins, weights, np.arange(1000), 7) == 0.0)
    assert np.allclose(mc_stat_variance(bins, weights, np.arange(1000), 7),
                       np.bincount(bins, weights=weights**2, minlength=7), rtol=1e-12)


def test_effective_count_counts_events_not_replicas() -> None:
    events = np.repeat(np.arange(10), 4)
    assert effective_event_count(np.full(40, 0.25), events) == pytest.approx(10.0)
    assert effective_event_count(np.full(40, 0.25), np.arange(40)) == pytest.approx(40.0)
    assert effective_event_count(np.zeros(0), np.zeros(0, dtype=int)) == 0.0


def test_bad_input_is_named() -> None:
    with pytest.raises(InputDataError, match=r"bin indices must be in \[0, 2\)"):
        mc_stat_variance(np.array([0, 2]), np.ones(2), np.arange(2), 2)
    with pytest.raises(InputDataError, match="need \\(n,\\) bin indices"):
        mc_stat_variance(np.array([0, 1]), np.ones(3), np.arange(2), 2)


def test_brute_force_on_the_demo_btag_categories() -> None:
    """Many independent simulations (new events, K replicas each): the spread of the bin contents
    is what the formula estimates; the naive sum of w^2 underestimates it.

    Each toy event has 4 jets, of which 2, 3 or 4 are true b jets (plus c and light), and gets K
    detector replicas of the demo's b-tag discriminant (``draw_btag_discriminant`` with
    config/tth_bb.yaml's efficiencies and working points). Bins: 2, 3, >= 4 medium b tags.
    """
    config = load_config("tth_bb")
    rng = np.random.default_rng(20261204)
    n_samples, mean_events, replicas = 400, 300, 8
    n_b_choices, n_b_probability = np.array([2, 3, 4]), np.array([0.5, 0.3, 0.2])
    contents, formula, naive = [], [], []
    for _ in range(n_samples):
        n_events = rng.poisson(mean_events)
        n_b = rng.choice(n_b_choices, size=n_events, p=n_b_probability)
        flavours = np.where(np.arange(4)[None, :] < n_b[:, None], 5,
                            np.where(np.arange(4)[None, :] == 3, 4, 0))  # (events, 4 jets)
        flat = np.tile(flavours.reshape(-1), replicas)  # replica-major
        discriminant = draw_btag_discriminant(flat, np.zeros(len(flat)), config.detector,
                                              config.objects.jets, rng)
        n_tags = (discriminant > config.objects.jets.btag_medium).reshape(
            replicas * n_events, 4).sum(axis=1)
        events = np.tile(np.arange(n_events), replicas)
        keep = n_tags >= 2
        bins, ids = np.minimum(n_tags[keep], 4) - 2, events[keep]
        weights = np.full(keep.sum(), 1.0 / replicas)
        contents.append(np.bincount(bins, weights=weights, minlength=3))
        formula.append(mc_stat_variance(bins, weights, ids, 3))
        naive.append(np.bincount(bins, weights=weights**2, minlength=3))
    brute = np.var(contents, axis=0, ddof=1)
    # the variance of a variance estimate from 400 samples is ~ sqrt(2/400) = 7 % relative
    assert np.allclose(np.mean(formula, axis=0), brute, rtol=0.2)
    assert np.all(np.mean(naive, axis=0) < 0.5 * brute)


def test_histogram_variances_treat_replicas_as_correlated() -> None:
    rng = np.random.default_rng(3)
    n = 200
    event = np.repeat(np.arange(n), 4)
    columns = {"event": event, "label": np.zeros(4 * n, dtype=int),
               "p_tth": np.clip(rng.normal(0.5, 0.2, n)[event] + rng.normal(0, 0.05, 4 * n), 0, 1),
               "weight": np.full(4 * n, 0.25)}
    columns.update({f"weight_{v}": columns["weight"] for v in VARIATIONS if v != "nominal"})
    shifts = {shift: columns for shift in ("nominal", "jes_up", "jes_down", "jer_up", "jer_down")}
    histogram = score_histograms({"tth": shifts}, ["tth_bb"], 5, "p_tth")
    bins = np.minimum((columns["p_tth"] * 5).astype(int), 4)
    expected = mc_stat_variance(bins, columns["weight"], event, 5)
    nominal = histogram[{"process": "tth_bb", "variation": "nominal"}]
    assert np.allclose(nominal.variances(), expected, rtol=1e-12)
    assert np.all(nominal.variances() > np.bincount(bins, weights=columns["weight"] ** 2,
                                                    minlength=5))
    # one row per event: the variances are hist's sum of w^2, bit for bit
    single = {shift: {k: v[::4] for k, v in columns.items()} for shift in shifts}
    plain = score_histograms({"tth": single}, ["tth_bb"], 5, "p_tth")
    without_event = {s: {k: v for k, v in c.items() if k != "event"} for s, c in single.items()}
    reference = score_histograms({"tth": without_event}, ["tth_bb"], 5, "p_tth")
    assert np.array_equal(plain.view()["variance"], reference.view()["variance"])


def test_effective_counts_per_btag_channel() -> None:
    """Per channel and process: replicas of one event count once, equal event numbers of two
    datasets are two events, and the b-tag split sends each replica to its own channel."""
    config = load_config("tth_bb")
    config = dataclasses.replace(config, inference=dataclasses.replace(
        config.inference, categories=Categories(btag_split=(3,))))
    spec = model_spec(config)
    tt_bb, tth = spec.processes.index("tt_bb"), spec.processes.index("tth_bb")

    def table(event, label, weight, n_btag, node):  # the largest output is ``node``'s
        p = {f"p_{k}": np.where(np.asarray(node) == k, 0.6, 0.2) for k in spec.classes}
        return {"nominal": {"event": np.array(event), "label": np.array(label),
                            "weight": np.array(weight), "n_btag": np.array(n_btag), **p}}

    # dataset a: event 1 (2 replicas, >= 3 b), event 2 (one replica < 3 b, one >= 3 b), and a
    # ttH event; dataset b: events 1 and 2 again (other events), both >= 3 b
    scores = {"a": table([1, 1, 2, 2, 3], [tt_bb] * 4 + [tth], [.5, .5, .5, .5, .1],
                         [3, 3, 2, 4, 4], ["ttbb"] * 4 + ["tth"]),
              "b": table([1, 2], [tt_bb, tt_bb], [2.0, 1.0], [3, 3], ["ttbb", "ttbb"])}
    counts = category_effective_counts(scores, spec)
    assert list(counts) == list(spec.channels)
    # (1 + .5 + 2 + 1)^2 / (1^2 + .5^2 + 2^2 + 1^2); replicas as independent rows: 3.52,
    # events of a and b merged by number: 1.8
    assert counts["cat_ttbb_ge3b"]["tt_bb"] == pytest.approx(4.5**2 / 6.25, rel=1e-12)
    assert counts["cat_ttbb_lt3b"]["tt_bb"] == pytest.approx(1.0)
    assert counts["cat_tth_ge3b"] == {p: (1.0 if p == "tth_bb" else 0.0) for p in spec.processes}
    assert all(v == 0.0 for v in counts["cat_tth_lt3b"].values())


def test_grouped_cross_terms_of_hard_memberships_equal_the_numpy_formula() -> None:
    """The training loss's (torch) cross terms with hard bins are the workspace's (numpy)."""
    rng = np.random.default_rng(11)
    n_events, replicas, edges = 300, 4, np.linspace(0.0, 1.0, 8)
    event = np.repeat(rng.permutation(n_events) * 3 + 17, replicas)  # sparse, unsorted ids
    score = np.clip(rng.beta(2, 3, n_events).repeat(replicas) + rng.normal(0, 0.08, event.size),
                    0.0, 1.0)
    weights = rng.uniform(0.5, 1.5, event.size) / replicas
    membership = bin_memberships(torch.as_tensor(score), edges)
    dense = torch.as_tensor(np.unique(event, return_inverse=True)[1].reshape(-1))
    ours = grouped_cross_terms(torch.as_tensor(weights)[:, None] * membership, dense).numpy()
    bins = np.minimum(np.searchsorted(edges, score, side="right") - 1, len(edges) - 2)
    expected = replica_cross_terms(bins, weights, event, len(edges) - 1)
    assert np.allclose(ours, expected, rtol=1e-12, atol=1e-15)
    assert np.all(expected > 0)  # the replicas do fall together: the test compares something


def test_grouped_cross_terms_of_soft_memberships_by_brute_force() -> None:
    """Soft bins: sum over events of (sum c)^2 - sum c^2, one loop per event, and 0 without
    replicas; differentiable in the scores."""
    rng = np.random.default_rng(12)
    event = np.repeat(np.arange(40), 3)
    score = torch.tensor(rng.uniform(0, 1, event.size), requires_grad=True)
    weights = torch.as_tensor(rng.uniform(0.5, 1.5, event.size))
    edges = torch.linspace(0, 1, 6, dtype=torch.float64)
    membership = bin_memberships(score, edges, 0.04, flow="clip")
    assert torch.allclose((weights[:, None] * membership).sum(0),
                          soft_histogram(score, weights, edges, 0.04, flow="clip"), rtol=1e-12)
    contributions = weights[:, None] * membership
    ours = grouped_cross_terms(contributions, torch.as_tensor(event))
    brute = torch.zeros(5, dtype=torch.float64)
    for e in range(40):
        rows = contributions[torch.as_tensor(event == e)]
        brute = brute + rows.sum(0) ** 2 - (rows**2).sum(0)
    assert torch.allclose(ours, brute, rtol=1e-12)
    ours.sum().backward()
    assert score.grad is not None and bool(score.grad.abs().sum() > 0)
    lone = grouped_cross_terms(contributions.detach(), torch.arange(event.size))
    assert torch.all(lone.abs() < 1e-15)
    with pytest.raises(InputDataError, match="int64 groups"):
        grouped_cross_terms(contributions.detach(), torch.zeros(3, dtype=torch.int64))
