"""Generator truth: heavy-flavour hadrons, their origin, and the CMS tt+X categories.

The categorisation follows CMS's ``GenTtbarCategorizer`` (the ``genTtbarId`` of NanoAOD):
B and C hadrons are ghost-clustered into the generator jets; a jet in the acceptance
(``pt > 20 GeV``, ``|eta| < 2.4``) that holds a B hadron not from a top decay and none from a
top decay is an *additional b jet*; c jets likewise, with C hadrons neither from B-hadron nor
from W decays. ``genTtbarId % 100`` is then 51 (one additional b jet with one B hadron),
52 (one with two or more), 53/54/55 (two or more additional b jets, of which 0/1/2 hold two or
more B hadrons), 41..45 the same for c, and 0 for tt+light; the hundreds digit counts the b jets
from the top decays (0..2).
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "GHOST_B_EXTRA",
    "GHOST_B_OTHER",
    "GHOST_B_TOP",
    "GHOST_C_EXTRA",
    "GHOST_C_OTHER",
    "PARTICLE",
    "extra_b_quark_count",
    "gen_ttbar_id",
    "hadron_flavour_content",
    "is_b_hadron",
    "is_c_hadron",
]

# kind codes of the inputs to the jet clustering: real particles and ghost hadrons
PARTICLE, GHOST_B_EXTRA, GHOST_B_TOP, GHOST_C_EXTRA, GHOST_C_OTHER, GHOST_B_OTHER = 0, 1, 2, 3, 4, 5

ACCEPTANCE_PT_MIN = 20.0  # GeV, the additional-jet acceptance of CMS's categoriser
ACCEPTANCE_ABS_ETA_MAX = 2.4
_TOP, _W, _B, _C = 6, 24, 5, 4


def _heaviest_quark(pdg_id: int) -> int:
    code = abs(pdg_id)
    if (code // 1000) % 10:  # baryon: the first quark digit is the heaviest
        return (code // 1000) % 10
    return (code // 100) % 10


def is_b_hadron(pdg_id: int) -> bool:
    """True for a hadron whose heaviest valence quark is b (PDG numbering scheme)."""
    return abs(pdg_id) > 100 and _heaviest_quark(pdg_id) == _B


def is_c_hadron(pdg_id: int) -> bool:
    """True for a hadron whose heaviest valence quark is c (PDG numbering scheme)."""
    return abs(pdg_id) > 100 and _heaviest_quark(pdg_id) == _C


def _quark_origin(event, index: int, quark: int) -> int:  # noqa: ANN001 (pythia8mc.Event)
    """Follow a quark's copies up the record; return the |id| of the first other ancestor."""
    while True:
        mother = event[index].mother1()
        if mother <= 0:
            return 0
        mother_id = event[mother].idAbs()
        if mother_id != quark:
            return mother_id
        index = mother


def extra_b_quark_count(event, pt_min: float, abs_eta_max: float) -> int:  # noqa: ANN001
    """Number of final parton-level b quarks not from a top decay, within pt/eta limits.

    Args:
        event: ``pythia8mc.Event`` at parton level (``HadronLevel:all = off``).
        pt_min: minimum transverse momentum in GeV.
        abs_eta_max: maximum absolute pseudorapidity.

    Returns:
        The count, used by the parton-level filter of the generator.
    """
    count = 0
    for index in range(event.size()):
        particle = event[index]
        if particle.idAbs() != _B or not particle.isFinal():
            continue
        if particle.pT() < pt_min or abs(particle.eta()) > abs_eta_max:
            continue
        if _quark_origin(event, index, _B) != _TOP:
            count += 1
    return count


