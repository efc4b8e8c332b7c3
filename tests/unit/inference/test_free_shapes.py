"""A free shape (``inference.free_shapes``: pyhf's shapefactor ``shape_<process>``, one free
factor per score bin shared by the categories) in the one statistical model of training and fit:
the workspace, the training NLL equal to pyhf's, the torch fitter against pyhf + MINUIT, and
bad input naming ``inference.free_shapes``."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pyhf
import pytest
import torch

from analysis.config import AnalysisConfig, Categories, _check_model
from analysis.errors import ConfigError
from analysis.inference.fits import TorchEngine, _engine, asimov_sigma_mu
from analysis.inference.model import build_model, model_spec, templates_from_outputs
from analysis.inference.workspace import validate_workspace
from analysis.training.losses import analysis_loss, analysis_model
from tests.unit.inference.test_model import (
    _events,
    _inference,
    _workspace,
    assert_nll_equals_pyhf,
    logits_as_leaves,
)

FIT_RELATIVE = 1e-3


@pytest.fixture
def tiny_config(tiny_config: AnalysisConfig) -> AnalysisConfig:
    """The tiny config with a category per network output, tt+bb's shape floating freely."""
    return _inference(tiny_config, categories=Categories(temperature=0.5, drop_empty=True),
                      free_shapes=("tt_bb",))


@pytest.fixture
def events(tiny_config: AnalysisConfig) -> tuple[dict, dict]:
    return _events(np.random.default_rng(21), tiny_config)


def test_free_shape_in_every_channel_of_the_workspace(tiny_config: AnalysisConfig,
                                                      events: tuple[dict, dict]) -> None:
    spec = model_spec(tiny_config)
    assert spec.free_shapes == ("tt_bb",) and spec.free_normalisations == ()
    workspace = _workspace(events[0], tiny_config)
    validate_workspace(workspace)
    for channel in workspace["channels"]:
        samples = {s["name"]: {(m["name"], m["type"]) for m in s["modifiers"]}
                   for s in channel["samples"]}
        assert ("shape_tt_bb", "shapefactor") in samples["tt_bb"]
        assert not any(name == "xsec_tt_bb" for name, _ in samples["tt_bb"])  # floats freely
        assert ("xsec_tt_lf", "normsys") in samples["tt_lf"]
        assert all(("shape_tt_bb", "shapefactor") not in kinds
                   for name, kinds in samples.items() if name != "tt_bb")
    model = pyhf.Workspace(workspace).model()
    paramset = model.config.param_set("shape_tt_bb")
    assert not paramset.constrained
    assert paramset.n_parameters == tiny_config.inference.n_bins  # shared by the channels
    assert paramset.suggested_bounds == [(0, 10)] * tiny_config.inference.n_bins


def test_training_nll_with_a_free_shape_equals_pyhf_nll_of_the_workspace(
        tiny_config: AnalysisConfig, events: tuple[dict, dict]) -> None:
    """Hard categories and hard bins: the training model's NLL is pyhf's NLL of the written
    workspace, at random points where the shape factors are far from 1."""
    scores, outputs = events
    workspace = _workspace(scores, tiny_config)
    ours = analysis_model(outputs, model_spec(tiny_config), mode="hard")
    assert ours.parameter("shape_tt_bb").aux_index is None
    assert_nll_equals_pyhf(ours, workspace, np.random.default_rng(8),
                           {"mu": (0.3, 2.0), "shape_tt_bb": (0.3, 2.0)})


def test_training_loss_with_a_free_shape_is_finite_and_differentiable(
        tiny_config: AnalysisConfig, events: tuple[dict, dict]) -> None:
    spec = model_spec(tiny_config)
    _, outputs = events
    leaves = logits_as_leaves(outputs)
    loss = analysis_loss(outputs, spec)
    assert math.isfinite(float(loss.detach())) and float(loss.detach()) > 0
    loss.backward()
    grads = torch.cat([leaf.grad.reshape(-1) for leaf in leaves])
    assert bool(torch.isfinite(grads).all()) and float(grads.abs().sum()) > 0
    # a free shape leaves mu less determined than tt+bb's 50 % cross-section normsys
    detached = {p: {v: (t[0].detach(), t[1], t[2]) for v, t in per.items()}
                for p, per in outputs.items()}
    constrained = dataclasses.replace(spec, free_shapes=())
    assert float(analysis_loss(detached, constrained).detach()) < float(loss.detach())


