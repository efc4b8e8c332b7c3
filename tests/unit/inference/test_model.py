"""The one statistical model of training and fit: channels, modifiers, free normalisation, bad
input, and the training-time NLL equal to pyhf's NLL of the written workspace."""

from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pyhf
import pytest
import torch

from analysis.config import AnalysisConfig, Categories
from analysis.errors import ConfigError, EmptySelectionError, InputDataError
from analysis.inference.model import (
    btag_groups,
    build_model,
    model_spec,
    templates_from_outputs,
)
from analysis.inference.score_histograms import (
    category_histograms,
    histogram_dict,
    seed_histograms,
)
from analysis.inference.workspace import build_workspace, validate_workspace
from analysis.relax.histfactory import data_from_pyhf, parameters_from_pyhf
from analysis.relax.likelihood import nll
from analysis.training.losses import analysis_loss, analysis_model

SHIFTS = ("jes", "jer")
WEIGHTS = ("btag", "isr", "fsr")


@pytest.fixture
def tiny_config(tiny_config: AnalysisConfig) -> AnalysisConfig:
    """The tiny config with the demo's statistical model: a category per network output
    (empty ones dropped: tiny samples) and tt+bb floating freely."""
    return dataclasses.replace(tiny_config, inference=dataclasses.replace(
        tiny_config.inference, categories=Categories(temperature=0.5, drop_empty=True),
        free_normalisations=("tt_bb",)))


def _inference(config: AnalysisConfig, **changes: object) -> AnalysisConfig:
    return dataclasses.replace(config, inference=dataclasses.replace(config.inference, **changes))


def _events(rng: np.random.Generator, config: AnalysisConfig, n: int = 3000,
            n_btag: bool = False, replicas: int = 1) -> tuple[dict, dict]:
    """One dataset's scored events (every shift) and the same events as training outputs:
    process -> variation -> (logits, weights, b-tag group); with ``replicas > 1`` every
    ``replicas`` consecutive rows are one event's detector replicas (close logits, one event
    number), and the outputs of the nominal rows carry the events' indices."""
    spec = model_spec(config)
    n_nodes = len(spec.classes)
    tables = {}
    for shift in ("nominal", *(f"{s}_{d}" for s in SHIFTS for d in ("up", "down"))):
        label = rng.integers(0, len(spec.processes), n)
        # each process leans to its class's node, so that every category has every process
        node = np.array([spec.classes.index(spec.process_class[p]) for p in spec.processes])
        logits = rng.normal(0.0, 1.0, (n, n_nodes))
        logits[np.arange(n), node[label]] += 1.0
        event = np.arange(n) // replicas
        if replicas > 1:  # one hadronised event: one process, nearly the same network outputs
            label = label[event * replicas]
            logits = logits[event * replicas] + rng.normal(0.0, 0.3, (n, n_nodes))
            logits[np.arange(n), node[label]] += 1.0
        columns = {"event": event, "label": label, "logits": logits,
                   "weight": rng.uniform(0.5, 1.5, n) * 0.05,
                   "n_btag": rng.integers(2, 6, n)}
        p = torch.softmax(torch.as_tensor(logits), dim=1).numpy()
        for k, name in enumerate(spec.classes):
            columns[f"p_{name}"] = p[:, k]
        for syst in WEIGHTS:
            for d in ("up", "down"):
                columns[f"weight_{syst}_{d}"] = columns["weight"] * rng.uniform(0.8, 1.2, n)
        tables[shift] = columns
    outputs: dict = {}
    for k, process in enumerate(spec.processes):
        per: dict = {}
        for variation in spec.variations:
            syst, _, _ = variation.rpartition("_")
            table = tables[variation if syst in SHIFTS else "nominal"]
            chosen = table["label"] == k
            weight = table[f"weight_{variation}" if syst in WEIGHTS else "weight"][chosen]
            group = (torch.as_tensor(btag_groups(table["n_btag"][chosen], spec.btag_split))
                     if n_btag else None)
            per[variation] = (torch.as_tensor(table["logits"][chosen]),
                              torch.as_tensor(weight), group)
            if replicas > 1 and table is tables["nominal"]:
                per[variation] += (torch.as_tensor(table["event"][chosen]),)
        outputs[process] = per
    scores = {"sim": {s: {c: v for c, v in t.items() if c != "logits"} for s, t in
                      tables.items()}}
    return scores, outputs


