"""Fixtures of the GPU unit tests: a fake MPS control binary whose daemon is a real process that
takes its time to go down, and short directories for MPS pipes (Unix sockets). The test modules
import them (a conftest.py here would clash with tests/integration/conftest.py: the test folders
are no packages)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from analysis.gpu.mps import MPS_CONTROL

# -d starts a background "daemon" (a shell loop with its own environment, as the real daemon
# inherits the caller's) that creates the control pipe; on "quit" it lingers {quit_s} s before it
# removes the pipe and ends, or never ends for quit_s = never. Calls are recorded as in
# tests/conftest.py's fake_mps.
SLOW_MPS_CONTROL = """#!/bin/sh
pipe="$CUDA_MPS_PIPE_DIRECTORY"
if [ "$1" = "-d" ]; then
    echo "start $pipe $CUDA_MPS_LOG_DIRECTORY" >> "{calls}"
    (
        while [ ! -e "$pipe/quit" ] || [ "{quit_s}" = never ]; do sleep 0.05; done
        sleep {quit_s}
        rm -f "$pipe/control" "$pipe/quit"
    ) </dev/null >/dev/null 2>&1 &
    echo $! > "$pipe/fake.pid"
    touch "$pipe/control"
    exit 0
fi
read command
echo "$command $pipe" >> "{calls}"
if [ "$command" = quit ]; then touch "$pipe/quit"; fi
"""


@pytest.fixture
def slow_mps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[str], Path]:
    """``slow_mps(quit_s)`` puts a fake control binary first on PATH whose daemon ends
    ``quit_s`` seconds after ``quit`` (``"never"``: it ignores it); returns the calls file."""

    def install(quit_s: str) -> Path:
        bin_dir = tmp_path / "slow-bin"
        bin_dir.mkdir(exist_ok=True)
        calls = tmp_path / "slow-calls.txt"
        script = bin_dir / MPS_CONTROL
        script.write_text(SLOW_MPS_CONTROL.format(calls=calls, quit_s=quit_s))
        script.chmod(0o755)
        monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
        return calls

    return install


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A fresh directory with a short path under /tmp: an MPS control pipe is a Unix socket,
    whose path may not exceed 107 bytes (pytest's tmp_path can come close)."""
    path = Path(tempfile.mkdtemp(prefix="mps-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)
