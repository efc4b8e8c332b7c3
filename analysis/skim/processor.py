"""The coffea skim: a stateless processor over NanoAOD, run with coffea's executors.

Per dataset and shift (``nominal``, ``jes_up/down``, ``jer_up/down``) it returns one table of
selected events with the truth label, the event weights and their variations, and the event-
and object-level features, plus a cutflow. Weights are
``genWeight * sigma * L * filter efficiency / sum(genWeight)``, the sum running over all events
of the dataset before any selection; variations (``weight_btag_up`` ...) are full weights.
"""

from __future__ import annotations

import functools
import itertools
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import awkward as ak
import numpy as np
from coffea import processor
from coffea.nanoevents import BaseSchema

from analysis.config import (
    BTAG_SYSTEMATIC,
    JER_SYSTEMATIC,
    OBJECT_SHIFTS,
    PARTON_SHOWER_SYSTEMATICS,
    WEIGHT_SYSTEMATICS,
    AnalysisConfig,
)
from analysis.errors import EmptySelectionError, InputDataError
from analysis.skim import objects as obj
from analysis.skim.features import event_features, lepton_columns, object_features
from analysis.skim.inputs import (
    ELECTRON_FIELDS,
    MUON_FIELDS,
    InputBranches,
    check_nanoaod_files,
    filter_efficiency,
    input_branches,
)
from analysis.skim.jetid import JET_ID_INPUTS, recomputed_jet_id
from analysis.skim.jets import PaddedJets, pad, pad_jets

__all__ = ["LEPTON_FIELDS", "SkimResult", "SkimProcessor", "run_skim"]

log = logging.getLogger(__name__)
PB_PER_INVERSE_FB = 1000.0
_DIRECTIONS = ("up", "down")
WEIGHT_VARIATIONS = tuple(f"{name}_{direction}" for name in WEIGHT_SYSTEMATICS
                          for direction in _DIRECTIONS)
# CMS's PSWeight order: ISR up, FSR up, ISR down, FSR down (PARTON_SHOWER_SYSTEMATICS is
# (isr, fsr), so the product below gives these indices 0..3)
_PS_INDEX = {f"{name}_{direction}": index for index, (direction, name)
             in enumerate(itertools.product(_DIRECTIONS, PARTON_SHOWER_SYSTEMATICS))}
LEPTON_FIELDS = ("pt", "eta", "phi", "mass", "charge")  # of a tight muon or electron


@dataclass(frozen=True)
class SkimResult:
    """Tables per shift, each sorted by (luminosityBlock, event), and the cutflows."""

    tables: dict[str, ak.Array]
    cutflow: dict[str, dict[str, float]]
    sum_gen_weight: float
    n_events: int


