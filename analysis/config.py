"""Analysis configuration: YAML files in ``config/`` validated into frozen dataclasses.

Every key is checked: an unknown key, a wrong type, a value outside its range or a reference to
a process that does not exist raises :class:`ConfigError` with one message naming the file and
the key, e.g. ``config/tth_bb.yaml: processes.tth.cross_section.value = -1: must be >= 0 pb``.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from analysis.errors import ConfigError

__all__ = [
    "CONFIG_DIR",
    "FIT_SYSTEMATICS",
    "MAX_CHUNKS_PER_DATASET",
    "MODEL_KINDS",
    "OBJECT_SHIFTS",
    "SHIFT_SYSTEMATICS",
    "WEIGHT_SYSTEMATICS",
    "BTAG_SYSTEMATIC",
    "PARTON_SHOWER_SYSTEMATICS",
    "STRATEGIES",
    "CROSS_ENTROPY",
    "PENALTY",
    "INFERENCE",
    "SIGNIFICANCE",
    "YIELD_AWARE",
    "YIELD_BLIND",
    "REFERENCE_STRATEGY",
    "AnalysisConfig",
    "CrossSection",
    "Dataset",
    "Cut",
    "GeneratorSettings",
    "Categories",
    "InferenceSettings",
    "LearnedCutsSettings",
    "NANOAOD_PROFILES",
    "NanoAOD",
    "NanoAODProfile",
    "OutputClass",
    "Process",
    "Training",
    "load_config",
    "resolve_config_path",
]

CONFIG_DIR = Path(__file__).resolve().parent.parent / "config"


def _check(minimum: float | None = None, exclusive: bool = False, unit: str = "") -> dict[str, Any]:
    return {"minimum": minimum, "exclusive": exclusive, "unit": unit}


@dataclass(frozen=True)
class CrossSection:
    """Cross section times branching ratio of the generated final state."""

    value: float = field(metadata=_check(0.0, unit="pb"))
    source: str
    uncertainty: float = field(default=0.0, metadata=_check(0.0))  # relative, for the normsys


@dataclass(frozen=True)
class Process:
    """A physics process: one truth class of the analysis."""

    label: str
    color: str
    role: Literal["signal", "background"]
    cross_section: CrossSection
    # CMS genTtbarId % 100 categories that belong to this process; empty: all events of a dataset
    gen_ttbar_id: tuple[int, ...] = ()


@dataclass(frozen=True)
class OutputClass:
    """One output node of the multiclass network: a name and the processes trained to it.

    The name names the node's score column ``p_<name>`` (Evaluate), its category channel
    ``cat_<name>`` (:mod:`analysis.inference.model`) and its cross-section normsys
    ``xsec_<name>`` in the learned skim (:mod:`analysis.selection.cut_samples`).
    """

    name: str
    processes: tuple[str, ...]


@dataclass(frozen=True)
class GeneratorFilter:
    """Parton-level filter on b quarks not from top decays, before hadronisation."""

    min_extra_b: int = field(metadata=_check(1))
    pt_min: float = field(default=15.0, metadata=_check(0.0, unit="GeV"))
    abs_eta_max: float = field(default=2.6, metadata=_check(0.0, exclusive=True))
    invert: bool = False  # keep the events that fail: the complement sample


MAX_CHUNKS_PER_DATASET = 10_000
"""Chunks of one generated dataset at most: each chunk's seed is ``(seed % 90000) * 10000 +
chunk + 1`` (analysis.events.generate.chunk_seed), distinct per dataset below this count."""


@dataclass(frozen=True)
class GeneratorSettings:
    """Pythia 8 settings of one generated dataset."""

    process: Literal["tth_bb", "ttbar_ljets"]
    n_events: int = field(metadata=_check(1))
    chunk_size: int = field(metadata=_check(1))
    seed: int = field(metadata=_check(1))
    filter: GeneratorFilter | None = None
    pythia: tuple[str, ...] = ()  # extra Pythia settings, e.g. tunes
    # detector realisations per hadronised event (same event number, genWeight 1/replicas):
    # more simulated statistics in tight b-tag categories for the cost of the detector model
    replicas: int = field(default=1, metadata=_check(1))


@dataclass(frozen=True)
class Dataset:
    """Events of one or more processes: generated with Pythia, or NanoAOD files."""

    processes: tuple[str, ...]
    generator: GeneratorSettings | None = None
    files: tuple[str, ...] = ()


@dataclass(frozen=True)
class Luminosity:
    """Integrated luminosity and its relative uncertainty."""

    value: float = field(metadata=_check(0.0, exclusive=True, unit="fb-1"))
    uncertainty: float = field(default=0.0, metadata=_check(0.0))


@dataclass(frozen=True)
class JetDefinition:
    """Jet selection and b-tag working points (DeepJet-like discriminant)."""

    pt_min: float = field(metadata=_check(0.0, exclusive=True, unit="GeV"))
    abs_eta_max: float = field(metadata=_check(0.0, exclusive=True))
    btag_loose: float = field(metadata=_check(0.0))
    btag_medium: float = field(metadata=_check(0.0))
    btag_tight: float = field(metadata=_check(0.0))
    lepton_clean_dr: float = field(default=0.4, metadata=_check(0.0))


@dataclass(frozen=True)
class LeptonDefinition:
    """Tight lepton definition; ``id_min`` is the NanoAOD ID level (cutBased for electrons)."""

    pt_min: float = field(metadata=_check(0.0, exclusive=True, unit="GeV"))
    abs_eta_max: float = field(metadata=_check(0.0, exclusive=True))
    iso_max: float = field(metadata=_check(0.0, exclusive=True))
    id_min: int = field(default=1, metadata=_check(0))


@dataclass(frozen=True)
class Objects:
    """Object definitions of the skim."""

    jets: JetDefinition
    muons: LeptonDefinition
    electrons: LeptonDefinition


@dataclass(frozen=True)
class Selection:
    """Preselection: exactly ``n_tight_leptons`` (0 all-hadronic, 1, 2, ...), jets, b tags."""

    n_tight_leptons: int = field(metadata=_check(0))
    n_jets_min: int = field(metadata=_check(0))
    n_btag_min: int = field(metadata=_check(0))
    btag_working_point: Literal["loose", "medium", "tight"] = "loose"


@dataclass(frozen=True)
class NanoAODProfile:
    """What one NanoAOD version offers: where the jet ID comes from, MET and b-tag branches.

    ``jet_id``: ``"file"`` reads ``Jet_jetId``; ``"recompute"`` evaluates JME's criteria on the
    jet's energy fractions and multiplicities (``analysis.skim.jetid``), for versions that
    dropped ``Jet_jetId``.
    """

    version: str
    jet_id: Literal["file", "recompute"]
    met: tuple[str, ...]  # MET collections: <name>_pt, <name>_phi
    btag: tuple[str, ...]  # b-tag discriminant branches of the Jet collection
    description: str


NANOAOD_PROFILES = {
    "v9": NanoAODProfile("v9", "file", ("MET", "PuppiMET"),
                         ("Jet_btagDeepFlavB", "Jet_btagDeepB"), "Run 2 UL (2016-2018)"),
    "v12": NanoAODProfile("v12", "file", ("MET", "PuppiMET"),
                          ("Jet_btagDeepFlavB", "Jet_btagPNetB", "Jet_btagRobustParTAK4B"),
                          "Run 3 2022-2023"),
    "v15": NanoAODProfile("v15", "recompute", ("PFMET", "PuppiMET"),
                          ("Jet_btagDeepFlavB", "Jet_btagPNetB", "Jet_btagUParTAK4B"),
                          "Run 3 2024 and reprocessings: no Jet_jetId, no MET_*"),
}
"""The NanoAOD versions the skim reads (``nanoaod.version``); generated events are ``v12``."""


@dataclass(frozen=True)
class NanoAOD:
    """The NanoAOD layout of the input files: version, MET collection, b-tag discriminant.

    The working points of ``btag`` are ``objects.jets.btag_loose/medium/tight``.
    """

    version: Literal["v9", "v12", "v15"] = "v12"
    met: Literal["MET", "PFMET", "PuppiMET"] = "MET"
    btag: str = "Jet_btagDeepFlavB"

    @property
    def profile(self) -> NanoAODProfile:
        """Branch names and recipes of ``version``."""
        return NANOAOD_PROFILES[self.version]


@dataclass(frozen=True)
class Features:
    """Event-level features to keep, and the padding of the object-level arrays."""

    event: tuple[str, ...]
    n_jets_max: int = field(metadata=_check(1))


@dataclass(frozen=True)
class BTagEfficiency:
    """Tag efficiency at the loose, medium and tight working points for one flavour."""

    loose: float = field(metadata=_check(0.0))
    medium: float = field(metadata=_check(0.0))
    tight: float = field(metadata=_check(0.0))


@dataclass(frozen=True)
class Detector:
    """Parametric detector response of the generated events (see docs/generation.md)."""

    jet_resolution_noise: float = field(metadata=_check(0.0, unit="GeV"))
    jet_resolution_stochastic: float = field(metadata=_check(0.0, unit="sqrt(GeV)"))
    jet_resolution_constant: float = field(metadata=_check(0.0))
    btag_b: BTagEfficiency
    btag_c: BTagEfficiency
    btag_light: BTagEfficiency
    muon_efficiency: float = field(metadata=_check(0.0))
    electron_efficiency: float = field(metadata=_check(0.0))
    met_resolution: float = field(metadata=_check(0.0, unit="sqrt(GeV)"))


@dataclass(frozen=True)
class Systematics:
    """Sizes of the systematic variations (relative)."""

    jes: float = field(metadata=_check(0.0))  # jet energy scale, relative shift
    jer: float = field(metadata=_check(0.0))  # jet energy resolution scale factor offset
    btag_sf_heavy: float = field(metadata=_check(0.0))  # b/c-jet tag scale factor uncertainty
    btag_sf_light: float = field(metadata=_check(0.0))


ModelKind = Literal["dnn", "gnn"]
Strategy = Literal["ce", "penalty", "inference", "significance"]
YieldAwareStrategy = Literal["inference", "significance"]
MODEL_KINDS: tuple[str, ...] = typing.get_args(ModelKind)
"""The networks: an MLP on event features (dnn) and a graph network on the objects (gnn)."""
STRATEGIES: tuple[str, ...] = typing.get_args(Strategy)
"""Training losses: cross entropy, CE + systematic penalty, inference-aware sigma_mu, profiled
significance (the one source of these names: config, training and tasks read them here)."""
YIELD_AWARE: tuple[str, ...] = typing.get_args(YieldAwareStrategy)
"""The losses that see the yields: the only ones cuts may be learned with jointly
(``<strategy>+cuts``)."""
YIELD_BLIND: tuple[str, ...] = tuple(s for s in STRATEGIES if s not in YIELD_AWARE)
"""The losses that see only the classes (cross entropy, CE + penalty): no statistical model, so
no yields, no profile fits and no gradients through a likelihood."""
CROSS_ENTROPY: Strategy = "ce"
"""Weighted cross entropy, classes balanced: the loss that sees neither systematics nor yields."""
PENALTY: Strategy = "penalty"
"""Cross entropy plus a penalty on the score's shift under each systematic variation."""
INFERENCE: Strategy = "inference"
"""Inference-aware training: the expected sigma_mu of the profiled binned model."""
SIGNIFICANCE: Strategy = "significance"
"""The expected discovery significance of the profiled binned model."""
REFERENCE_STRATEGY: Strategy = CROSS_ENTROPY
"""Cross entropy: the warm-up stage of every strategy and the reference each strategy's
sigma_mu is compared with (report and plots)."""


