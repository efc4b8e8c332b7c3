"""Small NanoAOD files in the branch layout of v9, v12 and v15, written with uproot, and configs
for them; plus an independent uproot + awkward cutflow to check the skim's selected events."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import awkward as ak
import numpy as np
import uproot
import yaml

from analysis.config import resolve_config_path
from analysis.events.nanoaod import write_nanoaod

__all__ = ["LAYOUTS", "expected_events", "layout_config", "write_layout"]

# what differs between the versions (NanoAOD content lists of the CMSSW releases)
LAYOUTS = {
    "v9": {"met": ("MET", "PuppiMET"), "btag": ("btagDeepFlavB", "btagDeepB"), "jet_id": "int32"},
    "v12": {"met": ("MET", "PuppiMET"),
            "btag": ("btagDeepFlavB", "btagPNetB", "btagRobustParTAK4B"), "jet_id": "uint8"},
    "v15": {"met": ("PFMET", "PuppiMET"),
            "btag": ("btagDeepFlavB", "btagPNetB", "btagUParTAK4B"), "jet_id": None},
}
TTBAR_IDS = (0, 41, 51, 52)  # tt+light, tt+cc, tt+b, tt+bb


def _jagged(counts: np.ndarray, values: np.ndarray) -> ak.Array:
    return ak.unflatten(values, counts)


def write_layout(path: Path, version: str, n_events: int = 400, seed: int = 1,
                 drop: tuple[str, ...] = (), keep_only: tuple[str, ...] | None = None) -> Path:
    """A random tt-like NanoAOD file with the branches of ``version``.

    Jets: ~7 per event, |eta| < 3, three discriminants (b jets high); leptons: ~1 muon and ~0.7
    electrons per event with IDs and isolations that pass about half the time, so that 0, 1 and
    2 tight leptons all occur. v15 has no ``Jet_jetId`` and no ``MET_*`` but the energy
    fractions and multiplicities the jet ID is recomputed from, ``PFMET_*`` and ``PuppiMET_*``.

    Args:
        path: the file to write.
        version: ``v9``, ``v12`` or ``v15``.
        n_events: events.
        seed: of the random content.
        drop: branches to leave out (``Muon_charge``, ...).
        keep_only: write only these branches (and the counters uproot adds).

    Returns:
        ``path``.
    """
    layout = LAYOUTS[version]
    rng = np.random.default_rng(seed)
    n_jets = rng.poisson(7, n_events)
    total = int(n_jets.sum())
    flavour = rng.choice([0, 4, 5], total, p=[0.6, 0.15, 0.25]).astype(np.int32)
    jets: dict[str, np.ndarray] = {
        "pt": (20 + rng.exponential(45, total)).astype(np.float32),
        "eta": rng.uniform(-3.0, 3.0, total).astype(np.float32),
        "phi": rng.uniform(-np.pi, np.pi, total).astype(np.float32),
        "mass": rng.uniform(3, 20, total).astype(np.float32),
        "hadronFlavour": flavour,
        "genJetIdx": np.where(rng.random(total) < 0.85, 0, -1).astype(np.int32),
    }
    for name in layout["btag"]:
        b_like = rng.beta(5, 1.5, total)
        light = rng.beta(1, 6, total)
        jets[name] = np.where(flavour == 5, b_like, light).astype(np.float32)
    if layout["jet_id"] is not None:
        jets["jetId"] = rng.choice([0, 2, 6], total, p=[0.08, 0.07, 0.85]).astype(layout["jet_id"])
    else:
        jets.update({
            "neHEF": rng.uniform(0.0, 1.0, total) ** 2, "neEmEF": rng.uniform(0.0, 1.0, total) ** 2,
            "chHEF": rng.uniform(0.0, 0.9, total), "chEmEF": rng.uniform(0.0, 0.9, total) ** 2,
            "muEF": rng.uniform(0.0, 0.9, total) ** 3,
        })
        jets = {k: v.astype(np.float32) if k.endswith("EF") else v for k, v in jets.items()}
        jets["chMultiplicity"] = rng.poisson(6, total).astype(np.uint8)
        jets["neMultiplicity"] = rng.poisson(3, total).astype(np.uint8)
    # one generator jet per reconstructed jet, close to it, so that genJetIdx = its index works
    order = np.arange(total) - np.repeat(np.cumsum(n_jets) - n_jets, n_jets)
    jets["genJetIdx"] = np.where(jets["genJetIdx"] >= 0, order, -1).astype(np.int32)
    gen = {"pt": jets["pt"] * rng.normal(1.0, 0.1, total).astype(np.float32),
           "eta": jets["eta"] + np.float32(0.01), "phi": jets["phi"], "mass": jets["mass"]}

    branches: dict[str, Any] = {
        "run": np.ones(n_events, np.uint32),
        "luminosityBlock": np.full(n_events, 7, np.uint32),
        "event": np.arange(1000, 1000 + n_events, dtype=np.uint64),
        "genWeight": rng.choice([-1.0, 1.0], n_events, p=[0.1, 0.9]).astype(np.float32) * 42.0,
        "genTtbarId": rng.choice(TTBAR_IDS, n_events).astype(np.int32),
        "PSWeight": _jagged(np.full(n_events, 4), rng.uniform(0.8, 1.2, 4 * n_events)
                            .astype(np.float32)),
        "Jet": ak.zip({k: _jagged(n_jets, v) for k, v in jets.items()}),
        "GenJet": ak.zip({k: _jagged(n_jets, np.asarray(v, np.float32)) for k, v in gen.items()}),
    }
    for name, mean, iso in (("Muon", 1.0, "pfRelIso04_all"), ("Electron", 0.7, "pfRelIso03_all")):
        n = rng.poisson(mean, n_events)
        k = int(n.sum())
        fields = {"pt": (8 + rng.exponential(35, k)).astype(np.float32),
                  "eta": rng.uniform(-2.6, 2.6, k).astype(np.float32),
                  "phi": rng.uniform(-np.pi, np.pi, k).astype(np.float32),
                  "mass": np.full(k, 0.106 if name == "Muon" else 0.0005, np.float32),
                  "charge": rng.choice([-1, 1], k).astype(np.int32),
                  iso: rng.exponential(0.12, k).astype(np.float32)}
        if name == "Muon":
            fields["tightId"] = rng.random(k) < 0.85
        else:
            fields["cutBased"] = rng.choice([0, 1, 2, 3, 4], k, p=[.1, .1, .1, .2, .5]).astype(np.int32)
        branches[name] = ak.zip({f: _jagged(n, v) for f, v in fields.items()})
    for met in layout["met"]:
        branches[f"{met}_pt"] = rng.exponential(60, n_events).astype(np.float32)
        branches[f"{met}_phi"] = rng.uniform(-np.pi, np.pi, n_events).astype(np.float32)

    flat = _flatten(branches)
    flat = {k: v for k, v in flat.items() if k not in drop
            and (keep_only is None or k in keep_only)}
    write_nanoaod(path, _regroup(flat), runs={})  # NanoAOD naming: nJet, Jet_pt, ...
    return path


def _flatten(branches: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for name, value in branches.items():
        if isinstance(value, ak.Array) and value.fields:
            out.update({f"{name}_{f}": value[f] for f in value.fields})
        else:
            out[name] = value
    return out


def _regroup(flat: dict[str, Any]) -> dict[str, Any]:
    """Collections back as records (uproot writes them as nX + X_field, like NanoAOD)."""
    out: dict[str, Any] = {}
    groups: dict[str, dict[str, Any]] = {}
    for name, value in flat.items():
        collection, _, field = name.partition("_")
        if collection in ("Jet", "GenJet", "Muon", "Electron") and field:
            groups.setdefault(collection, {})[field] = value
        else:
            out[name] = value
    out.update({name: ak.zip(fields) for name, fields in groups.items()})
    return out


def layout_config(tmp_path: Path, files: list[str], nanoaod: dict[str, str],
                  selection: dict[str, Any] | None = None,
                  features: list[str] | None = None, name: str = "layout_test") -> Path:
    """``config/cms_tt.yaml`` with other files, NanoAOD settings, selection and features."""
    raw = yaml.safe_load(resolve_config_path("cms_tt").read_text())
    raw["name"] = name
    raw["datasets"]["cms_tt"]["files"] = files
    raw["nanoaod"] = nanoaod
    raw["selection"].update(selection or {})
    if features is not None:
        raw["features"]["event"] = features
    if raw["selection"].get("n_tight_leptons") == 0:  # the GNN's graph needs a lepton node
        raw["training"] = {**raw.get("training", {}), "models": ["dnn"]}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def expected_events(path: Path, config: Any) -> np.ndarray:
    """Event numbers that pass the selection, computed without the skim: uproot + awkward.

    Tight muons and electrons as the config defines them; jets with pt, |eta|, the tight jet ID
    (read, or for v15 the JME Run 3 criteria of |eta| <= 2.6, written out here once more), and
    dR >= lepton_clean_dr to every tight lepton; exactly n tight leptons, >= n jets, >= n b tags
    above the selection's working point, and a tt category that one of the processes claims.
    """
    events = uproot.open(path)["Events"].arrays()
    objects, selection, nanoaod = config.objects, config.selection, config.nanoaod
    mu, el = objects.muons, objects.electrons
    tight_mu = ((events.Muon_pt > mu.pt_min) & (abs(events.Muon_eta) < mu.abs_eta_max)
                & (events.Muon_pfRelIso04_all < mu.iso_max) & events.Muon_tightId)
    tight_el = ((events.Electron_pt > el.pt_min) & (abs(events.Electron_eta) < el.abs_eta_max)
                & (events.Electron_cutBased >= el.id_min)
                & (events.Electron_pfRelIso03_all < el.iso_max))
    lep_eta = ak.concatenate([events.Muon_eta[tight_mu], events.Electron_eta[tight_el]], axis=1)
    lep_phi = ak.concatenate([events.Muon_phi[tight_mu], events.Electron_phi[tight_el]], axis=1)
    n_leptons = ak.num(lep_eta)
    if nanoaod.version == "v15":
        jet_id_ok = ((abs(events.Jet_eta) <= 2.6) & (events.Jet_neHEF < 0.99)
                     & (events.Jet_neEmEF < 0.9) & (events.Jet_chHEF > 0.01)
                     & (events.Jet_chMultiplicity > 0)
                     & (events.Jet_chMultiplicity + events.Jet_neMultiplicity > 1))
    else:
        jet_id_ok = events.Jet_jetId >= 2
    pairs = ak.cartesian([events.Jet_eta, lep_eta], nested=True)
    phis = ak.cartesian([events.Jet_phi, lep_phi], nested=True)
    dphi = (phis["0"] - phis["1"] + np.pi) % (2 * np.pi) - np.pi
    dr2 = (pairs["0"] - pairs["1"]) ** 2 + dphi**2
    clean = ak.all(dr2 >= objects.jets.lepton_clean_dr**2, axis=2)
    good = ((events.Jet_pt > objects.jets.pt_min) & (abs(events.Jet_eta) < objects.jets.abs_eta_max)
            & jet_id_ok & clean)
    working_point = getattr(objects.jets, f"btag_{selection.btag_working_point}")
    n_btag = ak.sum(good & (events[nanoaod.btag] > working_point), axis=1)
    claimed = [c for name in config.datasets["cms_tt"].processes
               for c in config.processes[name].gen_ttbar_id]
    passing = ((n_leptons == selection.n_tight_leptons)
               & (ak.sum(good, axis=1) >= selection.n_jets_min)
               & (n_btag >= selection.n_btag_min)
               & np.isin(ak.to_numpy(events.genTtbarId) % 100, claimed))
    return np.sort(ak.to_numpy(events.event[passing]).astype(np.int64))
