"""GPU-sharing benchmark: refusal without a GPU, argument checks, the table, rows that survive an
interruption and a slow MPS shutdown; on a GPU, memory isolation under MPS and a small real run."""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import fake_mps_daemon
import pytest

import analysis.gpu.benchmark as sharing
from analysis.errors import ResourceError
from analysis.gpu.benchmark import (
    INTENSITIES,
    Intensity,
    SharingRow,
    format_table,
    require_device,
    run_sharing_benchmark,
)
from analysis.gpu.mps import MPS_CONTROL, MpsDaemon, client_environment
from analysis.gpu.share import GpuShare

# the fixtures of fake_mps_daemon.py, used by name
short_dir = fake_mps_daemon.short_dir
slow_mps = fake_mps_daemon.slow_mps

REPO = Path(__file__).resolve().parents[3]

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


def bench_script() -> ModuleType:
    """benchmarks/bench_gpu_sharing.py as a module (benchmarks/ is not a package)."""
    spec = importlib.util.spec_from_file_location("bench_gpu_sharing",
                                                  REPO / "benchmarks" / "bench_gpu_sharing.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fake_measurements(monkeypatch: pytest.MonkeyPatch, interrupt_at: int | None) -> list[str]:
    """Replace the trainings by instant fake ones (N jobs of 1 s each, all at once but for
    exclusive); KeyboardInterrupt at measurement number ``interrupt_at`` (1-based)."""
    done: list[str] = []

    def run_mode(mode: str, n_jobs: int, *args: Any) -> tuple[float, list[float], None]:
        if interrupt_at is not None and len(done) + 1 == interrupt_at:
            raise KeyboardInterrupt
        done.append(f"{mode} {n_jobs}")
        return (float(n_jobs) if mode == "exclusive" else 1.0), n_jobs * [1.0], None

    monkeypatch.setattr(sharing, "_run_mode", run_mode)
    return done


def test_an_interrupted_run_keeps_its_rows(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C during the 3rd measurement: the two rows before it are in the JSON, the Markdown
    and the plot, marked partial; the exit status is 130."""
    done = fake_measurements(monkeypatch, interrupt_at=3)
    out = tmp_path / "out" / "sharing"
    status = bench_script().main(["--device", "cpu", "--tiny", "--intensities", "low",
                                  "--n-jobs", "1,2,4", "--out", str(out)])
    assert status == 130 and done == ["exclusive 1", "exclusive 2"]
    result = json.loads(out.with_suffix(".json").read_text())
    assert result["finished"] is False and result["device"] == "cpu"
    assert [(r["mode"], r["n_jobs"]) for r in result["rows"]] == [("exclusive", 1),
                                                                  ("exclusive", 2)]
    table = out.with_suffix(".md").read_text().splitlines()
    assert table[2].startswith("| low | exclusive | 1 |") and table[3].startswith(
        "| low | exclusive | 2 |")
    assert table[-1] == "(partial: 2 measurements so far)"
    assert out.with_suffix(".png").stat().st_size > 0 and out.with_suffix(".pdf").exists()


def test_rows_are_handed_out_as_they_are_measured(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_measurements(monkeypatch, interrupt_at=None)
    seen: list[int] = []
    rows = run_sharing_benchmark("cpu", (1, 2), (TINY,), on_row=lambda r: seen.append(len(r)))
    assert seen == [1, 2, 3] and len(rows) == 3
    assert rows[2].mode == "time_sliced" and rows[2].speedup == pytest.approx(2.0)


def test_slow_mps_shutdown_still_writes_table_and_plot(
        tmp_path: Path, short_dir: Path, slow_mps: Callable[[str], Path],
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """A (pretended) GPU whose MPS daemon ignores quit: the benchmark warns, stops the daemon
    and writes the finished table, JSON and plot, MPS rows included; exit status 0."""
    fake_measurements(monkeypatch, interrupt_at=None)
    monkeypatch.setattr(sharing, "gpu_count", lambda: 1)
    slow_mps("never")
    out = tmp_path / "sharing"
    with caplog.at_level(logging.WARNING, logger="analysis.gpu.mps"):
        status = bench_script().main(["--device", "cuda", "--tiny", "--intensities", "low",
                                      "--n-jobs", "1,2", "--out", str(out),
                                      "--stop-timeout", "0.3", "--workdir", str(short_dir)])
    assert status == 0
    assert "did not go down within 0.3 s" in caplog.text
    result = json.loads(out.with_suffix(".json").read_text())
    assert result["finished"] is True
    assert [(r["mode"], r["n_jobs"]) for r in result["rows"]] == [
        ("exclusive", 1), ("exclusive", 2), ("time_sliced", 2), ("mps", 2)]
    assert out.with_suffix(".md").read_text().count("\n") == 6  # header, rule, 4 rows
    assert out.with_suffix(".png").stat().st_size > 0 and out.with_suffix(".pdf").exists()
    assert not (short_dir / "mps" / "pipe" / "control").exists()


def _allocate(gib: float, env: dict[str, str], hold_s: float) -> subprocess.Popen[str]:
    spec = {"action": "allocate", "gib": gib, "hold_s": hold_s}
    return subprocess.Popen([sys.executable, "-m", "analysis.gpu.benchmark", json.dumps(spec)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.gpu
def test_mps_pinned_memory_limit_isolates_clients(short_dir: Path) -> None:
    """Two clients of one MPS daemon: the one limited to 2 GiB that asks for 4 GiB gets a clear
    out-of-memory error; its neighbour limited to 8 GiB allocates 4 GiB and finishes."""
    if shutil.which(MPS_CONTROL) is None:
        pytest.skip(f"{MPS_CONTROL} not installed")
    pipe = short_dir  # short: the control pipe is a socket
    with MpsDaemon(pipe / "pipe", pipe / "log", stop_timeout_s=30) as daemon:
        small = GpuShare(0.25, 1, memory_gb=2, cpus=1, host_memory_gb=1, runtime_minutes=5)
        large = GpuShare(0.25, 1, memory_gb=8, cpus=1, host_memory_gb=1, runtime_minutes=5)
        greedy = _allocate(4, {**os.environ, **client_environment(small, pipe / "pipe")}, 0)
        modest = _allocate(4, {**os.environ, **client_environment(large, pipe / "pipe")}, 2)
        greedy_out, _ = greedy.communicate(timeout=120)
        modest_out, modest_err = modest.communicate(timeout=120)
    assert not daemon.is_running() and daemon.own_processes() == []
    assert greedy.returncode == 1, greedy_out
    result = json.loads(greedy_out.strip().splitlines()[-1])
    assert result["ok"] is False and "out of memory" in result["error"].lower()
    assert modest.returncode == 0, modest_err
    assert json.loads(modest_out.strip().splitlines()[-1]) == {"ok": True}


@pytest.mark.gpu
def test_small_benchmark_on_the_gpu(short_dir: Path) -> None:
    if shutil.which(MPS_CONTROL) is None:
        pytest.skip(f"{MPS_CONTROL} not installed")
    rows = run_sharing_benchmark("cuda", (1, 2), (TINY,), workdir=short_dir, stop_timeout_s=30)
    assert [(r.mode, r.n_jobs) for r in rows] == [("exclusive", 1), ("exclusive", 2),
                                                  ("time_sliced", 2), ("mps", 2)]
    assert rows[0].speedup == 1.0 and rows[0].slowdown == 1.0
    assert all(r.throughput > 0 and r.wall_s > 0 for r in rows)
