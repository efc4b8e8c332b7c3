"""NanoAOD v9, v12 and v15 layouts: the skim selects the events an independent cutflow selects,
for 0, 1 and 2 tight leptons; missing branches are listed all at once, each with its config
entry; the branch list is exactly what the processor reads."""

from __future__ import annotations

from pathlib import Path

import awkward as ak
import numpy as np
import pytest

from analysis.config import NANOAOD_PROFILES, NanoAOD, load_config
from analysis.errors import InputDataError
from analysis.skim.inputs import input_branches, looks_like
from analysis.skim.processor import run_skim
from tests.unit.skim.nanoaod_layouts import expected_events, layout_config, write_layout

DISCRIMINANT = {"v9": "Jet_btagDeepFlavB", "v12": "Jet_btagPNetB", "v15": "Jet_btagUParTAK4B"}
MET = {"v9": "MET", "v12": "PuppiMET", "v15": "PuppiMET"}
SELECTIONS = {0: {"n_tight_leptons": 0, "n_jets_min": 6, "n_btag_min": 2},
              1: {"n_tight_leptons": 1, "n_jets_min": 4, "n_btag_min": 2},
              2: {"n_tight_leptons": 2, "n_jets_min": 2, "n_btag_min": 1}}
LEPTON_FREE = ["ht", "n_jets", "n_btag", "met_pt", "jet1_pt", "mbb_closest", "centrality",
               "aplanarity"]


@pytest.fixture(scope="module")
def layout_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("layouts")
    return {version: write_layout(folder / f"nano_{version}.root", version, seed=i + 1)
            for i, version in enumerate(("v9", "v12", "v15"))}


@pytest.mark.parametrize("n_leptons", [0, 1, 2])
@pytest.mark.parametrize("version", ["v9", "v12", "v15"])
def test_skim_selects_what_an_independent_cutflow_selects(
        version: str, n_leptons: int, layout_files: dict[str, Path], tmp_path: Path) -> None:
    features = LEPTON_FREE + {0: [], 1: ["lepton_pt", "mt_w"],
                              2: ["lepton_pt", "lepton2_pt", "mll"]}[n_leptons]
    path = layout_config(tmp_path, [str(layout_files[version])],
                         {"version": version, "met": MET[version], "btag": DISCRIMINANT[version]},
                         SELECTIONS[n_leptons], features)
    config = load_config(str(path))
    result = run_skim(config, "cms_tt", [str(layout_files[version])])
    table = result.tables["nominal"]
    expected = expected_events(layout_files[version], config)
    assert len(expected) >= 5  # the selection is not empty: the comparison means something
    np.testing.assert_array_equal(np.sort(ak.to_numpy(table.event)), expected)
    lepton_columns = {f for f in table.fields if f.startswith("lepton")}
    assert lepton_columns == {f"{p}_{x}" for p in ("lepton", "lepton2")[:n_leptons]
                              for x in ("pt", "eta", "phi", "mass", "charge")}
    for name in table.fields:  # no NaN anywhere, padded jets included
        values = ak.to_numpy(ak.flatten(table[name], axis=None))
        assert np.all(np.isfinite(values)), name
    assert np.all(ak.to_numpy(table.jet_pt)[ak.to_numpy(table.jet_mask) == 0] == 0.0)
    if n_leptons == 2:  # mll of the two leptons, by hand from the stored columns
        def four(prefix: str) -> np.ndarray:
            pt, eta, phi, m = (ak.to_numpy(table[f"{prefix}_{x}"]) for x in ("pt", "eta", "phi",
                                                                              "mass"))
            return np.stack([np.sqrt((pt * np.cosh(eta))**2 + m**2), pt * np.cos(phi),
                             pt * np.sin(phi), pt * np.sinh(eta)])
        total = four("lepton") + four("lepton2")
        mll = np.sqrt(total[0]**2 - total[1]**2 - total[2]**2 - total[3]**2)
        np.testing.assert_allclose(ak.to_numpy(table.mll), mll, rtol=1e-6)