@dataclass(frozen=True)
class Training:
    """Network training (TrainModel): models, strategies, folds, seeds and optimiser settings."""

    models: tuple[ModelKind, ...] = ("dnn", "gnn")
    strategies: tuple[Strategy, ...] = (CROSS_ENTROPY, PENALTY, INFERENCE)
    n_folds: int = field(default=2, metadata=_check(2))
    # networks per (fold, model, strategy), each with its own seed (network_seed in
    # analysis/training/network.py); seed index 0 gets the full downstream analysis, every seed
    # its fold workspaces, whose sigma_mu the paired comparison against CE uses
    seeds: int = field(default=1, metadata=_check(1))
    target_parameters: int = field(default=5000, metadata=_check(100))  # DNN and GNN alike
    ce_steps: int = field(default=200, metadata=_check(1))
    strategy_steps: int = field(default=100, metadata=_check(1))
    learning_rate: float = field(default=3e-3, metadata=_check(0.0, exclusive=True))  # CE stage
    # the systematic-aware stage starts from a trained network: smaller steps keep it stable
    strategy_learning_rate: float = field(default=1e-3, metadata=_check(0.0, exclusive=True))
    n_bins: int = field(default=8, metadata=_check(1))  # of the signal score in [0, 1]
    # soft-histogram kernel width in score units; omitted (null): 0.2 of the bin width 1/n_bins
    # (analysis.relax.histograms.resolve_bandwidth); at most one bin width
    bandwidth: float | None = field(default=None, metadata=_check(0.0, exclusive=True))
    penalty_weight: float = field(default=10.0, metadata=_check(0.0))
    # mini-batches of whole events: the optimiser's events split into this many slices by event
    # number, one slice per step in turn (a shifted skim's rows are the same events as the
    # nominal rows of their slice); 1: every step sees all of them
    event_slices: int = field(default=1, metadata=_check(1))
    seed: int = field(default=1, metadata=_check(0))
    # early stopping on the validation fold: evaluate every `validate_every` steps, stop after
    # `patience` evaluations without improvement, keep the best model
    validate_every: int = field(default=10, metadata=_check(1))
    patience: int = field(default=5, metadata=_check(1))
    # strategies also trained with the config's `cuts:` as learnable cuts in front of the DNN,
    # jointly with it (branch "<strategy>+cuts"); yield-aware losses only
    joint_cuts: tuple[YieldAwareStrategy, ...] = field(default=(), metadata={
        "why": "the cross entropy normalises each class, so cuts in front of it would learn to "
               "drop hard-to-classify events at no cost for the lost signal"})


