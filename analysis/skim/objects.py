"""Object definitions, systematic object shifts, selection and event weights of the skim.

All functions take coffea ``NanoEvents`` collections (awkward arrays with vector behaviour) and
the sub-config they need; none keeps state.
"""

from __future__ import annotations

import awkward as ak
import numpy as np

from analysis.config import Detector, JetDefinition, LeptonDefinition, Objects, Selection, Systematics

__all__ = [
    "OBJECT_SHIFTS",
    "btag_scale_factor_weight",
    "good_jets",
    "select_events",
    "shifted_jets_and_met",
    "tight_electrons",
    "tight_muons",
]

OBJECT_SHIFTS = ("nominal", "jes_up", "jes_down", "jer_up", "jer_down")


def tight_muons(muons: ak.Array, spec: LeptonDefinition) -> ak.Array:
    """Muons passing pt, |eta|, ``tightId`` (when ``id_min >= 1``) and ``pfRelIso04_all``."""
    keep = (muons.pt > spec.pt_min) & (np.abs(muons.eta) < spec.abs_eta_max)
    keep = keep & (muons.pfRelIso04_all < spec.iso_max)
    if spec.id_min >= 1:
        keep = keep & muons.tightId
    return muons[keep]


def tight_electrons(electrons: ak.Array, spec: LeptonDefinition) -> ak.Array:
    """Electrons passing pt, |eta|, ``cutBased >= id_min`` and ``pfRelIso03_all``."""
    keep = (electrons.pt > spec.pt_min) & (np.abs(electrons.eta) < spec.abs_eta_max)
    keep = keep & (electrons.cutBased >= spec.id_min) & (electrons.pfRelIso03_all < spec.iso_max)
    return electrons[keep]


def shifted_jets_and_met(jets: ak.Array, gen_jets: ak.Array, met_pt: ak.Array, met_phi: ak.Array,
                         shift: str, systematics: Systematics) -> tuple[ak.Array, ak.Array, ak.Array]:
    """Jets and MET under an object shift; the MET follows the jets (type-1 propagation).

    - ``jes_up/down``: pt and mass scaled by ``1 +- jes``;
    - ``jer_up/down``: the distance to the matched generator jet scaled by ``1 +- jer``
      (``pt_gen + s * (pt - pt_gen)``); jets without a match keep their pt.

    Args:
        jets: events x jets with pt, eta, phi, mass, genJetIdx (GeV, rad).
        gen_jets: events x generator jets (pt in GeV).
        met_pt: ``(n_events,)`` MET in GeV.
        met_phi: ``(n_events,)`` MET azimuth in rad.
        shift: one of ``OBJECT_SHIFTS``.
        systematics: sizes of the variations.

    Returns:
        ``(jets, met_pt, met_phi)`` with jets re-sorted by pt.
    """
    if shift == "nominal":
        return jets, met_pt, met_phi
    kind, direction = shift.split("_")
    sign = 1.0 if direction == "up" else -1.0
    if kind == "jes":
        factor = ak.ones_like(jets.pt) * (1.0 + sign * systematics.jes)
    else:
        index = jets.genJetIdx
        matched = (index >= 0) & (index < ak.num(gen_jets))
        gen_pt = ak.pad_none(gen_jets.pt, 1)[ak.where(matched, index, 0)]
        gen_pt = ak.fill_none(ak.where(matched, gen_pt, jets.pt), 0.0)
        new_pt = gen_pt + (1.0 + sign * systematics.jer) * (jets.pt - gen_pt)
        factor = ak.where(jets.pt > 0, np.maximum(new_pt, 0.0) / jets.pt, 1.0)
    new_pt = jets.pt * factor
    met_x = met_pt * np.cos(met_phi) - ak.sum((new_pt - jets.pt) * np.cos(jets.phi), axis=-1)
    met_y = met_pt * np.sin(met_phi) - ak.sum((new_pt - jets.pt) * np.sin(jets.phi), axis=-1)
    shifted = ak.with_field(jets, new_pt, "pt")
    shifted = ak.with_field(shifted, jets.mass * factor, "mass")
    shifted = shifted[ak.argsort(shifted.pt, axis=-1, ascending=False)]
    return shifted, np.hypot(met_x, met_y), np.arctan2(met_y, met_x)


