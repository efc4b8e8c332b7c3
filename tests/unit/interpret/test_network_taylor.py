"""Taylor coefficients of a pipeline network: independent of the units of its inputs."""

from __future__ import annotations

import pytest
import torch

from analysis.interpret.network_taylor import input_names, signal_taylor_coefficients


class _Logistic(torch.nn.Module):
    """Signal logit ``a (x0 / 100) + a x1``: the same weight per standard deviation of x0
    (in GeV, spread 100) and of x1 (dimensionless, spread 1)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        signal = 0.8 * x[:, 0] / 100.0 + 0.8 * x[:, 1]
        return torch.stack([signal, torch.zeros_like(signal)], dim=1)


def test_coefficients_are_per_standard_deviation() -> None:
    generator = torch.Generator().manual_seed(5)
    x = torch.randn(4000, 2, generator=generator) * torch.tensor([100.0, 1.0])
    coefficients = dict(signal_taylor_coefficients(_Logistic(), x, torch.ones(4000),
                                                   ["ht", "aplanarity"]).ranked())
    # per GeV the first would be 100 times smaller; per standard deviation they are equal
    assert coefficients["t_ht"] == pytest.approx(coefficients["t_aplanarity"], rel=0.05)
    assert coefficients["t_ht"] > 0.05


def test_an_input_that_never_varies_gets_no_coefficient() -> None:
    x = torch.randn(500, 2, generator=torch.Generator().manual_seed(6))
    x[:, 1] = 1.0  # e.g. the lepton node's is_lepton flag
    coefficients = dict(signal_taylor_coefficients(_Logistic(), x, torch.ones(500),
                                                   ["aplanarity", "lepton_is_lepton"]).ranked())
    assert coefficients["t_lepton_is_lepton"] == 0.0
    assert coefficients["t_lepton_is_lepton,lepton_is_lepton"] == 0.0
    assert coefficients["t_aplanarity"] > 0


def test_input_names_of_the_graph() -> None:
    # one jet, the lepton and MET: 8 node features and a mask each
    names = input_names("gnn", ("ht",), n_inputs=3 * 9, n_jets_max=1)
    assert names[:2] == ["jet1_log_pt", "jet1_eta"] and names[8] == "lepton_log_pt"
    assert names[-3:] == ["jet1_mask", "lepton_mask", "met_mask"]
    assert input_names("dnn", ("ht", "n_jets"), n_inputs=2, n_jets_max=8) == ["ht", "n_jets"]
