"""GPU sharing: N concurrent trainings of the pipeline's networks, exclusive / time-sliced / MPS.

Usage: python benchmarks/bench_gpu_sharing.py [--device cuda|cpu] [--n-jobs 1,2,4,8]
       [--intensities low,medium] [--tiny] [--out docs/gpu-sharing]

Prints a Markdown table (busy time, per-job time, aggregate throughput, speed-up over one
exclusive job, per-job slowdown, NVML energy per training) and writes ``<out>.json``, ``<out>.md``,
``<out>.png`` and ``<out>.pdf``. ``low`` is the demo's DNN (5000 parameters, batch 8192, 400
steps), ``medium`` its GNN (5000 parameters, batch 4096, 200 steps); ``--tiny`` shrinks both for a
smoke test. Without a GPU ``--device cuda`` stops with a clear message; ``--device cpu`` runs the
exclusive and time-sliced modes on the CPU (no MPS). Energy: NVML (``nvidia-ml-py``).
The same measurement as a law task: ``law run BenchmarkGPUSharing --version v1``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from pathlib import Path

from analysis.errors import ResourceError
from analysis.gpu.sharing import (INTENSITIES, Intensity, format_table, plot_sharing,
                                  run_sharing_benchmark)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--n-jobs", default="1,2,4,8", help="comma-separated N (1 included)")
    parser.add_argument("--intensities", default="low,medium")
    parser.add_argument("--tiny", action="store_true", help="tiny sizes for a smoke test")
    parser.add_argument("--out", default="gpu-sharing", help="output path without suffix")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    intensities = [INTENSITIES[name] for name in args.intensities.split(",")]
    if args.tiny:
        intensities = [Intensity(i.name, i.model, 500, 256 if i.model == "dnn" else 64, 10)
                       for i in intensities]
    try:
        rows = run_sharing_benchmark(args.device, [int(n) for n in args.n_jobs.split(",")],
                                     intensities)
    except ResourceError as err:
        print(f"bench_gpu_sharing: {err}", file=sys.stderr)
        return 2
    table = format_table(rows)
    print(table)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".md").write_text(table + "\n")
    out.with_suffix(".json").write_text(json.dumps(
        {"device": args.device, "intensities": [dataclasses.asdict(i) for i in intensities],
         "rows": [dataclasses.asdict(r) for r in rows]}, indent=2) + "\n")
    plot_sharing(rows, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
