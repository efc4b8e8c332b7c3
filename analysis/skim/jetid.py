"""Jet identification recomputed from a jet's energy fractions, for NanoAOD without ``Jet_jetId``.

NanoAOD v15 dropped ``Jet_jetId``, because JME updates the criteria more often than NanoAOD is
produced; analyses evaluate them on the stored constituent fractions instead. The criteria here
are JME's tight and tight-lepton-veto IDs of AK4 PUPPI jets for 13.6 TeV (Run 3, 2022-2024):

- the numbers are CMSSW's ``offlinePuppiJetTightLeptonVetoIdCriteria`` (PATJetIdProducer), the
  criteria of the twiki ``https://twiki.cern.ch/twiki/bin/view/CMS/JetID13p6TeV`` ("Recommendations
  for the 13.6 TeV data analysis", AK4 PUPPI) and JME's correctionlib ``jetid.json.gz``. The
  twiki's NanoAOD recipe also asks ``neMultiplicity >= 2`` above |eta| = 3.0, which CMSSW's
  criteria do not: the two differ only for jets beyond |eta| = 3, outside the skim's jets;
- the NanoAOD branches: ``neHEF`` (neutral hadron energy fraction), ``neEmEF`` (neutral EM),
  ``chHEF`` (charged hadron), ``chEmEF`` (charged EM), ``muEF`` (muon), ``chMultiplicity``,
  ``neMultiplicity``.

=================  ============================================================================
|eta|              tight
=================  ============================================================================
<= 2.6             neHEF < 0.99, neEmEF < 0.90, chMult + neMult > 1, chHEF > 0.01, chMult > 0
(2.6, 2.7]         neHEF < 0.90, neEmEF < 0.99
(2.7, 3.0]         neHEF < 0.99
> 3.0              neEmEF < 0.40
=================  ============================================================================

Tight-lepton-veto adds ``muEF < 0.80`` and ``chEmEF < 0.80`` for |eta| <= 2.7. The result uses
NanoAOD's ``Jet_jetId`` bits (2: tight, 4: tight-lepton-veto), so ``jet_id >= 2`` selects tight
jets whichever way the ID was obtained.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["JET_ID_INPUTS", "TIGHT", "TIGHT_LEPTON_VETO", "recomputed_jet_id"]

TIGHT = 2  # NanoAOD Jet_jetId bit 1
TIGHT_LEPTON_VETO = 4  # bit 2
JET_ID_INPUTS = ("neHEF", "neEmEF", "chHEF", "chEmEF", "muEF", "chMultiplicity", "neMultiplicity")
"""``Jet_<name>`` branches the recomputation reads, besides ``Jet_eta``."""

# (|eta| upper edge, criteria); fractions are maxima unless named *_min
_CENTRAL, _TRANSITION, _ENDCAP = 2.6, 2.7, 3.0
_LEPTON_VETO_MAX = 0.80  # muEF and chEmEF, |eta| <= 2.7


def recomputed_jet_id(eta: Any, neHEF: Any, neEmEF: Any, chHEF: Any, chEmEF: Any,  # noqa: N803
                      muEF: Any, chMultiplicity: Any, neMultiplicity: Any) -> Any:  # noqa: N803
    """NanoAOD-style ``jetId`` (0, 2 or 6) from JME's Run 3 AK4 PUPPI criteria (module table).

    Args:
        eta: jet pseudorapidity; numpy or awkward arrays of any (equal) shape, as all arguments.
        neHEF, neEmEF, chHEF, chEmEF, muEF: energy fractions in [0, 1].
        chMultiplicity, neMultiplicity: numbers of charged and neutral constituents.

    Returns:
        ``2 * tight + 4 * (tight and lepton veto)`` with the shape and array library of ``eta``,
        as int32.

    Example:
        >>> recomputed_jet_id(np.array([0.5, 0.5, 2.65, 3.5]), np.array([0.3, 0.995, 0.3, 0.9]),
        ...                   np.array([0.2, 0.0, 0.2, 0.3]), np.array([0.4, 0.0, 0.0, 0.0]),
        ...                   np.array([0.05, 0.0, 0.9, 0.0]), np.array([0.0, 0.0, 0.0, 0.0]),
        ...                   np.array([5, 3, 0, 0]), np.array([4, 3, 2, 0]))
        array([6, 0, 2, 6], dtype=int32)
    """
    abs_eta = abs(eta)
    # NanoAOD v15 stores both multiplicities as uint8: add them in int32 (200 + 56 is not 0)
    n_constituents = _as_int32(chMultiplicity) + _as_int32(neMultiplicity)
    central = ((abs_eta <= _CENTRAL) & (neHEF < 0.99) & (neEmEF < 0.90)
               & (n_constituents > 1) & (chHEF > 0.01) & (chMultiplicity > 0))
    transition = (abs_eta > _CENTRAL) & (abs_eta <= _TRANSITION) & (neHEF < 0.90) & (neEmEF < 0.99)
    endcap = (abs_eta > _TRANSITION) & (abs_eta <= _ENDCAP) & (neHEF < 0.99)
    forward = (abs_eta > _ENDCAP) & (neEmEF < 0.40)
    tight = central | transition | endcap | forward
    veto = (abs_eta > _TRANSITION) | ((muEF < _LEPTON_VETO_MAX) & (chEmEF < _LEPTON_VETO_MAX))
    value = TIGHT * tight + TIGHT_LEPTON_VETO * (tight & veto)
    return _as_int32(value)


def _as_int32(value: Any) -> Any:
    """``value`` (numpy or awkward, any shape) as int32."""
    if isinstance(value, np.ndarray):
        return value.astype(np.int32)
    import awkward as ak

    return ak.values_astype(value, np.int32)
