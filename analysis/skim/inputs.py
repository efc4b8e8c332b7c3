"""Checks of NanoAOD input files, so bad input stops with one message naming file and branch."""

from __future__ import annotations

import os
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from analysis.config import NANOAOD_PROFILES, NanoAOD
from analysis.errors import InputDataError
from analysis.skim.jetid import JET_ID_INPUTS

__all__ = ["ELECTRON_FIELDS", "MUON_FIELDS", "REQUIRED_BRANCHES", "InputBranches",
           "check_nanoaod_files", "filter_efficiency", "input_branches", "looks_like"]

MUON_FIELDS = ("pt", "eta", "phi", "mass", "charge", "tightId", "pfRelIso04_all")
ELECTRON_FIELDS = ("pt", "eta", "phi", "mass", "charge", "cutBased", "pfRelIso03_all")


@dataclass(frozen=True)
class InputBranches:
    """Every ``Events`` branch the skim reads, each with the config entry that asks for it.

    The processor reads branches only through :meth:`read`, so this list is what it reads: the
    input check cannot miss a branch, and an unlisted read fails in the tests.
    """

    wanted: dict[str, str]  # branch -> config entry, e.g. "Jet_btagPNetB" -> "nanoaod.btag: ..."
    version: str  # the NanoAOD version the config assumes

    def read(self, events: Any, branch: str) -> Any:
        """``events[branch]`` of a listed branch (``events``: coffea's chunk, BaseSchema)."""
        if branch not in self.wanted:
            raise KeyError(f"skim reads {branch}, which input_branches does not list")
        return events[branch]


def input_branches(nanoaod: NanoAOD, needs_ttbar_id: bool = False) -> InputBranches:
    """The branches the skim reads for a NanoAOD layout, and why.

    Args:
        nanoaod: the config's ``nanoaod`` section (version, MET, b-tag discriminant).
        needs_ttbar_id: also ``genTtbarId`` (datasets split into tt+X processes).

    Returns:
        The branches, in reading order, each mapped to the config entry that asks for it.
    """
    version = f"nanoaod.version: {nanoaod.version}"
    wanted = {b: "event identity" for b in ("run", "luminosityBlock", "event")}
    wanted["genWeight"] = "weights (genWeight x cross section x luminosity)"
    wanted["PSWeight"] = "weight_isr/fsr variations (PSWeight)"
    if needs_ttbar_id:
        wanted["genTtbarId"] = "processes.*.gen_ttbar_id"
    wanted.update({f"Jet_{f}": "objects.jets" for f in ("pt", "eta", "phi", "mass")})
    wanted[nanoaod.btag] = f"nanoaod.btag: {nanoaod.btag}"
    if nanoaod.profile.jet_id == "file":
        wanted["Jet_jetId"] = f"{version} (jet ID read from the file)"
    else:
        wanted.update({f"Jet_{f}": f"{version} (jet ID recomputed from {', '.join(JET_ID_INPUTS)})"
                       for f in JET_ID_INPUTS})
    wanted["Jet_hadronFlavour"] = "systematics.btag_sf_* (b-tag weights per flavour)"
    wanted.update({b: "systematics.jer (generator-jet match)"
                   for b in ("Jet_genJetIdx", "GenJet_pt", "GenJet_eta", "GenJet_phi")})
    wanted.update({f"Muon_{f}": "objects.muons" for f in MUON_FIELDS})
    wanted.update({f"Electron_{f}": "objects.electrons" for f in ELECTRON_FIELDS})
    wanted.update({f"{nanoaod.met}_{f}": f"nanoaod.met: {nanoaod.met}" for f in ("pt", "phi")})
    return InputBranches(wanted, nanoaod.version)


REQUIRED_BRANCHES = tuple(input_branches(NanoAOD()).wanted)
"""The branches read from a file of the default layout (generated events: NanoAOD v12)."""


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


def looks_like(branches: Collection[str]) -> str | None:
    """The NanoAOD version a file's branch names suggest, or None when they fit none.

    Args:
        branches: names of the ``Events`` branches.

    Returns:
        ``"v15"`` (no ``Jet_jetId``, ``PFMET_pt``), ``"v12"`` (``Jet_jetId``, ``MET_pt`` and
        ``Jet_btagRobustParTAK4B``), ``"v9"`` (``Jet_jetId``, ``MET_pt``, ``Jet_btagDeepB``).

    Example:
        >>> looks_like({"Jet_pt", "PFMET_pt", "PuppiMET_pt", "Jet_btagUParTAK4B"})
        'v15'
    """
    if "Jet_jetId" not in branches and "PFMET_pt" in branches:
        return "v15"
    if "Jet_jetId" in branches and "MET_pt" in branches:
        if "Jet_btagRobustParTAK4B" in branches:
            return "v12"
        if "Jet_btagDeepB" in branches:
            return "v9"
    return None


def _missing_message(path: str, missing: list[str], inputs: InputBranches,
                     present: Collection[str]) -> str:
    """One line: every missing branch grouped by the config entry that wants it, and a hint."""
    by_entry: dict[str, list[str]] = {}
    for branch in missing:
        by_entry.setdefault(inputs.wanted[branch], []).append(branch)
    groups = "; ".join(f"{', '.join(branches)} ({entry})" for entry, branches in by_entry.items())
    message = (f"{path}: Events tree lacks {len(missing)} branch{'es' if len(missing) > 1 else ''} "
               f"that the config (NanoAOD {inputs.version}) reads: {groups}")
    guess = looks_like(present)
    if guess is not None and guess != inputs.version:
        profile = NANOAOD_PROFILES[guess]
        offered = [b for b in profile.btag if b in present]
        message += (f". The file looks like NanoAOD {guess} ({profile.description}): set "
                    f"nanoaod.version: {guess}, nanoaod.met: one of {', '.join(profile.met)}, "
                    f"nanoaod.btag: one of {', '.join(offered or profile.btag)} (with its "
                    "working points in objects.jets.btag_loose/medium/tight)")
    return message


def check_nanoaod_files(files: Sequence[str], inputs: InputBranches) -> int:
    """Open every file, check the ``Events`` tree and its branches, and read its last entry.

    Args:
        files: NanoAOD file paths.
        inputs: the branches the skim reads (``input_branches``).

    Returns:
        The total number of events.

    Raises:
        InputDataError: naming the file; for missing branches all of them at once, each with
            the config entry that wants it, the NanoAOD version the config assumes and, where
            the file looks like another version, the settings for it; for an unreadable branch
            the branch.
    """
    if not files:
        raise InputDataError("no input files given")
    required = list(inputs.wanted)
    total = 0
    for path in files:
        tree = _open_events(path)
        present = set(tree.keys())
        missing = [b for b in required if b not in present]
        if missing:
            raise InputDataError(_missing_message(path, missing, inputs, present))
        n_entries = tree.num_entries
        last = {"entry_start": max(n_entries - 1, 0), "library": "np"}
        try:  # the last entry lies in the last basket: reading it catches truncation
            tree.arrays(required, **last)
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
