"""The parametric detector response reproduces its configured numbers."""

from __future__ import annotations

import numpy as np
import pytest

from analysis.config import AnalysisConfig
from analysis.events.detector import (
    draw_btag_discriminant,
    lepton_isolation,
    smear_jet_pt,
)
from analysis.events.truth import GHOST_B_EXTRA, PARTICLE


@pytest.mark.parametrize("flavour", [5, 4, 0])
def test_btag_efficiency_per_working_point(tiny_config: AnalysisConfig, rng: np.random.Generator,
                                           flavour: int) -> None:
    n = 200_000
    jets = tiny_config.objects.jets
    disc = draw_btag_discriminant(np.full(n, flavour), np.zeros(n), tiny_config.detector, jets, rng)
    expected = {5: tiny_config.detector.btag_b, 4: tiny_config.detector.btag_c,
                0: tiny_config.detector.btag_light}[flavour]
    for wp in ("loose", "medium", "tight"):
        eff = float(np.mean(disc > getattr(jets, f"btag_{wp}")))
        target = getattr(expected, wp)
        # binomial standard error at n = 2e5 is < 0.0012; allow 5 sigma
        assert eff == pytest.approx(target, abs=5 * np.sqrt(target * (1 - target) / n) + 1e-4)
    assert disc.min() >= 0 and disc.max() < 1


def test_btag_outside_tracker_is_light(tiny_config: AnalysisConfig, rng: np.random.Generator) -> None:
    n = 100_000
    disc = draw_btag_discriminant(np.full(n, 5), np.full(n, 3.0), tiny_config.detector,
                                  tiny_config.objects.jets, rng)
    assert np.mean(disc > tiny_config.objects.jets.btag_medium) < 0.02


def test_jet_resolution_matches_parametrisation(tiny_config: AnalysisConfig,
                                                rng: np.random.Generator) -> None:
    det = tiny_config.detector
    for pt in (30.0, 100.0, 500.0):
        reco = smear_jet_pt(np.full(100_000, pt), det, rng)
        expected = np.sqrt((det.jet_resolution_noise / pt) ** 2
                           + det.jet_resolution_stochastic**2 / pt + det.jet_resolution_constant**2)
        assert np.std(reco / pt) == pytest.approx(expected, rel=0.02)
        assert np.mean(reco / pt) == pytest.approx(1.0, abs=0.003)


def test_lepton_isolation_counts_real_particles_in_cone() -> None:
    lepton = np.array([40.0, 0.0, 0.0, 40.0])
    particles = np.array([
        [40.0, 0.0, 0.0, 40.0, PARTICLE],  # the lepton itself (non-prompt case)
        [4.0, 0.4, 0.0, 4.02, PARTICLE],  # dphi ~ 0.1: inside 0.3
        [0.0, 5.0, 0.0, 5.0, PARTICLE],  # dphi = pi/2: outside
        [1e-17, 0.0, 0.0, 1e-17, GHOST_B_EXTRA],  # ghosts never count
    ])
    expected = np.hypot(4.0, 0.4) / 40.0
    assert lepton_isolation(lepton, particles, 0.3) == pytest.approx(expected)


@pytest.mark.parametrize(("pdg_id", "efficiency_field", "resolution"), [
    (13, "muon_efficiency", 0.01), (11, "electron_efficiency", 0.02)])
def test_lepton_efficiency_and_resolution(tiny_config: AnalysisConfig, rng: np.random.Generator,
                                          pdg_id: int, efficiency_field: str,
                                          resolution: float) -> None:
    from analysis.events.nanoaod import (
        ELECTRON_ID_TIGHT,
        _isolations,
        _reconstruct_lepton,
    )
    from analysis.events.pythia import HadronLevelEvents

    lepton = np.array([50.0, 0.0, 10.0, np.hypot(50.0, 10.0), pdg_id, 1.0])
    particles = np.array([[50.0, 0.0, 10.0, np.hypot(50.0, 10.0), PARTICLE]])  # only itself
    ((iso,),) = _isolations(HadronLevelEvents(particles=[particles], leptons=[lepton[None, :]]))
    records = [_reconstruct_lepton(lepton, iso, tiny_config.detector, rng)
               for _ in range(20_000)]
    pt = np.array([r[0] for r in records])
    identified = np.array([r[6] is True or r[6] == ELECTRON_ID_TIGHT for r in records])
    expected = getattr(tiny_config.detector, efficiency_field)
    # binomial error at n = 2e4 is < 0.0026; allow 5 sigma
    assert identified.mean() == pytest.approx(expected, abs=0.013)
    assert np.std(pt / 50.0) == pytest.approx(resolution, rel=0.03)
    assert all(r[7] == 0.0 for r in records)  # nothing but itself in the cone: isolated


def test_met_noise_follows_the_resolution(tiny_config: AnalysisConfig,
                                          rng: np.random.Generator) -> None:
    import awkward as ak

    from analysis.events.nanoaod import _isolations, _leptons_and_met, _visible_sums
    from analysis.events.pythia import HadronLevelEvents

    # balanced events (two back-to-back 100 GeV particles, no jets, no leptons): any MET is noise
    pair = np.array([[100.0, 0.0, 0.0, 100.0, PARTICLE], [-100.0, 0.0, 0.0, 100.0, PARTICLE]])
    n = 20_000
    events = HadronLevelEvents(particles=[pair] * n, leptons=[np.zeros((0, 6))] * n)
    no_jets = ak.Array([[]] * n)
    no_jets = ak.zip({"pt": no_jets, "pt_gen": no_jets, "phi": no_jets})
    _, _, met_pt, met_phi = _leptons_and_met(events, no_jets, _visible_sums(events),
                                             _isolations(events), tiny_config.detector, rng)
    sigma = tiny_config.detector.met_resolution * np.sqrt(200.0)  # per component, sum E_T = 200
    met_x = met_pt * np.cos(met_phi)
    assert np.std(met_x) == pytest.approx(sigma, rel=0.03)
    assert np.mean(met_x) == pytest.approx(0.0, abs=5 * sigma / np.sqrt(n))
