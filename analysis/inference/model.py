"""The statistical model of the analysis, one source for the training loss and the workspace.

:func:`build_model` turns per-channel, per-process, per-variation histograms (values and sums
of squared weights, torch tensors) and a :class:`ModelSpec` (from the config, :func:`model_spec`)
into a :class:`~analysis.relax.histfactory.BinnedModel`. BuildWorkspace calls it with the hard
histograms of the held-out scores and writes the model with
:func:`~analysis.relax.histfactory.to_pyhf_workspace`; the inference-aware training losses call it
with soft histograms (:func:`templates_from_outputs`: soft categories ``softmax(logits / T)`` as
in INFERNO, de Castro and Dorigo, arXiv:1806.04743, times soft bin memberships), so that what is
trained is what is fitted. With hard categories and hard bins the two give the same likelihood.

Channels (:class:`Category`): every event goes to the category of the network's largest output,
optionally split by the number of medium b-tagged jets; each channel is the histogram of its own
node's output in ``[1 / n_nodes, 1]``. Without ``inference.categories`` there is one channel,
``nn_score``, of the signal node's output in ``[0, 1]``.

Per channel and process the samples carry (HistFactory, CERN-OPEN-2012-016; pyhf names):

- ``mu`` (normfactor) on the signal, ``norm_<process>`` (normfactor, free) on each process of
  ``inference.free_normalisations``, ``shape_<process>`` (shapefactor: a free factor per score
  bin, one parameter set shared by all channels, which therefore need one bin count) on each
  process of ``inference.free_shapes``, else ``xsec_<process>`` (normsys) if it has a
  cross-section uncertainty;
- ``lumi`` (normsys) from the luminosity uncertainty;
- per systematic of ``inference.systematics``: a normsys of the yield ratio and a histosys of the
  up/down shapes scaled to the nominal yield, sharing one parameter (CMS/ATLAS shape + rate);
- ``staterror_<channel>`` (Barlow-Beeston lite) from the sums of squared weights.

Finite simulated samples, per channel: adjacent bins are merged (:func:`merge_bins`,
``inference.max_background_mc_stat``), bins without expected events dropped, an empty process bin
floored at ``1e-6`` of the process's yield in the channel, a process without events in a channel
left out of it, and a histosys pruned when its shape change is within the template's MC
statistical uncertainty (``inference.prune_shape_chi2``). A channel where no simulated
background event falls (only signal) keeps each background at one event of its effective weight
(``sum w^2 / sum w``) per bin with a 100 % MC statistical uncertainty: the simulation bounds the
background there by about one event, not by zero. The decisions (groups, kept bins,
pruned shapes) are taken on the detached histograms; the merged sums, floors and ratios stay
differentiable, so training applies them exactly as the workspace does.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from analysis.classes import class_names, class_of_process
from analysis.config import AnalysisConfig
from analysis.errors import ConfigError, EmptySelectionError, InputDataError
from analysis.inference.mcstat import grouped_cross_terms
from analysis.relax.histfactory import BinnedModel, Channel, Modifier, Sample
from analysis.relax.histograms import (
    bin_memberships,
    hard_histogram,
    resolve_bandwidth,
    soft_histogram,
)

log = logging.getLogger(__name__)

__all__ = ["CHANNEL", "POI", "Category", "ModelSpec", "Templates", "btag_groups", "build_model",
           "merge_bins", "model_spec", "network_classes", "templates_from_outputs"]

CHANNEL = "nn_score"  # the one channel without categories
POI = "mu"
FLOOR = 1e-6  # relative floor of an empty bin of a process
NORM_FLOOR = 1e-3  # smallest normsys factor: a variation that removes all events
_MIN_VARIANCE = 1e-30  # d sqrt(v)/dv is infinite at 0: floored for the staterror

#: channel -> process -> variation (``nominal``, ``<syst>_up``, ``<syst>_down``) ->
#: ``(values (n_bins,), variances (n_bins,))`` in expected events and events squared.
Templates = Mapping[str, Mapping[str, Mapping[str, tuple[torch.Tensor, torch.Tensor]]]]


@dataclass(frozen=True)
class Category:
    """One channel: events whose largest network output is ``node``, in b-tag group ``group``.

    Attributes:
        name: channel name, ``cat_<node name>`` plus ``_lt3b``/``_3b``/``_ge4b`` with a b-tag
            split, or ``nn_score`` without categories.
        node: index of the output node (class) whose output is histogrammed.
        node_name: the class's name (config ``classes``; ``tth``, ``ttbb``, ``ttother`` in the
            shipped configs).
        group: index of the b-tag group (:func:`btag_groups`), None without a split.
        selects: False for ``nn_score``: all events, no assignment by the largest output.
    """

    name: str
    node: int
    node_name: str
    group: int | None = None
    selects: bool = True


@dataclass(frozen=True)
class ModelSpec:
    """What the statistical model contains, apart from the histograms (from the config).

    Attributes:
        processes: process names, config order (samples in this order).
        signal: the signal process (carries the POI).
        categories: the channels, in workspace order.
        classes: the network's output nodes (class names), in node order.
        process_class: process -> class name (the node it is trained to).
        btag_split: thresholds on ``n_btag`` (empty: no split).
        n_bins: bins of each channel's score before merging.
        score_range: ``(low, high)`` of each channel's score axis.
        lumi_uncertainty: relative luminosity uncertainty (normsys ``lumi``; 0: none).
        xsec_uncertainty: process -> relative cross-section uncertainty (normsys).
        free_normalisations: processes with a free normfactor ``norm_<process>``.
        systematics: the up/down variations (histosys + normsys each).
        max_background_mc_stat: bin merging threshold, None: no merging.
        prune_shape_chi2: shape pruning threshold, None: no pruning.
        temperature: softmax temperature of the soft categories in training.
        source: config file (for error messages).
        drop_empty: drop a channel without expected events instead of stopping.
        free_shapes: processes with a free shape, shapefactor ``shape_<process>``.
    """

    processes: tuple[str, ...]
    signal: str
    categories: tuple[Category, ...]
    classes: tuple[str, ...]
    process_class: Mapping[str, str]
    btag_split: tuple[int, ...] = ()
    n_bins: int = 10
    score_range: tuple[float, float] = (0.0, 1.0)
    lumi_uncertainty: float = 0.0
    xsec_uncertainty: Mapping[str, float] | None = None
    free_normalisations: tuple[str, ...] = ()
    systematics: tuple[str, ...] = ()
    max_background_mc_stat: float | None = None
    prune_shape_chi2: float | None = None
    temperature: float = 1.0
    source: str = "config"
    drop_empty: bool = False
    free_shapes: tuple[str, ...] = ()

    @property
    def channels(self) -> tuple[str, ...]:
        """Channel names, workspace order."""
        return tuple(c.name for c in self.categories)

    @property
    def variations(self) -> tuple[str, ...]:
        """``nominal`` then ``<syst>_up``, ``<syst>_down`` per systematic."""
        return ("nominal", *(f"{s}_{d}" for s in self.systematics for d in ("up", "down")))

    def edges(self) -> np.ndarray:
        """``(n_bins + 1,)`` equal bin edges of every channel's score (before merging)."""
        return np.linspace(self.score_range[0], self.score_range[1], self.n_bins + 1)

    @property
    def signal_channel(self) -> str:
        """The first channel of the signal's output node (``cat_tth``, or ``cat_tth_<b-tag
        group>`` with a b-tag split), or the only channel (``nn_score``) without categories:
        where the signal is best seen (CreateHistograms' figure)."""
        node = self.process_class[self.signal]
        return next((c.name for c in self.categories if c.node_name == node),
                    self.categories[0].name)


