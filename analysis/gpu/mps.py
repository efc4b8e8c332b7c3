"""Control of an NVIDIA MPS control daemon, and the environment of its clients (no law).

The MPS control daemon (``nvidia-cuda-mps-control -d``) lets several processes share one GPU with
per-client limits (``CUDA_MPS_ACTIVE_THREAD_PERCENTAGE``, ``CUDA_MPS_PINNED_DEVICE_MEM_LIMIT``).
It listens on a named pipe ``control`` in its pipe directory (``CUDA_MPS_PIPE_DIRECTORY``) and logs
to its log directory (``CUDA_MPS_LOG_DIRECTORY``); clients find it through the same pipe directory.
:class:`MpsDaemon` starts and stops one daemon per pipe directory; as a context manager it starts a
daemon only if none is running there and stops it only if it started it, so concurrent tasks that
share a store share the daemon. "Running" means the ``control`` pipe exists: a daemon that was
killed with ``SIGKILL`` leaves a stale pipe, which an operator removes by hand.

Errors: a missing binary, a failing command or a daemon that does not come up (or go down) in time
raise :class:`~analysis.errors.ResourceError` naming the command and the log directory.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

from analysis.errors import ResourceError
from analysis.gpu.share import GpuShare, local_environment

__all__ = ["MPS_CONTROL", "MpsDaemon", "client_environment"]

log = logging.getLogger(__name__)

MPS_CONTROL = "nvidia-cuda-mps-control"
"""Name of the MPS control binary, looked up on ``PATH``."""

_CONTROL_PIPE = "control"
_POLL_S = 0.05


class MpsDaemon:
    """One MPS control daemon, identified by its pipe directory.

    Args:
        pipe_dir: ``CUDA_MPS_PIPE_DIRECTORY`` (created if missing), e.g. ``<store>/mps/pipe``.
        log_dir: ``CUDA_MPS_LOG_DIRECTORY`` (created if missing).
        env: base environment of the control commands (``PATH`` finds the binary); default the
            current process environment at the time of the call.
        timeout_s: how long to wait for the daemon to come up or go down, in seconds.

    Example:
        >>> daemon = MpsDaemon("/tmp/mps-pipe", "/tmp/mps-log")
        >>> daemon.environment(env={})
        {'CUDA_MPS_PIPE_DIRECTORY': '/tmp/mps-pipe', 'CUDA_MPS_LOG_DIRECTORY': '/tmp/mps-log'}
    """

    def __init__(self, pipe_dir: str | os.PathLike[str], log_dir: str | os.PathLike[str],
                 env: Mapping[str, str] | None = None, timeout_s: float = 10.0) -> None:
        self.pipe_dir = Path(pipe_dir)
        self.log_dir = Path(log_dir)
        self.env = dict(env) if env is not None else None
        self.timeout_s = timeout_s
        self._started = False

    def environment(self, env: Mapping[str, str] | None = None) -> dict[str, str]:
        """Environment of a control command: ``env`` (or the base) plus the two MPS directories."""
        base = env if env is not None else (self.env if self.env is not None else os.environ)
        return {**base, "CUDA_MPS_PIPE_DIRECTORY": str(self.pipe_dir),
                "CUDA_MPS_LOG_DIRECTORY": str(self.log_dir)}

    def is_running(self) -> bool:
        """True if a daemon serves :attr:`pipe_dir` (its ``control`` pipe exists)."""
        return (self.pipe_dir / _CONTROL_PIPE).exists()

    def start(self) -> bool:
        """Start a daemon unless one is running; return True if this call started it.

        Raises:
            ResourceError: if the binary is not on ``PATH``, the command fails, or the control
                pipe does not appear within ``timeout_s``.
        """
        if self.is_running():
            log.info("MPS control daemon already running in %s", self.pipe_dir)
            return False
        self.pipe_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._run(["-d"], stdin=None)
        self._wait(running=True)
        log.info("MPS control daemon started in %s (logs in %s)", self.pipe_dir, self.log_dir)
        return True

    def stop(self) -> None:
        """Stop the daemon of :attr:`pipe_dir` (``echo quit | nvidia-cuda-mps-control``), if any.

        Raises:
            ResourceError: if the binary is missing, the command fails, or the control pipe is
                still there after ``timeout_s``.
        """
        if not self.is_running():
            return
        self._run([], stdin="quit\n")
        self._wait(running=False)
        log.info("MPS control daemon in %s stopped", self.pipe_dir)

    def __enter__(self) -> MpsDaemon:
        self._started = self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._started:
            self._started = False
            self.stop()

    def _run(self, args: list[str], stdin: str | None) -> None:
        env = self.environment()
        binary = shutil.which(MPS_CONTROL, path=env.get("PATH", ""))
        if binary is None:
            raise ResourceError(f"{MPS_CONTROL}: not found on PATH; install the NVIDIA driver "
                                f"utilities or run without MPS (whole GPUs)")
        command = [binary, *args]
        try:
            result = subprocess.run(command, input=stdin, env=env, capture_output=True,
                                    text=True, timeout=self.timeout_s, check=False)
        except subprocess.TimeoutExpired as err:
            raise ResourceError(f"{' '.join(command)}: no answer within {self.timeout_s} s "
                                f"(logs in {self.log_dir})") from err
        if result.returncode != 0:
            raise ResourceError(f"{' '.join(command)}: exit status {result.returncode}: "
                                f"{(result.stderr or result.stdout).strip()} "
                                f"(logs in {self.log_dir})")

    def _wait(self, running: bool) -> None:
        deadline = time.monotonic() + self.timeout_s
        while self.is_running() != running:
            if time.monotonic() > deadline:
                state = "come up" if running else "go down"
                raise ResourceError(f"MPS control daemon in {self.pipe_dir} did not {state} "
                                    f"within {self.timeout_s} s (logs in {self.log_dir})")
            time.sleep(_POLL_S)


def client_environment(share: GpuShare, pipe_dir: str | os.PathLike[str]) -> dict[str, str]:
    """Environment of an MPS client process: the daemon's pipe directory and the share's limits.

    Example:
        >>> env = client_environment(GpuShare.parse("0.5", memory_gb=2.5), "/tmp/mps-pipe")
        >>> env["CUDA_MPS_PIPE_DIRECTORY"], env["CUDA_MPS_PINNED_DEVICE_MEM_LIMIT"]
        ('/tmp/mps-pipe', '0=2560M')
    """
    return {"CUDA_MPS_PIPE_DIRECTORY": str(pipe_dir), **local_environment(share)}
