"""Jet clustering and a small parametric detector response for generated events.

The response (``config.Detector``; ``docs/generation.md`` gives the numbers and their reasons):

- jets: anti-kT R = 0.4 generator jets (FastJet) on visible final-state particles without the
  prompt lepton; reconstructed transverse momentum ``pt_gen * (1 + r * N(0, 1))`` with
  ``r = sqrt((N / pt)^2 + S^2 / pt + C^2)``, mass scaled alike, direction kept;
- b tagging: a DeepJet-like discriminant in [0, 1] drawn by the jet's hadron flavour such that
  its efficiency at the loose/medium/tight working points is the configured one (about 70 % b,
  10 % c, 1 % light at the medium point); light-like beyond |eta| = 2.5 (no tracker);
- leptons: e and mu with pt > 10 GeV and |eta| < 2.5, momentum smeared by 1 % (mu) or 2 % (e),
  an identification efficiency, and the relative isolation of real particles in a cone;
- MET: the negative vector sum of visible particles, corrected for the jet and lepton smearing,
  plus Gaussian noise of ``met_resolution * sqrt(sum E_T)`` per component.
"""

from __future__ import annotations

import awkward as ak
import numpy as np

from analysis.config import BTagEfficiency, Detector, JetDefinition
from analysis.errors import InputDataError
from analysis.events import truth

__all__ = [
    "BTAG_TRACKER_ABS_ETA",
    "GEN_JET_PT_MIN",
    "cluster_generator_jets",
    "draw_btag_discriminant",
    "lepton_isolation",
    "smear_jet_pt",
]

GEN_JET_PT_MIN = 10.0  # GeV, stored generator jets
RECO_JET_PT_MIN = 15.0  # GeV, stored reconstructed jets (NanoAOD's threshold)
JET_RADIUS = 0.4
BTAG_TRACKER_ABS_ETA = 2.5


def cluster_generator_jets(particles: list[np.ndarray]) -> ak.Array:
    """Anti-kT R = 0.4 jets with ghost-hadron counts, for a list of events.

    Args:
        particles: per event an ``(n, 5)`` array: px, py, pz, E in GeV and the kind code
            (``truth.PARTICLE`` or a ghost kind).

    Returns:
        Jagged record array (events x jets, pt > 10 GeV, pt-ordered) with fields pt, eta, phi,
        mass (GeV), ``n_b_extra``, ``n_b_top``, ``n_b_other``, ``n_c_extra``, ``n_c_other``.
    """
    import fastjet  # the C++ extension is needed only here

    counts = np.array([len(p) for p in particles])
    flat = np.concatenate(particles) if particles else np.zeros((0, 5))
    inputs = ak.unflatten(ak.zip({"px": flat[:, 0], "py": flat[:, 1], "pz": flat[:, 2],
                                  "E": flat[:, 3]}, with_name="Momentum4D"), counts)
    kinds = ak.unflatten(flat[:, 4].astype(np.int8), counts)
    definition = fastjet.JetDefinition(fastjet.antikt_algorithm, JET_RADIUS)
    sequence = fastjet.ClusterSequence(inputs, definition)
    jets = sequence.inclusive_jets(GEN_JET_PT_MIN)
    index = sequence.constituent_index(GEN_JET_PT_MIN)  # events x jets x constituents
    members = ak.unflatten(kinds[ak.flatten(index, axis=2)], ak.flatten(ak.num(index, axis=2)),
                           axis=1)
    px, py, pz, energy = jets.px, jets.py, jets.pz, jets.E
    pt = np.hypot(px, py)
    p_abs = np.sqrt(pt**2 + pz**2)
    out = ak.zip({
        "pt": pt,
        "eta": np.arcsinh(pz / np.maximum(pt, 1e-9)),
        "phi": np.arctan2(py, px),
        "mass": np.sqrt(np.maximum(energy**2 - p_abs**2, 0.0)),
        "n_b_extra": ak.sum(members == truth.GHOST_B_EXTRA, axis=-1),
        "n_b_top": ak.sum(members == truth.GHOST_B_TOP, axis=-1),
        "n_c_extra": ak.sum(members == truth.GHOST_C_EXTRA, axis=-1),
        "n_c_other": ak.sum(members == truth.GHOST_C_OTHER, axis=-1),
        "n_b_other": ak.sum(members == truth.GHOST_B_OTHER, axis=-1),
    })
    return out[ak.argsort(out.pt, axis=-1, ascending=False)]