def _workspace(scores: dict, config: AnalysisConfig, details: dict | None = None) -> dict:
    full, _ = category_histograms(scores, model_spec(config), config.training.n_folds)
    histograms = {"channels": {name: histogram_dict(h) for name, h in full.items()}}
    return build_workspace(histograms, config, pseudo_data_seed=5, details=details)


def test_channels_and_modifiers_of_the_tiny_config(tiny_config: AnalysisConfig,
                                                   rng: np.random.Generator,
                                                   tmp_path: Path) -> None:
    spec = model_spec(tiny_config)
    assert spec.channels == ("cat_tth", "cat_ttbb", "cat_ttother")
    assert spec.free_normalisations == ("tt_bb",)
    scores, _ = _events(rng, tiny_config)
    details: dict = {}
    workspace = _workspace(scores, tiny_config, details)
    validate_workspace(workspace)
    assert [c["name"] for c in workspace["channels"]] == list(spec.channels)
    for channel in workspace["channels"]:
        samples = {s["name"]: {(m["name"], m["type"]) for m in s["modifiers"]}
                   for s in channel["samples"]}
        assert set(samples) == set(tiny_config.process_names)
        assert ("norm_tt_bb", "normfactor") in samples["tt_bb"]
        assert not any(name == "xsec_tt_bb" for name, _ in samples["tt_bb"])
        assert ("xsec_tt_lf", "normsys") in samples["tt_lf"]
        assert ("mu", "normfactor") in samples["tth_bb"]
        for kinds in samples.values():
            assert ("lumi", "normsys") in kinds and ("jes", "normsys") in kinds
            assert (f"staterror_{channel['name']}", "staterror") in kinds
    pruned = {(c, p, s) for c, p, s in details["pruned_shapes"]}
    shapes = {(c["name"], s["name"], m["name"]) for c in workspace["channels"]
              for s in c["samples"] for m in s["modifiers"] if m["type"] == "histosys"}
    assert len(pruned) + len(shapes) == 3 * 5 * 5  # channels x processes x systematics
    assert sum(len(c["edges"]) - 1 for c in details["channels"].values()) == details["n_bins"]
    model = pyhf.Workspace(workspace).model()
    assert model.config.param_set("norm_tt_bb").suggested_bounds == [(0, 10)]
    assert not model.config.param_set("norm_tt_bb").constrained
    # pyhf's command line takes the categorised workspace with its free normalisation as
    # written: inspect lists the three channels and norm_tt_bb, fit converges
    path = tmp_path / "workspace.json"
    path.write_text(json.dumps(workspace))
    pyhf_cli = str(Path(sys.executable).with_name("pyhf"))
    inspect = subprocess.run([pyhf_cli, "inspect", str(path)], capture_output=True, text=True,
                             timeout=120)
    assert inspect.returncode == 0, inspect.stderr
    assert all(name in inspect.stdout for name in (*spec.channels, "norm_tt_bb"))
    fit = subprocess.run([pyhf_cli, "fit", str(path)], capture_output=True, text=True,
                         timeout=120)
    assert fit.returncode == 0, fit.stderr
    assert "norm_tt_bb" in json.loads(fit.stdout)["mle_parameters"]


def test_btag_split_names_and_channels(tiny_config: AnalysisConfig,
                                       rng: np.random.Generator) -> None:
    config = _inference(tiny_config, categories=Categories(btag_split=(3, 4)))
    spec = model_spec(config)
    assert spec.channels[:3] == ("cat_tth_lt3b", "cat_tth_3b", "cat_tth_ge4b")
    assert len(spec.channels) == 9
    scores, outputs = _events(rng, config, n_btag=True)
    workspace = _workspace(scores, config)
    validate_workspace(workspace)
    # the training-side templates select the same events (hard): the same yields per channel
    model = analysis_model(outputs, spec, mode="hard")
    for channel, written in zip(model.channels, workspace["channels"], strict=True):
        assert channel.name == written["name"]
        assert sum(float(s.nominal.sum()) for s in channel.samples) == pytest.approx(
            sum(sum(s["data"]) for s in written["samples"]), rel=1e-9)


