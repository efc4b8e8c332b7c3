"""Jets as rectangular numpy arrays: padded once per chunk, then shifted and selected in numpy.

Jagged awkward expressions pay a broadcasting cost per call; the skim evaluates the same jet
expressions for five shifts, so it pads the jets of a chunk once into ``(n_events, n_slots)``
arrays and works on those.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import awkward as ak
import numpy as np

__all__ = ["MIN_SLOTS", "PaddedJets", "gather", "gather_index", "pad", "pad_jets"]

MIN_SLOTS = 4  # jet1..jet4 features always exist
GEN_MATCH_DR = 0.2  # half the jet radius, as CMS's hybrid JER method


@dataclass(frozen=True)
class PaddedJets:
    """Jets as ``(n_events, n_slots)`` arrays; slots beyond ``mask`` hold zeros.

    ``gen_pt`` is the pt of the matched generator jet (``Jet_genJetIdx`` and dR < 0.2), NaN when
    there is none; ``jet_id`` is NanoAOD's ``Jet_jetId`` (or its recomputation, ``analysis.skim.jetid``).
    """

    pt: np.ndarray  # GeV
    eta: np.ndarray
    phi: np.ndarray  # rad
    mass: np.ndarray  # GeV
    btag: np.ndarray  # discriminant in [0, 1]
    flavour: np.ndarray  # hadron flavour 5, 4, 0
    jet_id: np.ndarray
    gen_pt: np.ndarray  # GeV, NaN without a match
    mask: np.ndarray  # bool, True for a real jet

    def rows(self, selected: np.ndarray) -> PaddedJets:
        """The events picked by a boolean or integer index ``selected``."""
        return PaddedJets(**{f.name: getattr(self, f.name)[selected]
                             for f in dataclasses.fields(self)})

    def replace(self, **arrays: np.ndarray) -> PaddedJets:
        """A copy with some arrays replaced."""
        return dataclasses.replace(self, **arrays)

    def keep(self, keep: np.ndarray, sort_by_pt: bool = True) -> PaddedJets:
        """Only the jets where ``keep`` is true, packed to the left.

        Args:
            keep: ``(n_events, n_slots)`` bool.
            sort_by_pt: order the kept jets by pt; else keep their order (cheaper, for jets that
                are pt-ordered already).

        Returns:
            Jets of width ``max(kept per event, MIN_SLOTS)``.
        """
        keep = keep & self.mask
        if sort_by_pt:
            order = np.argsort(np.where(keep, -self.pt, np.inf), axis=1, kind="stable")
        else:  # a stable sort on a small integer key only packs: radix sort, no float compares
            order = np.argsort((~keep).view(np.int8), axis=1, kind="stable")
        width = max(int(keep.sum(axis=1).max(initial=0)), MIN_SLOTS)
        index = gather_index(order[:, :width])
        kept = gather(keep, index)
        arrays = {}
        for field in dataclasses.fields(self):
            if field.name != "mask":
                empty = np.nan if field.name == "gen_pt" else 0.0
                arrays[field.name] = np.where(kept, gather(getattr(self, field.name), index), empty)
        return PaddedJets(mask=kept, **arrays)


def gather_index(columns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index for ``gather``: pick column ``columns[i, j]`` of row ``i`` (any number of arrays).

    The same as ``np.take_along_axis`` but built once and reused for many arrays.
    """
    return np.arange(len(columns))[:, None], columns


def gather(values: np.ndarray, index: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """``values[i, columns[i, j]]`` for an index from ``gather_index``."""
    return values[index]


def pad(values: ak.Array, n_slots: int) -> np.ndarray:
    """Zero-padded ``(n_events, n_slots)`` float64 array of a jagged ``events x objects`` array.

    Objects beyond ``n_slots`` are dropped.
    """
    counts = ak.to_numpy(ak.num(values, axis=1))
    flat = np.asarray(ak.to_numpy(ak.flatten(ak.without_parameters(values))), dtype=np.float64)
    out = np.zeros((len(counts), n_slots))
    rows = np.repeat(np.arange(len(counts)), counts)
    slots = np.arange(len(flat)) - np.repeat(np.cumsum(counts) - counts, counts)
    inside = slots < n_slots
    out[rows[inside], slots[inside]] = flat[inside]
    return out


def pad_jets(jets: ak.Array, gen_jets: ak.Array) -> PaddedJets:
    """Pad NanoAOD jets and attach their matched generator-jet pt.

    Args:
        jets: events x jets with pt, eta, phi, mass (GeV, rad), btag (the config's
            discriminant), hadronFlavour, jetId (NanoAOD bits: >= 2 tight) and genJetIdx.
        gen_jets: events x generator jets with pt, eta, phi.

    Returns:
        ``PaddedJets`` with ``n_slots = max(max jets per event, 4)``, in the input order.
    """
    counts = ak.to_numpy(ak.num(jets.pt, axis=1))
    n_slots = max(int(counts.max(initial=0)), MIN_SLOTS)
    mask = np.arange(n_slots)[None, :] < counts[:, None]
    arrays = {name: pad(jets[field], n_slots) for name, field in (
        ("pt", "pt"), ("eta", "eta"), ("phi", "phi"), ("mass", "mass"), ("btag", "btag"),
        ("flavour", "hadronFlavour"), ("jet_id", "jetId"))}
    index = pad(jets.genJetIdx, n_slots).astype(np.int64)
    n_gen = ak.to_numpy(ak.num(gen_jets.pt, axis=1))
    gen_slots = max(int(n_gen.max(initial=0)), 1)
    matched = mask & (index >= 0) & (index < n_gen[:, None])
    safe = np.where(matched, index, 0)
    gen = {field: np.take_along_axis(pad(gen_jets[field], gen_slots), safe, 1)
           for field in ("pt", "eta", "phi")}
    dphi = (arrays["phi"] - gen["phi"] + np.pi) % (2 * np.pi) - np.pi
    matched &= (arrays["eta"] - gen["eta"]) ** 2 + dphi**2 < GEN_MATCH_DR**2
    return PaddedJets(gen_pt=np.where(matched, gen["pt"], np.nan), mask=mask, **arrays)
