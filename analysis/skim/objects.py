"""Object definitions, systematic object shifts, selection and event weights of the skim.

Leptons are selected on coffea ``NanoEvents`` collections; jets, once padded into numpy arrays
(``analysis.skim.jets``), are shifted and selected in numpy. No function keeps state.
"""

from __future__ import annotations

import awkward as ak
import numpy as np

from analysis.config import (
    JES_SYSTEMATIC,
    OBJECT_SHIFTS,
    Detector,
    JetDefinition,
    LeptonDefinition,
    Objects,
    Selection,
    Systematics,
)
from analysis.errors import ConfigError
from analysis.skim.jets import PaddedJets

__all__ = [
    "btag_scale_factor_weight",
    "good_jets",
    "select_events",
    "shifted_jets_and_met",
    "tight_electrons",
    "tight_muons",
]


def tight_muons(muons: ak.Array, spec: LeptonDefinition) -> ak.Array:
    """Muons passing pt, |eta|, ``tightId`` (when ``id_min >= 1``) and ``pfRelIso04_all``.

    Args:
        muons: events x muons (NanoAOD ``Muon``; pt in GeV).
        spec: the tight-muon definition of the config.

    Returns:
        events x passing muons.
    """
    keep = (muons.pt > spec.pt_min) & (np.abs(muons.eta) < spec.abs_eta_max)
    keep = keep & (muons.pfRelIso04_all < spec.iso_max)
    if spec.id_min >= 1:
        keep = keep & muons.tightId
    return muons[keep]


def tight_electrons(electrons: ak.Array, spec: LeptonDefinition) -> ak.Array:
    """Electrons passing pt, |eta|, ``cutBased >= id_min`` and ``pfRelIso03_all``.

    Args:
        electrons: events x electrons (NanoAOD ``Electron``; pt in GeV).
        spec: the tight-electron definition of the config.

    Returns:
        events x passing electrons.
    """
    keep = (electrons.pt > spec.pt_min) & (np.abs(electrons.eta) < spec.abs_eta_max)
    keep = keep & (electrons.cutBased >= spec.id_min) & (electrons.pfRelIso03_all < spec.iso_max)
    return electrons[keep]


def shifted_jets_and_met(jets: PaddedJets, met_pt: np.ndarray, met_phi: np.ndarray, shift: str,
                         systematics: Systematics) -> tuple[PaddedJets, np.ndarray, np.ndarray]:
    """Jets and MET under an object shift; the MET follows the jets (type-1 propagation).

    - ``jes_up/down``: pt and mass scaled by ``1 +- jes``;
    - ``jer_up/down``: the distance to the matched generator jet scaled by ``1 +- jer``
      (``pt_gen + s * (pt - pt_gen)``); a match needs ``Jet_genJetIdx`` and dR < 0.2 (half the
      jet radius, as CMS's hybrid method); jets without a match keep their pt.

    Args:
        jets: all jets of the events, padded (``pad_jets``); pt and mass in GeV.
        met_pt: ``(n_events,)`` MET in GeV.
        met_phi: ``(n_events,)`` MET azimuth in rad.
        shift: one of ``OBJECT_SHIFTS``.
        systematics: sizes of the variations.

    Returns:
        ``(jets, met_pt, met_phi)``; jets in the input order (``good_jets`` re-sorts them).
    """
    if shift not in OBJECT_SHIFTS:
        raise ConfigError(f"shift {shift!r}: must be one of {OBJECT_SHIFTS}")
    if shift == "nominal":
        return jets, met_pt, met_phi
    kind, direction = shift.split("_")
    sign = 1.0 if direction == "up" else -1.0
    if kind == JES_SYSTEMATIC:
        factor = np.full_like(jets.pt, 1.0 + sign * systematics.jes)
    else:
        gen_pt = np.where(np.isnan(jets.gen_pt), jets.pt, jets.gen_pt)
        new_pt = np.maximum(gen_pt + (1.0 + sign * systematics.jer) * (jets.pt - gen_pt), 0.0)
        factor = np.divide(new_pt, jets.pt, out=np.ones_like(jets.pt), where=jets.pt > 0)
    new_pt = jets.pt * factor
    change = np.where(jets.mask, new_pt - jets.pt, 0.0)
    met_x = met_pt * np.cos(met_phi) - np.sum(change * np.cos(jets.phi), axis=1)
    met_y = met_pt * np.sin(met_phi) - np.sum(change * np.sin(jets.phi), axis=1)
    shifted = jets.replace(pt=new_pt, mass=jets.mass * factor)
    return shifted, np.hypot(met_x, met_y), np.arctan2(met_y, met_x)


