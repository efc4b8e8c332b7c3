"""The pyhf JSON workspace of the analysis from the score histograms.

One channel (the NN score), one sample per process. Modifiers:

- ``mu`` (normfactor) on the signal;
- ``lumi`` (normsys, the config's luminosity uncertainty) on every process;
- ``xsec_<process>`` (normsys, the config's cross-section uncertainty) on every background;
- ``jes``, ``jer``, ``btag``, ``isr``, ``fsr``: each a histosys of the shape (the up/down
  histograms scaled to the nominal yield) plus a normsys of the yield ratio, sharing one
  parameter, as CMS and ATLAS split a variation into shape and rate;
- ``staterror_<channel>`` (Barlow-Beeston lite) from the sum of squared weights.

Bins with no expected events at all are dropped; an empty process bin gets a tiny floor
(``1e-6`` of its yield) so the Poisson terms and ratios stay defined. The observations are
pseudo-data: Poisson draws of the expected yields at ``mu = 1`` with a fixed seed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from analysis.config import AnalysisConfig
from analysis.errors import InputDataError
from analysis.inference.histograms import SYSTEMATICS

__all__ = ["CHANNEL", "POI", "build_workspace", "validate_workspace"]

CHANNEL = "nn_score"
POI = "mu"
_FLOOR = 1e-6  # relative floor of an empty bin of a process
_NORM_FLOOR = 1e-3  # smallest normsys factor: a variation that removes all events


def _floored(values: np.ndarray, total: float) -> np.ndarray:
    return np.maximum(values, _FLOOR * max(total, 1e-12))


def build_workspace(histograms: Mapping[str, Any], config: AnalysisConfig, *,
                    pseudo_data_seed: int, poi_bounds: Sequence[float] = (-5.0, 10.0),
                    systematics: Sequence[str] = SYSTEMATICS) -> dict[str, Any]:
    """The pyhf workspace specification (a JSON-ready dict).

    Args:
        histograms: :func:`~analysis.inference.histograms.histogram_dict` output (expected
            events per bin at the config's luminosity).
        config: process roles and cross-section and luminosity uncertainties.
        pseudo_data_seed: seed of the Poisson pseudo-data (the workspace's observations).
        poi_bounds: allowed range of ``mu``.
        systematics: the up/down variations to include (histosys + normsys each).

    Returns:
        The specification: ``channels``, ``observations``, ``measurements``, ``version``.

    Raises:
        InputDataError: a process or variation missing from ``histograms``, or no events.
    """
    processes = histograms["processes"]
    missing = [p for p in config.processes if p not in processes]
    if missing:
        raise InputDataError(f"build_workspace: no histograms for processes {missing}")
    nominal = {p: np.asarray(processes[p]["nominal"]["values"], dtype=np.float64)
               for p in config.processes}
    total = sum(nominal.values())
    keep = total > 0
    if not keep.any():
        raise InputDataError("build_workspace: no expected events in any bin")
    lumi = config.luminosity.uncertainty
    samples = []
    for process, spec in config.processes.items():
        hists = processes[process]
        values = nominal[process]
        yield_ = float(values.sum())
        if yield_ <= 0:
            continue  # no events of this process after the selection
        data = _floored(values[keep], yield_)
        modifiers: list[dict[str, Any]] = []
        if spec.role == "signal":
            modifiers.append({"name": POI, "type": "normfactor", "data": None})
        elif spec.cross_section.uncertainty > 0:
            u = spec.cross_section.uncertainty
            modifiers.append({"name": f"xsec_{process}", "type": "normsys",
                              "data": {"hi": 1.0 + u, "lo": max(1.0 - u, _NORM_FLOOR)}})
        if lumi > 0:
            modifiers.append({"name": "lumi", "type": "normsys",
                              "data": {"hi": 1.0 + lumi, "lo": 1.0 - lumi}})
        for syst in systematics:
            try:
                up, down = (np.asarray(hists[f"{syst}_{d}"]["values"], dtype=np.float64)
                            for d in ("up", "down"))
            except KeyError as err:
                raise InputDataError(f"build_workspace: process {process}: no variation "
                                     f"{err}") from err
            ratio_up, ratio_down = up.sum() / yield_, down.sum() / yield_
            modifiers.append({"name": syst, "type": "normsys",
                              "data": {"hi": max(float(ratio_up), _NORM_FLOOR),
                                       "lo": max(float(ratio_down), _NORM_FLOOR)}})
            shape_up = up[keep] / ratio_up if ratio_up > 0 else data
            shape_down = down[keep] / ratio_down if ratio_down > 0 else data
            modifiers.append({"name": syst, "type": "histosys",
                              "data": {"hi_data": _floored(shape_up, yield_).tolist(),
                                       "lo_data": _floored(shape_down, yield_).tolist()}})
        variances = np.asarray(hists["nominal"]["variances"], dtype=np.float64)[keep]
        modifiers.append({"name": f"staterror_{CHANNEL}", "type": "staterror",
                          "data": np.sqrt(np.maximum(variances, 0.0)).tolist()})
        samples.append({"name": process, "data": data.tolist(), "modifiers": modifiers})
    expected = sum(np.asarray(s["data"]) for s in samples)
    observed = np.random.default_rng(pseudo_data_seed).poisson(expected).astype(float)
    return {
        "channels": [{"name": CHANNEL, "samples": samples}],
        "observations": [{"name": CHANNEL, "data": observed.tolist()}],
        "measurements": [{"name": "measurement", "config": {
            "poi": POI, "parameters": [{"name": POI, "bounds": [list(map(float, poi_bounds))],
                                        "inits": [1.0]}]}}],
        "version": "1.0.0",
    }


def validate_workspace(spec: Mapping[str, Any]) -> Any:
    """Validate ``spec`` against pyhf's schema and build its model.

    Args:
        spec: a pyhf workspace specification (``channels``, ``observations``,
            ``measurements``, ``version``).

    Returns:
        The ``pyhf.Workspace``.

    Raises:
        pyhf.exceptions.InvalidSpecification: the schema rejects it.
    """
    import pyhf

    workspace = pyhf.Workspace(dict(spec))  # validates against workspace.json
    workspace.model()  # and the model builds (modifier consistency)
    return workspace