def test_torch_fit_with_a_free_shape_matches_pyhf_minuit(tiny_config: AnalysisConfig,
                                                         events: tuple[dict, dict]) -> None:
    workspace = _workspace(events[0], tiny_config)
    torch_engine, pyhf_engine = TorchEngine(workspace), _engine(workspace, "pyhf_strict")
    assert torch_engine.par_names == pyhf_engine.par_names
    shape = [i for i, n in enumerate(torch_engine.par_names) if n.startswith("shape_tt_bb")]
    assert len(shape) == tiny_config.inference.n_bins
    assert (torch_engine.bounds[shape] == [0.0, 10.0]).all()
    poi = torch_engine.poi
    # pseudo-data of a few events per bin: flat directions, where MINUIT stops early; the
    # torch fitter's minimum is at least as deep
    ours = torch_engine.fit(torch_engine.observed)
    theirs = pyhf_engine.fit(pyhf_engine.observed)
    assert ours.twice_nll <= theirs.twice_nll + 1e-6
    # Asimov data at mu = 1.5 and a tt+bb shape far from nominal: both find that point
    truth = torch_engine.init.copy()
    truth[poi] = 1.5
    truth[shape] = np.linspace(1.3, 0.8, len(shape))
    data = torch_engine.expected_data(truth)
    ours = torch_engine.fit(data, uncertainties=True)
    theirs = pyhf_engine.fit(data, uncertainties=True)
    assert ours.twice_nll == pytest.approx(theirs.twice_nll, rel=1e-8)
    assert ours.pars[poi] == pytest.approx(1.5, rel=1e-6)
    assert ours.pars[poi] == pytest.approx(theirs.pars[poi], rel=FIT_RELATIVE)
    assert ours.pars[shape] == pytest.approx(theirs.pars[shape], rel=FIT_RELATIVE)
    assert ours.uncertainties[poi] == pytest.approx(theirs.uncertainties[poi], rel=FIT_RELATIVE)
    sigma = asimov_sigma_mu(workspace, "torch")
    assert math.isfinite(sigma) and sigma > 0
    assert sigma == pytest.approx(asimov_sigma_mu(workspace, "pyhf_strict"), rel=FIT_RELATIVE)


def test_bad_free_shapes_name_the_key(tiny_config: AnalysisConfig,
                                      events: tuple[dict, dict]) -> None:
    for changes, match in (({"free_shapes": ("nope",)}, "no such process"),
                           ({"free_shapes": ("tth_bb",)}, "mu undetermined"),
                           ({"free_shapes": ("tt_bb", "tt_bb")}, "listed twice"),
                           ({"free_normalisations": ("tt_bb",)}, "degenerate"),
                           ({"categories": None}, "needs the categories")):
        config = _inference(tiny_config, **changes)
        with pytest.raises(ConfigError, match=r"inference\.free_shapes\[\d\]"):
            _check_model(config, "tiny.yaml")
        with pytest.raises(ConfigError, match=match):
            _check_model(config, "tiny.yaml")
    with pytest.raises(ConfigError, match="inference.free_shapes: nope"):
        model_spec(_inference(tiny_config, free_shapes=("nope",)))
    # bins merged differently per channel: one shared factor per bin cannot exist
    templates = templates_from_outputs(events[1], model_spec(tiny_config), mode="hard")
    templates["cat_ttother"] = {p: {v: (a[:-1], b[:-1]) for v, (a, b) in per.items()}
                                for p, per in templates["cat_ttother"].items()}
    with pytest.raises(ConfigError, match="inference.free_shapes: shape_tt_bb .* different "
                                          "bin counts"):
        build_model(templates, model_spec(tiny_config))