def network_classes(config: AnalysisConfig) -> tuple[tuple[str, ...], dict[str, str]]:
    """The network's output classes and the class of each process.

    Returns:
        ``(classes, process -> class)``: the config's ``classes`` in node order
        (:func:`analysis.classes.class_names`) and :func:`analysis.classes.class_of_process`.
    """
    return class_names(config), class_of_process(config)


def _btag_suffix(split: Sequence[int], group: int) -> str:
    if group == 0:
        return f"_lt{split[0]}b"
    if group == len(split):
        return f"_ge{split[-1]}b"
    low, high = split[group - 1], split[group]
    return f"_{low}b" if high == low + 1 else f"_{low}to{high - 1}b"


def model_spec(config: AnalysisConfig) -> ModelSpec:
    """The :class:`ModelSpec` of ``config``'s ``inference`` section and processes.

    Raises:
        ConfigError: naming ``inference.free_normalisations`` when two free normalisations would
            share one category (only one of them could be constrained); naming
            ``inference.free_shapes`` for an unknown process, the signal, or no categories.
    """
    classes, process_class = network_classes(config)
    settings = config.inference
    signal = next(p for p, spec in config.processes.items() if spec.role == "signal")
    where = config.source or config.name
    if settings.categories is None:
        categories: tuple[Category, ...] = (
            Category(CHANNEL, classes.index(process_class[signal]), process_class[signal],
                     None, selects=False),)
        score_range, split, temperature = (0.0, 1.0), (), 1.0
    else:
        split = tuple(settings.categories.btag_split)
        groups: list[int | None] = list(range(len(split) + 1)) if split else [None]
        categories = tuple(
            Category(f"cat_{name}" + ("" if g is None else _btag_suffix(split, g)), k, name, g)
            for k, name in enumerate(classes) for g in groups)
        score_range, temperature = (1.0 / len(classes), 1.0), settings.categories.temperature
    for process in settings.free_shapes:
        if process not in process_class or process == signal or settings.categories is None:
            raise ConfigError(f"{where}: inference.free_shapes: {process}: needs a background "
                              f"process (defined: {', '.join(config.processes)}) and "
                              f"inference.categories to constrain its shape")
    owners: dict[str, str] = {}
    for process in settings.free_normalisations:
        node = process_class[process]
        if node in owners:
            raise ConfigError(f"{where}: inference.free_normalisations: {process} and "
                              f"{owners[node]} would both be constrained by the {node} category "
                              f"only; float at most one process per network output")
        owners[node] = process
    xsec = {p: spec.cross_section.uncertainty for p, spec in config.processes.items()
            if spec.role != "signal"}
    return ModelSpec(tuple(config.processes), signal, categories, classes, process_class, split,
                     settings.n_bins, score_range, config.luminosity.uncertainty, xsec,
                     tuple(settings.free_normalisations), tuple(settings.systematics),
                     settings.max_background_mc_stat, settings.prune_shape_chi2, temperature,
                     where, settings.categories is not None and settings.categories.drop_empty,
                     free_shapes=tuple(settings.free_shapes))


