"""CMS tt+X categorisation from ghost-hadron counts, and hadron flavour codes."""

from __future__ import annotations

import numpy as np
import pytest

from analysis.events.truth import gen_ttbar_id, is_b_hadron, is_c_hadron


@pytest.mark.parametrize(("pdg_id", "is_b", "is_c"), [
    (511, True, False), (-521, True, False), (5122, True, False), (553, True, False),
    (421, False, True), (4122, False, True), (211, False, False), (2212, False, False),
    (5, False, False),
])
def test_hadron_flavour(pdg_id: int, is_b: bool, is_c: bool) -> None:
    assert is_b_hadron(pdg_id) is is_b and is_c_hadron(pdg_id) is is_c


def _jets(*specs: tuple[float, float, int, int, int]) -> tuple[np.ndarray, ...]:
    columns = np.array(specs, dtype=float).T
    return columns[0], columns[1], *(columns[i].astype(int) for i in (2, 3, 4))


@pytest.mark.parametrize(("jets", "expected"), [
    # (pt, eta, n_b_extra, n_b_top, n_c_extra)
    (((60, 0, 0, 1, 0), (50, 0, 0, 1, 0), (40, 0, 0, 0, 0)), 200),  # tt+light
    (((60, 0, 0, 1, 0), (30, 1, 1, 0, 0)), 151),  # one extra b jet, one B hadron
    (((60, 0, 0, 1, 0), (30, 1, 2, 0, 0)), 152),  # one extra b jet, two B hadrons
    (((30, 1, 1, 0, 0), (25, -1, 1, 0, 0)), 53),  # two extra b jets
    (((30, 1, 2, 0, 0), (25, -1, 1, 0, 0)), 54),
    (((30, 1, 2, 0, 0), (25, -1, 3, 0, 0)), 55),
    (((30, 1, 0, 0, 1),), 41),  # one extra c jet
    (((30, 1, 0, 0, 1), (40, 0, 0, 0, 2)), 44),
    (((15, 1, 1, 0, 0),), 0),  # below the acceptance
    (((30, 2.6, 1, 0, 0),), 0),  # outside |eta| < 2.4
    (((30, 1, 1, 1, 0),), 100),  # a top b jet that also holds an extra B is no extra b jet
    (((30, 1, 1, 0, 1),), 51),  # b takes precedence over c
])
def test_gen_ttbar_id_categories(jets: tuple, expected: int) -> None:
    assert gen_ttbar_id(*_jets(*jets)) == expected


@pytest.mark.parametrize(("pdg_id", "quark", "expected"), [
    (521, 5, -5), (-521, 5, 5), (511, 5, -5), (531, 5, -5), (5122, 5, 5), (-5122, 5, -5),
    (411, 4, 4), (-421, 4, -4), (4122, 4, 4), (553, 5, 0), (443, 4, 0),
])
def test_heavy_quark_sign(pdg_id: int, quark: int, expected: int) -> None:
    from analysis.events.truth import _heavy_quark_id

    assert _heavy_quark_id(pdg_id, quark) == expected
