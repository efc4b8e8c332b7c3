"""Event-level and object-level features of selected single-lepton events.

Definitions (GeV, rad):

- ``ht``: scalar sum of the selected jets' pt; ``n_jets``; ``n_btag``: jets above the medium
  working point; ``lepton_pt/eta``; ``met_pt/phi``; ``mt_w``: transverse mass of lepton + MET;
- ``jet{1,2}_pt/eta``, ``jet{3,4}_pt``: the leading jets;
- ``mbb_closest``, ``drbb_closest``: mass and dR of the b-tagged pair closest in dR, and
  ``mbb_max``: the largest b-tagged pair mass, where the b-tagged jets are those above the medium
  working point, or the two with the highest discriminant when fewer pass;
- ``centrality``: sum pt / sum E of jets and lepton;
- ``aplanarity``: 3/2 of the smallest eigenvalue of the sphericity tensor
  ``S_ab = sum p_a p_b / sum |p|^2`` of jets and lepton.

Object level, for graph networks: the first ``n_jets_max`` jets' pt, eta, phi, mass and b-tag
discriminant, zero-padded, with a mask, as ``(n_events, n_jets_max)`` columns.
"""

from __future__ import annotations

import awkward as ak
import numpy as np

__all__ = ["event_features", "object_features"]


def _plain(records: ak.Array, fields: tuple[str, ...]) -> ak.Array:
    """The named fields without coffea's behaviours (which demand e.g. a jet charge)."""
    return ak.zip({f: ak.fill_none(ak.without_parameters(records[f]), 0.0) for f in fields})


def _cartesian(pt: ak.Array, eta: ak.Array, phi: ak.Array, mass: ak.Array) -> tuple[ak.Array, ...]:
    px, py, pz = pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)
    energy = np.sqrt(px**2 + py**2 + pz**2 + mass**2)
    return px, py, pz, energy


def _b_candidates(jets: ak.Array, medium: float) -> ak.Array:
    ordered = jets[ak.argsort(jets.btagDeepFlavB, axis=-1, ascending=False)]
    n_tagged = ak.sum(ordered.btagDeepFlavB > medium, axis=-1)
    keep = ak.local_index(ordered.pt, axis=-1) < np.maximum(n_tagged, 2)
    return ordered[keep]


def event_features(jets: ak.Array, lepton: ak.Array, met_pt: np.ndarray, met_phi: np.ndarray,
                   btag_medium: float) -> dict[str, np.ndarray]:
    """Event-level features (module docstring) of events with >= 2 jets and one lepton.

    Args:
        jets: events x selected jets (pt-ordered) with pt, eta, phi, mass, btagDeepFlavB.
        lepton: ``(n_events,)`` record with pt, eta, phi, mass.
        met_pt: ``(n_events,)`` GeV. met_phi: ``(n_events,)`` rad.
        btag_medium: medium working point of the discriminant.

    Returns:
        ``{name: (n_events,) float64}`` for every name in ``config.EVENT_FEATURES``.
    """
    jets = _plain(jets, ("pt", "eta", "phi", "mass", "btagDeepFlavB"))
    lepton = _plain(lepton, ("pt", "eta", "phi", "mass"))
    out: dict[str, ak.Array | np.ndarray] = {}
    out["ht"] = ak.sum(jets.pt, axis=-1)
    out["n_jets"] = ak.num(jets)
    out["n_btag"] = ak.sum(jets.btagDeepFlavB > btag_medium, axis=-1)
    out["lepton_pt"], out["lepton_eta"] = lepton.pt, lepton.eta
    out["met_pt"], out["met_phi"] = met_pt, met_phi
    out["mt_w"] = np.sqrt(2 * lepton.pt * met_pt * (1 - np.cos(lepton.phi - met_phi)))
    padded = ak.pad_none(jets, 4, axis=-1)
    for i, names in enumerate((("pt", "eta"), ("pt", "eta"), ("pt",), ("pt",))):
        for name in names:
            out[f"jet{i + 1}_{name}"] = ak.fill_none(padded[name][:, i], 0.0)

    bjets = _b_candidates(jets, btag_medium)
    first, second = ak.unzip(ak.combinations(bjets, 2, axis=-1))
    deta = first.eta - second.eta
    dphi = (first.phi - second.phi + np.pi) % (2 * np.pi) - np.pi
    dr = np.sqrt(deta**2 + dphi**2)
    p1 = _cartesian(first.pt, first.eta, first.phi, first.mass)
    p2 = _cartesian(second.pt, second.eta, second.phi, second.mass)
    mass2 = (p1[3] + p2[3]) ** 2 - sum((a + b) ** 2 for a, b in zip(p1[:3], p2[:3]))
    mass = np.sqrt(np.maximum(mass2, 0.0))
    closest = ak.argmin(dr, axis=-1, keepdims=True)
    out["drbb_closest"] = ak.fill_none(ak.firsts(dr[closest]), 0.0)
    out["mbb_closest"] = ak.fill_none(ak.firsts(mass[closest]), 0.0)
    out["mbb_max"] = ak.fill_none(ak.max(mass, axis=-1), 0.0)

    objects = ak.concatenate([jets[["pt", "eta", "phi", "mass"]],
                              ak.unflatten(lepton, np.ones(len(lepton), dtype=np.int64))],
                             axis=-1)
    px, py, pz, energy = _cartesian(objects.pt, objects.eta, objects.phi, objects.mass)
    out["centrality"] = ak.sum(objects.pt, axis=-1) / ak.sum(energy, axis=-1)
    out["aplanarity"] = _aplanarity(px, py, pz)
    return {name: np.asarray(ak.to_numpy(value), dtype=np.float64) for name, value in out.items()}


def _aplanarity(px: ak.Array, py: ak.Array, pz: ak.Array) -> np.ndarray:
    components = (px, py, pz)
    norm = ak.to_numpy(ak.sum(px**2 + py**2 + pz**2, axis=-1))
    tensor = np.empty((len(norm), 3, 3))
    for a in range(3):
        for b in range(a, 3):
            value = ak.to_numpy(ak.sum(components[a] * components[b], axis=-1)) / norm
            tensor[:, a, b] = tensor[:, b, a] = value
    if len(norm) == 0:
        return np.zeros(0)
    return 1.5 * np.linalg.eigvalsh(tensor)[:, 0]


def object_features(jets: ak.Array, n_jets_max: int) -> dict[str, np.ndarray]:
    """Zero-padded jet arrays for graph networks.

    Args:
        jets: events x selected jets (pt-ordered).
        n_jets_max: number of jets kept per event.

    Returns:
        ``{"jet_pt", "jet_eta", "jet_phi", "jet_mass", "jet_btag", "jet_mask"}``, each
        ``(n_events, n_jets_max)``; pt and mass in GeV, mask 1 for a real jet.
    """
    jets = _plain(jets, ("pt", "eta", "phi", "mass", "btagDeepFlavB"))
    padded = ak.pad_none(jets, n_jets_max, axis=-1, clip=True)
    out = {f"jet_{name}": np.asarray(ak.to_numpy(ak.fill_none(padded[field], 0.0)), np.float64)
           for name, field in (("pt", "pt"), ("eta", "eta"), ("phi", "phi"), ("mass", "mass"),
                               ("btag", "btagDeepFlavB"))}
    out["jet_mask"] = np.asarray(ak.to_numpy(ak.fill_none(ak.is_none(padded, axis=-1) == False,  # noqa: E712
                                                          False)), np.float64)
    return out