def smear_jet_pt(pt_gen: np.ndarray, detector: Detector, rng: np.random.Generator) -> np.ndarray:
    """Reconstructed jet pt from generator pt with the configured relative resolution.

    Args:
        pt_gen: ``(n_jets,)`` generator-jet pt in GeV.
        detector: resolution parameters (noise N in GeV, stochastic S in sqrt(GeV), constant C).
        rng: random generator of this chunk.

    Returns:
        ``(n_jets,)`` reconstructed pt in GeV (>= 0).
    """
    resolution = np.sqrt((detector.jet_resolution_noise / pt_gen) ** 2
                         + detector.jet_resolution_stochastic**2 / pt_gen
                         + detector.jet_resolution_constant**2)
    return np.maximum(pt_gen * (1.0 + resolution * rng.standard_normal(len(pt_gen))), 0.0)


def draw_btag_discriminant(hadron_flavour: np.ndarray, abs_eta: np.ndarray, detector: Detector,
                           working_points: JetDefinition, rng: np.random.Generator) -> np.ndarray:
    """b-tag discriminant with the configured tag efficiency per flavour and working point.

    The discriminant falls in each interval between working points with the probability that
    the efficiencies imply, uniformly within it; so ``P(d > wp) = efficiency(wp)`` exactly.

    Args:
        hadron_flavour: ``(n_jets,)`` 5, 4 or 0.
        abs_eta: ``(n_jets,)`` absolute pseudorapidity; beyond 2.5 jets are tagged like light.
        detector: efficiencies per flavour.
        working_points: loose/medium/tight thresholds of the discriminant.
        rng: random generator of this chunk.

    Returns:
        ``(n_jets,)`` discriminant in [0, 1).
    """
    edges = np.array([0.0, working_points.btag_loose, working_points.btag_medium,
                      working_points.btag_tight, 1.0])
    if np.any(np.diff(edges) <= 0):
        raise InputDataError(f"b-tag working points must increase in (0, 1), got {edges[1:-1]}")
    flavour = np.where(abs_eta < BTAG_TRACKER_ABS_ETA, hadron_flavour, 0)
    out = np.empty(len(flavour))
    u = rng.random(len(flavour))
    for code, eff in ((5, detector.btag_b), (4, detector.btag_c), (0, detector.btag_light)):
        mask = flavour == code
        above = _efficiency_steps(eff)  # P(d > edge_k) for k = 0..4
        # interval k holds P(d in [edge_k, edge_k+1)) = above[k] - above[k+1]; invert the CDF
        cdf = 1.0 - above
        interval = np.clip(np.searchsorted(cdf, u[mask], side="right") - 1, 0, 3)
        lo, hi = cdf[interval], cdf[interval + 1]
        fraction = (u[mask] - lo) / np.maximum(hi - lo, 1e-12)
        out[mask] = edges[interval] + fraction * (edges[interval + 1] - edges[interval])
    return out


def _efficiency_steps(eff: BTagEfficiency) -> np.ndarray:
    steps = np.array([1.0, eff.loose, eff.medium, eff.tight, 0.0])
    if np.any(np.diff(steps) > 0):
        raise InputDataError(f"b-tag efficiencies must fall with tighter working points: {eff}")
    return steps


def lepton_isolation(lepton: np.ndarray, particles: np.ndarray, cone: float) -> float:
    """Relative isolation: scalar pt sum of real particles within ``cone`` over the lepton pt.

    Args:
        lepton: ``(4,)`` px, py, pz, E of the lepton in GeV.
        particles: ``(n, 5)`` event particles (kind column 0 for real ones; ghosts are skipped).
        cone: cone radius in (eta, phi).

    Returns:
        The isolation (unitless, >= 0); the lepton itself is excluded.
    """
    real = particles[particles[:, 4] == truth.PARTICLE]
    pt = np.hypot(real[:, 0], real[:, 1])
    keep = pt > 0.5  # GeV, tracking threshold
    real, pt = real[keep], pt[keep]
    lepton_pt = np.hypot(lepton[0], lepton[1])
    eta = np.arcsinh(real[:, 2] / pt)
    phi = np.arctan2(real[:, 1], real[:, 0])
    lepton_eta = np.arcsinh(lepton[2] / lepton_pt)
    dphi = (phi - np.arctan2(lepton[1], lepton[0]) + np.pi) % (2 * np.pi) - np.pi
    near = (eta - lepton_eta) ** 2 + dphi**2 < cone**2
    near &= ~np.isclose(pt, lepton_pt, rtol=1e-9)  # the lepton itself, when non-prompt
    return float(pt[near].sum() / lepton_pt)
