"""Generated events in CMS NanoAOD naming, written with uproot.

Branches of the ``Events`` tree: ``run``, ``luminosityBlock``, ``event``, ``genWeight``,
``PSWeight`` (4), ``genTtbarId``, ``detectorReplica``, ``Jet_*`` (pt, eta, phi, mass, btagDeepFlavB, hadronFlavour,
jetId, genJetIdx), ``GenJet_*`` (pt, eta, phi, mass, hadronFlavour), ``Muon_*`` (pt, eta, phi,
mass, charge, pdgId, tightId, pfRelIso04_all), ``Electron_*`` (pt, eta, phi, mass, charge,
pdgId, cutBased, pfRelIso03_all), ``MET_pt``, ``MET_phi``. The ``Runs`` tree carries
``genEventCount``, ``genEventSumw`` and the generator-filter counts ``genFilterTried`` and
``genFilterPassed``, as NanoAOD does for its sums of weights.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import types
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

import awkward as ak
import numpy as np

from analysis.config import Detector, JetDefinition
from analysis.errors import InputDataError
from analysis.events import detector as response
from analysis.events import truth
from analysis.events.pythia import HadronLevelEvents
from analysis.io import atomic_path

__all__ = ["COLLECTIONS", "ROOT_TIMESTAMP", "build_nanoaod", "read_nanoaod", "write_nanoaod"]

MUON_MASS = 0.10566  # GeV
ELECTRON_MASS = 0.000511  # GeV
LEPTON_PT_MIN = 10.0  # GeV, reconstruction threshold
LEPTON_ABS_ETA_MAX = 2.5
RECO_JET_ABS_ETA_MAX = 4.7
MUON_SCALE_RESOLUTION = 0.01
ELECTRON_SCALE_RESOLUTION = 0.02
ELECTRON_ID_TIGHT, ELECTRON_ID_VETO = 4, 1  # NanoAOD cutBased levels
COLLECTIONS = ("Jet", "GenJet", "Muon", "Electron")
ROOT_TIMESTAMP = datetime.datetime(1995, 1, 1)
"""The creation and modification time written into every generated ROOT file (TDatime's origin,
which nobody takes for a real time): a chunk's bytes depend only on its events."""
# the uproot modules that stamp keys, directories and baskets with datetime.datetime.now()
_UPROOT_CLOCK_MODULES = ("uproot.writing._cascade", "uproot.writing._cascadetree",
                         "uproot.writing._cascadentuple", "uproot.writing.writable")


def _flavour(n_b: ak.Array, n_c: ak.Array) -> ak.Array:
    return ak.where(n_b > 0, 5, ak.where(n_c > 0, 4, 0))


