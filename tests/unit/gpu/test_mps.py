"""MPS control daemon: start/stop logic against a fake binary, and the real one on a GPU."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from analysis.errors import ResourceError
from analysis.gpu.mps import MPS_CONTROL, MpsDaemon, client_environment
from analysis.gpu.share import GpuShare

def recorded(calls: Path) -> list[str]:
    return calls.read_text().splitlines() if calls.exists() else []


def test_start_and_stop(tmp_path: Path, fake_mps: Path) -> None:
    pipe, logs = tmp_path / "store" / "mps" / "pipe", tmp_path / "store" / "mps" / "log"
    daemon = MpsDaemon(pipe, logs, timeout_s=2)
    assert not daemon.is_running()
    assert daemon.start() is True
    assert daemon.is_running() and logs.is_dir()
    assert daemon.start() is False  # already running: no second daemon
    daemon.stop()
    assert not daemon.is_running()
    daemon.stop()  # nothing to stop: no call
    assert recorded(fake_mps) == [f"start {pipe} {logs}", f"quit {pipe}"]


def test_context_manager_starts_and_stops_its_own_daemon(tmp_path: Path, fake_mps: Path) -> None:
    pipe = tmp_path / "pipe"
    with MpsDaemon(pipe, tmp_path / "log", timeout_s=2) as daemon:
        assert daemon.is_running()
    assert not (pipe / "control").exists()
    assert recorded(fake_mps) == [f"start {pipe} {tmp_path / 'log'}", f"quit {pipe}"]


def test_context_manager_leaves_a_running_daemon_alone(tmp_path: Path, fake_mps: Path) -> None:
    pipe = tmp_path / "pipe"
    owner = MpsDaemon(pipe, tmp_path / "log", timeout_s=2)
    owner.start()
    with MpsDaemon(pipe, tmp_path / "log", timeout_s=2) as guest:
        assert guest.is_running()
    assert owner.is_running()  # the guest did not stop what it did not start
    assert recorded(fake_mps) == [f"start {pipe} {tmp_path / 'log'}"]
    owner.stop()
    assert recorded(fake_mps)[-1] == f"quit {pipe}"


def test_context_manager_stops_on_error(tmp_path: Path, fake_mps: Path) -> None:
    daemon = MpsDaemon(tmp_path / "pipe", tmp_path / "log", timeout_s=2)
    with pytest.raises(RuntimeError, match="boom"), daemon:
        raise RuntimeError("boom")
    assert not daemon.is_running()


def test_missing_binary(tmp_path: Path) -> None:
    daemon = MpsDaemon(tmp_path / "pipe", tmp_path / "log", env={"PATH": str(tmp_path)})
    with pytest.raises(ResourceError, match=f"{MPS_CONTROL}: not found on PATH"):
        daemon.start()


def _scripted_daemon(tmp_path: Path, script: str, **kwargs: float) -> MpsDaemon:
    """A daemon whose control binary is the shell ``script``."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / MPS_CONTROL).write_text(f"#!/bin/sh\n{script}\n")
    (bin_dir / MPS_CONTROL).chmod(0o755)
    return MpsDaemon(tmp_path / "pipe", tmp_path / "log", env={"PATH": str(bin_dir)}, **kwargs)


def test_daemon_that_does_not_come_up(tmp_path: Path) -> None:
    daemon = _scripted_daemon(tmp_path, "exit 0", timeout_s=0.2)
    with pytest.raises(ResourceError, match=r"did not come up within 0.2 s \(logs in .*log\)"):
        daemon.start()


def test_failing_command(tmp_path: Path) -> None:
    daemon = _scripted_daemon(tmp_path, "echo 'no GPU' >&2\nexit 3")
    with pytest.raises(ResourceError, match="-d: exit status 3: no GPU"):
        daemon.start()


def test_client_environment() -> None:
    env = client_environment(GpuShare.parse("0.25", memory_gb=2), "/p")
    assert env == {"CUDA_MPS_PIPE_DIRECTORY": "/p", "CUDA_MPS_ACTIVE_THREAD_PERCENTAGE": "25",
                   "CUDA_MPS_PINNED_DEVICE_MEM_LIMIT": "0=2G"}
    assert client_environment(GpuShare.parse("1", memory_gb=80), "/p") == {
        "CUDA_MPS_PIPE_DIRECTORY": "/p", "CUDA_VISIBLE_DEVICES": "0"}


@pytest.mark.gpu
def test_real_daemon_serves_a_limited_client(tmp_path: Path) -> None:
    if shutil.which(MPS_CONTROL) is None:
        pytest.skip(f"{MPS_CONTROL} not installed")
    pipe, logs = tmp_path / "pipe", tmp_path / "log"
    share = GpuShare.parse("0.25", memory_gb=1)
    code = ("import torch; x = torch.ones(1024, device='cuda'); print(int(x.sum().item()))\n"
            "try:\n    torch.empty(2 * 2**30, dtype=torch.uint8, device='cuda')\n"
            "except torch.OutOfMemoryError:\n    print('oom')\n")
    with MpsDaemon(pipe, logs) as daemon:
        assert daemon.is_running()
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                env={**os.environ, **client_environment(share, pipe)},
                                timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["1024", "oom"]  # the 1 GiB pinned limit holds
    assert not daemon.is_running()
