"""Pythia 8 event generation at hadron level, with a parton-level filter and PS weights.

Processes (``GeneratorSettings.process``):

- ``tth_bb``: gg/qq -> ttH with H -> bb (``HiggsSM:gg2Httbar``, ``HiggsSM:qqbar2Httbar``);
- ``ttbar_ljets``: gg/qq -> tt (``Top:gg2ttbar``, ``Top:qqbar2ttbar``).

In both, the W+ decays to quarks and the W- to e or mu plus neutrino: the single-lepton channel,
with the charge-conjugate configuration left out (it has the same kinematics), so the
cross section of the config carries BR(l+jets) = 2 x 0.6741 x 0.2134.
ttZ(Z -> bb) is not generated: Pythia 8 has no ttZ hard process, and a scalar stand-in at the
Z mass would have the wrong spin structure and rate.

Parton-shower variations come from Pythia's ``UncertaintyBands`` and are stored as a 4-entry
``PSWeight`` in CMS's order: [0] ISR up (``isr:muRfac=0.5``), [1] FSR up (``fsr:muRfac=0.5``),
[2] ISR down (``isr:muRfac=2.0``), [3] FSR down (``fsr:muRfac=2.0``), each relative to the
nominal weight.

A filtered sample decides at parton level (``HadronLevel:all = off``) and hadronises only the
accepted events with ``forceHadronLevel``; tried and accepted counts are returned so that the
filter efficiency enters the normalisation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from analysis.config import GeneratorFilter, GeneratorSettings
from analysis.errors import InputDataError
from analysis.events import truth

__all__ = ["PS_WEIGHT_VARIATIONS", "HadronLevelEvents", "generate_hadron_level", "pythia_settings"]

PS_WEIGHT_VARIATIONS = (
    ("isrDefHi", "isr:muRfac=0.5"),
    ("fsrDefHi", "fsr:muRfac=0.5"),
    ("isrDefLo", "isr:muRfac=2.0"),
    ("fsrDefLo", "fsr:muRfac=2.0"),
)
_MAX_PYTHIA_SEED = 900_000_000
_LEPTONS = (11, 13)
_PROCESS_SETTINGS = {
    "tth_bb": ("HiggsSM:gg2Httbar = on", "HiggsSM:qqbar2Httbar = on", "25:m0 = 125.0",
               "25:onMode = off", "25:onIfAny = 5"),
    "ttbar_ljets": ("Top:gg2ttbar = on", "Top:qqbar2ttbar = on"),
}
_COMMON_SETTINGS = (
    "6:m0 = 172.5",
    "24:onMode = off", "24:onPosIfAny = 1 2 3 4 5", "24:onNegIfAny = 11 13",
    "HadronLevel:all = off",  # hadronise by hand (forceHadronLevel) after the filter
    "Print:quiet = on", "Next:numberCount = 0",
    "UncertaintyBands:doVariations = on",
    "UncertaintyBands:List = {" + ", ".join(f"{n} {v}" for n, v in PS_WEIGHT_VARIATIONS) + "}",
)


@dataclass
class HadronLevelEvents:
    """Hadron-level events of one chunk, as flat per-event lists ready for clustering."""

    particles: list[np.ndarray] = field(default_factory=list)  # (n, 5): px, py, pz, E [GeV], kind
    leptons: list[np.ndarray] = field(default_factory=list)  # (n, 6): px, py, pz, E, pdgId, prompt
    ps_weights: list[np.ndarray] = field(default_factory=list)  # (4,) relative PS weights
    n_tried: int = 0  # events that reached the filter decision
    n_passed: int = 0  # events that passed the filter; n_passed / n_tried is its efficiency
    n_accepted: int = 0  # events kept after hadronisation (== len(particles))
    sigma_gen_pb: float = 0.0  # Pythia's own estimate, for provenance only


def pythia_settings(settings: GeneratorSettings, sqrt_s: float, seed: int) -> list[str]:
    """Pythia ``readString`` lines for one dataset chunk.

    Args:
        settings: generator section of the dataset.
        sqrt_s: centre-of-mass energy in GeV.
        seed: positive random seed of this chunk (< 9e8, Pythia's limit).

    Returns:
        The settings, in the order they are read.
    """
    if not 0 < seed < _MAX_PYTHIA_SEED:
        raise InputDataError(f"pythia seed {seed}: must be in (0, {_MAX_PYTHIA_SEED})")
    return [f"Beams:eCM = {sqrt_s}", "Random:setSeed = on", f"Random:seed = {seed}",
            *_PROCESS_SETTINGS[settings.process], *_COMMON_SETTINGS, *settings.pythia]


def _passes_filter(event, spec: GeneratorFilter | None) -> bool:  # noqa: ANN001
    if spec is None:
        return True
    n_extra = truth.extra_b_quark_count(event, spec.pt_min, spec.abs_eta_max)
    return (n_extra >= spec.min_extra_b) != spec.invert


def _is_prompt(event, index: int) -> bool:  # noqa: ANN001
    """A lepton is prompt when its ancestry reaches a W before any hadron."""
    while True:
        index = event[index].mother1()
        if index <= 0 or event[index].isHadron():
            return False
        if event[index].idAbs() == 24:
            return True


def _extract(event) -> tuple[np.ndarray, np.ndarray]:  # noqa: ANN001
    """Visible final-state particles plus ghost hadrons (kind column), and the leptons."""
    rows = []
    leptons = []
    for index in range(event.size()):
        particle = event[index]
        if not particle.isFinal() or not particle.isVisible():
            continue
        momentum = (particle.px(), particle.py(), particle.pz(), particle.e())
        if particle.idAbs() in _LEPTONS:
            prompt = _is_prompt(event, index)
            leptons.append((*momentum, particle.id(), float(prompt)))
            if prompt:
                continue  # reconstructed as a lepton, not as part of a jet
        rows.append((*momentum, truth.PARTICLE))
    for index, kind in truth.hadron_flavour_content(event):
        hadron = event[index]
        scale = 1e-18  # ghosts: direction only, no effect on the jets
        rows.append((hadron.px() * scale, hadron.py() * scale, hadron.pz() * scale,
                     hadron.e() * scale, kind))
    return np.asarray(rows, dtype=np.float64), np.asarray(leptons, dtype=np.float64).reshape(-1, 6)


def generate_hadron_level(settings: GeneratorSettings, sqrt_s: float, n_events: int, seed: int,
                          progress: Callable[[int], None] | None = None) -> HadronLevelEvents:
    """Generate ``n_events`` accepted hadron-level events with Pythia 8.

    Args:
        settings: generator section of the dataset (process, filter, extra settings).
        sqrt_s: centre-of-mass energy in GeV.
        n_events: number of events to keep (after the filter).
        seed: Pythia seed of this chunk; the same seed gives the same events.
        progress: called with the number of events kept so far, after each kept event.

    Returns:
        Particles (with ghost hadrons), leptons, PS weights and the filter counts.

    Raises:
        InputDataError: if Pythia fails to initialise or fails too often.
    """
    import pythia8mc  # heavy; only the generating process needs it

    pythia = pythia8mc.Pythia("", False)
    for line in pythia_settings(settings, sqrt_s, seed):
        if not pythia.readString(line):
            raise InputDataError(f"pythia setting not accepted: {line!r}")
    if not pythia.init():
        raise InputDataError(f"pythia failed to initialise for {settings.process}")
    out = HadronLevelEvents()
    max_failures = 10 * n_events + 100
    failures = 0
    weight_index: list[int] = []
    while out.n_accepted < n_events:
        if not pythia.next():
            failures += 1
            if failures > max_failures:
                raise InputDataError(f"pythia failed {failures} times generating {settings.process}")
            continue
        out.n_tried += 1
        if not _passes_filter(pythia.event, settings.filter):
            continue
        out.n_passed += 1
        # findJunctions=False: Pythia's own events carry their junctions; searching anew fails
        # the colour tracing in ~10 % of ttH events
        if not pythia.forceHadronLevel(False):
            continue
        info = pythia.infoPython()  # a snapshot: read it anew for every event
        if not weight_index:
            weight_index = _ps_weight_indices(info)
        ps = np.array([info.weight(i) for i in weight_index]) / info.weight(0)
        particles, leptons = _extract(pythia.event)
        out.particles.append(particles)
        out.leptons.append(leptons)
        out.ps_weights.append(ps)
        out.n_accepted += 1
        if progress is not None:
            progress(out.n_accepted)
    out.sigma_gen_pb = pythia.infoPython().sigmaGen() * 1e9  # mb -> pb
    return out


def _ps_weight_indices(info) -> list[int]:  # noqa: ANN001 (pythia8mc.Info)
    """Weight indices of ``PS_WEIGHT_VARIATIONS``: Pythia sorts the weights by label."""
    labels = [info.weightLabel(i).lower() for i in range(info.nWeights())]
    wanted = [variation.replace(":", ".").lower() for _, variation in PS_WEIGHT_VARIATIONS]
    missing = [w for w in wanted if w not in labels]
    if missing:
        raise InputDataError(f"pythia: PS weights {missing} not among {labels}")
    return [labels.index(w) for w in wanted]