def btag_groups(n_btag: np.ndarray | torch.Tensor, split: Sequence[int]) -> np.ndarray | torch.Tensor:
    """b-tag group of each event: the number of thresholds of ``split`` it reaches.

    Example:
        >>> btag_groups(np.array([2, 3, 4, 6]), [3, 4]).tolist()
        [0, 1, 2, 2]
    """
    if isinstance(n_btag, torch.Tensor):
        thresholds = torch.as_tensor(list(split), dtype=n_btag.dtype, device=n_btag.device)
        return (n_btag[:, None] >= thresholds[None, :]).sum(dim=1)
    return (np.asarray(n_btag)[:, None] >= np.asarray(split)[None, :]).sum(axis=1)


def merge_bins(values: np.ndarray, variances: np.ndarray, max_relative: float) -> np.ndarray:
    """Groups of adjacent bins whose summed relative MC statistical uncertainty is small.

    Bins are collected from the last (signal-like) one down; a group closes once
    ``sqrt(sum variances) / sum values <= max_relative``. Low bins left over at the end join
    the group above them; if no group ever closes, everything is one bin.

    Args:
        values: ``(n_bins,)`` expected events of the total background per bin.
        variances: ``(n_bins,)`` sums of squared weights of the same events.
        max_relative: largest allowed relative uncertainty of a merged bin (> 0).

    Returns:
        ``(n_bins,)`` int: the merged bin of each bin, ``0 .. n_merged - 1`` in bin order.

    Raises:
        ConfigError: ``max_relative <= 0`` (it comes from ``inference.max_background_mc_stat``).
    """
    if max_relative <= 0:
        raise ConfigError(f"inference.max_background_mc_stat = {max_relative}: must be > 0 "
                          f"(the largest relative MC-stat. uncertainty of a merged bin)")
    values = np.asarray(values, dtype=np.float64)
    variances = np.asarray(variances, dtype=np.float64)
    closed_at: list[int] = []  # lowest bin of each closed group, from the top down
    total = variance = 0.0
    for index in range(values.size - 1, -1, -1):
        total += values[index]
        variance += max(variances[index], 0.0)
        if total > 0 and math.sqrt(variance) <= max_relative * total:
            closed_at.append(index)
            total = variance = 0.0
    if not closed_at:
        return np.zeros(values.size, dtype=np.int64)
    starts = sorted(closed_at)
    starts[0] = 0  # leftover low bins join the lowest closed group
    return np.searchsorted(np.asarray(starts), np.arange(values.size), side="right") - 1


