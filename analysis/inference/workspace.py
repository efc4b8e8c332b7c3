"""The pyhf JSON workspace of the analysis from the score histograms of its channels.

The model is :func:`analysis.inference.model.build_model`'s, the same function that builds the
inference-aware training losses: one channel per event category (or the one channel ``nn_score``),
one sample per process, and the modifiers, bin merging and shape pruning described in
:mod:`analysis.inference.model`. :func:`build_workspace` writes it with
:func:`~analysis.relax.histfactory.to_pyhf_workspace`, adds the range of mu and the
observations: pseudo-data, Poisson draws of the expected yields at ``mu = 1`` with a fixed seed.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from analysis.config import AnalysisConfig
from analysis.errors import EmptySelectionError, InputDataError
from analysis.inference.model import (
    CHANNEL,
    POI,
    ModelSpec,
    build_model,
    merge_bins,
    model_spec,
)
from analysis.inference.score_histograms import templates_from_histograms
from analysis.relax.histfactory import to_pyhf_workspace

__all__ = ["CHANNEL", "POI", "build_fold_workspaces", "build_workspace", "merge_bins",
           "poi_bounds", "validate_workspace"]

log = logging.getLogger(__name__)

_KEEP = object()  # an option left as the config says


def poi_bounds(signal: np.ndarray, background: np.ndarray, upper: float = 50.0
               ) -> tuple[float, float]:
    """Range of ``mu`` for the fits: wide enough for an uncertainty of tens, and never so
    negative that a bin's expected events (background + mu signal) approach zero.

    Args:
        signal: ``(n_bins,)`` expected signal events at ``mu = 1``.
        background: ``(n_bins,)`` expected background events.
        upper: the upper bound of ``mu``.

    Returns:
        ``(lower, upper)`` with ``lower = -min(upper, 0.5 min_i background_i / signal_i)``:
        every bin keeps at least half its background (a floor of -5 made bins of signal alone
        negative, and -log L undefined).
    """
    signal = np.asarray(signal, dtype=np.float64)
    background = np.asarray(background, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(signal > 0, background / signal, np.inf)
    return -float(min(upper, 0.5 * float(np.min(ratio)))), float(upper)


def _spec(histograms: Mapping[str, Any], config: AnalysisConfig, overrides: dict[str, Any]
          ) -> tuple[ModelSpec, dict[str, Any]]:
    """The model specification and the per-channel histograms; the one-channel form
    (``edges``, ``processes`` at the top) is the channel ``nn_score`` without categories."""
    if "channels" in histograms:
        spec, channels = model_spec(config), dict(histograms["channels"])
    else:
        single = dataclasses.replace(config.inference, categories=None, free_normalisations=(),
                                     free_shapes=())
        spec = model_spec(dataclasses.replace(config, inference=single))
        channels = {CHANNEL: histograms}
    missing = [p for p in spec.processes
               if any(p not in channel.get("processes", {}) for channel in channels.values())]
    if missing:
        raise InputDataError(f"build_workspace: no histograms for processes {missing}")
    spec = dataclasses.replace(spec, **{k: v for k, v in overrides.items() if v is not _KEEP})
    first = next(iter(channels.values()), {})
    if first.get("edges"):
        edges = np.asarray(first["edges"], dtype=np.float64)
        spec = dataclasses.replace(spec, n_bins=edges.size - 1,
                                   score_range=(float(edges[0]), float(edges[-1])))
    return spec, channels


def build_workspace(histograms: Mapping[str, Any], config: AnalysisConfig, *,
                    pseudo_data_seed: int, poi_range: Sequence[float] | None = None,
                    systematics: Sequence[str] | Any = _KEEP,
                    max_background_mc_stat: float | None | Any = _KEEP,
                    prune_shape_chi2: float | None | Any = _KEEP,
                    details: dict[str, Any] | None = None) -> dict[str, Any]:
    """The pyhf workspace specification (a JSON-ready dict) of the analysis's model.

    Args:
        histograms: ``{"channels": {channel: histogram_dict}}`` (CreateHistograms, expected
            events at the config's luminosity), or one :func:`~analysis.inference.score_histograms.
            histogram_dict` for the single channel ``nn_score`` (no categories, no free
            normalisations).
        config: processes, luminosity and the ``inference`` section (:func:`~analysis.inference.
            model.model_spec`).
        pseudo_data_seed: seed of the Poisson pseudo-data (the workspace's observations).
        poi_range: allowed range of ``mu``; None: :func:`poi_bounds` of all bins, up to
            ``config.inference.poi_max``.
        systematics, max_background_mc_stat, prune_shape_chi2: override the config's
            ``inference`` values (left out: the config's).
        details: if given, filled with ``channels`` (name -> ``edges`` after merging, ``node``),
            ``n_bins``, ``pruned_shapes`` (``[[channel, process, syst], ...]``) and
            ``poi_bounds``.

    Returns:
        The specification: ``channels``, ``observations``, ``measurements``, ``version``.

    Raises:
        InputDataError: a process or variation missing from ``histograms``.
        EmptySelectionError: a channel without events, no signal, or a free normalisation
            without events (naming the channel or the config key).
    """
    overrides = {"systematics": tuple(systematics) if systematics is not _KEEP else _KEEP,
                 "max_background_mc_stat": max_background_mc_stat,
                 "prune_shape_chi2": prune_shape_chi2}
    spec, channels = _spec(histograms, config, overrides)
    info: dict[str, Any] = {}
    model = build_model(templates_from_histograms(channels), spec, details=info)
    expected = torch.cat([torch.stack([s.nominal for s in c.samples]).sum(0)
                          for c in model.channels]).detach().numpy()
    observed = np.random.default_rng(pseudo_data_seed).poisson(expected).astype(float)
    if poi_range is None:
        signal = torch.cat([sum((s.nominal for s in c.samples if s.name == spec.signal),
                                torch.zeros(c.n_bins, dtype=torch.float64))
                            for c in model.channels]).detach().numpy()
        poi_range = poi_bounds(signal, expected - signal, upper=config.inference.poi_max)
    if details is not None:
        details.update({**info, "poi_bounds": list(map(float, poi_range))})
    workspace = to_pyhf_workspace(model, torch.as_tensor(observed), measurement="measurement",
                                  poi_bounds=(float(poi_range[0]), float(poi_range[1])))
    for parameter in workspace["measurements"][0]["config"]["parameters"]:
        if parameter["name"] == POI:
            parameter["inits"] = [1.0]
    return workspace


def build_fold_workspaces(folds: Sequence[Mapping[str, Any]], config: AnalysisConfig, *,
                          pseudo_data_seed: int) -> list[dict[str, Any] | None]:
    """One workspace per (seed index, fold) histogram set, None where a category is empty.

    A fold's network sees a fraction of the simulated events, behind the cuts learned without
    them: on small samples one of its categories can be empty. That fold's sigma_mu is then
    undetermined (the report shows n/a), with a warning naming it, instead of stopping the
    network's whole analysis; the network's own workspace still stops on an empty category.

    Args:
        folds: CreateHistograms' ``folds`` entries (``seed``, ``fold``, ``channels``).
        config: the analysis.
        pseudo_data_seed: as :func:`build_workspace`.

    Returns:
        ``len(folds)`` pyhf workspace specifications or None.
    """
    out: list[dict[str, Any] | None] = []
    for histograms in folds:
        try:
            out.append(build_workspace(histograms, config, pseudo_data_seed=pseudo_data_seed))
        except EmptySelectionError as err:
            log.warning("build_fold_workspaces: seed %s, fold %s: no workspace, sigma_mu "
                        "undetermined (%s)", histograms.get("seed"), histograms.get("fold"), err)
            out.append(None)
    return out


def validate_workspace(spec: Mapping[str, Any]) -> Any:
    """Validate ``spec`` against pyhf's schema and build its model.

    Args:
        spec: a pyhf workspace specification (``channels``, ``observations``,
            ``measurements``, ``version``).

    Returns:
        The ``pyhf.Workspace``.

    Raises:
        pyhf.exceptions.InvalidSpecification: the schema rejects it.
    """
    import pyhf

    workspace = pyhf.Workspace(dict(spec))  # validates against workspace.json
    workspace.model()  # and the model builds (modifier consistency)
    return workspace
