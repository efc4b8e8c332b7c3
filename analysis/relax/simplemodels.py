"""Ready-made binned models, the torch twins of ``pyhf.simplemodels``."""

from __future__ import annotations

import torch

from analysis.relax.histfactory import BinnedModel, Channel, Modifier, Sample

__all__ = ["uncorrelated_background"]


def uncorrelated_background(signal: torch.Tensor, background: torch.Tensor,
                            uncertainty: torch.Tensor) -> BinnedModel:
    """One channel, a signal with the POI ``mu`` and a background with a Poisson-constrained
    per-bin uncertainty: the model of ``pyhf.simplemodels.uncorrelated_background``.

    Args:
        signal: ``(n_bins,)`` expected signal events (may require grad).
        background: ``(n_bins,)`` expected background events.
        uncertainty: ``(n_bins,)`` absolute background uncertainty in events (``shapesys``).

    Returns:
        The model, with pyhf's names (``singlechannel``, ``uncorr_bkguncrt``).

    Example:
        >>> model = uncorrelated_background(torch.tensor([5.0]), torch.tensor([50.0]),
        ...                                 torch.tensor([5.0]))
        >>> [p.name for p in model.parameters]
        ['mu', 'uncorr_bkguncrt']
    """
    return BinnedModel((Channel("singlechannel", (
        Sample("signal", signal.reshape(-1), (Modifier.normfactor("mu"),)),
        Sample("background", background.reshape(-1),
               (Modifier.shapesys("uncorr_bkguncrt", uncertainty.reshape(-1)),)))),))