def _shape_chi2(nominal: np.ndarray, shapes: Sequence[np.ndarray], variances: np.ndarray
                ) -> float:
    """Largest mean squared shape change over the directions, in units of the nominal
    template's MC statistical variance (bins without events are left out)."""
    filled = variances > 0
    if not filled.any():
        return 0.0
    return max(float(np.mean((shape[filled] - nominal[filled]) ** 2 / variances[filled]))
               for shape in shapes)


def _numpy(x: torch.Tensor) -> np.ndarray:
    return x.detach().cpu().numpy().astype(np.float64)


def _channel_templates(name: str, templates: Templates, spec: ModelSpec
                       ) -> dict[str, dict[str, tuple[torch.Tensor, torch.Tensor]]]:
    """The channel's histograms, checked: every process, every variation, one bin count."""
    if name not in templates:
        raise InputDataError(f"build_model: no histograms for channel {name!r} (have "
                             f"{sorted(templates)})")
    per_process = templates[name]
    out: dict[str, dict[str, tuple[torch.Tensor, torch.Tensor]]] = {}
    n_bins = None
    for process in spec.processes:
        if process not in per_process:
            raise InputDataError(f"build_model: channel {name!r}: process {process!r} is absent "
                                 f"(have {sorted(per_process)})")
        out[process] = {}
        for variation in spec.variations:
            pair = per_process[process].get(variation)
            if pair is None:
                raise InputDataError(f"build_model: channel {name!r}, process {process!r}: no "
                                     f"variation {variation!r}")
            values, variances = (torch.as_tensor(t, dtype=torch.float64) for t in pair)
            if values.ndim != 1 or values.shape != variances.shape or (
                    n_bins is not None and values.shape[0] != n_bins):
                raise InputDataError(f"build_model: channel {name!r}, process {process!r}, "
                                     f"{variation}: values and variances must be (n_bins,) "
                                     f"alike, got {tuple(values.shape)}, {tuple(variances.shape)}")
            if not bool(torch.isfinite(values.detach()).all() &
                        torch.isfinite(variances.detach()).all()):
                raise InputDataError(f"build_model: channel {name!r}, process {process!r}, "
                                     f"{variation}: non-finite values or variances")
            n_bins = values.shape[0]
            out[process][variation] = (values, variances)
    return out


