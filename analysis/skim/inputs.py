"""Checks of NanoAOD input files, so bad input stops with one message naming file and branch."""

from __future__ import annotations

import os
from collections.abc import Sequence

from analysis.errors import InputDataError

__all__ = ["REQUIRED_BRANCHES", "check_nanoaod_files", "filter_efficiency"]

REQUIRED_BRANCHES = (
    "run", "luminosityBlock", "event", "genWeight", "nPSWeight", "PSWeight",
    "nJet", "Jet_pt", "Jet_eta", "Jet_phi", "Jet_mass", "Jet_btagDeepFlavB", "Jet_hadronFlavour",
    "Jet_jetId", "Jet_genJetIdx", "nGenJet", "GenJet_pt", "GenJet_eta", "GenJet_phi",
    "nMuon", "Muon_pt", "Muon_eta", "Muon_phi", "Muon_mass", "Muon_tightId", "Muon_pfRelIso04_all",
    "nElectron", "Electron_pt", "Electron_eta", "Electron_phi", "Electron_mass",
    "Electron_cutBased", "Electron_pfRelIso03_all", "MET_pt", "MET_phi",
)


def _open_events(path: str):  # noqa: ANN202 (uproot.TTree)
    import uproot

    is_local = "://" not in path  # URLs (root://, https://) go to uproot as they are
    if is_local and not os.path.exists(path):
        raise InputDataError(f"{path}: no such file")
    if is_local and os.path.getsize(path) == 0:
        raise InputDataError(f"{path}: empty file (0 bytes)")
    if is_local:
        with open(path, "rb") as stream:
            if stream.read(4) != b"root":
                raise InputDataError(f"{path}: not a ROOT file (no 'root' signature)")
    try:
        file = uproot.open(path)
        if is_local and file.file.fEND > os.path.getsize(path):  # the header knows the length
            raise InputDataError(f"{path}: truncated ROOT file ({os.path.getsize(path)} of "
                                 f"{file.file.fEND} bytes)")
        if "Events" not in file:
            raise InputDataError(f"{path}: no 'Events' tree (keys: "
                                 f"{', '.join(file.keys()) or 'none'})")
        return file["Events"]
    except InputDataError:
        raise
    except Exception as err:  # uproot raises several types for non-ROOT or truncated data
        reason = " ".join(f"{type(err).__name__}: {err}".split())  # one line
        raise InputDataError(f"{path}: not a readable ROOT file ({reason})") from err


def check_nanoaod_files(files: Sequence[str], needs_ttbar_id: bool = False) -> int:
    """Open every file, check the ``Events`` tree and its branches, and read its last entry.

    Args:
        files: NanoAOD file paths.
        needs_ttbar_id: also require ``genTtbarId`` (datasets split into tt+X processes).

    Returns:
        The total number of events.

    Raises:
        InputDataError: naming the file, and the branch where one is missing or unreadable.
    """
    if not files:
        raise InputDataError("no input files given")
    required = REQUIRED_BRANCHES + (("genTtbarId",) if needs_ttbar_id else ())
    total = 0
    for path in files:
        tree = _open_events(path)
        missing = [b for b in required if b not in tree]
        if missing:
            raise InputDataError(f"{path}: Events tree lacks branch {missing[0]}"
                                 + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
        n_entries = tree.num_entries
        last = {"entry_start": max(n_entries - 1, 0), "library": "np"}
        try:  # the last entry lies in the last basket: reading it catches truncation
            tree.arrays(list(required), **last)
        except Exception:
            for branch in required:  # one read failed: find the branch to name it
                try:
                    tree[branch].array(**last)
                except Exception as err:
                    raise InputDataError(f"{path}: branch {branch} unreadable "
                                         f"({type(err).__name__}: {err})") from err
            raise
        total += n_entries
    return total


def _filter_counts(files: Sequence[str]) -> tuple[float, float] | None:
    """Summed ``(genFilterTried, genFilterPassed)``; None when no file carries them."""
    import uproot

    counts = []
    for path in files:
        with uproot.open(path) as file:
            if "Runs" in file and "genFilterTried" in file["Runs"]:
                runs = file["Runs"].arrays(["genFilterTried", "genFilterPassed"], library="np")
                counts.append((float(runs["genFilterTried"].sum()),
                               float(runs["genFilterPassed"].sum())))
    if not counts:
        return None
    if len(counts) != len(files):
        raise InputDataError(f"{files[0]}...: only {len(counts)} of {len(files)} files carry "
                             "generator-filter counts in their Runs tree")
    tried, passed = (sum(c) for c in zip(*counts))
    if tried <= 0:
        raise InputDataError(f"{files[0]}: Runs tree has genFilterTried = 0")
    return tried, passed


def filter_efficiency(files: Sequence[str], complement_files: Sequence[str] = ()) -> float:
    """Generator-filter efficiency from the ``Runs`` trees (1 when the files carry none).

    When the complementary sample (the same filter, inverted) is given, both samples measure the
    same efficiency and are pooled, ``(passed + tried_c - passed_c) / (tried + tried_c)``, so that
    the two stitched samples' efficiencies add up to exactly 1.

    Args:
        files: the dataset's files.
        complement_files: files of the dataset generated with the inverted filter, or none.

    Returns:
        The fraction of generated events that the dataset's filter keeps.

    Raises:
        InputDataError: if only some files carry filter counts, or none were tried.
    """
    own = _filter_counts(files)
    if own is None:
        return 1.0
    tried, passed = own
    if complement_files:
        other = _filter_counts(complement_files)
        if other is None:
            raise InputDataError(f"{complement_files[0]}: complement sample without filter counts")
        tried, passed = tried + other[0], passed + other[0] - other[1]
    return passed / tried
