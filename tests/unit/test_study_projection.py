"""config/tth_bb_study.yaml's header beyond the generation: the skim, LearnCuts, ReduceEvents,
TrainModel and Fit, measured on the demo and scaled; each line's numbers multiply out, and the
grand total is the generation's plus theirs."""

from __future__ import annotations

import re

import pytest

from analysis.config import resolve_config_path

# "#   Skim: 3.24 CPU-s x 100, 6.24 MB x 100 -> 0.09 CPU-hours, 0.624 GB" ("-": not measured)
_NUMBER = r"([\d.]+|-)"
_STAGE = re.compile(rf"^#   (\w+): {_NUMBER} CPU-s x (\d+), {_NUMBER} MB x (\d+) -> {_NUMBER} "
                    rf"CPU-hours, {_NUMBER} GB$", re.MULTILINE)
_GENERATION = re.compile(r"^# total: \d+ events, \d+ chunks, ([\d.]+) CPU-hours, ([\d.]+) GB",
                         re.MULTILINE)
_ALL = re.compile(r"^# all stages: ([\d.]+) CPU-hours, ([\d.]+) GB", re.MULTILINE)
_FACTOR = re.compile(r"^# factor: (\d+) x the demo", re.MULTILINE)
_SECONDS_PER_HOUR, _MB_PER_GB = 3600, 1000


def _scaled(measured: str, factor: str, projected: str, per_unit: int) -> float:
    """The projected number, after checking that it is ``measured x factor / per_unit``."""
    assert (measured == "-") == (projected == "-"), (measured, projected)
    if measured == "-":
        return 0.0
    assert float(projected) == pytest.approx(float(measured) * int(factor) / per_unit, rel=0.01)
    return float(projected)


def test_stage_projections_multiply_out_and_add_up() -> None:
    text = resolve_config_path("tth_bb_study").read_text()
    stages = {m.group(1): m.groups()[1:] for m in _STAGE.finditer(text)}
    assert set(stages) == {"Skim", "LearnCuts", "ReduceEvents", "TrainModel", "Fit"}
    factor = _FACTOR.search(text).group(1)
    hours, gigabytes = (float(x) for x in _GENERATION.search(text).groups())
    for name, (cpu_s, cpu_factor, megabytes, size_factor, cpu_hours, size_gb) in stages.items():
        # the event-driven costs scale with the config's factor, the others not at all
        assert {cpu_factor, size_factor} <= {factor, "1"}, name
        hours += _scaled(cpu_s, cpu_factor, cpu_hours, _SECONDS_PER_HOUR)
        gigabytes += _scaled(megabytes, size_factor, size_gb, _MB_PER_GB)
    assert stages["Skim"][1] == stages["TrainModel"][1] == factor  # both grow with the events
    total = _ALL.search(text)
    assert total is not None
    assert float(total.group(1)) == pytest.approx(hours, rel=0.01)
    assert float(total.group(2)) == pytest.approx(gigabytes, rel=0.01)
