"""analysis.training.metrics and losses: the hard-binned models leave out their empty bins."""

from __future__ import annotations

import torch

from analysis.relax.histfactory import BinnedModel, Channel, Modifier, Sample
from analysis.relax.likelihood import sigma_mu
from analysis.training.losses import binned_model_from_scores


def test_a_bin_soft_cuts_leave_at_1e_minus_14_counts_as_empty() -> None:
    """A bin with 6e-14 expected events and a shape variation that does not vanish there
    (what the soft cuts' tails left in LearnCuts of the demo's fold 0) makes the Fisher
    information singular; drop_empty leaves it out, and sigma_mu is that of the other bins."""
    f64 = torch.float64
    scores = torch.tensor([0.1, 0.5, 0.9], dtype=f64)  # one row in each of 3 bins
    signal = torch.tensor([10.0, 20.0, 3e-14], dtype=f64)
    background = torch.tensor([100.0, 50.0, 3e-14], dtype=f64)
    # jes up: 10 % more background, and 0.5 events more in the third bin
    up = (torch.cat([scores, scores[2:]]), torch.cat([background * 1.1, torch.tensor([0.5])]))
    shifted = {"jes": {"background": (up, (scores, background * 0.9))}}
    edges = [0.0, 1 / 3, 2 / 3, 1.0]
    kept = binned_model_from_scores({"signal": scores, "background": scores},
                                    {"signal": signal, "background": background}, edges, 0.1,
                                    "signal", shifted=shifted, histogram="hard", drop_empty=True)
    assert kept.channels[0].n_bins == 2
    reference = BinnedModel(channels=(Channel("nn", (
        Sample("signal", signal[:2], (Modifier.normfactor("mu"),)),
        Sample("background", background[:2], (Modifier.histosys(
            "jes", hi=background[:2] * 1.1, lo=background[:2] * 0.9),)))),), poi="mu")
    assert float(sigma_mu(kept).detach()) == float(sigma_mu(reference).detach())
    everything = binned_model_from_scores({"signal": scores, "background": scores},
                                          {"signal": signal, "background": background}, edges,
                                          0.1, "signal", shifted=shifted, histogram="hard")
    assert everything.channels[0].n_bins == 3  # without drop_empty the bin stays