@dataclass(frozen=True)
class Cut:
    """One learnable cut of the skim: ``feature > threshold`` or ``feature < threshold``."""

    feature: str
    direction: Literal[">", "<"]


@dataclass(frozen=True)
class LearnedCutsSettings:
    """LearnCuts: thresholds learned with soft cuts and an annealed slope (Watts, CHEP 2023)."""

    cuts: tuple[Cut, ...]
    # "sigma_mu": expected sigma_mu with every systematic of the binned `discriminant`;
    # "significance": Asimov significance of the selected yields with `background_uncertainty`
    objective: Literal["sigma_mu", "significance"] = "sigma_mu"
    discriminant: str = "mbb_closest"  # feature histogrammed by the sigma_mu objective
    n_bins: int = field(default=8, metadata=_check(1))  # of the discriminant
    background_uncertainty: float = field(default=0.1, metadata=_check(0.0))  # relative
    min_background: float = field(default=1.0, metadata=_check(0.0, exclusive=True))  # events
    initial_quantile: float = field(default=0.05, metadata=_check(0.0, exclusive=True))
    steps: int = field(default=200, metadata=_check(1))
    learning_rate: float = field(default=0.05, metadata=_check(0.0, exclusive=True))  # per scale
    slope_start: float = field(default=2.0, metadata=_check(0.0, exclusive=True))
    slope_end: float = field(default=50.0, metadata=_check(0.0, exclusive=True))
    n_tradeoff_points: int = field(default=13, metadata=_check(2))  # of ReduceEvents' table
    # the skim keeps at least this fraction of the expected signal: below it the objective is
    # multiplied by exp(min_signal_penalty * shortfall / min_signal_efficiency). Without it a
    # sigma_mu without MC statistics is minimised by a corner of phase space that holds a few
    # simulated signal events and no simulated background (docs/analysis.md); 0: no floor
    min_signal_efficiency: float = field(default=0.0, metadata=_check(0.0))
    min_signal_penalty: float = field(default=20.0, metadata=_check(0.0))
    # the sigma_mu objective includes the simulated samples' statistical uncertainty (a
    # staterror per bin, detector replicas of one event correlated), as the fit does: a cut
    # into a corner that few simulated events populate then costs what it costs in the fit
    mc_stat: bool = False