def build_nanoaod(events: HadronLevelEvents, detector: Detector, jet_wp: JetDefinition,
                  rng: np.random.Generator | Sequence[np.random.Generator], first_event: int,
                  lumi_block: int) -> dict[str, object]:
    """Apply the detector response and assemble NanoAOD branches for one chunk.

    With several random generators, every hadronised event gets one independent detector
    realisation per generator (jet smearing, b-tag discriminants, lepton efficiency, smearing
    and MET noise): ``K = len(rng)`` rows with the same ``event`` number (so they always fall in
    the same fold), ``detectorReplica`` = 0..K-1 and ``genWeight = 1/K`` (so normalisations
    are unchanged), stored event by event. Clustering, truth and isolation are computed once.

    Args:
        events: hadron-level events from ``generate_hadron_level``.
        detector: parametric response (resolutions, efficiencies).
        jet_wp: b-tag working points that define the discriminant's efficiency steps.
        rng: random generator of this chunk, or one per detector replica (independent streams).
        first_event: event number of the first event (event numbers are unique per dataset).
        lumi_block: luminosity-block number of this chunk.

    Returns:
        ``{branch or collection name: array}`` with ``n_events * K`` rows, ready for
        ``write_nanoaod``.
    """
    rngs = [rng] if isinstance(rng, np.random.Generator) else list(rng)
    if not rngs:
        raise InputDataError("build_nanoaod: needs at least one random generator (replica)")
    n_events = len(events.particles)
    gen_jets = response.cluster_generator_jets(events.particles)
    gen_flavour = _flavour(gen_jets.n_b_extra + gen_jets.n_b_top + gen_jets.n_b_other,
                           gen_jets.n_c_extra + gen_jets.n_c_other)
    ttbar_id = np.array([
        truth.gen_ttbar_id(*(ak.to_numpy(gen_jets[field][i]) for field in
                             ("pt", "eta", "n_b_extra", "n_b_top", "n_c_extra")))
        for i in range(n_events)], dtype=np.int32)
    visible = _visible_sums(events)
    isolation = _isolations(events)
    shared = {
        "run": np.ones(n_events, np.uint32),
        "luminosityBlock": np.full(n_events, lumi_block, np.uint32),
        "event": np.arange(first_event, first_event + n_events, dtype=np.uint64),
        "genWeight": np.full(n_events, 1.0 / len(rngs), np.float32),
        # jagged with its counter nPSWeight, as in NanoAOD
        "PSWeight": ak.unflatten(np.asarray(events.ps_weights, np.float32).reshape(-1),
                                 np.full(n_events, 4)),
        "genTtbarId": ttbar_id,
        "GenJet": ak.zip({"pt": _typed(gen_jets.pt), "eta": _typed(gen_jets.eta),
                          "phi": _typed(gen_jets.phi), "mass": _typed(gen_jets.mass),
                          "hadronFlavour": ak.values_astype(gen_flavour, np.int32)}),
    }
    replicas = [_detector_response(events, gen_jets, gen_flavour, visible, isolation, detector,
                                   jet_wp, replica_rng) for replica_rng in rngs]
    if len(rngs) == 1:
        return {**shared, "detectorReplica": np.zeros(n_events, np.uint8), **replicas[0]}
    # event-major order: the K replicas of an event are adjacent rows
    order = np.arange(n_events * len(rngs)).reshape(len(rngs), n_events).T.reshape(-1)
    out: dict[str, object] = {}
    for name, values in shared.items():
        out[name] = values[np.repeat(np.arange(n_events), len(rngs))]  # type: ignore[index]
    out["detectorReplica"] = np.tile(np.arange(len(rngs), dtype=np.uint8), n_events)
    for name in replicas[0]:
        parts = [r[name] for r in replicas]
        joined = (ak.concatenate(parts) if isinstance(parts[0], ak.Array)
                  else np.concatenate(parts))  # type: ignore[arg-type]
        out[name] = joined[order]
    return out


def _detector_response(events: HadronLevelEvents, gen_jets: ak.Array, gen_flavour: ak.Array,
                       visible: tuple[np.ndarray, np.ndarray], isolation: list[list[float]],
                       detector: Detector, jet_wp: JetDefinition,
                       rng: np.random.Generator) -> dict[str, object]:
    """One detector realisation: reconstructed jets, leptons and MET (every random draw)."""
    counts = ak.num(gen_jets)
    flat = ak.flatten(gen_jets)
    pt_reco = response.smear_jet_pt(ak.to_numpy(flat.pt), detector, rng)
    flavour = ak.to_numpy(ak.flatten(gen_flavour))
    btag = response.draw_btag_discriminant(flavour, np.abs(ak.to_numpy(flat.eta)), detector,
                                           jet_wp, rng)
    reco = ak.unflatten(ak.zip({
        "pt": pt_reco, "eta": flat.eta, "phi": flat.phi,
        "mass": flat.mass * pt_reco / ak.to_numpy(flat.pt),
        "btagDeepFlavB": btag, "hadronFlavour": flavour,
        "jetId": np.full(len(pt_reco), 6, np.int32),  # tight + tight-lepton-veto
        "genJetIdx": ak.to_numpy(ak.flatten(ak.local_index(gen_jets.pt, axis=-1))),
        "pt_gen": flat.pt,
    }), counts)
    reco = reco[(reco.pt > response.RECO_JET_PT_MIN) & (np.abs(reco.eta) < RECO_JET_ABS_ETA_MAX)]
    reco = reco[ak.argsort(reco.pt, axis=-1, ascending=False)]

    muons, electrons, met_pt, met_phi = _leptons_and_met(events, reco, visible, isolation,
                                                         detector, rng)
    jet_fields = ["pt", "eta", "phi", "mass", "btagDeepFlavB", "hadronFlavour", "jetId", "genJetIdx"]
    return {
        "Jet": ak.zip({f: _typed(reco[f]) for f in jet_fields}),
        "Muon": muons,
        "Electron": electrons,
        "MET_pt": met_pt.astype(np.float32),
        "MET_phi": met_phi.astype(np.float32),
    }


def _typed(array: ak.Array) -> ak.Array:
    """NanoAOD stores floats as float32 and indices as int32."""
    kind = ak.to_numpy(ak.flatten(array)).dtype.kind
    return ak.values_astype(array, np.float32 if kind == "f" else np.int32)


