"""Speed and memory of the foundation: generation, skim vs a plain uproot read, skim memory.

Usage: python benchmarks/bench_foundation.py [--tile 100] [--repeats 3] [--config tth_bb]
       python benchmarks/bench_foundation.py --generation-only --config tth_bb_tiny

``--generation-only`` prints, per generated dataset, the CPU-seconds per generated event and the
file size per event of the config's chunk 0 (what config/tth_bb_study.yaml's header multiplies
out), and nothing else.

Prints a Markdown table. Generation runs on one core per process (ev/s/core). The skim input is
the first generated ttH chunk (1000 events in the demo) repeated ``--tile`` times (with distinct event numbers),
so that memory is measured at the 100k-event scale without generating 100k events. Each
measurement runs in its own process so that peak memory (VmHWM) belongs to it alone; read and
skim run ``--repeats`` times there, and the fastest run counts (the first pays for imports).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import awkward as ak
import numpy as np


def _generate(args: tuple[str, str, int, str]) -> tuple[float, dict[str, float]]:
    from analysis.config import load_config
    from analysis.events.generate import generate_chunk

    config_name, dataset, chunk, path = args
    start, cpu_start = time.perf_counter(), time.process_time()
    runs = generate_chunk(load_config(config_name), dataset, chunk, path)
    return time.perf_counter() - start, {**runs, "cpu_s": time.process_time() - cpu_start}


def _tile(source: Path, target: Path, times: int) -> int:
    from analysis.events.nanoaod import read_nanoaod, write_nanoaod

    branches, runs = read_nanoaod(source)
    n = len(branches["event"])
    tiled = {name: ak.concatenate([value] * times) for name, value in branches.items()}
    tiled["event"] = np.arange(1, n * times + 1, dtype=np.uint64)
    write_nanoaod(target, tiled, {k: v[0] * (times if k.startswith("genEvent") else 1)
                                  for k, v in runs.items()})
    return n * times


def _peak_kib() -> int:
    """This process's peak resident memory (VmHWM) in KiB.

    ``ru_maxrss`` would carry the parent's peak over fork + exec; VmHWM belongs to this address
    space alone.
    """
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/self/status")


def _best_of(repeats: int, work: Callable[[], int]) -> tuple[float, int]:
    """Fastest of ``repeats`` runs (the first pays for imports and JIT); returns (s, n)."""
    times, n = [], 0
    for _ in range(repeats):
        start = time.perf_counter()
        n = work()
        times.append(time.perf_counter() - start)
    return min(times), n


def _uproot_read(path: str, repeats: int, queue: mp.Queue) -> None:
    import uproot

    from analysis.skim.inputs import REQUIRED_BRANCHES

    def read() -> int:
        with uproot.open(path) as file:
            return len(file["Events"].arrays(list(REQUIRED_BRANCHES)))

    base = _peak_kib()
    elapsed, n = _best_of(repeats, read)
    queue.put((elapsed, n, base, _peak_kib()))


def _skim(path: str, config_name: str, repeats: int, queue: mp.Queue) -> None:
    from analysis.config import load_config
    from analysis.skim.processor import run_skim

    config = load_config(config_name)
    base = _peak_kib()
    elapsed, n = _best_of(repeats, lambda: run_skim(config, "tth", [path],
                                                      chunksize=200_000).n_events)
    queue.put((elapsed, n, base, _peak_kib()))


def _in_process(target, *args: object) -> tuple:  # noqa: ANN001
    context = mp.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=target, args=(*args, queue))
    process.start()
    result = queue.get()
    process.join()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="tth_bb")
    parser.add_argument("--tile", type=int, default=100, help="repeat the ttH file this often")
    parser.add_argument("--repeats", type=int, default=3,
                        help="runs of the read and of the skim; the fastest counts")
    parser.add_argument("--generation-only", action="store_true",
                        help="only CPU-seconds and bytes per generated event, per dataset")
    args = parser.parse_args()
    if args.generation_only:
        _generation_costs(args.config)
        return
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        from analysis.config import load_config

        config = load_config(args.config)
        for dataset in config.datasets:
            if config.datasets[dataset].generator is None:
                continue
            elapsed, runs = _generate((args.config, dataset, 0, f"{tmp}/{dataset}.root"))
            n, tried = int(runs["genEventCount"]), int(runs["genFilterTried"])
            rows.append((f"GenerateEvents {dataset} (chunk 0)", f"{n / elapsed:.1f} ev/s/core",
                         f"{n} events in {elapsed:.1f} s; filter kept "
                         f"{runs['genFilterPassed'] / tried:.1%} of {tried} tried "
                         f"({tried / elapsed:.0f} tried/s)"))
        source = Path(tmp) / "tth.root"
        big = Path(tmp) / "tth_tiled.root"
        n_big = _tile(source, big, args.tile)
        t_read, n_read, base_read, peak_read = _in_process(_uproot_read, str(big), args.repeats)
        t_skim, n_skim, base_skim, peak_skim = _in_process(_skim, str(big), args.config,
                                                           args.repeats)
        assert n_read == n_skim == n_big
        rows.append(("uproot read of the skim's branches", f"{n_read / t_read:,.0f} ev/s",
                     f"{n_read} events in {t_read:.2f} s"))
        rows.append(("Skim (5 shifts, features, weights)", f"{n_skim / t_skim:,.0f} ev/s",
                     f"{n_skim} events in {t_skim:.2f} s"))
        rows.append(("Skim / uproot read", f"{(n_skim / t_skim) / (n_read / t_read):.2f}",
                     "throughput ratio, same file, same run"))
        per_100k = 1e5 / n_big / 1024  # VmHWM is in KiB
        rows.append(("uproot read peak memory per 100k events",
                     f"{(peak_read - base_read) * per_100k:.0f} MiB",
                     f"process peak {peak_read / 1024:.0f} MiB"))
        rows.append(("Skim peak memory per 100k events",
                     f"{(peak_skim - base_skim) * per_100k:.0f} MiB",
                     f"process peak {peak_skim / 1024:.0f} MiB"))
    print("| measurement | value | detail |\n| --- | --- | --- |")
    for row in rows:
        print("| " + " | ".join(row) + " |")


def _generation_costs(config_name: str) -> None:
    """Per generated dataset: chunk 0's CPU-seconds per event (Pythia's start included, as every
    batch job pays it) and bytes per event of its NanoAOD file; the ratio of each to ttH's."""
    from analysis.config import load_config
    from analysis.events.generate import chunk_event_counts

    config = load_config(config_name)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for dataset, spec in config.datasets.items():
            if spec.generator is None:
                continue
            path = Path(tmp) / f"{dataset}.root"
            elapsed, runs = _generate((config_name, dataset, 0, str(path)))
            n = int(runs["genEventCount"])
            assert n == chunk_event_counts(spec)[0]
            rows.append((dataset, n, int(runs["genFilterTried"]), runs["cpu_s"], elapsed,
                         path.stat().st_size))
    base = rows[0][3] / rows[0][1]
    print("| dataset | events | tried | CPU s | wall s | CPU s / event | ratio to first "
          "| bytes / event |\n| --- | --- | --- | --- | --- | --- | --- | --- |")
    for dataset, n, tried, cpu, wall, size in rows:
        print(f"| {dataset} | {n} | {tried} | {cpu:.2f} | {wall:.2f} | {cpu / n:.4f} | "
              f"{cpu / n / base:.2f} | {size / n:.0f} |")


if __name__ == "__main__":
    main()