def build_model(templates: Templates, spec: ModelSpec,
                details: dict[str, Any] | None = None) -> BinnedModel:
    """The binned model of the analysis (module docstring), differentiable in the templates.

    Args:
        templates: :data:`Templates` for every channel of ``spec``, every process and
            variation (``values`` in expected events, ``variances`` the sums of squared weights);
            floating tensors or arrays, used in float64.
        spec: what the model contains (:func:`model_spec`).
        details: if given, filled with ``channels`` (name -> ``edges`` after merging and
            dropping, ``node``), ``pruned_shapes`` (``[[channel, process, syst], ...]``) and
            ``n_bins`` (all channels).

    Returns:
        The :class:`~analysis.relax.histfactory.BinnedModel`, channels in ``spec`` order, POI
        ``mu``.

    Raises:
        InputDataError: a channel, process or variation absent from ``templates`` (naming it),
            or malformed histograms.
        EmptySelectionError: a channel without expected events (naming it), no signal in any
            channel, or a free normalisation whose process has no events in any channel.
    """
    channels, pruned, info, dropped = [], [], {}, []
    per_channel = {c.name: _channel_templates(c.name, templates, spec) for c in spec.categories}
    weights = _event_weights(per_channel.values(), spec.processes)
    for category in spec.categories:
        hists = per_channel[category.name]
        if spec.drop_empty and not any(float(_numpy(hists[p]["nominal"][0]).sum()) > 0
                                       for p in spec.processes):
            log.warning("build_model: channel %s has no expected events: dropped "
                        "(inference.categories.drop_empty)", category.name)
            dropped.append(category.name)
            continue
        channel, edges = _channel(category.name, hists, spec, pruned, weights)
        channels.append(channel)
        info[category.name] = {"edges": edges, "node": category.node_name}
    present = {s.name for c in channels for s in c.samples}
    if spec.signal not in present:
        raise EmptySelectionError(f"build_model: the signal {spec.signal} has no expected events "
                                  f"in any channel ({', '.join(spec.channels)})")
    for process in spec.free_normalisations:
        if process not in present:
            raise EmptySelectionError(
                f"{spec.source}: inference.free_normalisations: {process} has no expected events "
                f"in any channel ({', '.join(spec.channels)}): nothing constrains norm_{process}")
    _check_free_shapes(channels, spec, present)
    if details is not None:
        details.update({"channels": info, "pruned_shapes": pruned, "dropped_channels": dropped,
                        "n_bins": sum(c.n_bins for c in channels)})
    return BinnedModel(tuple(channels), poi=POI)


def _check_free_shapes(channels: Sequence[Channel], spec: ModelSpec, present: set[str]) -> None:
    """A free shape's factors are shared by the channels: each needs its process and one bin
    count (no bin merging or dropping that differs between the channels)."""
    if not spec.free_shapes:
        return
    for process in spec.free_shapes:
        if process not in present:
            raise EmptySelectionError(
                f"{spec.source}: inference.free_shapes: {process} has no expected events in any "
                f"channel ({', '.join(spec.channels)}): nothing constrains shape_{process}")
    bins = {c.name: c.n_bins for c in channels}
    if len(set(bins.values())) > 1:
        raise ConfigError(f"{spec.source}: inference.free_shapes: shape_"
                          f"{spec.free_shapes[0]} is shared by the channels, which have different "
                          f"bin counts after merging and dropping empty bins ({bins}): leave "
                          f"inference.max_background_mc_stat unset, or float the normalisation "
                          f"instead (inference.free_normalisations)")


def _event_weights(channels: Sequence[Mapping[str, Mapping[str, tuple[torch.Tensor, torch.Tensor]]]],
                   processes: Sequence[str]) -> dict[str, float]:
    """Effective weight of one simulated event of each process, ``sum w^2 / sum w`` over every
    channel and bin of the nominal histograms (expected events; 0 for a process without
    events)."""
    weights = {}
    for process in processes:
        total = sum(float(_numpy(c[process]["nominal"][0]).sum()) for c in channels)
        squares = sum(float(_numpy(c[process]["nominal"][1]).sum()) for c in channels)
        weights[process] = squares / total if total > 0 and squares > 0 else 0.0
    return weights


