"""Features and b-tag weights on padded jets, against hand-computed values."""

from __future__ import annotations

import awkward as ak
import numpy as np
import pytest

from analysis.config import AnalysisConfig
from analysis.events.detector import draw_btag_discriminant
from analysis.skim.features import event_features, object_features
from analysis.skim.jets import pad_jets
from analysis.skim.objects import btag_scale_factor_weight


def _jets(pt, phi, btag, flavour=None):  # noqa: ANN001, ANN202 (one event per list)
    """Padded central massless jets, without generator jets."""
    n = [len(p) for p in pt]
    flat = lambda x: np.concatenate([np.asarray(v, float) for v in x])  # noqa: E731
    return _padded(flat(pt), flat(phi), flat(btag),
                   flat(flavour if flavour is not None else [[0] * k for k in n]), n)


def _padded(pt, phi, btag, flavour, counts):  # noqa: ANN001, ANN202
    total = int(np.sum(counts))
    jets = ak.unflatten(ak.zip({
        "pt": pt, "eta": np.zeros(total), "phi": phi, "mass": np.zeros(total),
        "btag": btag, "hadronFlavour": flavour, "jetId": np.full(total, 6),
        "genJetIdx": np.full(total, -1)}), counts)
    gen_jets = ak.unflatten(ak.zip({f: np.zeros(0) for f in ("pt", "eta", "phi")}),
                            np.zeros(len(counts), int))
    return pad_jets(jets, gen_jets)


def test_planar_event_features() -> None:
    jets = (_jets([[100, 80, 60, 40]], [[0, np.pi, np.pi / 2, -np.pi / 2]],
                          [[0.9, 0.8, 0.01, 0.02]]))
    lepton = {"pt": np.array([[30.0]]), "eta": np.zeros((1, 1)), "phi": np.array([[0.3]]),
              "mass": np.zeros((1, 1))}
    f = event_features(jets, lepton, np.array([50.0]), np.array([0.3]), btag_medium=0.3)
    assert f["ht"][0] == 280 and f["n_jets"][0] == 4 and f["n_btag"][0] == 2
    # the two tagged jets are back to back: dR = pi, m = 2 sqrt(pt1 pt2)
    assert f["drbb_closest"][0] == pytest.approx(np.pi)
    assert f["mbb_closest"][0] == pytest.approx(2 * np.sqrt(100 * 80)) == f["mbb_max"][0]
    assert f["aplanarity"][0] == pytest.approx(0.0, abs=1e-12)  # everything in the x-y plane
    assert f["centrality"][0] == pytest.approx(1.0)  # massless, eta = 0: pt = E
    assert f["mt_w"][0] == pytest.approx(0.0, abs=1e-6)  # lepton parallel to MET


def test_fewer_than_two_tags_use_highest_discriminants_and_padding() -> None:
    jets = (_jets([[50, 40, 30], [60, 50]], [[0, 1, 2], [0, 0.5]],
                          [[0.05, 0.2, 0.1], [0.9, 0.01]]))
    lepton = {k: np.ones((2, 1)) for k in ("pt", "eta", "phi", "mass")}
    f = event_features(jets, lepton, np.ones(2), np.zeros(2), btag_medium=0.3)
    assert f["drbb_closest"][0] == pytest.approx(1.0)  # jets 2 and 3 (0.2, 0.1): dphi = 1
    assert f["jet3_pt"][1] == 0 and f["jet4_pt"][0] == 0
    objects = object_features(jets, 4)
    assert objects["jet_mask"].tolist() == [[1, 1, 1, 0], [1, 1, 0, 0]]


@pytest.mark.parametrize("direction", [1, -1])
def test_btag_weights_scale_efficiency_at_every_working_point(
        tiny_config: AnalysisConfig, rng: np.random.Generator, direction: int) -> None:
    n = 200_000
    wp, det, sys = tiny_config.objects.jets, tiny_config.detector, tiny_config.systematics
    disc = draw_btag_discriminant(np.full(n, 5), np.zeros(n), det, wp, rng)
    jets = _padded(np.full(n, 50.0), np.zeros(n), disc, np.full(n, 5), np.ones(n, int))
    weight = btag_scale_factor_weight(jets, tiny_config.objects, det, sys, direction)
    assert np.all(weight > 0)
    assert np.mean(weight) == pytest.approx(1.0, abs=2e-3)  # a reweighting, not a new rate
    for name in ("loose", "medium", "tight"):
        tagged = disc > getattr(wp, f"btag_{name}")
        expected = getattr(det.btag_b, name) * (1 + direction * sys.btag_sf_heavy)
        assert np.sum(weight[tagged]) / n == pytest.approx(expected, abs=4e-3)
    nominal = btag_scale_factor_weight(jets, tiny_config.objects, det, sys, 0)
    np.testing.assert_allclose(nominal, 1.0)


def test_closed_form_smallest_eigenvalue_matches_lapack(rng: np.random.Generator) -> None:
    from analysis.skim.features import _smallest_eigenvalue

    a = rng.normal(size=(1000, 3, 3))
    symmetric = np.concatenate([a @ a.transpose(0, 2, 1), np.eye(3)[None] * 2.0,
                                np.diag([1.0, 1.0, 0.0])[None]])  # degenerate cases too
    np.testing.assert_allclose(_smallest_eigenvalue(symmetric),
                               np.linalg.eigvalsh(symmetric)[:, 0], atol=1e-9)
