"""MPS control daemon: start/stop logic against a fake binary, and the real one on a GPU."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import fake_mps_daemon
import pytest

from analysis.errors import ResourceError
from analysis.gpu.mps import MPS_CONTROL, MpsDaemon, client_environment
from analysis.gpu.share import GpuShare

# the fixtures of fake_mps_daemon.py, used by name
short_dir = fake_mps_daemon.short_dir
slow_mps = fake_mps_daemon.slow_mps


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


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_slow_daemon_is_waited_for(short_dir: Path, slow_mps: Callable[[str], Path],
                                   caplog: pytest.LogCaptureFixture) -> None:
    """A daemon that needs 1 s to go down after quit: stop() waits for its process, no warning."""
    calls = slow_mps("1")
    daemon = MpsDaemon(short_dir / "pipe", short_dir / "log", timeout_s=2, stop_timeout_s=20)
    assert daemon.start()
    (pid,) = {int((short_dir / "pipe" / "fake.pid").read_text())} & set(daemon.own_processes())
    start = time.monotonic()
    with caplog.at_level(logging.INFO, logger="analysis.gpu.mps"):
        assert daemon.stop() is True
    assert time.monotonic() - start >= 1.0  # it waited for the daemon, not for a fixed time
    assert not _alive(pid) and not daemon.is_running() and daemon.own_processes() == []
    assert "stopped in" in caplog.text and not [r for r in caplog.records
                                               if r.levelno >= logging.WARNING]
    assert recorded(calls)[-1] == f"quit {short_dir / 'pipe'}"


def test_stuck_daemon_is_terminated_with_a_warning(short_dir: Path,
                                                   slow_mps: Callable[[str], Path],
                                                   caplog: pytest.LogCaptureFixture) -> None:
    """A daemon that ignores quit: after the wait only the processes it started are terminated
    (not a client of it, not another pipe directory's daemon), with a warning, never an error."""
    slow_mps("never")
    other = MpsDaemon(short_dir / "other", short_dir / "log2", timeout_s=2, stop_timeout_s=0.3)
    daemon = MpsDaemon(short_dir / "pipe", short_dir / "log", timeout_s=2, stop_timeout_s=0.3)
    assert other.start() and daemon.start()
    client = subprocess.Popen(["sleep", "30"], env={
        **os.environ, **client_environment(GpuShare.parse("0.5", memory_gb=1), daemon.pipe_dir)})
    try:
        own = daemon.own_processes()
        assert own and client.pid not in own and not set(own) & set(other.own_processes())
        with caplog.at_level(logging.WARNING, logger="analysis.gpu.mps"):
            assert daemon.stop() is False
        assert (f"MPS control daemon in {daemon.pipe_dir} did not go down within 0.3 s after "
                f"'quit'; terminating the") in caplog.text
        assert not any(_alive(p) for p in own) and not daemon.is_running()
        assert client.poll() is None  # its client lives on
        assert other.is_running() and other.own_processes()  # so does the other daemon
    finally:
        client.kill()
        client.wait()
        other.stop()
    assert not other.own_processes()


def test_slow_shutdown_keeps_the_result(short_dir: Path, slow_mps: Callable[[str], Path],
                                        caplog: pytest.LogCaptureFixture) -> None:
    slow_mps("never")
    with caplog.at_level(logging.WARNING, logger="analysis.gpu.mps"):
        with MpsDaemon(short_dir / "pipe", short_dir / "log", timeout_s=2,
                       stop_timeout_s=0.2) as daemon:
            result = [1, 2]  # e.g. a benchmark's rows
    assert result == [1, 2] and not daemon.is_running()
    assert "did not go down" in caplog.text


def test_quit_that_fails_is_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    daemon = _scripted_daemon(tmp_path, 'if [ "$1" = -d ]; then : > "$CUDA_MPS_PIPE_DIRECTORY/'
                              'control"; else echo broken >&2; exit 1; fi', timeout_s=1,
                              stop_timeout_s=0.2)
    daemon.start()
    with caplog.at_level(logging.WARNING, logger="analysis.gpu.mps"):
        assert daemon.stop() is False
    assert "'quit' failed" in caplog.text and "exit status 1: broken" in caplog.text
    assert not daemon.is_running()  # no process of it runs: its pipe was stale


@pytest.mark.gpu
def test_real_daemon_serves_a_limited_client(short_dir: Path,
                                             caplog: pytest.LogCaptureFixture) -> None:
    if shutil.which(MPS_CONTROL) is None:
        pytest.skip(f"{MPS_CONTROL} not installed")
    pipe, logs = short_dir / "pipe", short_dir / "log"
    share = GpuShare.parse("0.25", memory_gb=1)
    code = ("import torch; x = torch.ones(1024, device='cuda'); print(int(x.sum().item()))\n"
            "try:\n    torch.empty(2 * 2**30, dtype=torch.uint8, device='cuda')\n"
            "except torch.OutOfMemoryError:\n    print('oom')\n")
    with caplog.at_level(logging.INFO, logger="analysis.gpu.mps"):
        with MpsDaemon(pipe, logs, stop_timeout_s=30) as daemon:
            assert daemon.is_running() and daemon.own_processes()  # the marker reaches it
            result = subprocess.run([sys.executable, "-c", code], capture_output=True,
                                    text=True, env={**os.environ, **client_environment(share, pipe)},
                                    timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["1024", "oom"]  # the 1 GiB pinned limit holds
    # down, by quit or (with a warning, printed with the log) terminated: nothing of it is left
    assert not daemon.is_running() and daemon.own_processes() == [], caplog.text
