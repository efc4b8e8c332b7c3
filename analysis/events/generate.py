"""One chunk of a generated dataset: Pythia -> jets and detector response -> NanoAOD file."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable

import numpy as np

from analysis.config import MAX_CHUNKS_PER_DATASET, AnalysisConfig, Dataset
from analysis.errors import ConfigError
from analysis.events.nanoaod import build_nanoaod, write_nanoaod
from analysis.events.pythia import generate_hadron_level

__all__ = ["chunk_event_counts", "chunk_seed", "detector_rngs", "generate_chunk"]

log = logging.getLogger(__name__)
_SEED_STRIDE = MAX_CHUNKS_PER_DATASET  # chunks per dataset seed; seeds stay below Pythia's 9e8


def chunk_event_counts(dataset: Dataset) -> list[int]:
    """Events per chunk of a generated dataset: full chunks, then the remainder.

    Example:
        >>> from analysis.config import GeneratorSettings
        >>> chunk_event_counts(Dataset(("p",), GeneratorSettings("tth_bb", 250, 100, 1)))
        [100, 100, 50]
    """
    if dataset.generator is None:
        raise ConfigError(f"dataset with files {dataset.files[:1]}... is not generated")
    total, size = dataset.generator.n_events, dataset.generator.chunk_size
    return [min(size, total - start) for start in range(0, total, size)]


def chunk_seed(dataset: Dataset, chunk: int) -> int:
    """Pythia seed of one chunk: distinct per dataset seed and chunk, stable across runs."""
    if dataset.generator is None:
        raise ConfigError(f"dataset with files {dataset.files[:1]}... is not generated")
    return (dataset.generator.seed % 90_000) * _SEED_STRIDE + chunk + 1


def detector_rngs(seed: int, replicas: int) -> list[np.random.Generator]:
    """Independent, reproducible random streams of the detector response, one per replica.

    Replica 0 keeps the stream of a chunk without replicas (``[seed, 1]``), so ``replicas: 1``
    gives the same events as before; replica k > 0 uses ``[seed, 1, k]``. All are independent of
    Pythia's stream (seeded with ``seed`` alone).

    Args:
        seed: the chunk's Pythia seed (:func:`chunk_seed`).
        replicas: detector realisations per hadronised event, >= 1.

    Returns:
        ``replicas`` numpy generators.

    Example:
        >>> [round(float(r.random()), 3) for r in detector_rngs(11, 2)]
        [0.202, 0.804]
    """
    if replicas < 1:
        raise ConfigError(f"datasets.*.generator.replicas = {replicas}: must be >= 1")
    return [np.random.default_rng([seed, 1] if k == 0 else [seed, 1, k]) for k in range(replicas)]


def generate_chunk(config: AnalysisConfig, dataset_name: str, chunk: int,
                   path: str | os.PathLike[str],
                   progress: Callable[[int], None] | None = None) -> dict[str, float]:
    """Generate chunk ``chunk`` of dataset ``dataset_name`` into a NanoAOD file at ``path``.

    Args:
        config: the analysis (sqrt(s), detector response, b-tag working points).
        dataset_name: key in ``config.datasets``; must have a ``generator`` section.
        chunk: chunk index, 0-based; fixes the seed and the event numbers.
        path: output ``.root`` file, written atomically.
        progress: called with the number of events generated so far.

    Returns:
        The ``Runs`` summary written to the file (counts of hadronised events, sum of weights,
        filter counts, detector replicas per event). With ``generator.replicas = K`` the file
        holds K rows per hadronised event (``build_nanoaod``).
    """
    dataset = config.datasets[dataset_name]
    counts = chunk_event_counts(dataset)  # raises ConfigError for a dataset of files
    seed = chunk_seed(dataset, chunk)
    start = time.perf_counter()
    generator = dataset.generator
    if generator is None:  # unreachable after chunk_event_counts; narrows the type
        raise ConfigError(f"dataset {dataset_name} is not generated")
    hadron_level = generate_hadron_level(generator, config.sqrt_s, counts[chunk], seed, progress)
    first_event = sum(counts[:chunk]) + 1
    branches = build_nanoaod(hadron_level, config.detector, config.objects.jets,
                             detector_rngs(seed, generator.replicas), first_event, chunk + 1)
    runs = {
        "genEventCount": hadron_level.n_accepted,
        "detectorReplicas": generator.replicas,
        "genEventSumw": float(np.sum(branches["genWeight"])),
        "genFilterTried": hadron_level.n_tried,
        "genFilterPassed": hadron_level.n_passed,
        "pythiaSigmaGen_pb": hadron_level.sigma_gen_pb,
        "seed": seed,
    }
    write_nanoaod(path, branches, runs)
    log.info("%s: %d events (%d tried) in %.1f s", os.path.basename(path),
             hadron_level.n_accepted, hadron_level.n_tried, time.perf_counter() - start)
    return runs