def _channel(name: str, hists: Mapping[str, Mapping[str, tuple[torch.Tensor, torch.Tensor]]],
             spec: ModelSpec, pruned: list[list[str]], event_weights: Mapping[str, float]
             ) -> tuple[Channel, list[float]]:
    """One channel: merge, drop empty bins, floor, prune; returns it and its bin edges."""
    backgrounds = [p for p in spec.processes if p != spec.signal]
    n_bins = hists[spec.processes[0]]["nominal"][0].shape[0]
    edges = spec.edges() if n_bins == spec.n_bins else np.linspace(
        spec.score_range[0], spec.score_range[1], n_bins + 1)
    merge: torch.Tensor | None = None
    if spec.max_background_mc_stat is not None and backgrounds:
        groups = merge_bins(sum(_numpy(hists[p]["nominal"][0]) for p in backgrounds),
                            sum(_numpy(hists[p]["nominal"][1]) for p in backgrounds),
                            spec.max_background_mc_stat)
        n_merged = int(groups.max()) + 1
        merge = torch.zeros(n_merged, n_bins, dtype=torch.float64)
        merge[torch.as_tensor(groups), torch.arange(n_bins)] = 1.0
        edges = np.append(edges[:-1][np.r_[True, np.diff(groups) > 0]], edges[-1])

    def merged(x: torch.Tensor) -> torch.Tensor:
        return x if merge is None else merge.to(x.device) @ x

    hists = {p: {v: (merged(a), merged(b)) for v, (a, b) in per.items()}
             for p, per in hists.items()}
    total = sum(_numpy(hists[p]["nominal"][0]) for p in spec.processes)
    keep_np = total > 0
    if not keep_np.any():
        raise EmptySelectionError(f"build_model: channel {name!r} has no expected events (an "
                                  f"empty category): change inference.categories or the "
                                  f"selection, or set inference.categories.drop_empty: true")
    keep = torch.as_tensor(np.flatnonzero(keep_np))
    samples = []
    for process in spec.processes:
        values, variances = (x[keep] for x in hists[process]["nominal"])
        yield_ = values.sum()
        if float(yield_.detach()) <= 0:
            continue  # no events of this process in this channel: left out of it
        floor = FLOOR * yield_.detach()
        data = torch.maximum(values, floor)
        modifiers = _normalisation(process, spec)
        for syst in spec.systematics:
            up, down = (hists[process][f"{syst}_{d}"][0][keep] for d in ("up", "down"))
            ratio_up, ratio_down = up.sum() / yield_, down.sum() / yield_
            modifiers.append(Modifier.normsys(syst, ratio_up.clamp_min(NORM_FLOOR),
                                              ratio_down.clamp_min(NORM_FLOOR)))
            shape_up = up / ratio_up if float(ratio_up.detach()) > 0 else data
            shape_down = down / ratio_down if float(ratio_down.detach()) > 0 else data
            if spec.prune_shape_chi2 is not None and _shape_chi2(
                    _numpy(data), (_numpy(shape_up), _numpy(shape_down)),
                    _numpy(variances)) < spec.prune_shape_chi2:
                pruned.append([name, process, syst])
                continue
            modifiers.append(Modifier.histosys(syst, torch.maximum(shape_up, floor),
                                               torch.maximum(shape_down, floor)))
        modifiers.append(Modifier.staterror(f"staterror_{name}",
                                            torch.sqrt(variances.clamp_min(_MIN_VARIANCE))))
        samples.append(Sample(process, data, tuple(modifiers)))
    if all(s.name == spec.signal for s in samples) and backgrounds:
        # a channel of signal events alone: no simulated background event fell into it, which
        # bounds the background by about one event's weight (0 of a Poisson mean of 1.15 at
        # 68 %), not by zero. A floor near zero would make it a background-free channel whose
        # signal alone sets sigma_mu (one demo fold's cat_ttbb gave sigma_mu = 1.01 against
        # 10-25 elsewhere). So each background is one event of its effective weight per bin,
        # with 100 % MC statistical uncertainty; a background with no events anywhere keeps a
        # floor of 1e-6 of the channel's events (the likelihood at mu = 0 stays finite).
        total_events = sum(s.nominal.detach() for s in samples)
        log.warning("build_model: channel %s has no simulated background events: each "
                    "background kept at one event of its effective weight per bin", name)
        for process in backgrounds:
            weight = event_weights.get(process, 0.0)
            if weight > 0:
                one_event = torch.full_like(total_events, weight)
                samples.append(Sample(process, one_event, (
                    *_normalisation(process, spec),
                    Modifier.staterror(f"staterror_{name}", one_event.clone()))))
            else:
                samples.append(Sample(process, FLOOR * total_events,
                                      tuple(_normalisation(process, spec))))
    return Channel(name, tuple(samples)), np.append(edges[:-1][keep_np], edges[-1]).tolist()