class SkimProcessor(processor.ProcessorABC):
    """Selection, features and systematic variations of one dataset (stateless).

    Reads the ``Events`` branches with coffea's ``BaseSchema``, each only through
    ``inputs.read``: the branches it reads are exactly those the input check requires.

    Args:
        config: the analysis; only objects, selection, features, systematics, detector,
            luminosity, nanoaod and processes are read.
        processes: the dataset's processes; several are told apart by ``genTtbarId % 100``.
        efficiency: generator-filter efficiency of the dataset (1 without a filter).
        inputs: the branches to read (``input_branches`` of ``config.nanoaod``).
    """

    def __init__(self, config: AnalysisConfig, processes: Sequence[str], efficiency: float,
                 inputs: InputBranches) -> None:
        self.config = config
        self.processes = tuple(processes)
        self.efficiency = efficiency
        self.inputs = inputs

    def process(self, events: ak.Array) -> dict:
        """Skim one chunk; returns raw (un-normalised) tables and cutflow counts."""
        cfg = self.config
        read: Callable[[str], ak.Array] = functools.partial(self.inputs.read, events)
        label, xsec = self._truth(read)
        gen_weight = ak.to_numpy(read("genWeight")).astype(np.float64)
        base_weight = (gen_weight * xsec * self.efficiency * cfg.luminosity.value
                       * PB_PER_INVERSE_FB)
        ps = pad(read("PSWeight"), 4)
        ps = np.where(ak.to_numpy(ak.num(read("PSWeight")))[:, None] == 4, ps, 1.0)
        muons = obj.tight_muons(_collection(read, "Muon", MUON_FIELDS), cfg.objects.muons)
        electrons = obj.tight_electrons(_collection(read, "Electron", ELECTRON_FIELDS),
                                        cfg.objects.electrons)
        n_leptons = ak.to_numpy(ak.num(muons) + ak.num(electrons))
        fields = list(LEPTON_FIELDS)
        leptons = ak.concatenate([muons[fields], electrons[fields]], axis=-1)
        leptons = leptons[ak.argsort(leptons.pt, axis=-1, ascending=False)]
        all_events = {"all": float(len(gen_weight)), "all_weighted": float(base_weight.sum())}
        # the lepton requirement does not depend on the jet shifts: only its candidates go on,
        # each with exactly n_tight_leptons leptons: rectangular (n_events, n_tight_leptons)
        candidate = n_leptons == cfg.selection.n_tight_leptons
        lepton = {f: pad(leptons[f][candidate], cfg.selection.n_tight_leptons) for f in fields}
        all_jets = pad_jets(self._jets(read)[candidate],
                            _collection(read, "GenJet", ("pt", "eta", "phi"))[candidate])
        met = tuple(ak.to_numpy(read(f"{cfg.nanoaod.met}_{f}")[candidate]).astype(np.float64)
                    for f in ("pt", "phi"))
        ids = {name: ak.to_numpy(read(name)[candidate]).astype(np.int64)
               for name in ("luminosityBlock", "event")}
        label, base_weight, ps, n_leptons = (a[candidate] for a in (label, base_weight, ps,
                                                                    n_leptons))
        result = {"sumw": float(ak.sum(read("genWeight"))), "n_events": len(gen_weight),
                  "shifts": {}}
        for shift in OBJECT_SHIFTS:
            jets, met_pt, met_phi = obj.shifted_jets_and_met(all_jets, *met, shift, cfg.systematics)
            jets = obj.good_jets(jets, lepton["eta"], lepton["phi"], cfg.objects.jets,
                                 resort=shift.startswith(JER_SYSTEMATIC))
            mask, steps = obj.select_events(n_leptons, jets, cfg.objects, cfg.selection)
            mask &= label >= 0
            cutflow = dict(all_events)
            for step, step_mask in steps.items():
                cutflow[step] = float(step_mask.sum())
                cutflow[f"{step}_weighted"] = float(base_weight[step_mask].sum())
            table = self._table({k: v[mask] for k, v in ids.items()}, jets.rows(mask),
                                {k: v[mask] for k, v in lepton.items()}, met_pt[mask],
                                met_phi[mask], label[mask], base_weight[mask], ps[mask])
            result["shifts"][shift] = {"tables": [table], "cutflow": cutflow}
        return result

    def _jets(self, read: Callable[[str], ak.Array]) -> ak.Array:
        """Jets with pt, eta, phi, mass, btag (the config's discriminant), hadronFlavour,
        jetId (read, or recomputed where the NanoAOD version dropped it) and genJetIdx."""
        nanoaod = self.config.nanoaod
        if nanoaod.profile.jet_id == "file":
            jet_id = read("Jet_jetId")
        else:
            jet_id = recomputed_jet_id(read("Jet_eta"),
                                       **{name: read(f"Jet_{name}") for name in JET_ID_INPUTS})
        return ak.zip({**{f: read(f"Jet_{f}") for f in ("pt", "eta", "phi", "mass")},
                       "btag": read(nanoaod.btag), "hadronFlavour": read("Jet_hadronFlavour"),
                       "jetId": jet_id, "genJetIdx": read("Jet_genJetIdx")})

    def _truth(self, read: Callable[[str], ak.Array]) -> tuple[np.ndarray, np.ndarray]:
        n_events = len(read("genWeight"))
        label = np.full(n_events, -1, dtype=np.int64)
        xsec = np.zeros(n_events)
        if len(self.processes) == 1:
            label[:] = self.config.label_of(self.processes[0])
            xsec[:] = self.config.processes[self.processes[0]].cross_section.value
            return label, xsec
        category = ak.to_numpy(read("genTtbarId")) % 100
        for name in self.processes:
            spec = self.config.processes[name]
            match = np.isin(category, spec.gen_ttbar_id)
            label[match] = self.config.label_of(name)
            xsec[match] = spec.cross_section.value
        return label, xsec

    def _table(self, ids: dict[str, np.ndarray], jets: PaddedJets, lepton: dict[str, np.ndarray],
               met_pt: np.ndarray, met_phi: np.ndarray, label: np.ndarray, weight: np.ndarray,
               ps: np.ndarray) -> dict[str, np.ndarray]:
        cfg = self.config
        columns: dict[str, np.ndarray] = {**ids, "label": label, "weight": weight}
        for variation, index in _PS_INDEX.items():
            columns[f"weight_{variation}"] = weight * ps[:, index]
        for direction, sign in zip(_DIRECTIONS, (1, -1)):
            columns[f"weight_{BTAG_SYSTEMATIC}_{direction}"] = weight * (
                obj.btag_scale_factor_weight(jets, cfg.objects, cfg.detector, cfg.systematics,
                                             sign))
        features = event_features(jets, lepton, met_pt, met_phi, cfg.objects.jets.btag_medium)
        columns.update({name: features[name] for name in cfg.features.event})
        # the selected leptons are graph nodes whatever the event features: always stored
        columns.update(lepton_columns(lepton))
        columns["met_phi"] = features["met_phi"]
        columns.update(object_features(jets, cfg.features.n_jets_max))
        return columns  # numpy columns: cheap to merge across chunks

    def postprocess(self, accumulator: dict) -> dict:
        """Nothing to do: normalisation needs the whole dataset (``run_skim``)."""
        return accumulator


