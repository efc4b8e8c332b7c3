"""analysis.training.metrics: the hard-binned model helpers of the learned skim and evaluation."""

from __future__ import annotations

import torch

from analysis.relax.histfactory import BinnedModel, Channel, Modifier, Sample
from analysis.relax.likelihood import sigma_mu
from analysis.training.metrics import drop_empty_bins


def test_a_bin_soft_cuts_leave_at_1e_minus_14_counts_as_empty() -> None:
    """A bin with 6e-14 expected events and a shape variation that does not vanish there
    (what the soft cuts' tails left in LearnCuts of the demo's fold 0) makes the Fisher
    information singular; drop_empty_bins removes it, and sigma_mu is that of the other bins."""
    f64 = torch.float64
    signal = torch.tensor([10.0, 20.0, 3e-14], dtype=f64)
    background = torch.tensor([100.0, 50.0, 3e-14], dtype=f64)
    shape = Modifier.histosys("jes", hi=background * 1.1 + torch.tensor([0, 0, 0.5], dtype=f64),
                              lo=background * 0.9)
    model = BinnedModel(channels=(Channel("nn", (
        Sample("signal", signal, (Modifier.normfactor("mu"),)),
        Sample("background", background, (shape,)))),), poi="mu")
    kept = drop_empty_bins(model)
    assert kept.channels[0].n_bins == 2
    reference = BinnedModel(channels=(Channel("nn", (
        Sample("signal", signal[:2], (Modifier.normfactor("mu"),)),
        Sample("background", background[:2], (Modifier.histosys(
            "jes", hi=background[:2] * 1.1, lo=background[:2] * 0.9),)))),), poi="mu")
    assert float(sigma_mu(kept).detach()) == float(sigma_mu(reference).detach())
