"""Control of an NVIDIA MPS control daemon, and the environment of its clients (no law).

The MPS control daemon (``nvidia-cuda-mps-control -d``) lets several processes share one GPU with
per-client limits (``CUDA_MPS_ACTIVE_THREAD_PERCENTAGE``, ``CUDA_MPS_PINNED_DEVICE_MEM_LIMIT``).
It listens on a named pipe ``control`` in its pipe directory (``CUDA_MPS_PIPE_DIRECTORY``) and logs
to its log directory (``CUDA_MPS_LOG_DIRECTORY``); clients find it through the same pipe directory.
:class:`MpsDaemon` starts and stops one daemon per pipe directory; as a context manager it starts a
daemon only if none is running there and stops it only if it started it, so concurrent tasks that
share a store share the daemon. "Running" means the ``control`` pipe exists: a daemon that was
killed with ``SIGKILL`` leaves a stale pipe, which an operator removes by hand.

Stopping is ``quit`` on the control pipe, then a generous wait (``stop_timeout_s``) for the
processes of the daemon to end. A daemon that :class:`MpsDaemon` started carries the marker
``DIFFANA_MPS_DAEMON=<pipe dir>`` in its environment, and so do the MPS servers it spawns, but not
its clients; a daemon that is still up after the wait is terminated by that marker, so only the
processes it started are stopped. A slow shutdown is a warning, never an error: whatever the
daemon served (a benchmark's rows, a training) is kept.

Errors: a missing binary, a failing start command or a daemon that does not come up in time raise
:class:`~analysis.errors.ResourceError` naming the command and the log directory.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType

from analysis.errors import ResourceError
from analysis.gpu.share import GpuShare, local_environment

__all__ = ["DAEMON_MARKER", "MPS_CONTROL", "MpsDaemon", "client_environment"]

log = logging.getLogger(__name__)

MPS_CONTROL = "nvidia-cuda-mps-control"
"""Name of the MPS control binary, looked up on ``PATH``."""

DAEMON_MARKER = "DIFFANA_MPS_DAEMON"
"""Environment variable (value: the pipe directory) that marks the daemons MpsDaemon starts."""

_CONTROL_PIPE = "control"
_POLL_S = 0.05
_TERMINATE_GRACE_S = 5.0  # after SIGTERM, before SIGKILL


class MpsDaemon:
    """One MPS control daemon, identified by its pipe directory.

    Args:
        pipe_dir: ``CUDA_MPS_PIPE_DIRECTORY`` (created if missing), e.g. ``<store>/mps/pipe``; keep
            it short: the control pipe is a Unix socket, whose path may not exceed 107 bytes.
        log_dir: ``CUDA_MPS_LOG_DIRECTORY`` (created if missing).
        env: base environment of the control commands (``PATH`` finds the binary); default the
            current process environment at the time of the call.
        timeout_s: how long to wait for the daemon to come up, and for a control command to
            answer, in seconds.
        stop_timeout_s: how long to wait for the daemon to go down after ``quit`` before its
            processes are terminated, in seconds (it shuts its MPS servers down first, which on a
            large card takes seconds to tens of seconds).

    Example:
        >>> daemon = MpsDaemon("/tmp/mps-pipe", "/tmp/mps-log")
        >>> daemon.environment(env={})
        {'CUDA_MPS_PIPE_DIRECTORY': '/tmp/mps-pipe', 'CUDA_MPS_LOG_DIRECTORY': '/tmp/mps-log'}
    """

    def __init__(self, pipe_dir: str | os.PathLike[str], log_dir: str | os.PathLike[str],
                 env: Mapping[str, str] | None = None, timeout_s: float = 10.0,
                 stop_timeout_s: float = 60.0) -> None:
        self.pipe_dir = Path(pipe_dir)
        self.log_dir = Path(log_dir)
        self.env = dict(env) if env is not None else None
        self.timeout_s = timeout_s
        self.stop_timeout_s = stop_timeout_s
        self._started = False

    def environment(self, env: Mapping[str, str] | None = None) -> dict[str, str]:
        """Environment of a control command: ``env`` (or the base) plus the two MPS directories."""
        base = env if env is not None else (self.env if self.env is not None else os.environ)
        return {**base, "CUDA_MPS_PIPE_DIRECTORY": str(self.pipe_dir),
                "CUDA_MPS_LOG_DIRECTORY": str(self.log_dir)}

    def is_running(self) -> bool:
        """True if a daemon serves :attr:`pipe_dir` (its ``control`` pipe exists)."""
        return (self.pipe_dir / _CONTROL_PIPE).exists()

    def own_processes(self) -> list[int]:
        """Process ids of the daemon of :attr:`pipe_dir` that an MpsDaemon started, and of the
        MPS servers it spawned (those with :data:`DAEMON_MARKER` set to this pipe directory);
        empty where ``/proc`` cannot tell (not Linux) or nothing runs."""
        return _processes_with(f"{DAEMON_MARKER}={self.pipe_dir}".encode())

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
        self._run(["-d"], stdin=None, marked=True)
        deadline = time.monotonic() + self.timeout_s
        while not self.is_running():
            if time.monotonic() > deadline:
                raise ResourceError(f"MPS control daemon in {self.pipe_dir} did not come up "
                                    f"within {self.timeout_s} s (logs in {self.log_dir})")
            time.sleep(_POLL_S)
        log.info("MPS control daemon started in %s (logs in %s)", self.pipe_dir, self.log_dir)
        return True

    def stop(self) -> bool:
        """Stop the daemon of :attr:`pipe_dir`, if any: ``quit``, wait, then terminate.

        Sends ``quit`` (``echo quit | nvidia-cuda-mps-control``) and waits up to
        ``stop_timeout_s`` until the daemon's processes (:meth:`own_processes`) have ended, or,
        for a daemon whose processes cannot be seen, until its control pipe is gone. A daemon
        still up then gets ``SIGTERM`` (``SIGKILL`` after 5 s), only its own processes, and a
        control pipe it left behind is removed. Never raises: a slow or failed shutdown is logged
        as a warning.

        Returns:
            True if the daemon went down after ``quit`` (or none ran), False if it was terminated.
        """
        processes = self.own_processes()
        if not self.is_running() and not processes:
            return True
        start = time.monotonic()
        deadline = start + self.stop_timeout_s
        try:
            self._run([], stdin="quit\n", timeout_s=self.stop_timeout_s)
        except ResourceError as err:
            log.warning("MPS control daemon in %s: 'quit' failed (%s)", self.pipe_dir, err)
        while not self._is_down(processes):
            if time.monotonic() > deadline:
                alive = [p for p in processes if _is_alive(p)]
                log.warning("MPS control daemon in %s did not go down within %g s after "
                            "'quit'; terminating the %d processes it started (%s; logs in %s)",
                            self.pipe_dir, self.stop_timeout_s, len(alive),
                            ", ".join(map(str, alive)) or "none visible", self.log_dir)
                _terminate(alive)
                _terminate(self.own_processes())  # what they spawned meanwhile
                (self.pipe_dir / _CONTROL_PIPE).unlink(missing_ok=True)
                return False
            time.sleep(_POLL_S)
        self._remove_stale_pipe()
        log.info("MPS control daemon in %s stopped in %.1f s", self.pipe_dir,
                 time.monotonic() - start)
        return True

    def __enter__(self) -> MpsDaemon:
        self._started = self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._started:
            self._started = False
            self.stop()

    def _is_down(self, processes: Sequence[int]) -> bool:
        if processes:  # the daemon's own processes say it; a pipe it leaves behind does not
            return not any(_is_alive(p) for p in processes)
        return not self.is_running()

    def _remove_stale_pipe(self) -> None:
        # the daemon is gone (ended or terminated): a control pipe left behind would make the
        # next start() believe one still runs
        if self.is_running() and not self.own_processes():
            (self.pipe_dir / _CONTROL_PIPE).unlink(missing_ok=True)

    def _run(self, args: list[str], stdin: str | None, marked: bool = False,
             timeout_s: float | None = None) -> None:
        env = self.environment()
        if marked:
            env[DAEMON_MARKER] = str(self.pipe_dir)
        binary = shutil.which(MPS_CONTROL, path=env.get("PATH", ""))
        if binary is None:
            raise ResourceError(f"{MPS_CONTROL}: not found on PATH; install the NVIDIA driver "
                                f"utilities or run without MPS (whole GPUs)")
        command = [binary, *args]
        timeout_s = self.timeout_s if timeout_s is None else timeout_s
        try:
            result = subprocess.run(command, input=stdin, env=env, capture_output=True,
                                    text=True, timeout=timeout_s, check=False,
                                    stdin=subprocess.DEVNULL if stdin is None else None)
        except subprocess.TimeoutExpired as err:
            raise ResourceError(f"{' '.join(command)}: no answer within {timeout_s} s "
                                f"(logs in {self.log_dir})") from err
        if result.returncode != 0:
            raise ResourceError(f"{' '.join(command)}: exit status {result.returncode}: "
                                f"{(result.stderr or result.stdout).strip()} "
                                f"(logs in {self.log_dir})")


def _processes_with(entry: bytes) -> list[int]:
    """Ids of the live processes (not this one) whose initial environment holds ``entry``."""
    own = os.getpid()
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            environ = (proc / "environ").read_bytes()
        except OSError:  # gone, or another user's
            continue
        pid = int(proc.name)
        if pid != own and entry in environ.split(b"\0") and _is_alive(pid):
            found.append(pid)
    return sorted(found)


def _is_alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie, which nothing may reap in a container, has ended)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _terminate(pids: Sequence[int]) -> None:
    """SIGTERM ``pids``, then SIGKILL those still alive after a grace period."""
    for sig, wait_s in ((signal.SIGTERM, _TERMINATE_GRACE_S), (signal.SIGKILL, 1.0)):
        alive = [p for p in pids if _is_alive(p)]
        for pid in alive:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + wait_s
        while any(_is_alive(p) for p in alive) and time.monotonic() < deadline:
            time.sleep(_POLL_S)


def client_environment(share: GpuShare, pipe_dir: str | os.PathLike[str]) -> dict[str, str]:
    """Environment of an MPS client process: the daemon's pipe directory and the share's limits.

    Example:
        >>> env = client_environment(GpuShare.parse("0.5", memory_gb=2.5), "/tmp/mps-pipe")
        >>> env["CUDA_MPS_PIPE_DIRECTORY"], env["CUDA_MPS_PINNED_DEVICE_MEM_LIMIT"]
        ('/tmp/mps-pipe', '0=2560M')
    """
    return {"CUDA_MPS_PIPE_DIRECTORY": str(pipe_dir), **local_environment(share)}
