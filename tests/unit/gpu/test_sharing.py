"""GPU-sharing benchmark: refusal without a GPU, argument checks, the table; on a GPU, memory
isolation under MPS and a small real run."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import analysis.gpu.sharing as sharing
from analysis.errors import ResourceError
from analysis.gpu.mps import MPS_CONTROL, MpsDaemon, client_environment
from analysis.gpu.share import GpuShare
from analysis.gpu.sharing import (INTENSITIES, Intensity, SharingRow, format_table,
                                  require_device, run_sharing_benchmark)

TINY = Intensity("tiny", "dnn", 500, 256, 5)


def test_refuses_cuda_without_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sharing, "gpu_count", lambda: 0)
    with pytest.raises(ResourceError, match=r"no CUDA GPU visible .* pass --device cpu"):
        require_device("cuda")
    with pytest.raises(ResourceError, match=r"no CUDA GPU visible"):
        run_sharing_benchmark("cuda", (1, 2), (TINY,))
    require_device("cpu")  # the smoke mode needs nothing
    with pytest.raises(ResourceError, match="device 'tpu': must be 'cuda' or 'cpu'"):
        require_device("tpu")


def test_bad_arguments_fail_before_running() -> None:
    with pytest.raises(ResourceError, match=r"n_jobs = \(2, 4\): must include 1"):
        run_sharing_benchmark("cpu", (2, 4), (TINY,))
    with pytest.raises(ResourceError, match=r"modes \['spatial'\]"):
        run_sharing_benchmark("cpu", (1,), (TINY,), modes=("spatial",))


def test_intensities_are_the_pipelines_networks() -> None:
    assert [(i.model, i.target_parameters) for i in INTENSITIES.values()] == [("dnn", 5000),
                                                                             ("gnn", 5000)]


def test_table_rows() -> None:
    rows = [SharingRow("low", "exclusive", 1, 2.0, 2.0, 1000.0, 1.0, 1.0, None),
            SharingRow("low", "mps", 2, 2.5, 2.4, 1600.0, 1.6, 1.2, 12.34)]
    lines = format_table(rows).splitlines()
    assert len(lines) == 4 and lines[0].startswith("| intensity | mode | N |")
    assert lines[2] == "| low | exclusive | 1 | 2.00 | 2.00 | 1000 | 1.00x | 1.00x | n/a |"
    assert lines[3] == "| low | mps | 2 | 2.50 | 2.40 | 1600 | 1.60x | 1.20x | 12.3 |"


def _allocate(gib: float, env: dict[str, str], hold_s: float) -> subprocess.Popen[str]:
    spec = {"action": "allocate", "gib": gib, "hold_s": hold_s}
    return subprocess.Popen([sys.executable, "-m", "analysis.gpu.sharing", json.dumps(spec)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.gpu
def test_mps_pinned_memory_limit_isolates_clients(tmp_path: Path) -> None:
    """Two clients of one MPS daemon: the one limited to 2 GiB that asks for 4 GiB gets a clear
    out-of-memory error; its neighbour limited to 8 GiB allocates 4 GiB and finishes."""
    if shutil.which(MPS_CONTROL) is None:
        pytest.skip(f"{MPS_CONTROL} not installed")
    pipe = Path("/tmp") / f"mps-test-{os.getpid()}"  # short: the control pipe is a socket
    with MpsDaemon(pipe / "pipe", tmp_path / "log"):
        small = GpuShare(0.25, 1, memory_gb=2, cpus=1, host_memory_gb=1, runtime_minutes=5)
        large = GpuShare(0.25, 1, memory_gb=8, cpus=1, host_memory_gb=1, runtime_minutes=5)
        greedy = _allocate(4, {**os.environ, **client_environment(small, pipe / "pipe")}, 0)
        modest = _allocate(4, {**os.environ, **client_environment(large, pipe / "pipe")}, 2)
        greedy_out, _ = greedy.communicate(timeout=120)
        modest_out, modest_err = modest.communicate(timeout=120)
    shutil.rmtree(pipe, ignore_errors=True)
    assert greedy.returncode == 1
    result = json.loads(greedy_out.strip().splitlines()[-1])
    assert result["ok"] is False and "out of memory" in result["error"].lower()
    assert modest.returncode == 0, modest_err
    assert json.loads(modest_out.strip().splitlines()[-1]) == {"ok": True}


@pytest.mark.gpu
def test_small_benchmark_on_the_gpu(tmp_path: Path) -> None:
    if shutil.which(MPS_CONTROL) is None:
        pytest.skip(f"{MPS_CONTROL} not installed")
    rows = run_sharing_benchmark("cuda", (1, 2), (TINY,), workdir=Path("/tmp") / "mps-bench-t")
    assert [(r.mode, r.n_jobs) for r in rows] == [("exclusive", 1), ("exclusive", 2),
                                                  ("time_sliced", 2), ("mps", 2)]
    assert rows[0].speedup == 1.0 and rows[0].slowdown == 1.0
    assert all(r.throughput > 0 and r.wall_s > 0 for r in rows)