JES_SYSTEMATIC = "jes"
"""The jet energy scale variation (every jet's pT scaled up/down)."""
JER_SYSTEMATIC = "jer"
"""The jet energy resolution variation (the reconstructed-minus-generated pT widened/narrowed)."""
SHIFT_SYSTEMATICS: tuple[str, ...] = (JES_SYSTEMATIC, JER_SYSTEMATIC)
"""Systematics that shift objects: the skim re-selects the events (tables ``<name>_up/down``)."""
BTAG_SYSTEMATIC = "btag"
"""The b-tag scale-factor variation (columns ``weight_btag_up/down``)."""
PARTON_SHOWER_SYSTEMATICS: tuple[str, ...] = ("isr", "fsr")
"""The parton-shower scale variations, read from NanoAOD's ``PSWeight``."""
WEIGHT_SYSTEMATICS: tuple[str, ...] = (BTAG_SYSTEMATIC, *PARTON_SHOWER_SYSTEMATICS)
"""Systematics that reweight the nominal events (columns ``weight_<name>_up/down``)."""
FIT_SYSTEMATICS: tuple[str, ...] = (*SHIFT_SYSTEMATICS, *WEIGHT_SYSTEMATICS)
"""The skim's up/down variations that training and the fit can use (``inference.systematics``);
the one source of these names."""
OBJECT_SHIFTS: tuple[str, ...] = ("nominal", *(f"{name}_{direction}" for name in SHIFT_SYSTEMATICS
                                               for direction in ("up", "down")))
"""The skim's tables per dataset: the nominal selection and each object shift."""


@dataclass(frozen=True)
class Categories:
    """Event categories of the statistical model: one channel per category.

    Every event goes to the category of the multiclass network's largest output (one category
    per output node); with ``btag_split`` each is split further by the number of medium b-tagged
    jets (feature ``n_btag``) at these thresholds: ``[3, 4]`` gives ``<3``, ``3`` and ``>=4``
    (channels ``cat_<node>_lt3b``, ``cat_<node>_3b``, ``cat_<node>_ge4b``). Each channel is the
    histogram of its own node's output in ``[1 / n_nodes, 1]``.
    """

    btag_split: tuple[int, ...] = ()  # increasing thresholds on n_btag; empty: no split
    # training sees soft categories, softmax(logits / temperature) (INFERNO, arXiv:1806.04743)
    temperature: float = field(default=1.0, metadata=_check(0.0, exclusive=True))
    # a category without events (no event's largest output is its node): False stops
    # BuildWorkspace naming the channel; True drops the channel and records it in binning.json
    # (tiny samples; a free normalisation still needs events of its process in some channel)
    drop_empty: bool = False