def _normalisation(process: str, spec: ModelSpec) -> list[Modifier]:
    """POI, free normfactor, free shapefactor or cross-section normsys, and the luminosity
    normsys."""
    modifiers = []
    u = (spec.xsec_uncertainty or {}).get(process, 0.0)
    if process == spec.signal:
        modifiers.append(Modifier.normfactor(POI))
    elif process in spec.free_normalisations:
        modifiers.append(Modifier.normfactor(f"norm_{process}"))
    elif process in spec.free_shapes:  # its factors carry the normalisation as well
        modifiers.append(Modifier.shapefactor(f"shape_{process}"))
    elif u > 0:
        modifiers.append(Modifier.normsys(f"xsec_{process}", 1.0 + u, max(1.0 - u, NORM_FLOOR)))
    if spec.lumi_uncertainty > 0:
        lumi = spec.lumi_uncertainty
        modifiers.append(Modifier.normsys("lumi", 1.0 + lumi, 1.0 - lumi))
    return modifiers


#: process -> variation -> ``(logits (n, n_nodes), weights (n,), b-tag group (n,) or None)``,
#: optionally with a fourth entry: the ``(n,)`` int64 event index of each row (detector replicas
#: of one event share it) or None
Outputs = Mapping[str, Mapping[str, tuple[Any, ...]]]