def test_training_nll_equals_pyhf_nll_of_the_workspace(tiny_config: AnalysisConfig,
                                                        rng: np.random.Generator) -> None:
    """Hard categories and hard bins: the model the training loss builds is the workspace's,
    merging, floors and pruning included: the same NLL at random parameter points."""
    config = _inference(tiny_config, max_background_mc_stat=0.05)  # merges some bins here
    scores, outputs = _events(rng, config)
    details: dict = {}
    workspace = _workspace(scores, config, details)
    assert details["pruned_shapes"] and details["n_bins"] < 3 * config.inference.n_bins
    ours = analysis_model(outputs, model_spec(config), mode="hard")
    assert_nll_equals_pyhf(ours, workspace, rng, {"mu": (0.5, 1.5), "norm_tt_bb": (0.5, 1.5)})


def test_training_nll_with_detector_replicas_equals_pyhf_nll_of_the_workspace(
        tiny_config: AnalysisConfig, rng: np.random.Generator) -> None:
    """Four detector replicas per event: the workspace's staterror treats them as correlated
    (sum over events of the squared sum of its replicas' weights); the training model, given
    the events' indices, builds the same likelihood. Without them it would not."""
    config = _inference(tiny_config, max_background_mc_stat=0.05)
    scores, outputs = _events(rng, config, n=4000, replicas=4)
    workspace = _workspace(scores, config)
    spec = model_spec(config)
    ours = analysis_model(outputs, spec, mode="hard")
    assert_nll_equals_pyhf(ours, workspace, rng, {"mu": (0.5, 1.5), "norm_tt_bb": (0.5, 1.5)})
    # the replicas matter here: treated as independent, the MC statistical variances are
    # smaller (by up to the number of replicas where they share a bin)
    independent = {p: {v: t[:3] for v, t in per.items()} for p, per in outputs.items()}
    correlated, naive = (templates_from_outputs(o, spec, mode="hard")
                         for o in (outputs, independent))
    pairs = [(naive[c][p]["nominal"][1], correlated[c][p]["nominal"][1])
             for c in spec.channels for p in spec.processes]
    assert all(bool(torch.all(a <= b * (1 + 1e-12))) for a, b in pairs)
    assert sum(float(a.sum()) for a, _ in pairs) < 0.5 * sum(float(b.sum()) for _, b in pairs)
    # the soft (training) loss sees the correlation too: sigma_mu grows with it
    soft = float(analysis_loss(outputs, spec, bandwidth=0.02).detach())
    assert soft > float(analysis_loss(independent, spec, bandwidth=0.02).detach()) * 1.01


def logits_as_leaves(outputs: dict) -> list[torch.Tensor]:
    """Replace every variation's logits in ``outputs`` (in place) by a copy that requires
    gradients, as a network's outputs would; return those leaves."""
    leaves = []
    for per in outputs.values():
        for variation, (logits, weights, group) in per.items():
            leaf = logits.clone().requires_grad_(True)
            leaves.append(leaf)
            per[variation] = (leaf, weights, group)
    return leaves