def _visible_sums(events: HadronLevelEvents) -> tuple[np.ndarray, np.ndarray]:
    """Per event: minus the visible transverse momentum sum (|eta| < 4.7), ``(n, 2)`` GeV, and
    the scalar sum of E_T, ``(n,)`` GeV; the MET before the detector's random parts."""
    met = np.zeros((len(events.particles), 2))
    sum_et = np.zeros(len(events.particles))
    for i, (particles, leptons) in enumerate(zip(events.particles, events.leptons)):
        real = particles[particles[:, 4] == truth.PARTICLE]
        # non-prompt leptons are among the particles already; prompt ones were taken out
        visible = np.vstack([real[:, :4], leptons[leptons[:, 5] == 1, :4]])
        pt = np.hypot(visible[:, 0], visible[:, 1])
        central = np.abs(np.arcsinh(visible[:, 2] / np.maximum(pt, 1e-9))) < RECO_JET_ABS_ETA_MAX
        met[i] = -visible[central, :2].sum(axis=0)
        sum_et[i] = pt[central].sum()
    return met, sum_et


def _isolations(events: HadronLevelEvents) -> list[list[float]]:
    """Relative isolation of every lepton in the reconstruction acceptance (NaN outside)."""
    out: list[list[float]] = []
    for particles, leptons in zip(events.particles, events.leptons):
        out.append([])
        for lepton in leptons:
            pt_gen = float(np.hypot(lepton[0], lepton[1]))
            if pt_gen < LEPTON_PT_MIN or abs(float(np.arcsinh(lepton[2] / pt_gen))) > LEPTON_ABS_ETA_MAX:
                out[-1].append(float("nan"))
                continue
            cone = 0.4 if abs(lepton[4]) == 13 else 0.3
            out[-1].append(response.lepton_isolation(lepton[:4], particles, cone))
    return out


def _leptons_and_met(events: HadronLevelEvents, jets: ak.Array,
                     visible: tuple[np.ndarray, np.ndarray], isolation: list[list[float]],
                     detector: Detector,
                     rng: np.random.Generator) -> tuple[ak.Array, ak.Array, np.ndarray, np.ndarray]:
    muons: list[list[tuple[float, ...]]] = []
    electrons: list[list[tuple[float, ...]]] = []
    visible_met, sum_et = visible
    jet_shift = np.stack([
        ak.to_numpy(ak.sum((jets.pt - jets.pt_gen) * np.cos(jets.phi), axis=-1)),
        ak.to_numpy(ak.sum((jets.pt - jets.pt_gen) * np.sin(jets.phi), axis=-1))], axis=1)
    met = visible_met - jet_shift
    for i, leptons in enumerate(events.leptons):
        muons.append([])
        electrons.append([])
        for lepton, iso in zip(leptons, isolation[i]):
            record = _reconstruct_lepton(lepton, iso, detector, rng)
            if record is None:
                continue
            (muons if abs(lepton[4]) == 13 else electrons)[-1].append(record[:-2])
            met[i] -= record[-2:]  # lepton smearing moves the MET the other way
    noise = detector.met_resolution * np.sqrt(sum_et)[:, None] * rng.standard_normal(met.shape)
    met += noise
    mu_fields = ("pt", "eta", "phi", "mass", "charge", "pdgId", "tightId", "pfRelIso04_all")
    el_fields = ("pt", "eta", "phi", "mass", "charge", "pdgId", "cutBased", "pfRelIso03_all")
    return (_collection(muons, mu_fields), _collection(electrons, el_fields),
            np.hypot(met[:, 0], met[:, 1]), np.arctan2(met[:, 1], met[:, 0]))


def _reconstruct_lepton(lepton: np.ndarray, iso: float, detector: Detector,
                        rng: np.random.Generator) -> tuple[float, ...] | None:
    pt_gen = float(np.hypot(lepton[0], lepton[1]))
    eta = float(np.arcsinh(lepton[2] / pt_gen))
    if pt_gen < LEPTON_PT_MIN or abs(eta) > LEPTON_ABS_ETA_MAX:
        return None
    phi = float(np.arctan2(lepton[1], lepton[0]))
    pdg_id = int(lepton[4])
    charge = -1 if pdg_id > 0 else 1
    is_muon = abs(pdg_id) == 13
    scale = MUON_SCALE_RESOLUTION if is_muon else ELECTRON_SCALE_RESOLUTION
    pt = pt_gen * (1.0 + scale * rng.standard_normal())
    identified = rng.random() < (detector.muon_efficiency if is_muon else detector.electron_efficiency)
    shift = ((pt - pt_gen) * np.cos(phi), (pt - pt_gen) * np.sin(phi))
    if is_muon:
        return (pt, eta, phi, MUON_MASS, charge, pdg_id, identified, iso, *shift)
    level = ELECTRON_ID_TIGHT if identified else ELECTRON_ID_VETO
    return (pt, eta, phi, ELECTRON_MASS, charge, pdg_id, level, iso, *shift)


