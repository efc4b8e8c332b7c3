"""GPU sharing: N concurrent trainings of the pipeline's networks, exclusive / time-sliced / MPS.

Usage: python benchmarks/bench_gpu_sharing.py [--device cuda|cpu] [--n-jobs 1,2,4,8]
       [--intensities low,medium] [--tiny] [--out docs/gpu-sharing]

Prints a Markdown table (busy time, per-job time, aggregate throughput, speed-up over one
exclusive job, per-job slowdown, NVML energy per training) and writes ``<out>.json``, ``<out>.md``,
``<out>.png`` and ``<out>.pdf``. ``low`` is the demo's DNN (5000 parameters, batch 8192, 400
steps), ``medium`` its GNN (5000 parameters, batch 4096, 200 steps); ``--tiny`` shrinks both for a
smoke test. Without a GPU ``--device cuda`` stops with a clear message; ``--device cpu`` runs the
exclusive and time-sliced modes on the CPU (no MPS). Energy: NVML (``nvidia-ml-py``).
The JSON and Markdown are rewritten after every measurement (``"finished": false`` until the end),
so an interrupted run (Ctrl-C, a failed training) keeps its rows and draws them; a slow MPS
shutdown at the end is a warning.
The same measurement as a law task: ``law run BenchmarkGPUSharing --version v1``.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from pathlib import Path

from analysis.errors import ResourceError
from analysis.gpu.benchmark import (
    INTENSITIES,
    TINY_INTENSITIES,
    SharingRow,
    format_table,
    run_sharing_benchmark,
    write_rows,
)
from analysis.plotting.gpu import plot_sharing


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--n-jobs", default="1,2,4,8", help="comma-separated N (1 included)")
    parser.add_argument("--intensities", default="low,medium")
    parser.add_argument("--tiny", action="store_true", help="tiny sizes for a smoke test")
    parser.add_argument("--out", default="gpu-sharing", help="output path without suffix")
    parser.add_argument("--stop-timeout", type=float, default=60.0,
                        help="seconds the MPS daemon may take to go down at the end")
    parser.add_argument("--workdir", default=None, help="directory of the MPS daemon's pipe and "
                        "logs (keep it short: the pipe is a socket); default: a temporary one")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    table = TINY_INTENSITIES if args.tiny else INTENSITIES
    intensities = [table[name] for name in args.intensities.split(",")]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    metadata = {"device": args.device,
                "intensities": [dataclasses.asdict(i) for i in intensities]}
    measured: list[SharingRow] = []

    def keep(rows: list[SharingRow]) -> None:  # each row reaches the files as it is measured
        measured[:] = rows
        write_rows(out, rows, metadata, finished=False)

    try:
        rows = run_sharing_benchmark(args.device, [int(n) for n in args.n_jobs.split(",")],
                                     intensities, workdir=args.workdir, on_row=keep,
                                     stop_timeout_s=args.stop_timeout)
    except (ResourceError, KeyboardInterrupt) as err:
        reason = "interrupted" if isinstance(err, KeyboardInterrupt) else str(err)
        print(f"bench_gpu_sharing: {reason}", file=sys.stderr)
        if measured:
            plot_sharing(measured, out)
            print(f"bench_gpu_sharing: the {len(measured)} rows measured before are in "
                  f"{out}.json and {out}.md (partial)\n{format_table(measured)}", file=sys.stderr)
        return 130 if isinstance(err, KeyboardInterrupt) else 2
    write_rows(out, rows, metadata, finished=True)
    plot_sharing(rows, out)
    print(format_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