def assert_nll_equals_pyhf(ours: Any, workspace: dict, rng: np.random.Generator,
                           factors: dict[str, tuple[float, float]], points: int = 6) -> None:
    """Our NLL of ``ours`` equals pyhf's of ``workspace`` to 1e-6 at ``points`` random points:
    the parameters in ``factors`` uniform in their range, staterror gammas in [0.9, 1.1], the
    rest (alphas) normal with width 0.7."""
    pyhf_model = pyhf.Workspace(workspace).model()
    data = pyhf.Workspace(workspace).data(pyhf_model)
    our_data = data_from_pyhf(ours, data, pyhf_model.config)
    for _ in range(points):
        pars = np.asarray(pyhf_model.config.suggested_init(), dtype=float)
        for name in pyhf_model.config.par_order:
            sl = pyhf_model.config.par_slice(name)
            width = sl.stop - sl.start
            if name in factors:
                pars[sl] = rng.uniform(*factors[name], width)
            elif name.startswith("staterror"):
                pars[sl] = rng.uniform(0.9, 1.1, width)
            else:
                pars[sl] = rng.normal(0.0, 0.7, width)
        expected = -float(pyhf_model.logpdf(pars, data)[0])
        got = float(nll(ours, parameters_from_pyhf(ours, pars, pyhf_model.config), our_data))
        assert got == pytest.approx(expected, rel=1e-6, abs=1e-6)


def test_training_loss_with_free_normalisation_is_finite_and_differentiable(
        tiny_config: AnalysisConfig, rng: np.random.Generator) -> None:
    spec = model_spec(tiny_config)
    _, outputs = _events(rng, tiny_config)
    leaves = logits_as_leaves(outputs)
    model = analysis_model(outputs, spec)
    assert model.parameter("norm_tt_bb").aux_index is None  # free: no constraint term
    loss = analysis_loss(outputs, spec, bandwidth=tiny_config.training.bandwidth)
    value = float(loss.detach())
    assert math.isfinite(value) and value > 0
    loss.backward()
    grads = torch.cat([leaf.grad.reshape(-1) for leaf in leaves])
    assert bool(torch.isfinite(grads).all()) and float(grads.abs().sum()) > 0
    # a free normalisation leaves mu less determined than the 50 % cross-section normsys
    constrained = dataclasses.replace(spec, free_normalisations=())
    detached = {p: {v: (t[0].detach(), t[1], t[2]) for v, t in per.items()}
                for p, per in outputs.items()}
    assert float(analysis_loss(detached, constrained).detach()) <= value * (1 + 1e-9)


def test_bad_input_names_the_channel_or_key(tiny_config: AnalysisConfig,
                                            rng: np.random.Generator) -> None:
    spec = model_spec(tiny_config)
    _, outputs = _events(rng, tiny_config)

    templates = templates_from_outputs(outputs, spec, mode="hard")
    # a category without events
    empty = {c: {p: {v: (0 * a, 0 * b) for v, (a, b) in per.items()} for p, per in procs.items()}
             if c == "cat_ttbb" else procs for c, procs in templates.items()}
    strict = model_spec(_inference(tiny_config, categories=Categories(drop_empty=False)))
    with pytest.raises(EmptySelectionError, match="channel 'cat_ttbb' has no expected events"):
        build_model(empty, strict)
    # ... which inference.categories.drop_empty drops, recording it
    dropping = model_spec(_inference(tiny_config, categories=Categories(drop_empty=True)))
    details: dict = {}
    model = build_model(empty, dropping, details)
    assert [c.name for c in model.channels] == ["cat_tth", "cat_ttother"]
    assert details["dropped_channels"] == ["cat_ttbb"] and "cat_ttbb" not in details["channels"]
    assert len(build_model(templates, dropping).channels) == 3
    # a process absent from a channel
    absent = {c: dict(procs) for c, procs in templates.items()}
    del absent["cat_ttother"]["tt_cc"]
    with pytest.raises(InputDataError, match="channel 'cat_ttother': process 'tt_cc' is absent"):
        build_model(absent, spec)
    # a free normalisation whose process has no events anywhere
    no_ttbb = {c: {p: ({v: (0 * a, 0 * b) for v, (a, b) in per.items()} if p == "tt_bb" else per)
                   for p, per in procs.items()} for c, procs in templates.items()}
    with pytest.raises(EmptySelectionError, match="inference.free_normalisations: tt_bb"):
        build_model(no_ttbb, spec)
    # config: a free normalisation without categories, of the signal, two in one category
    from analysis.config import _check_model

    for changes, match in (({"categories": None}, "needs a category to constrain it"),
                           ({"free_normalisations": ("tth_bb",)}, "signal's normalisation"),
                           ({"free_normalisations": ("nope",)}, "no such process")):
        with pytest.raises(ConfigError, match=r"inference\.free_normalisations\[0\]"):
            _check_model(_inference(tiny_config, **changes), "tiny.yaml")
        with pytest.raises(ConfigError, match=match):
            _check_model(_inference(tiny_config, **changes), "tiny.yaml")
    with pytest.raises(ConfigError, match="inference.free_normalisations: tt_cc and tt_b"):
        model_spec(_inference(tiny_config, free_normalisations=("tt_b", "tt_cc")))
    with pytest.raises(ConfigError, match="inference.categories.btag_split"):
        _check_model(_inference(tiny_config, categories=Categories(btag_split=(4, 3))), "x")


