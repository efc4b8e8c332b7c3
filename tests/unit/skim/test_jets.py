"""Padding, generator matching, shifts and selection of jets in numpy."""

from __future__ import annotations

import awkward as ak
import numpy as np
import pytest

from analysis.config import AnalysisConfig
from analysis.skim.jets import pad, pad_jets
from analysis.skim.objects import good_jets, shifted_jets_and_met


def test_pad_keeps_order_and_drops_overflow() -> None:
    values = ak.Array([[1.0, 2.0, 3.0], [], [4.0]])
    np.testing.assert_array_equal(pad(values, 2), [[1, 2], [0, 0], [4, 0]])
    np.testing.assert_array_equal(pad(values, 4), [[1, 2, 3, 0], [0, 0, 0, 0], [4, 0, 0, 0]])


@pytest.fixture
def two_events():  # noqa: ANN201
    jets = ak.Array([
        [{"pt": 50.0, "eta": 0.0, "phi": 0.0, "mass": 5.0, "btag": 0.9,
          "hadronFlavour": 5, "jetId": 6, "genJetIdx": 0},
         {"pt": 80.0, "eta": 1.0, "phi": 1.0, "mass": 8.0, "btag": 0.1,
          "hadronFlavour": 0, "jetId": 6, "genJetIdx": 1},
         {"pt": 40.0, "eta": 3.0, "phi": 2.0, "mass": 4.0, "btag": 0.2,
          "hadronFlavour": 0, "jetId": 6, "genJetIdx": -1}],
        [{"pt": 35.0, "eta": 0.5, "phi": -1.0, "mass": 3.0, "btag": 0.5,
          "hadronFlavour": 4, "jetId": 0, "genJetIdx": 7}],
    ])
    gen_jets = ak.Array([[{"pt": 40.0, "eta": 0.05, "phi": 0.0},   # matched (dR = 0.05)
                          {"pt": 70.0, "eta": 1.5, "phi": 1.0}],   # index ok, dR = 0.5: no match
                         []])
    return pad_jets(jets, gen_jets)


def test_generator_match_needs_index_and_distance(two_events) -> None:  # noqa: ANN001
    np.testing.assert_array_equal(np.isnan(two_events.gen_pt[0, :3]), [False, True, True])
    assert two_events.gen_pt[0, 0] == 40.0 and np.isnan(two_events.gen_pt[1, 0])
    assert two_events.mask.tolist() == [[True, True, True, False], [True, False, False, False]]


def test_jer_scales_distance_to_generator_jet(two_events, tiny_config: AnalysisConfig) -> None:  # noqa: ANN001
    met = (np.array([10.0, 10.0]), np.zeros(2))
    up, met_pt, met_phi = shifted_jets_and_met(two_events, *met, "jer_up", tiny_config.systematics)
    jer = tiny_config.systematics.jer
    assert up.pt[0, 0] == pytest.approx(40 + (1 + jer) * 10)  # matched
    assert up.pt[0, 1] == 80.0 and up.pt[0, 2] == 40.0  # unmatched jets keep their pt
    assert up.mass[0, 0] == pytest.approx(5.0 * up.pt[0, 0] / 50.0)
    assert met_pt[0] == pytest.approx(10.0 - (up.pt[0, 0] - 50.0))  # MET falls by the jet gain
    assert met_pt[1] == 10.0


def test_good_jets_sort_clean_and_pack(two_events, tiny_config: AnalysisConfig) -> None:  # noqa: ANN001
    spec = tiny_config.objects.jets
    jets = good_jets(two_events, np.array([[1.0], [-3.0]]), np.array([[1.05], [0.0]]), spec)
    # event 0: the 80 GeV jet is within dR 0.4 of the lepton, the 40 GeV jet at eta 3 fails |eta|
    assert jets.pt[0].tolist() == [50.0, 0, 0, 0] and jets.mask[0].tolist() == [1, 0, 0, 0]
    # event 1: the lepton is far away, but its only jet fails the jet ID
    assert not jets.mask[1].any()
