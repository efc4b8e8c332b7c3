"""GPU-sharing benchmark: N concurrent trainings exclusive, time-sliced or under MPS (no law).

Low-intensity HEP trainings leave most of a GPU idle (KIT, arXiv:2505.08562). This module measures
what sharing buys: ``N`` identical trainings of the pipeline's own networks
(:func:`~analysis.training.architectures.sized_dnn`, :func:`~analysis.training.architectures.sized_gnn`) on
synthetic inputs of the analysis's shapes, run

- ``exclusive``: one after the other, each alone on the device (the baseline);
- ``time_sliced``: all at once as separate processes without MPS (the driver time-slices);
- ``mps``: all at once as clients of one MPS control daemon, each limited to ``1/N`` of the
  threads (``CUDA_MPS_ACTIVE_THREAD_PERCENTAGE``) and of the memory.

Each training is its own process (``python -m analysis.gpu.benchmark <spec>``), as batch jobs are.
Per mode: aggregate throughput (events/s over all jobs, over the time the jobs were busy; every
process warms up first and all are released together, so start-up is not measured), per-job slowdown
(mean job time / the exclusive single-job time) and GPU energy per training from NVML's total
energy counter (mJ, via ``pynvml``; ``None`` where it is not available).

``device="cpu"`` is a smoke mode (no MPS rows) for machines without a GPU; ``device="cuda"``
without a GPU raises :class:`~analysis.errors.ResourceError`.

The rows are handed out as they are measured (``on_row``), and :func:`write_rows` writes them to
JSON and Markdown, so that an interrupted run keeps what it measured; a slow MPS shutdown at the
end is a warning (:class:`~analysis.gpu.mps.MpsDaemon`), never a lost table. The plot is
:func:`analysis.plotting.gpu.plot_sharing`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from analysis.errors import ResourceError
from analysis.gpu.device import gpu_count
from analysis.gpu.mps import MpsDaemon, client_environment
from analysis.gpu.share import GpuShare
from analysis.io import write_json, write_text
from analysis.tables import markdown_table

__all__ = ["INTENSITIES", "MODES", "TINY_INTENSITIES", "Intensity", "SharingRow", "format_table",
           "require_device", "run_sharing_benchmark", "write_rows"]

log = logging.getLogger(__name__)

MODES = ("exclusive", "time_sliced", "mps")
_N_EVENT_FEATURES = 18  # the event features of config/tth_bb.yaml
_N_NODES = 10  # 8 jets + lepton + MET, as the skim pads them
_N_CLASSES = 3  # the classes of config/tth_bb.yaml (a synthetic workload of its size)
_MJ_PER_J = 1000.0
_NO_MPS_PIPE = "diffana-no-mps"  # a pipe directory with no daemon: clients run without MPS
_BARRIER_TIMEOUT_S = 600.0
_POLL_S = 0.01


@dataclass(frozen=True)
class Intensity:
    """One training workload: which network, how big, what batch.

    Attributes:
        name: label in the table.
        model: ``"dnn"`` (event features) or ``"gnn"`` (jets + lepton + MET graph).
        target_parameters: trainable parameters (the models are sized to it).
        batch_size: events per step.
        steps: optimiser steps per training.
    """

    name: str
    model: str
    target_parameters: int
    batch_size: int
    steps: int


INTENSITIES = {
    # the demo analysis's DNN (config/tth_bb.yaml: 5000 parameters) at a large batch: light
    "low": Intensity("low", "dnn", 5000, 8192, 400),
    # its GNN at the same size: pairwise messages over 10 nodes make it ~100x the FLOPs per event
    "medium": Intensity("medium", "gnn", 5000, 4096, 200),
}
"""The two intensities of the benchmark (issue 5)."""
TINY_INTENSITIES = {name: Intensity(name, i.model, 500, 256 if i.model == "dnn" else 64, 10)
                    for name, i in INTENSITIES.items()}
"""The same networks, small enough for a CPU smoke test (``--tiny``, ``--size tiny``)."""


@dataclass(frozen=True)
class SharingRow:
    """One (intensity, mode, N) measurement.

    Attributes:
        intensity, mode, n_jobs: what ran.
        wall_s: time the device was busy with the mode's trainings, s: first start to last end
            of concurrent jobs (released together after their warm-up), the sum of the jobs for
            ``exclusive``; process start-up and warm-up are not counted.
        job_s: mean time of one training, s.
        throughput: events/s over all jobs (``n_jobs * steps * batch / wall_s``).
        speedup: ``throughput`` / that of one exclusive job.
        slowdown: ``job_s`` / that of one exclusive job.
        energy_per_training_j: GPU energy per training, J (``None`` without NVML).
    """

    intensity: str
    mode: str
    n_jobs: int
    wall_s: float
    job_s: float
    throughput: float
    speedup: float
    slowdown: float
    energy_per_training_j: float | None


def require_device(device: str) -> None:
    """Refuse a benchmark that cannot run here.

    Raises:
        ResourceError: ``device`` is not ``"cuda"`` or ``"cpu"``, or ``"cuda"`` without a GPU.
    """
    if device not in ("cuda", "cpu"):
        raise ResourceError(f"GPU-sharing benchmark: device {device!r}: must be 'cuda' or 'cpu'")
    if device == "cuda" and gpu_count() == 0:
        raise ResourceError("GPU-sharing benchmark: no CUDA GPU visible (torch sees 0 devices); "
                            "it measures GPU sharing and needs one. Run it on a GPU node, or "
                            "pass --device cpu for a smoke test at tiny size")


def _energy_mj() -> float | None:
    """NVML total energy of GPU 0 since the driver loaded, mJ; None without pynvml/support."""
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
        try:
            return float(pynvml.nvmlDeviceGetTotalEnergyConsumption(
                pynvml.nvmlDeviceGetHandleByIndex(0)))
        finally:
            pynvml.nvmlShutdown()
    except pynvml.NVMLError:
        return None


def _launch(spec: Mapping[str, Any], env: Mapping[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "analysis.gpu.benchmark", json.dumps(spec)],
                            env=dict(env), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def _collect(process: subprocess.Popen[str], what: str) -> dict[str, Any]:
    out, err = process.communicate()
    if process.returncode != 0:
        raise ResourceError(f"GPU-sharing benchmark: {what} failed (exit {process.returncode}): "
                            f"{err.strip()[-2000:]}")
    return dict(json.loads(out.strip().splitlines()[-1]))


def _run_together(specs: Sequence[Mapping[str, Any]], env: Mapping[str, str], barrier: Path,
                  what: str) -> tuple[float, list[float], float | None]:
    """Start processes, let them all warm up, release them at once (a barrier of files, so that
    start-up is not measured); return (busy window s, per-job s, energy mJ or None)."""
    barrier.mkdir(parents=True, exist_ok=True)
    for stale in barrier.iterdir():
        stale.unlink()
    processes = [_launch({**spec, "barrier": str(barrier), "rank": i}, env)
                 for i, spec in enumerate(specs)]
    deadline = time.monotonic() + _BARRIER_TIMEOUT_S
    while len(list(barrier.glob("ready*"))) < len(specs):
        if any(p.poll() not in (None, 0) for p in processes) or time.monotonic() > deadline:
            for p in processes:
                p.kill()
            raise ResourceError(f"GPU-sharing benchmark: {what}: a training did not get ready: "
                                f"{[_tail(p) for p in processes]}")
        time.sleep(_POLL_S)
    energy0 = _energy_mj()
    (barrier / "go").touch()
    results = [_collect(p, f"{what} job {i}") for i, p in enumerate(processes)]
    energy1 = _energy_mj()
    window = max(r["end"] for r in results) - min(r["start"] for r in results)
    energy = energy1 - energy0 if energy0 is not None and energy1 is not None else None
    return window, [r["end"] - r["start"] for r in results], energy


def _tail(process: subprocess.Popen[str]) -> str:
    if process.poll() is None:
        return "running"
    return (process.stderr.read() if process.stderr else "")[-500:]


def _run_mode(mode: str, n_jobs: int, intensity: Intensity, device: str, workdir: Path,
              base_env: Mapping[str, str]) -> tuple[float, list[float], float | None]:
    """Run one mode; return (busy s, per-job training s, energy mJ or None)."""
    spec = {"action": "train", "device": device, **asdict(intensity)}
    env = {**base_env, "OMP_NUM_THREADS": "1"}
    if mode != "mps" and device == "cuda":
        env["CUDA_MPS_PIPE_DIRECTORY"] = str(workdir / _NO_MPS_PIPE)
    if mode == "mps":
        share = GpuShare(1.0 / n_jobs if n_jobs > 1 else 1.0, 1, memory_gb=1.0, cpus=1,
                         host_memory_gb=1.0, runtime_minutes=60)
        env = {**env, **client_environment(share, workdir / "mps" / "pipe")}
        env.pop("CUDA_MPS_PINNED_DEVICE_MEM_LIMIT", None)  # throughput, not isolation, here
    specs = [{**spec, "seed": i} for i in range(n_jobs)]
    batches = [[s] for s in specs] if mode == "exclusive" else [specs]
    busy, seconds, energy = 0.0, [], 0.0
    for i, batch in enumerate(batches):
        window, times, joules = _run_together(batch, env, workdir / "barrier",
                                              f"{intensity.name} {mode} N={n_jobs} ({i})")
        busy += window
        seconds += times
        energy = None if joules is None or energy is None else energy + joules
    return busy, seconds, energy


def run_sharing_benchmark(device: str = "cuda", n_jobs: Sequence[int] = (1, 2, 4, 8),
                          intensities: Sequence[Intensity] = tuple(INTENSITIES.values()),
                          modes: Sequence[str] = MODES,
                          workdir: str | os.PathLike[str] | None = None,
                          env: Mapping[str, str] | None = None,
                          on_row: Callable[[list[SharingRow]], None] | None = None,
                          stop_timeout_s: float = 60.0) -> list[SharingRow]:
    """Measure every (intensity, mode, N); MPS rows only on ``cuda``.

    Args:
        device: ``"cuda"`` (the benchmark) or ``"cpu"`` (smoke test).
        n_jobs: numbers of concurrent trainings; 1 must be among them (the baseline).
        intensities: workloads, e.g. :data:`INTENSITIES` values or tiny ones for a smoke test.
        modes: subset of :data:`MODES`.
        workdir: for the MPS daemon's pipe and log directories (default: a temporary one); keep
            it short, the control pipe is a Unix socket.
        env: environment of the training processes (default: this process's).
        on_row: called with all rows so far after each measurement (e.g. to write them with
            :func:`write_rows`), so that an interrupted run keeps what it measured.
        stop_timeout_s: how long the MPS daemon may take to go down at the end, s; a slower one
            is terminated with a warning and the rows are returned all the same.

    Returns:
        One row per measurement, in loop order (intensity, N, mode).

    Raises:
        ResourceError: no GPU for ``cuda``, an unknown mode, no N = 1, or a training that fails
            (the rows measured before it have been handed to ``on_row``).
    """
    require_device(device)
    if 1 not in n_jobs:
        raise ResourceError(f"GPU-sharing benchmark: n_jobs = {tuple(n_jobs)}: must include 1, "
                            f"the exclusive baseline")
    unknown = set(modes) - set(MODES)
    if unknown:
        raise ResourceError(f"GPU-sharing benchmark: modes {sorted(unknown)}: must be in {MODES}")
    modes = [m for m in MODES if m in modes and not (m == "mps" and device == "cpu")]
    base_env = dict(os.environ if env is None else env)
    rows: list[SharingRow] = []
    with tempfile.TemporaryDirectory(prefix="mps-") as tmp:  # short: MPS pipes are sockets
        work = Path(workdir) if workdir is not None else Path(tmp)
        daemon = MpsDaemon(work / "mps" / "pipe", work / "mps" / "log", env=base_env,
                           stop_timeout_s=stop_timeout_s)
        with daemon if "mps" in modes else contextlib.nullcontext():
            for intensity in intensities:
                events = intensity.steps * intensity.batch_size
                baseline: tuple[float, float] | None = None
                for n in sorted(n_jobs):
                    for mode in modes:
                        if n == 1 and mode != "exclusive":
                            continue  # one job alone is the same run in every mode
                        wall, seconds, energy = _run_mode(mode, n, intensity, device, work,
                                                          base_env)
                        job_s = sum(seconds) / len(seconds)
                        throughput = n * events / wall
                        if baseline is None:
                            baseline = (throughput, job_s)
                        rows.append(SharingRow(
                            intensity.name, mode, n, wall, job_s, throughput,
                            throughput / baseline[0], job_s / baseline[1],
                            None if energy is None else energy / _MJ_PER_J / n))
                        log.info("%s %s N=%d: %.3g ev/s, slowdown %.2f", intensity.name, mode, n,
                                 throughput, job_s / baseline[1])
                        if on_row is not None:
                            on_row(list(rows))
    return rows


def format_table(rows: Sequence[SharingRow]) -> str:
    """Markdown table of the rows (throughput in events/s, energy in J per training)."""
    header = ["intensity", "mode", "N", "busy (s)", "job (s)", "throughput (ev/s)", "speed-up",
              "slowdown", "energy / training (J)"]
    return markdown_table(header, [
        [r.intensity, r.mode, str(r.n_jobs), f"{r.wall_s:.2f}", f"{r.job_s:.2f}",
         f"{r.throughput:.4g}", f"{r.speedup:.2f}x", f"{r.slowdown:.2f}x",
         "n/a" if r.energy_per_training_j is None else f"{r.energy_per_training_j:.1f}"]
        for r in rows])


def write_rows(path_base: str | os.PathLike[str], rows: Sequence[SharingRow],
               metadata: Mapping[str, Any], finished: bool,
               provenance: Mapping[str, Any] | None = None) -> None:
    """Write the rows so far as ``<path_base>.json`` and ``<path_base>.md`` (each atomically).

    Args:
        path_base: output path without suffix; its directory must exist.
        rows: the measurements so far.
        metadata: what ran (device, intensities), stored beside the rows in the JSON.
        finished: False while the benchmark runs (or after it was interrupted): the JSON says
            ``"finished": false`` and the Markdown ends with a line saying the table is partial.
        provenance: stored under ``"provenance"`` in the JSON (a task's config hash, versions).
    """
    base = os.fspath(path_base)
    write_json(f"{base}.json", {**metadata, "finished": finished,
                                "rows": [asdict(r) for r in rows]}, provenance=provenance)
    note = "" if finished else f"\n\n(partial: {len(rows)} measurements so far)"
    write_text(f"{base}.md", format_table(rows) + note + "\n")


def _train(spec: Mapping[str, Any]) -> dict[str, Any]:
    """One training process: the sized network, synthetic inputs, Adam on cross entropy."""
    import torch

    from analysis.training.architectures import sized_dnn, sized_gnn

    torch.set_num_threads(1)
    torch.manual_seed(int(spec["seed"]))
    device = torch.device(spec["device"])
    n, target = int(spec["batch_size"]), int(spec["target_parameters"])
    if spec["model"] == "dnn":
        model: torch.nn.Module = sized_dnn(_N_EVENT_FEATURES, _N_CLASSES, target)
        inputs: tuple[torch.Tensor, ...] = (torch.randn(n, _N_EVENT_FEATURES, device=device),)
    else:
        from analysis.training.architectures import NODE_FEATURES

        model = sized_gnn(len(NODE_FEATURES), _N_CLASSES, target)
        inputs = (torch.randn(n, _N_NODES, len(NODE_FEATURES), device=device),
                  torch.ones(n, _N_NODES, dtype=torch.bool, device=device))
    model = model.to(device)
    labels = torch.randint(0, _N_CLASSES, (n,), device=device)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)

    def step() -> None:
        optimiser.zero_grad()
        torch.nn.functional.cross_entropy(model(*inputs), labels).backward()
        optimiser.step()

    step()  # warm-up: CUDA context, kernels, allocator
    if device.type == "cuda":
        torch.cuda.synchronize()
    barrier = Path(spec["barrier"])
    (barrier / f"ready{spec['rank']}").touch()
    deadline = time.monotonic() + _BARRIER_TIMEOUT_S
    while not (barrier / "go").exists() and time.monotonic() < deadline:
        time.sleep(_POLL_S / 10)
    start = time.time()  # wall clock: comparable across the processes of one mode
    for _ in range(int(spec["steps"])):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return {"start": start, "end": time.time()}


def _allocate(spec: Mapping[str, Any]) -> dict[str, Any]:
    """Allocate ``gib`` GiB on the GPU and hold it ``hold_s``; report an out-of-memory error."""
    import torch

    try:
        block = torch.empty(int(float(spec["gib"]) * 2**30), dtype=torch.uint8, device="cuda")
        torch.cuda.synchronize()
        time.sleep(float(spec.get("hold_s", 0)))
        del block
        return {"ok": True}
    except torch.OutOfMemoryError as err:
        return {"ok": False, "kind": "oom", "error": str(err).splitlines()[0]}
    except RuntimeError as err:  # under MPS a refused allocation may come as a CUDA error
        return {"ok": False, "kind": type(err).__name__, "error": str(err).splitlines()[0]}


if __name__ == "__main__":
    _spec = json.loads(sys.argv[1])
    _result = _train(_spec) if _spec["action"] == "train" else _allocate(_spec)
    print(json.dumps(_result))
    sys.exit(0 if _result.get("ok", True) else 1)