def good_jets(jets: ak.Array, lepton: ak.Array, spec: JetDefinition) -> ak.Array:
    """Jets passing pt, |eta| and jet ID, separated by ``lepton_clean_dr`` from the lepton."""
    keep = (jets.pt > spec.pt_min) & (np.abs(jets.eta) < spec.abs_eta_max) & (jets.jetId >= 2)
    far_away = 1e3  # events without a lepton: nothing to clean; avoids option types
    deta = jets.eta - ak.fill_none(lepton.eta, far_away)
    dphi = (jets.phi - ak.fill_none(lepton.phi, 0.0) + np.pi) % (2 * np.pi) - np.pi
    return jets[keep & (deta**2 + dphi**2 > spec.lepton_clean_dr**2)]


def select_events(n_leptons: ak.Array, jets: ak.Array, objects: Objects,
                  selection: Selection) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Single-lepton preselection and its cutflow masks.

    Args:
        n_leptons: ``(n_events,)`` number of tight leptons.
        jets: events x good jets (after lepton cleaning).
        objects: object definitions (b-tag working points).
        selection: cut values.

    Returns:
        ``(mask, steps)``: the final boolean mask and the cumulative mask after each step
        (``lepton``, ``jets``, ``btag``), all of shape ``(n_events,)``.
    """
    threshold = getattr(objects.jets, f"btag_{selection.btag_working_point}")
    n_btag = ak.sum(jets.btagDeepFlavB > threshold, axis=-1)
    steps = {}
    mask = ak.to_numpy(n_leptons == selection.n_tight_leptons)
    steps["lepton"] = mask
    mask = mask & ak.to_numpy(ak.num(jets) >= selection.n_jets_min)
    steps["jets"] = mask
    mask = mask & ak.to_numpy(n_btag >= selection.n_btag_min)
    steps["btag"] = mask
    return mask, steps


def btag_scale_factor_weight(jets: ak.Array, objects: Objects, selection: Selection,
                             detector: Detector, systematics: Systematics,
                             direction: int) -> np.ndarray:
    """Event weight of the fixed-working-point b-tag scale factors, shifted by ``direction``.

    ``w = prod_tagged SF * prod_untagged (1 - SF eff) / (1 - eff)`` with ``SF = 1 + direction *
    delta`` (delta per flavour: heavy for b and c, light otherwise) and the tag efficiencies of
    the detector model at the selection's working point; the nominal SF is 1 (weight 1).

    Args:
        jets: events x good jets with btagDeepFlavB and hadronFlavour.
        objects: working points. selection: which working point. detector: efficiencies.
        systematics: SF uncertainties.
        direction: +1 (up), -1 (down) or 0 (nominal).

    Returns:
        ``(n_events,)`` weights (unitless).
    """
    wp = selection.btag_working_point
    threshold = getattr(objects.jets, f"btag_{wp}")
    flavour = jets.hadronFlavour
    eff = ak.where(flavour == 5, getattr(detector.btag_b, wp),
                   ak.where(flavour == 4, getattr(detector.btag_c, wp),
                            getattr(detector.btag_light, wp)))
    delta = ak.where(flavour >= 4, systematics.btag_sf_heavy, systematics.btag_sf_light)
    sf = 1.0 + direction * delta
    tagged = jets.btagDeepFlavB > threshold
    per_jet = ak.where(tagged, sf, (1.0 - sf * eff) / (1.0 - eff))
    return ak.to_numpy(ak.prod(per_jet, axis=-1))
