"""Event-level and object-level features of selected events with 0, 1, 2, ... tight leptons.

Definitions (GeV, rad):

- ``ht``: scalar sum of the selected jets' pt; ``n_jets``; ``n_btag``: jets above the medium
  working point; ``met_pt/phi``;
- ``jet{1,2}_pt/eta``, ``jet{3,4}_pt``: the leading jets (0 when absent);
- ``mbb_closest``, ``drbb_closest``: mass and dR of the b-tagged pair closest in dR, and
  ``mbb_max``: the largest b-tagged pair mass, where the b-tagged jets are those above the medium
  working point, or the two with the highest discriminant when fewer pass;
- ``centrality``: sum pt / sum E of the jets and the tight leptons;
- ``aplanarity``: 3/2 of the smallest eigenvalue of the sphericity tensor
  ``S_ab = sum p_a p_b / sum |p|^2`` of the jets and the tight leptons.
- lepton features, only where the selection guarantees the leptons (``config.LEPTON_FEATURES``):
  ``lepton_pt/eta`` of the leading lepton and ``mt_w``, the transverse mass of it and the MET
  (>= 1 lepton); ``lepton2_pt/eta`` of the second and ``mll``, the mass of the two (>= 2).

Object level, for graph networks: the first ``n_jets_max`` jets' pt, eta, phi, mass and b-tag
discriminant as ``(n_events, n_jets_max)`` columns, padded with 0 (``PAD_VALUE``) and with a
``jet_mask`` (1 for a real jet); the leptons, never padded (the selection fixes their number), as
``lepton_*`` (leading) and ``lepton2_*`` (second) pt, eta, phi, mass and charge.

Every feature is a numpy expression over the padded jets (``analysis.skim.jets.PaddedJets``).
"""

from __future__ import annotations

import numpy as np

from analysis.skim.jets import PaddedJets, gather, gather_index

__all__ = ["PAD_VALUE", "event_features", "lepton_columns", "object_features"]

PAD_VALUE = 0.0
"""Value of the padded slots of the ``jet_*`` columns (``jet_mask`` is 0 there); never NaN."""


def _momenta(pt: np.ndarray, eta: np.ndarray, phi: np.ndarray,
             mass: np.ndarray) -> tuple[np.ndarray, ...]:
    px, py, pz = pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)
    return px, py, pz, np.sqrt(px**2 + py**2 + pz**2 + mass**2)


def _b_pairs(jets: PaddedJets, momenta: tuple[np.ndarray, ...],
             medium: float) -> tuple[np.ndarray, np.ndarray]:
    """dR and mass of every pair of b candidates; invalid pairs hold ``inf`` and ``-inf``."""
    n_tagged = np.sum(jets.mask & (jets.btag > medium), axis=1)
    n_candidates = np.minimum(np.maximum(n_tagged, 2), jets.mask.sum(axis=1))
    width = max(int(n_candidates.max(initial=0)), 2)  # only the candidate columns
    order = np.argsort(np.where(jets.mask, -jets.btag, np.inf), axis=1, kind="stable")[:, :width]
    first, second = np.triu_indices(width, 1)
    valid = (first[None, :] < n_candidates[:, None]) & (second[None, :] < n_candidates[:, None])
    index = gather_index(order)  # the candidates, (n_events, width): small, then all pairs
    eta, phi = gather(jets.eta, index), gather(jets.phi, index)
    deta = eta[:, first] - eta[:, second]
    dphi = (phi[:, first] - phi[:, second] + np.pi) % (2 * np.pi) - np.pi
    summed = [candidates[:, first] + candidates[:, second]
              for candidates in (gather(component, index) for component in momenta)]
    mass2 = summed[3] ** 2 - summed[0] ** 2 - summed[1] ** 2 - summed[2] ** 2
    return (np.where(valid, np.sqrt(deta**2 + dphi**2), np.inf),
            np.where(valid, np.sqrt(np.maximum(mass2, 0.0)), -np.inf))