def _heavy_quark_id(pdg_id: int, quark: int) -> int:
    """Signed id of the heavy quark in a hadron (PDG numbering scheme).

    Baryons with a positive id hold quarks. A meson with a positive id holds the heavy quark
    when it is up-type (c: D+ = c dbar) and the antiquark when it is down-type (b: B+ = u bbar).
    Quarkonia (bbbar, ccbar) hold both; 0 is returned for them.
    """
    code = abs(pdg_id)
    if (code // 10) % 10 == (code // 100) % 10 and not (code // 1000) % 10:
        return 0  # quarkonium
    sign = 1 if pdg_id > 0 else -1
    if not (code // 1000) % 10 and quark % 2 == 1:  # meson with a down-type heavy quark
        sign = -sign
    return sign * quark


def _string_quark(event, hadron_index: int, quark: int) -> int:  # noqa: ANN001
    """Index of the heavy quark of the string that made the hadron.

    A primary hadron's ``mother1..mother2`` is the range of partons of its string or cluster;
    among them, the quark (or antiquark) the hadron carries, closest in dR, is taken.
    """
    index = hadron_index
    while event[event[index].mother1()].isHadron():  # excited states, B* -> B gamma
        index = event[index].mother1()
    first, last = event[index].mother1(), event[index].mother2()
    wanted = _heavy_quark_id(event[hadron_index].id(), quark)
    candidates = [i for i in range(first, max(first, last) + 1)
                  if event[i].idAbs() == quark and wanted in (0, event[i].id())]
    if not candidates:
        return -1
    hadron = event[hadron_index]
    return min(candidates, key=lambda i: _delta_r2(event[i], hadron))


def _delta_r2(a, b) -> float:  # noqa: ANN001
    dphi = (a.phi() - b.phi() + np.pi) % (2 * np.pi) - np.pi
    return (a.eta() - b.eta()) ** 2 + dphi**2


def _has_b_hadron_ancestor(event, index: int) -> bool:  # noqa: ANN001
    while True:
        index = event[index].mother1()
        if index <= 0 or not event[index].isHadron():
            return False
        if is_b_hadron(event[index].id()):
            return True


def hadron_flavour_content(event) -> list[tuple[int, int]]:  # noqa: ANN001
    """Last B and C hadrons of a hadron-level event, each with its ghost kind.

    Args:
        event: ``pythia8mc.Event`` after hadronisation.

    Returns:
        ``[(particle index, kind)]`` with kind one of ``GHOST_B_EXTRA``, ``GHOST_B_TOP``,
        ``GHOST_B_OTHER`` (b from a W decay), ``GHOST_C_EXTRA``, ``GHOST_C_OTHER`` (c from a W).
    """
    ghosts = []
    for index in range(event.size()):
        particle = event[index]
        pdg_id = particle.id()
        if abs(pdg_id) < 100 or not particle.isHadron():
            continue
        if is_b_hadron(pdg_id):
            if any(is_b_hadron(event[d].id()) for d in particle.daughterList()):
                continue  # not the last B hadron of its chain
            quark = _string_quark(event, index, _B)
            origin = _quark_origin(event, quark, _B) if quark >= 0 else 0
            # b from W -> cb / ub decays is neither a top b nor additional (as in CMS)
            kind = {_TOP: GHOST_B_TOP, _W: GHOST_B_OTHER}.get(origin, GHOST_B_EXTRA)
            ghosts.append((index, kind))
        elif is_c_hadron(pdg_id):
            if any(is_c_hadron(event[d].id()) for d in particle.daughterList()):
                continue
            if _has_b_hadron_ancestor(event, index):
                continue  # charm from a B decay belongs to the b jet
            quark = _string_quark(event, index, _C)
            from_w = quark >= 0 and _quark_origin(event, quark, _C) == _W
            ghosts.append((index, GHOST_C_OTHER if from_w else GHOST_C_EXTRA))
    return ghosts


def gen_ttbar_id(jet_pt: np.ndarray, jet_eta: np.ndarray, n_b_extra: np.ndarray,
                 n_b_top: np.ndarray, n_c_extra: np.ndarray) -> int:
    """CMS ``genTtbarId`` of one event from its generator jets' ghost-hadron counts.

    Args:
        jet_pt: ``(n_jets,)`` generator-jet transverse momenta in GeV.
        jet_eta: ``(n_jets,)`` pseudorapidities.
        n_b_extra: ``(n_jets,)`` number of B hadrons not from top decays in each jet.
        n_b_top: ``(n_jets,)`` number of B hadrons from top decays in each jet.
        n_c_extra: ``(n_jets,)`` number of C hadrons not from B or W decays in each jet.

    Returns:
        ``100 * n_top_b_jets + category`` with the category of the module docstring.

    Example:
        >>> gen_ttbar_id(np.array([50., 30.]), np.zeros(2), np.array([0, 1]), np.array([1, 0]),
        ...              np.zeros(2, int))
        151
    """
    accepted = (jet_pt > ACCEPTANCE_PT_MIN) & (np.abs(jet_eta) < ACCEPTANCE_ABS_ETA_MAX)
    n_top_b_jets = min(int(np.sum(accepted & (n_b_top > 0))), 2)
    # jets come pt-ordered; like CMS, the leading two additional jets decide 53/54/55
    extra_b = n_b_extra[accepted & (n_b_extra > 0) & (n_b_top == 0)]
    extra_c = n_c_extra[accepted & (n_c_extra > 0) & (n_b_extra + n_b_top == 0)]
    category = 0
    for jets, base in ((extra_b, 50), (extra_c, 40)):
        if len(jets) == 1:
            category = base + (1 if jets[0] == 1 else 2)
        elif len(jets) >= 2:
            category = base + 3 + int(np.sum(jets[:2] >= 2))
        if category:
            break
    return 100 * n_top_b_jets + category