@dataclass(frozen=True)
class InferenceSettings:
    """CreateHistograms, BuildWorkspace and Fit: binning of the NN score and the fits."""

    n_bins: int = field(default=10, metadata=_check(1))  # of the signal score in [0, 1]
    pseudo_data_seed: int = field(default=7, metadata=_check(0))
    scan_points: int = field(default=21, metadata=_check(3))  # profile-likelihood scan in mu
    scan_max: float = field(default=3.0, metadata=_check(0.0, exclusive=True))
    limit_max: float = field(default=10.0, metadata=_check(0.0, exclusive=True))  # of mu
    # upper end of mu in the fits; the lower end is set by the bins' positivity (poi_bounds)
    poi_max: float = field(default=50.0, metadata=_check(1.0, exclusive=True))
    # the Fit task's engine: "torch" (the torch fitter) or "pyhf" (pyhf + MINUIT, the reference)
    fit_engine: str = "torch"
    # merge score bins until the background's relative MC stat. uncertainty is below this
    max_background_mc_stat: float | None = field(default=None,
                                                  metadata=_check(0.0, exclusive=True))
    # drop a histosys whose shape change is below this many MC-stat variances per bin
    prune_shape_chi2: float | None = field(default=None, metadata=_check(0.0, exclusive=True))
    # the skim's variations in the fit (histosys + normsys each); leave one out to drop it
    systematics: tuple[str, ...] = FIT_SYSTEMATICS
    # channels: None is one channel of the ttH score of all events (nn_score)
    categories: Categories | None = None
    # background processes whose normalisation floats freely (normfactor norm_<process>, as
    # CMS's rateParam) instead of its cross-section normsys; each needs a category of its own
    free_normalisations: tuple[str, ...] = ()
    # background processes whose shape floats freely: a shapefactor shape_<process> (pyhf; one
    # free factor per score bin, shared by every channel, so the categories constrain it)
    # instead of its cross-section normsys; needs categories with one bin count
    free_shapes: tuple[str, ...] = ()


@dataclass(frozen=True)
class AnalysisConfig:
    """One analysis: processes, datasets, luminosity, objects, selection, features, systematics."""

    name: str
    sqrt_s: float = field(metadata=_check(0.0, exclusive=True, unit="GeV"))
    luminosity: Luminosity
    processes: dict[str, Process]
    datasets: dict[str, Dataset]
    objects: Objects
    selection: Selection
    features: Features
    detector: Detector
    systematics: Systematics
    # the multiclass network's output nodes, in node order, the signal class first: each
    # process in exactly one class (analysis.classes reads them; one source for every user)
    classes: tuple[OutputClass, ...]
    # the input files' layout (Skim); generated events are written as v12
    nanoaod: NanoAOD = field(default_factory=NanoAOD)
    training: Training = field(default_factory=Training)
    cuts: LearnedCutsSettings | None = None  # LearnCuts/ReduceEvents; None: no learned skim
    inference: InferenceSettings = field(default_factory=InferenceSettings)
    description: str = ""
    source: str = ""  # the file this was read from (filled by load_config)
    digest: str = ""  # sha256 of the file's content, the config hash of the provenance

    @property
    def process_names(self) -> tuple[str, ...]:
        """Process names in file order; a process's index is its truth label."""
        return tuple(self.processes)

    def filter_complement(self, dataset: str) -> str | None:
        """The dataset generated with the same filter inverted (stitched with ``dataset``)."""
        generator = self.datasets[dataset].generator
        if generator is None or generator.filter is None:
            return None
        flipped = dataclasses.replace(generator.filter, invert=not generator.filter.invert)
        for name, other in self.datasets.items():
            if (other.generator is not None and other.generator.filter == flipped
                    and other.generator.process == generator.process):
                return name
        return None

    def label_of(self, process: str) -> int:
        """Integer truth label of ``process`` (its position in ``processes``)."""
        return self.process_names.index(process)


def resolve_config_path(name_or_path: str) -> Path:
    """Path of a config given by name (``tth_bb`` -> ``config/tth_bb.yaml``) or path.

    Raises:
        ConfigError: if no such file exists.
    """
    candidate = Path(name_or_path)
    if candidate.suffix in (".yaml", ".yml") and candidate.exists():
        return candidate.resolve()
    named = CONFIG_DIR / f"{name_or_path}.yaml"
    if named.exists():
        return named
    known = ", ".join(sorted(p.stem for p in CONFIG_DIR.glob("*.yaml")))
    raise ConfigError(f"{name_or_path}: no such config file or name (known names: {known})")


@functools.lru_cache(maxsize=32)
def _load_cached(path: str, mtime_ns: int) -> AnalysisConfig:
    text = Path(path).read_text()
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from err
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(raw).__name__}")
    config = _build(AnalysisConfig, raw, path, "")
    _check_references(config, path)
    digest = hashlib.sha256(text.encode()).hexdigest()
    return dataclasses.replace(config, source=path, digest=digest)


def load_config(name_or_path: str) -> AnalysisConfig:
    """Read and validate an analysis config (cached per file and modification time).

    Args:
        name_or_path: a name in ``config/`` (``tth_bb``) or a path to a YAML file.

    Returns:
        The validated, frozen configuration.

    Raises:
        ConfigError: naming the file and the key for anything invalid.
    """
    path = resolve_config_path(name_or_path)
    return _load_cached(str(path), path.stat().st_mtime_ns)


def _fail(path: str, key: str, value: Any, why: str) -> typing.NoReturn:
    raise ConfigError(f"{path}: {key} = {json.dumps(value, default=str)}: {why}")