def test_train_with_the_model_spec(tiny_config: AnalysisConfig) -> None:
    """The training API takes the statistical model: per-process samples, several per output
    node, soft categories, the free tt+bb normalisation; a few steps stay finite."""
    from analysis.training.loop import LossSettings, Stage, train
    from analysis.training.samples import Nuisance

    spec = dataclasses.replace(model_spec(tiny_config), systematics=("jes",),
                               max_background_mc_stat=None, prune_shape_chi2=None)
    generator = torch.Generator().manual_seed(3)
    samples = {}
    for k, process in enumerate(spec.processes):
        node = spec.classes.index(spec.process_class[process])
        x = torch.randn(200, 4, generator=generator, dtype=torch.float64) + node
        samples[process] = (x, torch.full((200,), 0.5 + 0.1 * k, dtype=torch.float64))
    network = torch.nn.Linear(4, 3).double()
    classes = {p: spec.classes.index(c) for p, c in spec.process_class.items()}
    jes = Nuisance.shift("jes", lambda x: 1.02 * x, lambda x: 0.98 * x)
    (history,) = train(network, samples, [Stage("inference", 3, 1e-2)], [jes],
                       loss=LossSettings(spec.signal, model=spec, classes=classes,
                                         bandwidth=0.05))
    assert len(history.loss) == 3 and all(math.isfinite(v) and v > 0 for v in history.loss)


def test_soft_model_approaches_the_fitted_one(tiny_config: AnalysisConfig,
                                              rng: np.random.Generator) -> None:
    """What training optimises differs from the written workspace only by its relaxations
    (soft categories softmax(logits / T), soft bins): at the config's T and the default
    bandwidth, sigma_mu of the soft model lies within 10 % of the hard (fitted) model's on this
    toy (7 % measured), and the difference shrinks towards 0 (0.2 % at T = 0.02) as T and the
    bandwidth go to 0."""
    from analysis.relax.likelihood import covariance

    _, outputs = _events(rng, tiny_config)
    spec = model_spec(tiny_config)

    def sigma_mu(mode: str, temperature: float, bandwidth: float | None) -> float:
        model = analysis_model(outputs, dataclasses.replace(spec, temperature=temperature),
                               mode=mode, bandwidth=bandwidth)
        index = model.parameter(model.poi).index.start
        return float(covariance(model, create_graph=False)[index, index].sqrt())

    hard = sigma_mu("hard", spec.temperature, None)
    differences = [abs(sigma_mu("soft", t, b) / hard - 1.0)
                   for t, b in ((spec.temperature, None), (0.1, 0.01), (0.02, 0.002))]
    assert differences[0] < 0.10
    assert differences[0] > differences[1] > differences[2]
    assert differences[2] < 5e-3