def templates_from_outputs(outputs: Outputs, spec: ModelSpec, *, mode: str = "soft",
                           bandwidth: float | None = None, kernel: str = "sigmoid",
                           variance_scale: float = 1.0) -> dict[str, Any]:
    """:data:`Templates` of the network's outputs, soft (training) or hard (as the workspace).

    Each channel (:class:`Category`) weighs an event by its category membership: the softmax
    of ``logits / spec.temperature`` at the channel's node in ``"soft"`` mode (INFERNO,
    arXiv:1806.04743), 1 for the largest output in ``"hard"`` mode, times 1 if it is in the
    channel's b-tag group; it histograms the node's output (softmax of the logits) with
    :func:`~analysis.relax.histograms.soft_histogram` (``"soft"``) or exact bins (``"hard"``),
    overflow into the outer bins. The variances are the histograms of the squared weights;
    where the outputs carry event indices, plus the cross terms of the detector replicas of one
    event (:func:`~analysis.inference.mcstat.grouped_cross_terms`), as the workspace's
    histograms have them (:func:`~analysis.inference.mcstat.replica_cross_terms`).

    Args:
        outputs: process -> variation -> ``(logits, weights, group[, events])``: ``(n, n_nodes)``
            logits, ``(n,)`` expected events per simulated event, ``(n,)`` integer b-tag group
            (:func:`btag_groups`) or None without a split, and optionally ``(n,)`` int64 event
            indices (replicas of one event share one; None or absent: every row its own
            event). A process without events may be given with ``n = 0``.
        spec: the channels, bins and variations.
        mode: ``"soft"`` (differentiable) or ``"hard"``.
        bandwidth: soft-histogram kernel width, score units; None: 0.2 of the channels' bin
            width (:func:`~analysis.relax.histograms.resolve_bandwidth`).
        kernel: ``"sigmoid"`` or ``"gaussian"``.
        variance_scale: multiplies the variances: ``1 / n`` for one of ``n`` event slices whose
            weights were scaled up ``n`` times, so that its MC statistical uncertainty is the
            full sample's (``sum (n w)^2 = n sum_full w^2`` on average), not ``n`` times it.

    Returns:
        channel -> process -> variation -> ``(values, variances)`` float64 ``(n_bins,)``.

    Raises:
        ConfigError: an unknown ``mode``, or a b-tag split without groups.
        InputDataError: a process or variation missing from ``outputs``.
    """
    if mode not in ("soft", "hard"):
        raise ConfigError(f"templates_from_outputs: mode = {mode!r}: must be 'soft' or 'hard'")
    edges = torch.as_tensor(spec.edges(), dtype=torch.float64)
    if mode == "soft":
        bandwidth = resolve_bandwidth(bandwidth, spec.edges(), "training.bandwidth")
    out: dict[str, dict[str, dict[str, tuple[torch.Tensor, torch.Tensor]]]] = {
        c.name: {} for c in spec.categories}
    for process in spec.processes:
        if process not in outputs:
            raise InputDataError(f"templates_from_outputs: no outputs for process {process!r}")
        for c in spec.categories:
            out[c.name][process] = {}
        for variation in spec.variations:
            if variation not in outputs[process]:
                raise InputDataError(f"templates_from_outputs: process {process!r}: no "
                                     f"variation {variation!r}")
            logits, weights, group, *rest = outputs[process][variation]
            events = rest[0] if rest else None
            logits, weights = logits.to(torch.float64), weights.to(torch.float64)
            probabilities = torch.softmax(logits, dim=1)
            if mode == "soft":
                membership = torch.softmax(logits / spec.temperature, dim=1)
            else:
                membership = torch.nn.functional.one_hot(
                    logits.argmax(dim=1), logits.shape[1]).to(torch.float64)
            for c in spec.categories:
                w = weights * membership[:, c.node] if c.selects else weights
                if c.group is not None:
                    if group is None:
                        raise ConfigError(f"templates_from_outputs: channel {c.name} needs the "
                                          f"events' b-tag groups (inference.categories."
                                          f"btag_split)")
                    w = w * (group == c.group).to(w.dtype)
                score = probabilities[:, c.node]
                if score.numel() == 0:  # a process without events: empty templates
                    zeros = torch.zeros(spec.n_bins, dtype=torch.float64, device=score.device)
                    out[c.name][process][variation] = (zeros, zeros)
                    continue
                if events is not None:  # detector replicas of one event are correlated
                    # one membership matrix for the values, the sum of w^2 and the cross terms
                    in_bins = bin_memberships(score, edges, bandwidth if mode == "soft" else None,
                                              kernel=kernel, flow="clip")
                    rows = w if mode == "soft" else w.detach()  # hard: no gradient, as below
                    contributions = rows[:, None] * in_bins
                    values = contributions.sum(dim=0)
                    variances = ((rows**2)[:, None] * in_bins).sum(dim=0) + grouped_cross_terms(
                        contributions, events)
                elif mode == "soft":
                    values, variances = (soft_histogram(score, x, edges, bandwidth,
                                                        kernel=kernel, flow="clip")
                                         for x in (w, w**2))
                else:
                    values, variances = (hard_histogram(score, x, edges, flow="clip")
                                         for x in (w, w**2))
                out[c.name][process][variation] = (values, variances * variance_scale
                                                   if variance_scale != 1.0 else variances)
    return out