def good_jets(jets: PaddedJets, lepton_eta: np.ndarray, lepton_phi: np.ndarray,
              spec: JetDefinition, resort: bool = True) -> PaddedJets:
    """Jets passing pt, |eta| and tight jet ID, separated by ``lepton_clean_dr`` from every lepton.

    Args:
        jets: padded jets (GeV, rad).
        lepton_eta: ``(n_events, n_leptons)`` eta of the tight leptons (``n_leptons`` may be 0:
            nothing is cleaned).
        lepton_phi: ``(n_events, n_leptons)`` their azimuths in rad.
        spec: jet definition.
        resort: sort by pt; ``False`` when the jets are known to be pt-ordered.

    Returns:
        The passing jets, pt-ordered and packed to the left.
    """
    keep = (jets.pt > spec.pt_min) & (np.abs(jets.eta) < spec.abs_eta_max) & (jets.jet_id >= 2)
    dphi = (jets.phi[:, :, None] - lepton_phi[:, None, :] + np.pi) % (2 * np.pi) - np.pi
    dr2 = (jets.eta[:, :, None] - lepton_eta[:, None, :]) ** 2 + dphi**2  # jets x leptons
    near = np.any(dr2 < spec.lepton_clean_dr**2, axis=2)
    # Shifts other than JER scale all jets alike and keep the pt order of the input
    # (NanoAOD's), so they need no sort
    return jets.keep(keep & ~near, sort_by_pt=resort)


def select_events(n_leptons: np.ndarray, jets: PaddedJets, objects: Objects,
                  selection: Selection) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Preselection (exactly ``n_tight_leptons``, jets, b tags) and its cutflow masks.

    Args:
        n_leptons: ``(n_events,)`` number of tight leptons.
        jets: good jets (``good_jets``).
        objects: object definitions (b-tag working points).
        selection: cut values.

    Returns:
        ``(mask, steps)``: the final boolean mask and the cumulative mask after each step
        (``lepton``, ``jets``, ``btag``), all of shape ``(n_events,)``.
    """
    threshold = getattr(objects.jets, f"btag_{selection.btag_working_point}")
    n_btag = np.sum(jets.mask & (jets.btag > threshold), axis=1)
    steps = {}
    mask = n_leptons == selection.n_tight_leptons
    steps["lepton"] = mask
    mask = mask & (jets.mask.sum(axis=1) >= selection.n_jets_min)
    steps["jets"] = mask
    mask = mask & (n_btag >= selection.n_btag_min)
    steps["btag"] = mask
    return mask, steps


def btag_scale_factor_weight(jets: PaddedJets, objects: Objects, detector: Detector,
                             systematics: Systematics, direction: int) -> np.ndarray:
    """Event weight of b-tag scale factors at all three working points, shifted by ``direction``.

    The tag efficiency of a jet at every working point is scaled by ``SF = 1 + direction *
    delta`` (delta: ``btag_sf_heavy`` for b and c jets, ``btag_sf_light`` otherwise). A jet whose
    discriminant lies between working points k and k+1 (k = 0 below loose, 3 above tight) gets
    ``(e'_k - e'_k+1) / (e_k - e_k+1)`` with ``e_0 = 1``, ``e_4 = 0``: the fixed-working-point
    method applied to the loose, medium and tight points at once, so the tag counts at every
    point and the discriminant's shape move consistently. The efficiencies are those of the
    detector model (for real NanoAOD an approximation). Nominal (``direction = 0``): weight 1.

    Args:
        jets: padded selected jets with discriminant, hadron flavour and mask.
        objects: the working points. detector: efficiencies per flavour and point.
        systematics: scale-factor uncertainties.
        direction: +1 (up), -1 (down) or 0 (nominal).

    Returns:
        ``(n_events,)`` weights (unitless, > 0).
    """
    edges = np.array([objects.jets.btag_loose, objects.jets.btag_medium, objects.jets.btag_tight])
    interval = np.searchsorted(edges, jets.btag, side="right")  # 0..3
    per_jet = np.ones_like(jets.btag)
    for flavours, efficiency, delta in (((5,), detector.btag_b, systematics.btag_sf_heavy),
                                        ((4,), detector.btag_c, systematics.btag_sf_heavy),
                                        ((0,), detector.btag_light, systematics.btag_sf_light)):
        above = np.array([1.0, efficiency.loose, efficiency.medium, efficiency.tight, 0.0])
        shifted = np.concatenate([[1.0], np.clip(above[1:4] * (1 + direction * delta), 0, 1), [0.0]])
        ratio = (shifted[:-1] - shifted[1:]) / (above[:-1] - above[1:])
        chosen = np.isin(jets.flavour, flavours) & jets.mask
        per_jet = np.where(chosen, ratio[interval], per_jet)
    return np.prod(per_jet, axis=1)