def _build(cls: type, data: Any, path: str, key: str) -> Any:
    if not isinstance(data, dict):
        _fail(path, key or "<top>", data, f"expected a mapping for {cls.__name__}")
    hints = typing.get_type_hints(cls)
    derived = ("source", "digest") if cls is AnalysisConfig else ()  # filled by load_config
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name not in derived}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        _fail(path, _join(key, unknown[0]), data[unknown[0]],
              f"unknown key (expected one of: {', '.join(fields)})")
    values = {}
    for name, spec in fields.items():
        sub = _join(key, name)
        if name not in data:
            if spec.default is dataclasses.MISSING and spec.default_factory is dataclasses.MISSING:
                _fail(path, sub, None, "required key is missing")
            continue
        try:
            values[name] = _convert(hints[name], data[name], path, sub)
        except ConfigError as err:
            if "why" not in spec.metadata:
                raise
            raise ConfigError(f"{err} ({spec.metadata['why']})") from None
        _check_range(spec, values[name], path, sub)
    return cls(**values)


def _join(key: str, name: str) -> str:
    return f"{key}.{name}" if key else name


def _convert(hint: Any, value: Any, path: str, key: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _convert(inner, value, path, key)
    if origin is Literal:
        if value not in args:
            _fail(path, key, value, f"must be one of {', '.join(map(str, args))}")
        return value
    if origin is tuple:
        if not isinstance(value, list):
            _fail(path, key, value, "expected a list")
        return tuple(_convert(args[0], v, path, f"{key}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict) or not value:
            _fail(path, key, value, "expected a non-empty mapping")
        return {str(k): _convert(args[1], v, path, f"{key}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, path, key)
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            _fail(path, key, value, "expected a number")
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            _fail(path, key, value, "expected an integer")
        return value
    if not isinstance(value, hint):
        _fail(path, key, value, f"expected {hint.__name__}")
    return value


def _check_range(spec: dataclasses.Field[Any], value: Any, path: str, key: str) -> None:
    minimum = spec.metadata.get("minimum")
    if minimum is None or value is None:
        return
    unit = f" {spec.metadata['unit']}" if spec.metadata.get("unit") else ""
    if spec.metadata["exclusive"] and value <= minimum:
        _fail(path, key, value, f"must be > {minimum:g}{unit}")
    if value < minimum:
        _fail(path, key, value, f"must be >= {minimum:g}{unit}")


def _check_references(config: AnalysisConfig, path: str) -> None:
    for name, dataset in config.datasets.items():
        key = f"datasets.{name}"
        for i, process in enumerate(dataset.processes):
            if process not in config.processes:
                _fail(path, f"{key}.processes[{i}]", process,
                      f"no such process (defined: {', '.join(config.processes)})")
        if (dataset.generator is None) == (not dataset.files):
            _fail(path, key, None, "needs exactly one of 'generator' and 'files'")
        if not dataset.processes:
            _fail(path, f"{key}.processes", [], "needs at least one process")
        if len(dataset.processes) > 1:
            for process in dataset.processes:
                if not config.processes[process].gen_ttbar_id:
                    _fail(path, f"processes.{process}.gen_ttbar_id", [],
                          f"needed to split dataset {name} into several processes")
        if dataset.generator and dataset.generator.chunk_size > dataset.generator.n_events:
            _fail(path, f"{key}.generator.chunk_size", dataset.generator.chunk_size,
                  f"must be <= n_events ({dataset.generator.n_events})")
        if dataset.generator and -(-dataset.generator.n_events // dataset.generator.chunk_size) \
                > MAX_CHUNKS_PER_DATASET:
            _fail(path, f"{key}.generator.chunk_size", dataset.generator.chunk_size,
                  f"gives more than {MAX_CHUNKS_PER_DATASET} chunks of n_events = "
                  f"{dataset.generator.n_events}: chunk seeds would collide with another "
                  f"dataset's; use larger chunks")
    for name in config.features.event:
        if name not in EVENT_FEATURES:
            _fail(path, "features.event", name,
                  f"unknown feature (known: {', '.join(EVENT_FEATURES)})")
        _check_lepton_feature(config, path, "features.event", name)
    _check_nanoaod(config, path)
    for name in config.inference.systematics:
        if name not in FIT_SYSTEMATICS:
            _fail(path, "inference.systematics", name,
                  f"unknown systematic (known: {', '.join(FIT_SYSTEMATICS)})")
    _check_model(config, path)
    _check_bandwidth(config.training, path)
    if config.cuts is not None and config.cuts.min_signal_efficiency >= 1.0:
        _fail(path, "cuts.min_signal_efficiency", config.cuts.min_signal_efficiency,
              "must be below 1 (a fraction of the expected signal the skim keeps)")
    if config.training.joint_cuts and config.cuts is None:
        _fail(path, "training.joint_cuts", list(config.training.joint_cuts),
              "needs a 'cuts:' section (the cuts to learn jointly)")
    if config.training.joint_cuts and "dnn" not in config.training.models:
        _fail(path, "training.joint_cuts", list(config.training.joint_cuts),
              "joint cuts act on the DNN's event features: add dnn to training.models")
    if config.cuts is not None:
        for i, cut in enumerate(config.cuts.cuts):
            if config.training.joint_cuts and cut.feature not in config.features.event:
                _fail(path, f"cuts.cuts[{i}].feature", cut.feature,
                      "joint cuts need it among features.event (the DNN's inputs)")
            if cut.feature not in EVENT_FEATURES:
                _fail(path, f"cuts.cuts[{i}].feature", cut.feature,
                      f"unknown feature (known: {', '.join(EVENT_FEATURES)})")
            _check_lepton_feature(config, path, f"cuts.cuts[{i}].feature", cut.feature)
        if not config.cuts.cuts:
            _fail(path, "cuts.cuts", [], "needs at least one cut")
        if config.cuts.discriminant not in EVENT_FEATURES:
            _fail(path, "cuts.discriminant", config.cuts.discriminant,
                  f"unknown feature (known: {', '.join(EVENT_FEATURES)})")
        _check_lepton_feature(config, path, "cuts.discriminant", config.cuts.discriminant)
    if "gnn" in config.training.models and config.selection.n_tight_leptons < 1:
        # the graph's nodes are the jets, the lepton and MET (training.models.NODE_FEATURES)
        _fail(path, "training.models", list(config.training.models),
              f"the GNN's graph has a lepton node, but selection.n_tight_leptons = "
              f"{config.selection.n_tight_leptons}: train only dnn, or select a lepton")
    signals = [p for p, spec in config.processes.items() if spec.role == "signal"]
    if len(signals) != 1:
        _fail(path, "processes", signals, "exactly one process must have role: signal")
    _check_classes(config, path)
    _check_efficiencies(config, path)
    seen: dict[int, str] = {}
    for name, process in config.processes.items():
        for category in process.gen_ttbar_id:
            if category in seen:
                _fail(path, f"processes.{name}.gen_ttbar_id", category,
                      f"category already belongs to process {seen[category]}")
            seen[category] = name


_CLASS_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")


def _check_classes(config: AnalysisConfig, path: str) -> None:
    """``classes``: at least two, named as identifiers, each with processes of the config, every
    process in exactly one, the first exactly the signal processes (``role: signal``)."""
    classes = config.classes
    if len(classes) < 2:
        _fail(path, "classes", [c.name for c in classes],
              "needs at least 2 classes: the signal class first, then the backgrounds")
    owner: dict[str, str] = {}
    for i, output in enumerate(classes):
        key = f"classes[{i}]"
        if not _CLASS_NAME.fullmatch(output.name):
            _fail(path, f"{key}.name", output.name, "must be a letter, then letters, digits or _ "
                  "(it names the score column p_<name> and the channel cat_<name>)")
        if output.name in [c.name for c in classes[:i]]:
            _fail(path, f"{key}.name", output.name, "listed twice")
        if not output.processes:
            _fail(path, f"{key}.processes", [], f"class {output.name} needs at least one process")
        for j, process in enumerate(output.processes):
            where = f"{key}.processes[{j}]"
            if process not in config.processes:
                _fail(path, where, process,
                      f"no such process (defined: {', '.join(config.processes)})")
            if process in owner:
                _fail(path, where, process, f"already in class {owner[process]}: a process "
                      f"trains one output node")
            owner[process] = output.name
            # with exactly one signal process (checked before), a first class of signal
            # processes only is the signal's class, and the signal is in no other
            if i == 0 and config.processes[process].role != "signal":
                _fail(path, where, process, f"a background in the first class: the first class "
                      f"({output.name}) is the signal class, of the role: signal processes only")
    missing = [p for p in config.processes if p not in owner]
    if missing:
        _fail(path, "classes", [c.name for c in classes],
              f"process {missing[0]} is in no class (every process trains one output node)")


def _check_model(config: AnalysisConfig, path: str) -> None:
    """The statistical model's keys: b-tag thresholds, free normalisations of backgrounds,
    the fit engine."""
    inference = config.inference
    if inference.fit_engine not in ("torch", "pyhf"):
        _fail(path, "inference.fit_engine", inference.fit_engine, "must be 'torch' (the torch "
              "fitter) or 'pyhf' (pyhf + MINUIT)")
    for i, name in enumerate(inference.free_shapes):
        key = f"inference.free_shapes[{i}]"
        if name not in config.processes:
            _fail(path, key, name, f"no such process (defined: {', '.join(config.processes)})")
        if config.processes[name].role == "signal":
            _fail(path, key, name, "a free signal shape leaves mu undetermined (a free factor "
                  "per bin on the signal is mu in every bin)")
        if name in inference.free_shapes[:i]:
            _fail(path, key, name, "listed twice")
        if name in inference.free_normalisations:
            _fail(path, key, name, "also in inference.free_normalisations: the free shape "
                  "floats its normalisation already (the two would be degenerate)")
        if inference.categories is None:
            _fail(path, key, name, "a free shape needs the categories to constrain it: add "
                  "inference.categories (its factors are shared by the channels)")
    if inference.categories is not None:
        split = list(inference.categories.btag_split)
        if split != sorted(set(split)) or (split and split[0] < 1):
            _fail(path, "inference.categories.btag_split", split,
                  "must be strictly increasing thresholds >= 1 on the number of b-tagged jets")
    seen: set[str] = set()
    for i, name in enumerate(inference.free_normalisations):
        key = f"inference.free_normalisations[{i}]"
        if name not in config.processes:
            _fail(path, key, name, f"no such process (defined: {', '.join(config.processes)})")
        if config.processes[name].role == "signal":
            _fail(path, key, name, "the signal's normalisation is the POI mu already")
        if name in seen:
            _fail(path, key, name, "listed twice")
        seen.add(name)
        if inference.categories is None:
            _fail(path, key, name, "a free normalisation needs a category to constrain it: "
                  "add inference.categories (one channel per network output)")


def _check_bandwidth(training: Training, path: str) -> None:
    """A given kernel width must be finite and no wider than a score bin (1 / n_bins)."""
    bandwidth, bin_width = training.bandwidth, 1.0 / training.n_bins
    if bandwidth is None:
        return
    if not math.isfinite(bandwidth):
        _fail(path, "training.bandwidth", bandwidth, "must be a finite number > 0 (score "
              "units), or omitted for 0.2 of the bin width")
    if bandwidth > bin_width:
        # measured: a kernel as wide as a bin already loses a third of the gain over CE
        _fail(path, "training.bandwidth", bandwidth,
              f"wider than a score bin (1 / training.n_bins = {bin_width:g}): the soft "
              f"histogram would blur neighbouring bins and train for a binning the fit does not "
              f"use; omit it for 0.2 of the bin width ({0.2 * bin_width:g}), see "
              f"docs/analysis.md, 'Soft-histogram bandwidth'")


def _check_lepton_feature(config: AnalysisConfig, path: str, key: str, name: str) -> None:
    """A lepton feature needs as many tight leptons as it describes: the selection's count."""
    needed = LEPTON_FEATURES.get(name, 0)
    have = config.selection.n_tight_leptons
    if needed > have:
        _fail(path, key, name,
              f"needs {needed} tight lepton{'s' if needed > 1 else ''} in every selected event, "
              f"but selection.n_tight_leptons = {have}: remove it, or select more leptons")


def _check_nanoaod(config: AnalysisConfig, path: str) -> None:
    nano, profile = config.nanoaod, config.nanoaod.profile
    if nano.met not in profile.met:
        _fail(path, "nanoaod.met", nano.met, f"NanoAOD {nano.version} has no {nano.met}_pt; "
              f"choose one of {', '.join(profile.met)}")
    if nano.btag not in profile.btag:
        _fail(path, "nanoaod.btag", nano.btag, f"not a b-tag discriminant of NanoAOD "
              f"{nano.version} (known: {', '.join(profile.btag)})")
    generated = [name for name, d in config.datasets.items() if d.generator is not None]
    if generated and nano != NanoAOD():
        _fail(path, "nanoaod", dataclasses.asdict(nano),
              f"dataset {generated[0]} is generated, and generated events are written as NanoAOD "
              f"{dataclasses.asdict(NanoAOD())}")


def _check_efficiencies(config: AnalysisConfig, path: str) -> None:
    jets, detector, systematics = config.objects.jets, config.detector, config.systematics
    points = (jets.btag_loose, jets.btag_medium, jets.btag_tight)
    if not 0 < points[0] < points[1] < points[2] < 1:
        _fail(path, "objects.jets.btag_medium", points[1],
              "working points must satisfy 0 < loose < medium < tight < 1")
    for flavour, delta in (("btag_b", systematics.btag_sf_heavy),
                           ("btag_c", systematics.btag_sf_heavy),
                           ("btag_light", systematics.btag_sf_light)):
        eff = getattr(detector, flavour)
        if not 1 > eff.loose >= eff.medium >= eff.tight:
            _fail(path, f"detector.{flavour}", dataclasses.asdict(eff),
                  "efficiencies must satisfy 1 > loose >= medium >= tight")
        if eff.loose * (1 + delta) >= 1:
            _fail(path, f"detector.{flavour}.loose", eff.loose,
                  "efficiency x (1 + scale-factor uncertainty) must stay below 1")
    for lepton in ("muon_efficiency", "electron_efficiency"):
        if getattr(detector, lepton) > 1:
            _fail(path, f"detector.{lepton}", getattr(detector, lepton), "must be <= 1")


# Names of the event-level features the skim can compute (analysis.skim.features).
EVENT_FEATURES = (
    "ht", "n_jets", "n_btag", "lepton_pt", "lepton_eta", "met_pt", "met_phi", "mt_w",
    "jet1_pt", "jet1_eta", "jet2_pt", "jet2_eta", "jet3_pt", "jet4_pt",
    "mbb_closest", "drbb_closest", "mbb_max", "centrality", "aplanarity",
    "lepton2_pt", "lepton2_eta", "mll",
)
# Features that describe tight leptons: how many each needs (selection.n_tight_leptons >= it).
LEPTON_FEATURES = {"lepton_pt": 1, "lepton_eta": 1, "mt_w": 1,
                   "lepton2_pt": 2, "lepton2_eta": 2, "mll": 2}