def _collection(rows: list[list[tuple[float, ...]]], fields: tuple[str, ...]) -> ak.Array:
    counts = np.array([len(r) for r in rows])
    flat = [value for event in rows for value in event]
    columns = np.array(flat, dtype=np.float64).reshape(-1, len(fields))
    dtypes = {"charge": np.int32, "pdgId": np.int32, "cutBased": np.int32, "tightId": np.bool_}
    return ak.unflatten(ak.zip({f: columns[:, k].astype(dtypes.get(f, np.float32))
                                for k, f in enumerate(fields)}), counts)


def write_nanoaod(path: str | os.PathLike[str], branches: dict[str, object],
                  runs: dict[str, float | int]) -> None:
    """Write an ``Events`` and a ``Runs`` tree atomically (temporary file, then rename).

    The ROOT file's UUID is derived from the event content, its name inside is its final name
    and its time stamps are :data:`ROOT_TIMESTAMP`, so the same events give the same bytes
    wherever and whenever they are written (a chunk on a batch node, the same chunk locally).

    Args:
        path: destination ``.root`` file.
        branches: output of ``build_nanoaod``.
        runs: ``genEventCount``, ``genEventSumw``, ``genFilterTried``, ``genFilterPassed``, ...
    """
    import uproot

    path = Path(path)
    digest = uuid.uuid5(uuid.NAMESPACE_URL, f"{path.name}:{runs}")
    # the file records its own name: written under its final name in a temporary folder
    with atomic_path(path, keep_name=True) as tmp, _fixed_root_clock(), \
            uproot.recreate(tmp, uuid_function=lambda: digest) as file:
        file.mktree("Events", branches, counter_name=lambda name: f"n{name}",
                    field_name=lambda outer, inner: f"{outer}_{inner}" if outer else inner)
        file["Runs"] = {key: np.array([value]) for key, value in {"run": 1, **runs}.items()}


@contextlib.contextmanager
def _fixed_root_clock() -> Iterator[None]:
    """uproot stamps what it writes with ``datetime.datetime.now()`` and takes no time argument:
    for the duration of one write, its writing modules see a clock stopped at
    :data:`ROOT_TIMESTAMP` (restored afterwards; the write runs in one thread)."""
    import importlib

    stopped = types.SimpleNamespace(datetime=types.SimpleNamespace(now=lambda: ROOT_TIMESTAMP))
    modules = [importlib.import_module(name) for name in _UPROOT_CLOCK_MODULES]
    originals = [module.datetime for module in modules]
    try:
        for module in modules:
            module.datetime = stopped
        yield
    finally:
        for module, original in zip(modules, originals):
            module.datetime = original


def read_nanoaod(path: str | os.PathLike[str]) -> tuple[dict[str, object], dict[str, np.ndarray]]:
    """Read a file written by ``write_nanoaod`` back into its branches and ``Runs`` summary.

    The inverse of ``write_nanoaod``: collections (``Jet``, ...) come back as zipped records
    and counters (``nJet``, ``nPSWeight``) are dropped, so the result can be written again.

    Args:
        path: a NanoAOD file with ``Events`` and ``Runs`` trees.

    Returns:
        ``(branches, runs)``: as ``build_nanoaod`` returns, and ``{name: (1,) array}``.
    """
    import uproot

    with uproot.open(path) as file:
        data = file["Events"].arrays()
        runs = file["Runs"].arrays(library="np")
    branches: dict[str, object] = {
        name: ak.zip({f[len(name) + 1:]: data[f] for f in data.fields if f.startswith(f"{name}_")})
        for name in COLLECTIONS}
    counters = {f"n{name}" for name in (*COLLECTIONS, "PSWeight")}
    for field in data.fields:
        if field not in counters and not field.startswith(tuple(f"{c}_" for c in COLLECTIONS)):
            branches[field] = data[field]
    return branches, {key: value for key, value in runs.items() if key != "run"}