def test_a_fold_with_an_empty_category_gets_no_workspace(tiny_config: AnalysisConfig,
                                                         rng: np.random.Generator) -> None:
    """A (seed, fold) whose category is empty: that fold's workspace is None (its sigma_mu
    undetermined, NaN in fit_network) and the other folds are built as on their own."""
    from analysis.inference.fits import fit_network
    from analysis.inference.workspace import build_fold_workspaces

    config = dataclasses.replace(tiny_config, inference=dataclasses.replace(
        tiny_config.inference, categories=Categories(temperature=0.5, drop_empty=False)))
    scores, _ = _events(rng, config)
    _, folds = category_histograms(scores, model_spec(config), config.training.n_folds)
    entries = [{"seed": 0, "fold": k, "channels": {n: histogram_dict(h) for n, h in f.items()}}
               for k, f in enumerate(folds)]
    channels = dict(entries[0]["channels"])
    first = next(iter(channels))  # every process of one category without events
    channels[first] = {"edges": channels[first]["edges"], "processes": {
        process: {variation: {key: [0.0] * len(values) for key, values in histogram.items()}
                  for variation, histogram in per.items()}
        for process, per in channels[first]["processes"].items()}}
    entries[0] = {**entries[0], "channels": channels}
    built = build_fold_workspaces(entries, config, pseudo_data_seed=5)
    assert built[0] is None
    assert built[1] == build_workspace(entries[1], config, pseudo_data_seed=5)
    result = fit_network(built[1], built, scan_points=3, scan_max=2.0, limit_max=20.0)
    assert math.isnan(result["sigma_mu_folds"][0]) and math.isfinite(result["sigma_mu_folds"][1])


def test_a_slice_of_the_events_keeps_the_full_samples_mc_variance(
        tiny_config: AnalysisConfig, rng: np.random.Generator) -> None:
    """Split the events into two slices with weights doubled (training.event_slices): each
    slice estimates the full yields; with variance_scale = 1/2 the mean of the slices' MC
    variances is the full sample's sum of w^2, exactly (without the scale it is twice that)."""

    _, outputs = _events(rng, tiny_config)
    spec = model_spec(tiny_config)

    def half(parity: int) -> dict:
        return {p: {v: (logits[parity::2], 2.0 * w[parity::2], None)
                    for v, (logits, w, _) in per.items()} for p, per in outputs.items()}

    full = templates_from_outputs(outputs, spec, mode="hard")
    halves = [templates_from_outputs(half(k), spec, mode="hard", variance_scale=0.5)
              for k in (0, 1)]
    unscaled = templates_from_outputs(half(0), spec, mode="hard")
    for channel, per in full.items():
        for process, variations in per.items():
            values, variances = variations["nominal"]
            mean_values = sum(h[channel][process]["nominal"][0] for h in halves) / 2
            mean_variances = sum(h[channel][process]["nominal"][1] for h in halves) / 2
            torch.testing.assert_close(mean_values, values)
            torch.testing.assert_close(mean_variances, variances)
            torch.testing.assert_close(unscaled[channel][process]["nominal"][1],
                                       2.0 * halves[0][channel][process]["nominal"][1])


def test_seed_histograms_are_seed_zeros_full_analysis_and_every_seeds_folds(
        tiny_config: AnalysisConfig, rng: np.random.Generator) -> None:
    spec, n_folds = model_spec(tiny_config), tiny_config.training.n_folds
    per_seed = [_events(rng, tiny_config, n=600)[0] for _ in range(3)]
    read: list[int] = []

    def one_at_a_time():  # CreateHistograms reads each seed's scores only when it is its turn
        for seed, scores in enumerate(per_seed):
            read.append(seed)
            yield scores

    result = seed_histograms(one_at_a_time(), spec, n_folds)
    assert read == [0, 1, 2]
    full, _ = category_histograms(per_seed[0], spec, n_folds)
    assert result["channels"] == {name: histogram_dict(h) for name, h in full.items()}
    assert [(f["seed"], f["fold"]) for f in result["folds"]] == [
        (s, k) for s in range(3) for k in range(n_folds)]
    for entry in result["folds"]:
        _, folds = category_histograms(per_seed[entry["seed"]], spec, n_folds)
        assert entry["channels"] == {n: histogram_dict(h) for n, h in folds[entry["fold"]].items()}
    # other seeds' events: other histograms (the check above can tell the seeds apart)
    assert result["folds"][0]["channels"] != result["folds"][n_folds]["channels"]
    with pytest.raises(InputDataError, match="no seed index's scores"):
        seed_histograms([], spec, n_folds)