def test_versions_differ_only_in_what_the_config_names(layout_files: dict[str, Path],
                                                       tmp_path: Path) -> None:
    """The same v15 file through its discriminants: each selects by its own branch."""
    counts = {}
    for btag in NANOAOD_PROFILES["v15"].btag:
        path = layout_config(tmp_path, [str(layout_files["v15"])],
                             {"version": "v15", "met": "PFMET", "btag": btag}, SELECTIONS[1],
                             name=f"btag_{btag}")
        config = load_config(str(path))
        table = run_skim(config, "cms_tt", [str(layout_files["v15"])]).tables["nominal"]
        np.testing.assert_array_equal(np.sort(ak.to_numpy(table.event)),
                                      expected_events(layout_files["v15"], config))
        counts[btag] = len(table)
    assert len(set(counts.values())) > 1  # the discriminants are drawn independently


def test_v15_file_with_v12_config_lists_every_missing_branch(layout_files: dict[str, Path],
                                                             tmp_path: Path) -> None:
    path = layout_config(tmp_path, [str(layout_files["v15"])],
                         {"version": "v12", "met": "MET", "btag": "Jet_btagRobustParTAK4B"})
    with pytest.raises(InputDataError) as info:
        run_skim(load_config(str(path)), "cms_tt", [str(layout_files["v15"])])
    message = str(info.value)
    assert message.startswith(f"{layout_files['v15']}: Events tree lacks 4 branches that the "
                              "config (NanoAOD v12) reads: ")
    for part in ("Jet_btagRobustParTAK4B (nanoaod.btag: Jet_btagRobustParTAK4B)",
                 "Jet_jetId (nanoaod.version: v12 (jet ID read from the file))",
                 "MET_pt, MET_phi (nanoaod.met: MET)",
                 "The file looks like NanoAOD v15", "set nanoaod.version: v15",
                 "nanoaod.met: one of PFMET, PuppiMET",
                 "nanoaod.btag: one of Jet_btagDeepFlavB, Jet_btagPNetB, Jet_btagUParTAK4B"):
        assert part in message, part
    assert "\n" not in message


def test_missing_muon_charge_is_named_with_its_config_entry(tmp_path: Path) -> None:
    path = write_layout(tmp_path / "no_charge.root", "v12", drop=("Muon_charge",))
    config = load_config(str(layout_config(tmp_path, [str(path)], {"version": "v12"})))
    with pytest.raises(InputDataError, match=rf"^{path}: Events tree lacks 1 branch that the "
                       r"config \(NanoAOD v12\) reads: Muon_charge \(objects.muons\)$"):
        run_skim(config, "cms_tt", [str(path)])


@pytest.mark.parametrize("version", ["v12", "v15"])
def test_the_checked_branches_are_exactly_the_ones_read(version: str, tmp_path: Path) -> None:
    """A file with only the listed branches skims (nothing unlisted is read), and without any
    one of them the check names it (nothing listed is superfluous to the check)."""
    nanoaod = NanoAOD(version=version, met=MET[version], btag=DISCRIMINANT[version])
    wanted = input_branches(nanoaod, needs_ttbar_id=True).wanted
    path = write_layout(tmp_path / "minimal.root", version, keep_only=tuple(wanted))
    config = load_config(str(layout_config(
        tmp_path, [str(path)], {"version": version, "met": MET[version],
                                "btag": DISCRIMINANT[version]})))
    assert len(run_skim(config, "cms_tt", [str(path)]).tables["nominal"]) > 0
    assert "Muon_charge" in wanted and "Electron_charge" in wanted
    assert ("Jet_jetId" in wanted) == (version != "v15")


def test_real_v12_file_looks_like_v12(cms_file: Path) -> None:
    import uproot

    with uproot.open(cms_file) as file:
        assert looks_like(set(file["Events"].keys())) == "v12"
