"""config/tth_bb_study.yaml: the demo analysis at the event counts its projection asks for (not
run in the test suite): it validates, its chunks add up, and its header's totals add up."""

from __future__ import annotations

import re

import pytest
import yaml

from analysis.config import load_config, resolve_config_path
from analysis.events.generate import chunk_event_counts, chunk_seed

# "#   tth   400000   0.0160   2900   80   1.78   1.16 GB": dataset, events, CPU-s per event,
# bytes per event, chunks, CPU-hours, storage
_ROW = re.compile(r"^#\s+(\w+)\s+(\d+)\s+([\d.]+)\s+(\d+)\s+(\d+)\s+([\d.]+)\s+([\d.]+) GB$",
                  re.MULTILINE)
_TOTAL = re.compile(r"^# total: (\d+) events, (\d+) chunks, ([\d.]+) CPU-hours, ([\d.]+) GB",
                    re.MULTILINE)
_FACTOR = re.compile(r"^# factor: (\d+) x the demo", re.MULTILINE)


@pytest.fixture(scope="module")
def text() -> str:
    return resolve_config_path("tth_bb_study").read_text()


def test_study_config_validates_and_is_the_demo_at_larger_counts(text: str) -> None:
    study, demo = load_config("tth_bb_study"), load_config("tth_bb")
    assert study.name == "tth_bb_study"
    raw_study, raw_demo = yaml.safe_load(text), yaml.safe_load(
        resolve_config_path("tth_bb").read_text())
    # the same analysis: only the name, description and the generated counts differ
    assert {k for k in raw_demo if raw_demo[k] != raw_study[k]} == {"name", "description",
                                                                     "datasets"}
    factor = int(_FACTOR.search(text).group(1))
    for name, dataset in study.datasets.items():
        generator, demo_generator = dataset.generator, demo.datasets[name].generator
        assert generator is not None and demo_generator is not None
        assert generator.n_events == factor * demo_generator.n_events, name
        assert (generator.process, generator.seed, generator.filter) == (
            demo_generator.process, demo_generator.seed, demo_generator.filter), name


def test_chunks_add_up_to_the_event_counts_with_distinct_seeds(text: str) -> None:
    study = load_config("tth_bb_study")
    seeds = []
    for name, dataset in study.datasets.items():
        counts = chunk_event_counts(dataset)
        assert sum(counts) == dataset.generator.n_events, name
        assert max(counts) == dataset.generator.chunk_size and min(counts) > 0, name
        seeds += [chunk_seed(dataset, chunk) for chunk in range(len(counts))]
    assert len(set(seeds)) == len(seeds)  # every chunk its own events, wherever it runs


def test_header_totals_are_the_measured_costs_multiplied_out(text: str) -> None:
    study = load_config("tth_bb_study")
    rows = {m.group(1): m.groups()[1:] for m in _ROW.finditer(text)}
    assert set(rows) == set(study.datasets)
    sums = [0, 0, 0.0, 0.0]
    for name, (events, cpu_s, size, chunks, hours, gigabytes) in rows.items():
        dataset = study.datasets[name]
        assert int(events) == dataset.generator.n_events, name
        assert int(chunks) == len(chunk_event_counts(dataset)), name
        assert float(hours) == pytest.approx(int(events) * float(cpu_s) / 3600, rel=0.01), name
        assert float(gigabytes) == pytest.approx(int(events) * int(size) / 1e9, rel=0.01), name
        for i, value in enumerate((int(events), int(chunks), float(hours), float(gigabytes))):
            sums[i] += value
    total = _TOTAL.search(text)
    assert total is not None
    assert (int(total.group(1)), int(total.group(2))) == (sums[0], sums[1])
    assert float(total.group(3)) == pytest.approx(sums[2], rel=0.01)
    assert float(total.group(4)) == pytest.approx(sums[3], rel=0.01)


def test_more_chunks_than_seeds_per_dataset_is_a_config_error(tmp_path) -> None:
    from analysis.errors import ConfigError

    raw = yaml.safe_load(resolve_config_path("tth_bb_tiny").read_text())
    raw["datasets"]["tth"]["generator"].update(n_events=10_001, chunk_size=1)
    path = tmp_path / "many_chunks.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match=r"datasets\.tth\.generator\.chunk_size.*more than "
                                          r"10000 chunks"):
        load_config(str(path))
