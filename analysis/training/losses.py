"""Training losses: weighted cross entropy, systematic-variation penalty, inference-aware sigma_mu.

- :func:`cross_entropy_loss` is the weighted multi-class cross entropy ``L_CE``.
- :func:`systematic_penalty` and :func:`penalised_loss` implement the penalty on the variation of
  the (soft) histogram of the NN output under systematic shifts of the inputs, Wunsch, Jörger,
  Wolf, Quast, "Reducing the dependence of the neural network function to systematic uncertainties
  in the input space", Comput. Softw. Big Sci. 4 (2020) 5, arXiv:1907.11674, Sec. 2:
  ``L = L_CE + lambda * L_syst`` with
  ``L_syst = sum_variations sum_bins ((N_k,shifted - N_k,nominal) / N_k,nominal)^2``.
- :func:`binned_model_from_scores` builds a :class:`~analysis.relax.histfactory.BinnedModel` from the
  histograms of the NN output per sample (signal with the POI normfactor, histosys from shifted
  samples, normsys, optional staterror), and :func:`inference_loss` returns its expected
  ``sigma_mu`` on Asimov data, the objective of Wunsch, Jörger, Wolf, Quast, "Optimal statistical
  inference in the presence of systematic uncertainties using neural network optimization based on
  binned Poisson likelihoods with nuisance parameters", Comput. Softw. Big Sci. 5 (2021) 4,
  arXiv:2003.07186, Sec. 2 (inverse Fisher information of the binned likelihood, POI element).

- :func:`analysis_model` and :func:`analysis_loss` build the analysis's own statistical model,
  :func:`analysis.inference.model.build_model` (the one BuildWorkspace writes: categories,
  processes, free and constrained normalisations, shape systematics, MC statistics, merging and
  pruning), from the network's outputs with soft categories and soft bins.

All functions follow the dtype and device of the scores; losses are scalar tensors differentiable
in the scores (and weights) for the ``"soft"`` and ``"straight_through"`` histograms.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import torch

from analysis.config import INFERENCE, SIGNIFICANCE
from analysis.errors import ConfigError, InputDataError
from analysis.inference.mcstat import grouped_cross_terms
from analysis.inference.model import (
    ModelSpec,
    Outputs,
    build_model,
    templates_from_outputs,
)
from analysis.relax.histfactory import BinnedModel, Channel, Modifier, Sample
from analysis.relax.histograms import (
    bin_memberships,
    hard_histogram,
    soft_histogram,
    straight_through_histogram,
)
from analysis.relax.likelihood import asimov_data, covariance
from analysis.relax.significance import discovery_significance

__all__ = [
    "HISTOGRAM_MODES",
    "cross_entropy_loss",
    "systematic_penalty",
    "penalised_loss",
    "binned_model_from_scores",
    "inference_loss",
    "analysis_model",
    "analysis_loss",
]

HISTOGRAM_MODES: tuple[str, ...] = ("soft", "straight_through", "hard")
"""How NN scores become bin counts: kernel-smoothed, exact forward with soft gradient, or exact."""

Edges = torch.Tensor | np.ndarray | Sequence[float]
ScoresWeights = tuple[torch.Tensor, torch.Tensor]
UpDown = tuple[ScoresWeights, ScoresWeights]


def _histogram(name: str, what: str, values: torch.Tensor, weights: torch.Tensor, edges: Edges,
               bandwidth: float, mode: str, kernel: str, flow: str) -> torch.Tensor:
    """``(n_bins,)`` histogram in the given mode; errors name the caller and the sample."""
    try:
        if mode == "soft":
            return soft_histogram(values, weights, edges, bandwidth, kernel=kernel, flow=flow)
        if mode == "straight_through":
            return straight_through_histogram(values, weights, edges, bandwidth, kernel=kernel,
                                              flow=flow)
        return hard_histogram(values, weights, edges, flow=flow)
    except InputDataError as err:
        raise InputDataError(f"{name}: {what}: {err}") from err


#: a bin below this fraction of the largest bin's nominal total is empty (:func:`occupied_bins`)
_EMPTY_BIN_FRACTION = 1e-9


def occupied_bins(nominals: Sequence[torch.Tensor]) -> torch.Tensor:
    """``(n_bins,)`` bool: the bins whose total of the ``(n_bins,)`` nominal yields (expected
    events) is above 1e-9 of the largest bin's total.

    Raises:
        InputDataError: if no bin has events.
    """
    total = torch.stack(list(nominals)).detach().sum(dim=0)
    keep = total > _EMPTY_BIN_FRACTION * total.max()
    if not bool(keep.any()):
        raise InputDataError("binned model: no events in any bin")
    return keep


def _replica_cross_terms(scores: torch.Tensor, weights: torch.Tensor, groups: torch.Tensor,
                         edges: Edges, bandwidth: float | None, kernel: str, flow: str
                         ) -> torch.Tensor:
    """``(n_bins,)`` float64 replica cross terms of a histogram's MC variance: soft memberships
    for a soft histogram, exact ones otherwise (exact counts, as the workspace)."""
    in_bins = bin_memberships(scores, edges, bandwidth, kernel=kernel, flow=flow)
    return grouped_cross_terms((weights[:, None] * in_bins).to(torch.float64), groups)


def cross_entropy_loss(logits: torch.Tensor, labels: torch.Tensor,
                       weights: torch.Tensor) -> torch.Tensor:
    """Weighted multi-class cross entropy, ``sum_i w_i (-log softmax(z_i)[y_i]) / sum_i w_i``.

    With unit weights this is ``torch.nn.functional.cross_entropy(logits, labels)`` (mean
    reduction); it is ``L_CE`` of arXiv:1907.11674, Sec. 2.

    Args:
        logits: ``(n_events, n_classes)`` unnormalised class scores.
        labels: ``(n_events,)`` integer class index in ``[0, n_classes)``.
        weights: ``(n_events,)`` per-event weight (e.g. expected events or class balancing);
            the sum must be non-zero.

    Returns:
        Scalar mean loss in nats.

    Raises:
        InputDataError: on shape or dtype mismatch, labels out of range, non-finite weights or a
            zero weight sum.

    Example:
        >>> round(cross_entropy_loss(torch.zeros(2, 2), torch.tensor([0, 1]), torch.ones(2)).item(),
        ...       4)  # log 2
        0.6931
    """
    name = "cross_entropy_loss"
    if not all(isinstance(t, torch.Tensor) for t in (logits, labels, weights)):
        raise InputDataError(f"{name}: logits, labels and weights must be torch tensors")
    if logits.dim() != 2 or not logits.is_floating_point():
        raise InputDataError(f"{name}: logits must be floating (n_events, n_classes), got "
                             f"{logits.dtype} {tuple(logits.shape)}")
    n_events, n_classes = logits.shape
    if labels.shape != (n_events,) or weights.shape != (n_events,):
        raise InputDataError(f"{name}: labels and weights must be ({n_events},), got "
                             f"{tuple(labels.shape)} and {tuple(weights.shape)}")
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise InputDataError(f"{name}: labels must be integer class indices, got {labels.dtype}")
    flags = torch.stack([((labels < 0) | (labels >= n_classes)).any(),
                         ~torch.isfinite(weights).all(), weights.sum() == 0]).tolist()
    problems = [f"labels outside [0, {n_classes})", "weights are not all finite",
                "weights sum to zero"]
    found = [p for p, flag in zip(problems, flags, strict=True) if flag]
    if found:
        raise InputDataError(f"{name}: {'; '.join(found)}")
    log_p = torch.log_softmax(logits, dim=1).gather(1, labels.long()[:, None])[:, 0]
    weights = weights.to(log_p.dtype)
    return -(weights * log_p).sum() / weights.sum()


def systematic_penalty(nominal_scores: torch.Tensor, nominal_weights: torch.Tensor,
                       shifted: Sequence[ScoresWeights], edges: Edges, bandwidth: float,
                       kernel: str = "sigmoid", flow: str = "clip") -> torch.Tensor:
    """Penalty on the change of the NN-output histogram under systematic variations.

    ``L_syst = sum_j sum_k ((N_k,j - N_k,0) / N_k,0)^2`` (arXiv:1907.11674, Sec. 2), with ``N_k,0``
    the soft histogram of the nominal scores and ``N_k,j`` that of variation ``j`` (e.g. up and
    down of each systematic, each listed as one entry of ``shifted``). A variation of the inputs
    is passed as the scores of the model on the shifted inputs; a variation by reweighting as the
    nominal scores with the varied weights.

    Args:
        nominal_scores: ``(n_events,)`` NN output on the nominal inputs (unitless).
        nominal_weights: ``(n_events,)`` expected events per simulated event.
        shifted: one ``(scores (n_j,), weights (n_j,))`` pair per variation; an empty sequence
            gives a zero penalty.
        edges: ``(n_bins + 1,)`` strictly increasing bin edges in score units.
        bandwidth: kernel width of :func:`~analysis.relax.histograms.soft_histogram`, > 0.
        kernel: ``"sigmoid"`` or ``"gaussian"``.
        flow: ``"clip"`` (default, keeps all events in the outer bins) or ``"drop"``.

    Returns:
        Scalar, unitless, >= 0; zero when every variation equals the nominal.

    Raises:
        InputDataError: on shape mismatch, bad edges or bandwidth, or a nominal histogram
            with no bin above 0 (nothing to compare a variation with).
        ConfigError: on an unknown ``kernel`` or ``flow``.

    Example:
        >>> x, w = torch.tensor([0.2, 0.7]), torch.ones(2)
        >>> systematic_penalty(x, w, [(x, w)], [0.0, 0.5, 1.0], 0.05)
        tensor(0.)
        >>> systematic_penalty(x, w, [(x, 2 * w)], [0.0, 0.5, 1.0], 0.05)  # +100 % in both bins
        tensor(2.)
    """
    name = "systematic_penalty"
    nominal = _histogram(name, "nominal", nominal_scores, nominal_weights, edges, bandwidth,
                         "soft", kernel, flow)
    # a bin the nominal scores do not reach (the soft kernel's tail underflows, e.g. early in
    # training) has no relative variation: it is left out, as the fit merges such bins
    filled = nominal.detach() > 0
    if not bool(filled.any()):
        raise InputDataError(f"{name}: nominal histogram must be > 0 in at least one bin for a "
                             f"relative variation, got {nominal.detach().tolist()}")
    nominal = torch.where(filled, nominal, 1.0)
    penalty = torch.zeros((), dtype=nominal.dtype, device=nominal.device)
    for j, pair in enumerate(shifted):
        if not isinstance(pair, tuple | list) or len(pair) != 2:
            raise InputDataError(f"{name}: shifted[{j}] must be a (scores, weights) pair")
        varied = _histogram(name, f"shifted[{j}]", pair[0], pair[1], edges, bandwidth, "soft",
                            kernel, flow)
        penalty = penalty + torch.where(filled, ((varied - nominal) / nominal) ** 2, 0.0).sum()
    return penalty


def penalised_loss(logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor,
                   nominal_scores: torch.Tensor, nominal_weights: torch.Tensor,
                   shifted: Sequence[ScoresWeights], edges: Edges, bandwidth: float,
                   penalty_weight: float, kernel: str = "sigmoid",
                   flow: str = "clip") -> torch.Tensor:
    """``L = L_CE + lambda * L_syst`` of arXiv:1907.11674, Sec. 2.

    Args:
        logits: ``(n_events, n_classes)`` class scores for :func:`cross_entropy_loss`.
        labels: ``(n_events,)`` integer class index.
        weights: ``(n_events,)`` cross-entropy weights.
        nominal_scores: ``(n_nominal,)`` NN output entering the penalty histogram (e.g. the
            softmax of one class, on the events of the process whose shape must be stable).
        nominal_weights: ``(n_nominal,)`` expected events per simulated event.
        shifted: ``(scores, weights)`` per variation, as in :func:`systematic_penalty`.
        edges: ``(n_bins + 1,)`` bin edges in score units.
        bandwidth: soft-histogram kernel width, > 0.
        penalty_weight: the hyperparameter ``lambda``, finite and >= 0.
        kernel: ``"sigmoid"`` or ``"gaussian"``.
        flow: ``"clip"`` or ``"drop"``.

    Returns:
        Scalar loss (nats plus the unitless penalty times ``lambda``).

    Raises:
        ConfigError: if ``penalty_weight`` is negative or not finite, or kernel/flow unknown.
        InputDataError: as :func:`cross_entropy_loss` and :func:`systematic_penalty`.
    """
    if not (math.isfinite(float(penalty_weight)) and float(penalty_weight) >= 0):
        raise ConfigError(f"penalised_loss: penalty_weight (lambda) = {penalty_weight}: must be "
                          f"finite and >= 0")
    ce = cross_entropy_loss(logits, labels, weights)
    penalty = systematic_penalty(nominal_scores, nominal_weights, shifted, edges, bandwidth,
                                 kernel=kernel, flow=flow)
    return ce + float(penalty_weight) * penalty.to(ce.dtype)


def _check_names(scores_by_sample: Mapping[str, torch.Tensor],
                 weights_by_sample: Mapping[str, torch.Tensor], signal: str,
                 shifted: Mapping[str, Mapping[str, UpDown]],
                 normsys: Mapping[str, Mapping[str, tuple[float, float]]], histogram: str) -> None:
    name = "binned_model_from_scores"
    if histogram not in HISTOGRAM_MODES:
        raise ConfigError(f"{name}: histogram = {histogram!r}: must be one of {HISTOGRAM_MODES}")
    if not scores_by_sample:
        raise InputDataError(f"{name}: scores_by_sample is empty")
    if set(weights_by_sample) != set(scores_by_sample):
        raise InputDataError(f"{name}: weights_by_sample has samples {sorted(weights_by_sample)}, "
                             f"scores_by_sample has {sorted(scores_by_sample)}")
    if signal not in scores_by_sample:
        raise ConfigError(f"{name}: signal = {signal!r}: not among the samples "
                          f"{sorted(scores_by_sample)}")
    for what, table in (("shifted", shifted), ("normsys", normsys)):
        for syst, per_sample in table.items():
            unknown = sorted(set(per_sample) - set(scores_by_sample))
            if unknown:
                raise ConfigError(f"{name}: {what}[{syst!r}] names unknown samples {unknown}; "
                                  f"known: {sorted(scores_by_sample)}")


def binned_model_from_scores(scores_by_sample: Mapping[str, torch.Tensor],
                             weights_by_sample: Mapping[str, torch.Tensor], edges: Edges,
                             bandwidth: float, signal: str,
                             shifted: Mapping[str, Mapping[str, UpDown]] | None = None,
                             normsys: Mapping[str, Mapping[str, tuple[float, float]]] | None = None,
                             staterror: bool = False, histogram: str = "soft",
                             kernel: str = "sigmoid", flow: str = "clip", channel: str = "nn",
                             poi: str = "mu",
                             event_groups: Mapping[str, torch.Tensor] | None = None,
                             squared_weights: Mapping[str, torch.Tensor] | None = None,
                             drop_empty: bool = False) -> BinnedModel:
    """One-channel binned model of the NN-output histograms (arXiv:2003.07186, Sec. 2).

    Each sample's nominal is the histogram of its scores; the signal carries the normfactor
    ``poi``; each systematic in ``shifted`` becomes a histosys with the up/down histograms of the
    shifted samples (code 4p); each entry of ``normsys`` a normsys (code 4); with ``staterror``
    every sample carries a staterror ``staterror_<channel>`` with uncertainty
    ``sqrt(hist(scores, weights^2))``, plus, for the samples in ``event_groups``, the cross
    terms of the detector replicas of one event under the square root
    (:func:`~analysis.inference.mcstat.grouped_cross_terms`), as the workspace has them.

    Args:
        scores_by_sample: sample name -> ``(n_s,)`` NN output (unitless).
        weights_by_sample: sample name -> ``(n_s,)`` expected events per simulated event.
        edges: ``(n_bins + 1,)`` strictly increasing bin edges in score units.
        bandwidth: kernel width (> 0) of the soft histogram, or of the straight-through gradient.
        signal: name of the signal sample (gets the POI).
        shifted: systematic -> sample -> ``((scores_up, weights_up), (scores_down,
            weights_down))``; samples not listed have no histosys for that systematic.
        normsys: systematic -> sample -> ``(hi, lo)`` normalisation factors (> 0).
        staterror: add Barlow-Beeston-lite MC statistical uncertainties.
        histogram: one of :data:`HISTOGRAM_MODES`; ``"hard"`` (not differentiable) or
            ``"straight_through"`` (exact counts) for reporting with the bins of the analysis.
        kernel: ``"sigmoid"`` or ``"gaussian"``.
        flow: ``"clip"`` (default) or ``"drop"``, see :mod:`analysis.relax.histograms`.
        channel: channel name.
        poi: name of the signal-strength normfactor.
        event_groups: sample name -> ``(n_s,)`` int64 event index of each row of that sample
            (the replicas of one event share it), for ``staterror``; a sample not listed has
            one row per event.
        squared_weights: sample name -> ``(n_s,)`` what the staterror sums in place of
            ``weights^2`` (expected events squared): ``w^2 * p`` for rows kept with probability
            ``p`` (soft cuts), the expected ``sum w^2`` of the hard selection they stand for,
            where ``(w p)^2`` would understate it.
        drop_empty: leave out the bins without events (:func:`occupied_bins`), e.g. those a
            hard selection empties, where a staterror is undefined; the model then has fewer
            bins than ``edges``.

    Returns:
        The :class:`~analysis.relax.histfactory.BinnedModel`, differentiable in the scores for the
        soft and straight-through histograms.

    Raises:
        ConfigError: on an unknown ``signal``, ``histogram``, ``kernel`` or ``flow``, or a
            systematic naming an unknown sample.
        InputDataError: on mismatched sample names or shapes, bad edges or bandwidth, malformed
            up/down pairs, or an invalid model (e.g. a systematic name reused across kinds).
    """
    name = "binned_model_from_scores"
    shifted = {} if shifted is None else shifted
    normsys = {} if normsys is None else normsys
    _check_names(scores_by_sample, weights_by_sample, signal, shifted, normsys, histogram)

    def hist(what: str, values: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        # the likelihood, its Hessian and Cholesky run in float64 whatever the network's dtype
        return _histogram(name, what, values, weights, edges, bandwidth, histogram, kernel,
                          flow).to(torch.float64)

    samples = []
    for sample, scores in scores_by_sample.items():
        weights = weights_by_sample[sample]
        modifiers: list[Modifier] = [Modifier.normfactor(poi)] if sample == signal else []
        for syst in sorted(shifted):
            if sample not in shifted[syst]:
                continue
            pair = shifted[syst][sample]
            if (not isinstance(pair, tuple | list) or len(pair) != 2
                    or any(not isinstance(p, tuple | list) or len(p) != 2 for p in pair)):
                raise InputDataError(f"{name}: shifted[{syst!r}][{sample!r}] must be "
                                     f"((scores_up, weights_up), (scores_down, weights_down))")
            (s_up, w_up), (s_down, w_down) = pair
            modifiers.append(Modifier.histosys(
                syst, hist(f"{syst} up of {sample!r}", s_up, w_up),
                hist(f"{syst} down of {sample!r}", s_down, w_down)))
        for syst in sorted(normsys):
            if sample in normsys[syst]:
                hi, lo = normsys[syst][sample]
                modifiers.append(Modifier.normsys(syst, hi, lo))
        if staterror:
            squares = weights**2 if squared_weights is None or sample not in squared_weights \
                else squared_weights[sample]
            variance = hist(f"sample {sample!r} (weights^2)", scores, squares)
            if event_groups is not None and sample in event_groups:
                variance = variance + _replica_cross_terms(
                    scores, weights, event_groups[sample], edges,
                    bandwidth if histogram == "soft" else None, kernel, flow)
            # floored: d sqrt(v)/dv is infinite at an empty bin (a NaN gradient otherwise)
            modifiers.append(Modifier.staterror(f"staterror_{channel}",
                                                torch.sqrt(variance.clamp_min(1e-30))))
        samples.append(Sample(sample, hist(f"sample {sample!r}", scores, weights),
                              tuple(modifiers)))
    if drop_empty:
        keep = occupied_bins([s.nominal for s in samples])
        samples = [s.with_bins(keep) for s in samples]
    return BinnedModel((Channel(channel, tuple(samples)),), poi=poi)


def inference_loss(scores_by_sample: Mapping[str, torch.Tensor],
                   weights_by_sample: Mapping[str, torch.Tensor],
                   shifted: Mapping[str, Mapping[str, UpDown]] | None, edges: Edges,
                   bandwidth: float, signal: str,
                   normsys: Mapping[str, Mapping[str, tuple[float, float]]] | None = None,
                   staterror: bool = False, histogram: str = "soft", kernel: str = "sigmoid",
                   flow: str = "clip", target: str | tuple[str, str] = "mu") -> torch.Tensor:
    """Expected uncertainty ``sigma_mu`` of the signal strength (or any covariance element).

    ``sigma_mu = sqrt((I^-1)_mu,mu)`` with ``I`` the Fisher information of the binned Poisson
    likelihood with nuisance parameters on Asimov data at ``mu = 1``, all nuisances nominal
    (arXiv:2003.07186, Sec. 2), built by :func:`binned_model_from_scores` and evaluated by
    :func:`~analysis.relax.likelihood.sigma_mu`. Without systematics and with one bin it is
    ``sqrt(s + b) / s``.

    Args:
        scores_by_sample: sample name -> ``(n_s,)`` NN output (unitless).
        weights_by_sample: sample name -> ``(n_s,)`` expected events per simulated event.
        shifted: systematic -> sample -> ``((scores_up, weights_up), (scores_down,
            weights_down))``, or ``None`` for no shape systematics.
        edges: ``(n_bins + 1,)`` bin edges in score units.
        bandwidth: soft-histogram kernel width, > 0.
        signal: name of the signal sample.
        normsys: systematic -> sample -> ``(hi, lo)`` normalisation factors.
        staterror: add MC statistical uncertainties.
        histogram: ``"soft"`` (default) or ``"straight_through"``; ``"hard"`` gives no gradient.
        kernel: ``"sigmoid"`` or ``"gaussian"``.
        flow: ``"clip"`` or ``"drop"``.
        target: a parameter name for its standard deviation ``sqrt(C_aa)`` (default ``"mu"``:
            ``sigma_mu``), or a pair of names for the covariance element ``C_ab``; scalar
            parameters only (``mu``, histosys and normsys names).

    Returns:
        Scalar in the parameters' units (float64), differentiable in scores and weights.

    Raises:
        ConfigError, InputDataError: as :func:`binned_model_from_scores`.
        FitError: if the Fisher information is not positive definite (e.g. empty bins).

    Example:
        >>> scores = {"s": torch.tensor([0.9], dtype=torch.float64),
        ...           "b": torch.tensor([0.1], dtype=torch.float64)}
        >>> weights = {"s": torch.tensor([10.0], dtype=torch.float64),
        ...            "b": torch.tensor([100.0], dtype=torch.float64)}
        >>> round(inference_loss(scores, weights, None, [0.0, 1.0], 0.1, "s").item(), 4)
        1.0488
    """
    model = binned_model_from_scores(scores_by_sample, weights_by_sample, edges, bandwidth, signal,
                                     shifted=shifted, normsys=normsys, staterror=staterror,
                                     histogram=histogram, kernel=kernel, flow=flow)
    names = (target, target) if isinstance(target, str) else tuple(target)
    index = []
    for parameter in names:
        try:
            location = model.parameter(parameter).index
        except (KeyError, InputDataError) as err:
            raise ConfigError(f"inference_loss: target parameter {parameter!r} not in the model "
                              f"({[p.name for p in model.parameters]})") from err
        if location.stop - location.start != 1:
            raise ConfigError(f"inference_loss: target {parameter!r} is a per-bin parameter; "
                              "name a scalar one")
        index.append(location.start)
    element = covariance(model)[index[0], index[1]]
    return element.sqrt() if isinstance(target, str) else element


def analysis_model(outputs: Outputs, spec: ModelSpec, *, mode: str = "soft",
                   bandwidth: float | None = None, kernel: str = "sigmoid",
                   variance_scale: float = 1.0) -> BinnedModel:
    """The analysis's binned model of the network's outputs: what the workspace will hold.

    :func:`~analysis.inference.model.templates_from_outputs` (soft or hard categories and
    bins) then :func:`~analysis.inference.model.build_model`, the function BuildWorkspace
    calls with the held-out histograms; with ``mode="hard"`` the two likelihoods are equal.

    Args:
        outputs: process -> variation -> ``(logits (n, n_nodes), weights (n,), b-tag group
            (n,) or None)``; variations ``nominal`` and ``<syst>_up/down`` of ``spec``.
        spec: :func:`~analysis.inference.model.model_spec` of the config.
        mode: ``"soft"`` (differentiable) or ``"hard"``.
        bandwidth: soft-histogram kernel width, score units.
        kernel: ``"sigmoid"`` or ``"gaussian"``.
        variance_scale: of the MC statistical variances (one of ``n`` event slices: ``1/n``;
            :func:`~analysis.inference.model.templates_from_outputs`).

    Returns:
        The :class:`~analysis.relax.histfactory.BinnedModel`, float64.

    Raises:
        ConfigError, InputDataError, EmptySelectionError: as the two functions.
    """
    return build_model(templates_from_outputs(outputs, spec, mode=mode, bandwidth=bandwidth,
                                              kernel=kernel, variance_scale=variance_scale),
                       spec)


def analysis_loss(outputs: Outputs, spec: ModelSpec, strategy: str = INFERENCE, *,
                  bandwidth: float | None = None, kernel: str = "sigmoid",
                  variance_scale: float = 1.0) -> torch.Tensor:
    """The yield-aware loss of :func:`analysis_model` (soft): ``sigma_mu`` or ``-Z0``.

    ``"inference"``: ``sqrt((I^-1)_mu,mu)`` on Asimov data (arXiv:2003.07186, Sec. 2), every
    parameter of the model profiled: constrained nuisances with their constraint terms, free
    normalisations (normfactors) without one. ``"significance"``: minus the Asimov discovery
    significance from two profiled fits (arXiv:1007.1727, Eq. 52; envelope theorem).

    ``variance_scale`` scales the MC statistical variances (:func:`analysis_model`).

    Returns:
        Scalar, float64, differentiable in the logits and weights.

    Raises:
        ConfigError: an unknown ``strategy``. FitError: a singular Fisher information (e.g. a
        free normalisation that no channel constrains) or a failed fit.
    """
    model = analysis_model(outputs, spec, mode="soft", bandwidth=bandwidth, kernel=kernel,
                           variance_scale=variance_scale)
    if strategy == SIGNIFICANCE:
        return -discovery_significance(model, asimov_data(model))
    if strategy != INFERENCE:
        raise ConfigError(f"analysis_loss: strategy = {strategy!r}: must be 'inference' or "
                          f"'significance'")
    index = model.parameter(model.poi).index.start
    return covariance(model)[index, index].sqrt()