def event_features(jets: PaddedJets, leptons: dict[str, np.ndarray], met_pt: np.ndarray,
                   met_phi: np.ndarray, btag_medium: float) -> dict[str, np.ndarray]:
    """Event-level features (module docstring) of selected events.

    Args:
        jets: selected jets (``good_jets``), pt-ordered and packed to the left.
        leptons: ``{"pt", "eta", "phi", "mass"}``, each ``(n_events, n_leptons)``, the tight
            leptons pt-ordered (GeV, rad); ``n_leptons`` may be 0.
        met_pt: ``(n_events,)`` GeV. met_phi: ``(n_events,)`` rad.
        btag_medium: medium working point of the discriminant.

    Returns:
        ``{name: (n_events,) float64}`` for every name in ``config.EVENT_FEATURES`` that
        ``n_leptons`` allows (``config.LEPTON_FEATURES``).
    """
    n_leptons = leptons["pt"].shape[1]
    pt = np.where(jets.mask, jets.pt, 0.0)
    out = {
        "ht": pt.sum(axis=1),
        "n_jets": jets.mask.sum(axis=1),
        "n_btag": np.sum(jets.mask & (jets.btag > btag_medium), axis=1),
        "met_pt": met_pt, "met_phi": met_phi,
    }
    if n_leptons >= 1:
        lead = {name: values[:, 0] for name, values in leptons.items()}
        out.update(lepton_pt=lead["pt"], lepton_eta=lead["eta"],
                   mt_w=np.sqrt(2 * lead["pt"] * met_pt * (1 - np.cos(lead["phi"] - met_phi))))
    for i, names in enumerate((("pt", "eta"), ("pt", "eta"), ("pt",), ("pt",))):
        for name in names:
            out[f"jet{i + 1}_{name}"] = np.where(jets.mask[:, i], getattr(jets, name)[:, i], 0.0)

    jet_p = _momenta(pt, jets.eta, jets.phi, np.where(jets.mask, jets.mass, 0.0))
    dr, mass = _b_pairs(jets, jet_p, btag_medium)
    has_pair = np.isfinite(dr).any(axis=1)
    closest = np.argmin(dr, axis=1)[:, None]
    out["drbb_closest"] = np.where(has_pair, np.take_along_axis(dr, closest, 1)[:, 0], 0.0)
    out["mbb_closest"] = np.where(has_pair, np.take_along_axis(mass, closest, 1)[:, 0], 0.0)
    out["mbb_max"] = np.where(has_pair, mass.max(axis=1, initial=-np.inf), 0.0)

    lep_p = _momenta(leptons["pt"], leptons["eta"], leptons["phi"], leptons["mass"])
    if n_leptons >= 2:
        out.update(lepton2_pt=leptons["pt"][:, 1], lepton2_eta=leptons["eta"][:, 1])
        pair = [component[:, 0] + component[:, 1] for component in lep_p]
        out["mll"] = np.sqrt(np.maximum(pair[3] ** 2 - pair[0] ** 2 - pair[1] ** 2 - pair[2] ** 2,
                                        0.0))
    px, py, pz, energy = (np.concatenate([j, lep], axis=1) for j, lep in zip(jet_p, lep_p))
    out["centrality"] = (pt.sum(axis=1) + leptons["pt"].sum(axis=1)) / energy.sum(axis=1)
    out["aplanarity"] = _aplanarity(px, py, pz)
    return {name: np.asarray(value, dtype=np.float64) for name, value in out.items()}


def lepton_columns(leptons: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The tight leptons as object-level columns: ``lepton_<field>``, ``lepton2_<field>``, ...

    Args:
        leptons: ``{field: (n_events, n_leptons)}``, pt-ordered; ``n_leptons`` may be 0.

    Returns:
        ``{"lepton_pt": (n_events,), ..., "lepton2_pt": ...}``, one column per lepton and field;
        none for ``n_leptons = 0``. Charges stay integers.
    """
    out = {}
    for field, values in leptons.items():
        for i in range(values.shape[1]):
            column = values[:, i].astype(np.int64) if field == "charge" else values[:, i]
            out[f"lepton{i + 1 if i else ''}_{field}"] = column
    return out


def _aplanarity(px: np.ndarray, py: np.ndarray, pz: np.ndarray) -> np.ndarray:
    """3/2 x smallest eigenvalue of the sphericity tensor; padded slots have p = 0."""
    p = np.stack([px, py, pz], axis=-1)  # (n_events, n_objects, 3)
    tensor = np.einsum("noa,nob->nab", p, p)
    norm = np.einsum("noa,noa->n", p, p)
    if len(norm) == 0:
        return np.zeros(0)
    return 1.5 * _smallest_eigenvalue(tensor / norm[:, None, None])


def _smallest_eigenvalue(matrix: np.ndarray) -> np.ndarray:
    """Smallest eigenvalue of symmetric ``(n, 3, 3)`` matrices, in closed form.

    The trigonometric solution of the characteristic cubic (O. K. Smith, Commun. ACM 4 (1961)
    168), several times faster than batched LAPACK for 3 x 3 matrices.
    """
    q = np.trace(matrix, axis1=1, axis2=2) / 3.0
    off = matrix[:, 0, 1] ** 2 + matrix[:, 0, 2] ** 2 + matrix[:, 1, 2] ** 2
    diag = [matrix[:, i, i] - q for i in range(3)]
    p = np.sqrt((diag[0] ** 2 + diag[1] ** 2 + diag[2] ** 2 + 2.0 * off) / 6.0)
    safe = np.where(p > 0, p, 1.0)
    b = (matrix - q[:, None, None] * np.eye(3)) / safe[:, None, None]
    half_det = np.clip(np.linalg.det(b) / 2.0, -1.0, 1.0)
    phi = np.arccos(half_det) / 3.0
    # eigenvalues q + 2p cos(phi + 2 pi k / 3); k = 1 gives the smallest
    return np.where(p > 0, q + 2.0 * p * np.cos(phi + 2.0 * np.pi / 3.0), q)


def object_features(jets: PaddedJets, n_jets_max: int) -> dict[str, np.ndarray]:
    """Padded jet arrays for graph networks.

    Args:
        jets: selected jets (``good_jets``).
        n_jets_max: number of jets kept per event.

    Returns:
        ``{"jet_pt", "jet_eta", "jet_phi", "jet_mass", "jet_btag", "jet_mask"}``, each
        ``(n_events, n_jets_max)``; pt and mass in GeV; mask 1 for a real jet, 0 for a padded
        slot, whose other columns hold ``PAD_VALUE``.
    """
    width = min(n_jets_max, jets.mask.shape[1])
    out = {}
    for name in ("pt", "eta", "phi", "mass", "btag", "mask"):
        values = np.full((len(jets.mask), n_jets_max), PAD_VALUE)
        values[:, :width] = np.where(jets.mask[:, :width], getattr(jets, name)[:, :width],
                                     PAD_VALUE)
        out[f"jet_{name}"] = values
    return out
