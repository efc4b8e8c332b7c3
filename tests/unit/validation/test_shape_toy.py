"""The default soft-histogram bandwidth beats cross entropy on a toy with strong shape systematics."""

from __future__ import annotations

import pytest
import torch

from analysis.errors import InputDataError
from analysis.validation.shape_toy import compare_bandwidths, generate, nuisances

SEEDS = (0, 1, 2)
# Mean over SEEDS of sigma_mu(inference, defaults) / sigma_mu(CE), hard bins, held-out events.
# Measured (CPU, 10 bins, 2000 training events per process): default 0.820, 0.869, 0.849 (seed
# 3: 0.838), mean 0.846; the former default bandwidth 0.1 (one bin width) 0.883, 0.921, 0.902
# (seed 3: 0.887), mean 0.902. The bound sits between the two means, ~0.03 from each.
REQUIRED_RATIO = 0.875
OLD_DEFAULT = 0.1  # the absolute bandwidth used before it followed the bins


def test_default_bandwidth_beats_cross_entropy_and_one_bin_width_does_not() -> None:
    torch.set_num_threads(1)  # tiny networks; reproducible numbers
    results = [compare_bandwidths([None, OLD_DEFAULT], seed) for seed in SEEDS]
    default = sum(r.ratio(None) for r in results) / len(results)
    old = sum(r.ratio(OLD_DEFAULT) for r in results) / len(results)
    assert all(r.ratio(None) < 1 for r in results)
    assert default == pytest.approx(0.846, abs=0.02)
    assert default < REQUIRED_RATIO, f"defaults beat CE by only {1 - default:.1%}"
    # the toy is sensitive to the bandwidth: a kernel as wide as a bin misses the bound
    assert old > REQUIRED_RATIO


def test_toy_events_and_shifts() -> None:
    samples = generate(4, torch.Generator().manual_seed(0))
    assert samples["signal"][0].shape == (4, 3)
    assert float(samples["background"][1].sum()) == pytest.approx(1000.0)
    assert float(samples["signal"][1].sum()) == pytest.approx(50.0)
    x = samples["background"][0]
    shift_x2, shift_x3 = nuisances()
    assert torch.allclose(shift_x2.up(x) - x, torch.tensor([0.0, 1.0, 0.0]).expand_as(x))
    assert torch.allclose(x - shift_x3.down(x), torch.tensor([0.0, 0.0, 1.0]).expand_as(x))
    with pytest.raises(InputDataError, match="n_per_process = 0"):
        generate(0, torch.Generator())
