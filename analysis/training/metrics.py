"""Figures of merit of a trained classifier: hard-binned ``sigma_mu`` and its HistFactory model.

:func:`evaluate_sigma_mu` reports ``sigma_mu`` of the signal score of a classifier trained by
:func:`~analysis.training.loop.train_classifier` (or any classifier of the same form) with
**hard** bins, stat only and with the systematics; :func:`binned_model_from_classifier` gives
that binned model itself (e.g. for a pyhf workspace) and :func:`classifier_scores` the score.
Samples and nuisances are given as for training (:mod:`analysis.training.loop`). The weighted
ROC AUC is :func:`analysis.inference.scores.weighted_auc`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from analysis.relax.histfactory import BinnedModel
from analysis.relax.likelihood import sigma_mu
from analysis.training.losses import binned_model_from_scores
from analysis.training.samples import (
    ArrayLike,
    Edges,
    NormSys,
    Nuisance,
    Samples,
    model_dtype_device,
    prepare_samples,
    signal_score,
    varied_scores,
)

__all__ = [
    "SigmaMu",
    "classifier_scores",
    "binned_model_from_classifier",
    "evaluate_sigma_mu",
]


_UNUSED_BANDWIDTH = 1.0  # hard histograms ignore the kernel width; the signature needs one


@dataclass(frozen=True)
class SigmaMu:
    """Expected uncertainty of the signal strength with hard bins (Asimov data, mu = 1).

    Attributes:
        stat_only: ``sigma_mu`` without nuisance parameters (POI units).
        total: ``sigma_mu`` with every nuisance (histosys) and normsys profiled.
    """

    stat_only: float
    total: float

    @property
    def systematic(self) -> float:
        """``sqrt(total^2 - stat_only^2)``, the part due to the nuisances (0 if rounding < 0)."""
        return math.sqrt(max(self.total**2 - self.stat_only**2, 0.0))



def classifier_scores(model: torch.nn.Module, x: ArrayLike, signal_class: int = -1
                      ) -> torch.Tensor:
    """Signal score ``softmax(logits)[:, signal_class]`` in ``[0, 1]``, without gradient.

    Args:
        model: the classifier (module docstring); run in eval mode, its mode is restored.
        x: ``(n_events, n_features)`` inputs.
        signal_class: the signal's logit column after a 1-column output became ``(0, z)``;
            the default ``-1`` is right for 1 or 2 outputs.

    Returns:
        ``(n_events,)`` scores in the model's dtype.
    """
    dtype, device = model_dtype_device(model)
    x_t = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            return signal_score(model, x_t.to(dtype=dtype, device=device), signal_class)
    finally:
        model.train(was_training)


def binned_model_from_classifier(model: torch.nn.Module, samples: Samples,
                                 nuisances: Sequence[Nuisance], edges: Edges, *,
                                 signal: str = "signal", normsys: NormSys | None = None,
                                 with_systematics: bool = True) -> BinnedModel:
    """Float64 :class:`~analysis.relax.histfactory.BinnedModel` of the signal score, hard bins.

    Built by :func:`~analysis.training.losses.binned_model_from_scores` with
    ``histogram="hard"`` and ``flow="clip"``: one channel ``"nn"``, the signal with the POI
    ``mu``, every nuisance a histosys (the model on the shifted inputs, or the nominal scores
    with the varied weights), every ``normsys`` entry a normsys. ``to_pyhf_workspace`` turns it
    into a pyhf workspace.

    Args:
        model: the trained classifier.
        samples: as :func:`~analysis.training.loop.train_classifier`.
        nuisances: as :func:`~analysis.training.loop.train_classifier`.
        edges: ``(n_bins + 1,)`` strictly increasing score bin edges.
        signal: name of the signal sample.
        normsys: systematic -> sample -> ``(hi, lo)``.
        with_systematics: ``False`` leaves out the nuisances and normsys (stat only).

    Returns:
        The model (no gradients). Bins with no expected events (all samples, nominal) are left
        out: they carry no information at ``mu = 1``.

    Raises:
        ConfigError, InputDataError: as :func:`~analysis.training.loop.train_classifier`;
            InputDataError also if no bin has events.
    """
    nuisances = nuisances if with_systematics else ()
    normsys = normsys if with_systematics else None
    data = prepare_samples(model, samples, nuisances, signal, normsys)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            scale = {name: 1.0 for name in data.x}
            index = {name: torch.arange(x.shape[0], device=x.device)
                     for name, x in data.x.items()}
            scores = {s: signal_score(model, x, data.signal_class).double() for s, x in data.x.items()}
            weights = {s: w.double() for s, w in data.w.items()}
            shifted = {n: {s: ((up[0].double(), up[1].double()),
                               (down[0].double(), down[1].double()))
                           for s, (up, down) in per_sample.items()}
                       for n, per_sample in varied_scores(model, data, index, scale).items()}
    finally:
        model.train(was_training)
    return binned_model_from_scores(scores, weights, edges, _UNUSED_BANDWIDTH, signal,
                                    shifted=shifted, normsys=normsys, histogram="hard",
                                    drop_empty=True)


def evaluate_sigma_mu(model: torch.nn.Module, samples: Samples, nuisances: Sequence[Nuisance],
                      edges: Edges, *, signal: str = "signal",
                      normsys: NormSys | None = None) -> SigmaMu:
    """``sigma_mu`` of the hard-binned signal score, stat only and with systematics.

    ``sqrt((I^-1)_mu,mu)`` of the Fisher information on Asimov data at ``mu = 1``
    (:func:`~analysis.relax.likelihood.sigma_mu`, arXiv:2003.07186, Sec. 2) for the models of
    :func:`binned_model_from_classifier` without and with the systematics. For one bin without
    systematics it is ``sqrt(s + b) / s``.

    Args:
        model: the trained classifier.
        samples: as :func:`~analysis.training.loop.train_classifier`.
        nuisances: as :func:`~analysis.training.loop.train_classifier`.
        edges: ``(n_bins + 1,)`` strictly increasing score bin edges (the analysis binning).
        signal: name of the signal sample.
        normsys: systematic -> sample -> ``(hi, lo)``.

    Returns:
        :class:`SigmaMu` in POI units.

    Raises:
        ConfigError, InputDataError: as :func:`binned_model_from_classifier`.
        FitError: if a Fisher information is not positive definite.
    """
    values = [float(sigma_mu(binned_model_from_classifier(
        model, samples, nuisances, edges, signal=signal, normsys=normsys,
        with_systematics=flag)).detach()) for flag in (False, True)]
    return SigmaMu(stat_only=values[0], total=values[1])
