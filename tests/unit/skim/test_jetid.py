"""The jet ID recomputed for NanoAOD v15, against cases worked out by hand from JME's table."""

from __future__ import annotations

import awkward as ak
import numpy as np
import pytest

from analysis.skim.jetid import recomputed_jet_id

GOOD = {"neHEF": 0.30, "neEmEF": 0.20, "chHEF": 0.40, "chEmEF": 0.05, "muEF": 0.0,
        "chMultiplicity": 5, "neMultiplicity": 4}

# (eta, changes to a good central jet, expected jetId: 0 fails, 2 tight, 6 tight + lepton veto)
CASES = [
    (0.5, {}, 6),
    (0.5, {"neHEF": 0.99}, 0),                                  # neHEF < 0.99 is strict
    (0.5, {"neEmEF": 0.90}, 0),                                 # neEmEF < 0.90
    (-1.2, {"chMultiplicity": 0, "neMultiplicity": 9}, 0),     # needs a charged constituent
    (1.0, {"chMultiplicity": 1, "neMultiplicity": 0}, 0),      # needs > 1 constituents
    (1.0, {"chMultiplicity": 1, "neMultiplicity": 1}, 6),
    (2.0, {"chHEF": 0.01}, 0),                                  # chHEF > 0.01 is strict
    (2.0, {"muEF": 0.80}, 2),                                   # tight, fails the lepton veto
    (-2.0, {"chEmEF": 0.85}, 2),
    (2.6, {"chMultiplicity": 0, "neMultiplicity": 0}, 0),      # |eta| = 2.6: still central
    (2.65, {"chMultiplicity": 0, "neMultiplicity": 0}, 6),     # (2.6, 2.7]: no multiplicities
    (2.65, {"neHEF": 0.95}, 0),                                 # there neHEF < 0.90
    (-2.65, {"neEmEF": 0.95}, 6),                               # and neEmEF < 0.99
    (2.7, {"muEF": 0.9}, 2),                                    # lepton veto up to |eta| 2.7
    (2.8, {"muEF": 0.9, "chEmEF": 0.9, "neHEF": 0.95}, 6),      # (2.7, 3.0]: neHEF < 0.99 only
    (-2.8, {"neHEF": 0.995}, 0),
    (3.5, {"neEmEF": 0.39, "neHEF": 1.0, "chMultiplicity": 0}, 6),  # > 3: neEmEF < 0.40 only
    (-4.0, {"neEmEF": 0.41}, 0),
]


@pytest.mark.parametrize(("eta", "changes", "expected"), CASES)
def test_hand_computed_cases(eta: float, changes: dict[str, float], expected: int) -> None:
    inputs = {name: np.array([value]) for name, value in {**GOOD, **changes}.items()}
    assert recomputed_jet_id(np.array([eta]), **inputs).tolist() == [expected]


def test_uint8_multiplicities_are_added_without_wrapping() -> None:
    # v15 stores both multiplicities as uint8: 200 + 56 constituents must not count as 0
    fractions = {k: np.array([v]) for k, v in GOOD.items() if "Multiplicity" not in k}
    jet_id = recomputed_jet_id(np.array([0.5]), **fractions,
                               chMultiplicity=np.array([200], dtype=np.uint8),
                               neMultiplicity=np.array([56], dtype=np.uint8))
    assert jet_id.tolist() == [6]


def test_jagged_awkward_input_gives_the_same_per_jet_values() -> None:
    eta = np.array([case[0] for case in CASES])
    inputs = {name: np.array([{**GOOD, **case[1]}[name] for case in CASES])
              for name in GOOD}
    flat = recomputed_jet_id(eta, **inputs)
    counts = [3, 0, 5, len(CASES) - 8]
    jagged = recomputed_jet_id(ak.unflatten(eta, counts),
                               **{k: ak.unflatten(v, counts) for k, v in inputs.items()})
    assert ak.to_list(ak.num(jagged)) == counts
    np.testing.assert_array_equal(ak.to_numpy(ak.flatten(jagged)), flat)
    np.testing.assert_array_equal(flat, [case[2] for case in CASES])