def test_signal_channel_is_the_first_channel_of_the_signals_node(
        tiny_config: AnalysisConfig) -> None:
    assert model_spec(tiny_config).signal_channel == "cat_tth"
    split = _inference(tiny_config, categories=Categories(temperature=0.5, drop_empty=True,
                                                          btag_split=(3, 4)))
    spec = model_spec(split)
    assert spec.signal_channel == next(c for c in spec.channels if c.startswith("cat_tth"))
    assert spec.channels.index(spec.signal_channel) == 0  # the signal's node comes first


def test_a_channel_without_simulated_background_keeps_one_event_of_each(
        tiny_config: AnalysisConfig, rng: np.random.Generator) -> None:
    """A category where only signal events fall: each background is one event of its
    effective weight (sum w^2 / sum w over every channel) with 100 % MC statistical
    uncertainty, not a floor near zero that makes the channel background-free. With the old
    floor the signal-only channel alone gave sigma_mu far below the full model's."""
    scores, _ = _events(rng, tiny_config)
    full, _ = category_histograms(scores, model_spec(tiny_config), tiny_config.training.n_folds)
    channels = {name: histogram_dict(h) for name, h in full.items()}
    spec = model_spec(tiny_config)
    emptied = spec.channels[1]
    channels[emptied] = {"edges": channels[emptied]["edges"], "processes": {
        process: (per if process == spec.signal else
                  {variation: {key: [0.0] * len(values) for key, values in histogram.items()}
                   for variation, histogram in per.items()})
        for process, per in channels[emptied]["processes"].items()}}
    workspace = build_workspace({"channels": channels}, tiny_config, pseudo_data_seed=5)
    validate_workspace(workspace)

    def effective_weight(process: str) -> float:
        per = [c["processes"][process]["nominal"] for c in channels.values()]
        return (sum(sum(h["variances"]) for h in per) / sum(sum(h["values"]) for h in per))

    channel = next(c for c in workspace["channels"] if c["name"] == emptied)
    backgrounds = {s["name"]: s for s in channel["samples"] if s["name"] != spec.signal}
    assert set(backgrounds) == set(spec.processes) - {spec.signal}
    for process, sample in backgrounds.items():
        weight = effective_weight(process)
        assert weight > 0
        assert sample["data"] == pytest.approx([weight] * len(sample["data"]), rel=1e-9)
        staterror = next(m for m in sample["modifiers"] if m["type"] == "staterror")
        assert staterror["name"] == f"staterror_{emptied}"
        assert staterror["data"] == pytest.approx(sample["data"], rel=1e-9)
    # the signal-only channel is no longer background-free: its background is at least the
    # lightest background event, more than the 1e-6 floor of its signal events
    signal = next(s for s in channel["samples"] if s["name"] == spec.signal)
    assert sum(sum(s["data"]) for s in backgrounds.values()) > 100 * 1e-6 * sum(signal["data"])
    assert sum(sum(s["data"]) for s in backgrounds.values()) >= min(
        effective_weight(p) for p in backgrounds) * len(signal["data"])
    model = pyhf.Workspace(workspace).model()
    assert np.isfinite(model.logpdf(model.config.suggested_init(),
                                    pyhf.Workspace(workspace).data(model))).all()


@pytest.mark.parametrize("mode", ["soft", "hard"])
def test_event_indices_without_replicas_change_nothing(tiny_config: AnalysisConfig,
                                                        rng: np.random.Generator,
                                                        mode: str) -> None:
    """One row per event: the templates built through the replicas' path (one membership
    matrix) equal the plain histograms', values and variances."""
    spec = model_spec(tiny_config)
    _, outputs = _events(rng, tiny_config, n=600)
    with_ids = {p: {v: (*t[:3], torch.arange(t[0].shape[0])) for v, t in per.items()}
                for p, per in outputs.items()}
    plain, indexed = (templates_from_outputs(o, spec, mode=mode, bandwidth=0.02)
                      for o in (outputs, with_ids))
    for channel in spec.channels:
        for process in spec.processes:
            for variation in spec.variations:
                for a, b in zip(plain[channel][process][variation],
                                indexed[channel][process][variation], strict=True):
                    torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)