def _collection(read: Callable[[str], ak.Array], name: str, fields: Sequence[str]) -> ak.Array:
    """``events x objects`` records of the branches ``<name>_<field>``."""
    return ak.zip({field: read(f"{name}_{field}") for field in fields})


def _check_finite(columns: dict[str, np.ndarray], files: Sequence[str], shift: str) -> None:
    """NaN or infinite features (e.g. from a corrupt branch) stop the skim, naming the column."""
    for column, values in columns.items():
        if values.dtype.kind == "f" and not np.all(np.isfinite(values)):
            raise InputDataError(f"{', '.join(files)}: column {column} ({shift}) has "
                                 f"{int(np.sum(~np.isfinite(values)))} non-finite values")


def run_skim(config: AnalysisConfig, dataset_name: str, files: Sequence[str], workers: int = 1,
             dask_client: object | None = None, chunksize: int = 100_000,
             complement_files: Sequence[str] = ()) -> SkimResult:
    """Skim all files of one dataset with coffea.

    Args:
        config: the analysis.
        dataset_name: key in ``config.datasets``.
        files: NanoAOD files of the dataset (each with an ``Events`` tree).
        workers: processes for coffea's futures executor (1: run in this process).
        dask_client: a ``distributed.Client``; when given, coffea's Dask executor runs the chunks.
        chunksize: events per chunk.
        complement_files: files of the dataset with the inverted generator filter, whose counts
            are pooled into the filter efficiency (``filter_efficiency``).

    Returns:
        Normalised tables per shift, cutflows, and the sum of generator weights.

    Raises:
        InputDataError: naming the file (and branch) for unreadable or incomplete input.
        EmptySelectionError: if no event of the dataset passes the nominal selection.
    """
    processes = config.datasets[dataset_name].processes
    inputs = input_branches(config.nanoaod, needs_ttbar_id=len(processes) > 1)
    check_nanoaod_files(files, inputs)
    efficiency = filter_efficiency(files, complement_files)
    if dask_client is not None:
        executor = processor.DaskExecutor(client=dask_client, status=False)
    elif workers > 1:
        executor = processor.FuturesExecutor(workers=workers, status=False)
    else:
        executor = processor.IterativeExecutor(status=False, compression=None)  # no pickling
    runner = processor.Runner(executor=executor, pre_executor=processor.IterativeExecutor(status=False),
                              schema=BaseSchema, chunksize=chunksize)
    start = time.perf_counter()
    try:
        output = runner({dataset_name: {"files": {f: "Events" for f in files}}},
                        SkimProcessor(config, processes, efficiency, inputs))
    except InputDataError:
        raise
    except Exception as err:  # coffea wraps reader errors; name the files for the user
        raise InputDataError(f"{', '.join(files)}: skim failed: {err}") from err
    tables, cutflow = {}, {}
    for shift, part in output["shifts"].items():
        columns = {name: np.concatenate([chunk[name] for chunk in part["tables"]])
                   for name in part["tables"][0]}
        order = np.lexsort((columns["event"], columns["luminosityBlock"]))  # executor-independent
        columns = {name: values[order] for name, values in columns.items()}
        for column in ("weight", *(f"weight_{v}" for v in WEIGHT_VARIATIONS)):
            columns[column] = columns[column] / output["sumw"]
        _check_finite(columns, files, shift)
        tables[shift] = ak.Array(columns)
        cutflow[shift] = {step: value / output["sumw"] if step.endswith("_weighted") else value
                          for step, value in part["cutflow"].items()}
    if len(tables["nominal"]) == 0:
        raise EmptySelectionError(f"{', '.join(files)}: no event of dataset {dataset_name} passes "
                                  f"the selection ({cutflow['nominal']})")
    log.info("%s: %d -> %d events in %.1f s", dataset_name, output["n_events"],
             len(tables["nominal"]), time.perf_counter() - start)
    return SkimResult(tables, cutflow, output["sumw"], output["n_events"])
