"""Fixtures of the integration tests: the session's shared store of the tiny config's events and
skims (and private copies of it), law on the command line, a one-node Slurm cluster."""

from __future__ import annotations

import configparser
import contextlib
import fcntl
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import luigi
import pytest
from luigi.task import flatten

from tests.conftest import fresh_law_process

# gpu_tasks.py holds law tasks for "law run" child processes; collected for doctests it would be
# imported a second time under another module name, and luigi would find its task twice
collect_ignore = ["gpu_tasks.py"]

REPO = Path(__file__).resolve().parents[2]
SKIM_VERSION = "t1"
TINY_CONFIG = "tth_bb_tiny"


def store_files(store: Path) -> dict[str, tuple[int, int, int]]:
    """Every file under ``store``: relative path -> (inode, size, mtime in ns)."""
    return {str(p.relative_to(store)): (p.stat().st_ino, p.stat().st_size, p.stat().st_mtime_ns)
            for p in store.rglob("*") if p.is_file()}


@contextlib.contextmanager
def unchanged(store: Path, what: str) -> Iterator[None]:
    """Fail at exit if a file under ``store`` was added, removed, replaced or written to (root
    writes through file permissions, so a read-only mode would not stop a test)."""
    before = store_files(store)
    yield
    after = store_files(store)
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    assert not changed, f"{what} {store} was changed by a test (read it, or take a copy): " \
                        f"{changed[:10]}"


def link_store(source: Path, destination: Path) -> Path:
    """A private copy of the store ``source`` at ``destination``: new folders, files hard-linked.

    Law decides completeness by the existence of a task's outputs, so it takes the linked outputs
    as done and does not rerun those tasks; what a test then runs writes into the new folders.
    The project writes files atomically (a new file, then ``os.replace``), so a task that rewrote
    an output would replace the link, never write through it into ``source``.
    """
    def link(src: str, dst: str) -> None:
        try:
            os.link(src, dst)
        except OSError:  # another file system: copy
            shutil.copy2(src, dst)

    shutil.copytree(source, destination, copy_function=link)
    return destination


def shared_between_workers(tmp_path_factory: pytest.TempPathFactory, name: str) -> Path:
    """A folder ``name`` that every pytest-xdist worker of this run gets (the run's base
    temporary folder, which the workers' own ones sit in), or this process's own where pytest runs
    without workers; made by the first caller."""
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        path = base.parent / name  # the controller's base folder: new per run
        path.mkdir(exist_ok=True)
        return path
    return tmp_path_factory.mktemp(name)


@contextlib.contextmanager
def exclusive(lock_file: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``lock_file`` (made if missing): one worker at a time."""
    with open(lock_file, "a") as stream:
        fcntl.flock(stream, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(stream, fcntl.LOCK_UN)


@pytest.fixture(scope="session")
def tiny_skim_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The session's shared store: what TrainModel on ``tth_bb_tiny`` (version ``t1``) requires
    (GenerateEvents, Skim, LearnCuts, ReduceEvents), built from nothing by the real law tasks
    once per pytest run: by the first pytest-xdist worker that asks, while the others wait on a
    file lock, then read by all. Read it only; a test that runs further tasks takes a copy
    (:func:`skimmed_store`, :func:`link_store`). The session fails at its end if a test changed
    it."""
    from tasks.train import TrainModel

    folder = shared_between_workers(tmp_path_factory, "tiny_skim_store")
    store, built = folder / "store", folder / "built"
    with exclusive(folder / "lock"):
        if not built.exists():  # the first worker (or a worker after one whose build failed)
            with pytest.MonkeyPatch.context() as patch:
                patch.setenv("DIFFANA_STORE", str(store))
                fresh_law_process()
                needs = flatten(TrainModel(version=SKIM_VERSION, config=TINY_CONFIG,
                                           branch=0).requires())
                assert luigi.build(needs, local_scheduler=True, workers=2, log_level="WARNING")
                fresh_law_process()  # the test that asked first starts as a new process would
            built.touch()
    with unchanged(store, "the shared store"):
        yield store


@pytest.fixture
def skimmed_store(tiny_skim_store: Path, tmp_path: Path,
                  monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private store of this test (``$DIFFANA_STORE``) that starts with what TrainModel on
    ``tth_bb_tiny`` (version ``t1``) requires, linked from :func:`tiny_skim_store`: the test's
    tasks only train (and what follows), and write nothing that another test sees."""
    store = link_store(tiny_skim_store, tmp_path / "skimmed_store")
    monkeypatch.setenv("DIFFANA_STORE", str(store))
    return store


def train_output(store: Path, branch: int) -> dict[str, Path]:
    """The output paths of TrainModel's ``branch`` (t1, tth_bb_tiny) in ``store``."""
    from tasks.train import TrainModel

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DIFFANA_STORE", str(store))
        task = TrainModel(version=SKIM_VERSION, config="tth_bb_tiny", branch=branch)
        return {key: Path(target.abspath) for key, target in task.output().items()}


def law_cfg_with(path: Path, sections: dict[str, dict[str, str]]) -> Path:
    """Write the repository's law.cfg to ``path`` with ``sections`` replaced (a site's config)."""
    parser = configparser.ConfigParser(allow_no_value=True, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keep "+Attribute" case
    parser.read(REPO / "law.cfg")
    for name, options in sections.items():
        parser.remove_section(name)
        parser.add_section(name)
        for key, value in options.items():
            parser.set(name, key, value)
    with open(path, "w") as stream:
        parser.write(stream)
    return path


def law_run(args: Sequence[str], env: dict[str, str], cwd: Path,
            timeout_s: float = 300) -> subprocess.CompletedProcess[str]:
    """``law run <args>`` in a subprocess (the user's command line; law builds job commands from
    the command line it was started with, so remote workflows cannot be driven by luigi.build)."""
    law = Path(sys.executable).parent / "law"
    result = subprocess.run([str(law), "run", *args], env={**os.environ, **env}, cwd=cwd,
                            capture_output=True, text=True, timeout=timeout_s, check=False)
    if result.returncode != 0:
        raise AssertionError(f"law run {' '.join(args)}: exit {result.returncode}\n"
                             f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    return result


# fake submit commands: keep the submitted file in $CAPTURE_DIR and answer as the real one does
FAKE_CONDOR_SUBMIT = r"""#!/usr/bin/env bash
# fake condor_submit: keep the submit file, count its jobs
file="${@: -1}"
n=$(awk '/^queue .* from \($/{f=1;next} f&&/^\)$/{f=0} f{c++} END{print c+0}' "$file")
cp "$file" "$CAPTURE_DIR/submit_$(date +%s%N).jdl"
echo "Submitting job(s)$(printf '.%.0s' $(seq "$n"))"
echo "$n job(s) submitted to cluster 4242."
"""

FAKE_SBATCH = """#!/usr/bin/env bash
# fake sbatch: keep the job file
cp "${@: -1}" "$CAPTURE_DIR/job_$(date +%s%N).sh"
echo "Submitted batch job 4343"
"""


def fake_submit_env(tmp_path: Path, command: str, script: str, store: Path,
                    site: dict[str, dict[str, str]]) -> dict[str, str]:
    """The environment of a ``law run`` whose ``command`` (``condor_submit``, ``sbatch``) is the
    fake ``script``: PATH with it first, ``CAPTURE_DIR`` (empty) where it keeps what law
    submitted, ``store`` as ``$DIFFANA_STORE`` and law.cfg with the ``site`` sections."""
    bin_dir, capture = tmp_path / "bin", tmp_path / "captured"
    bin_dir.mkdir()
    capture.mkdir()
    fake = bin_dir / command
    fake.write_text(script)
    fake.chmod(0o755)
    law_cfg = law_cfg_with(tmp_path / "law.cfg", site)
    return {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "CAPTURE_DIR": str(capture),
            "DIFFANA_STORE": str(store), "LAW_CONFIG_FILE": str(law_cfg),
            "LAW_JOB_FILE_DIR": str(tmp_path / "jobfiles")}


def cluster_env(cluster: dict[str, str], store: Path, tmp_path: Path, bootstrap_prefix: str = "",
                request_gres: bool = False) -> dict[str, str]:
    """The environment of a ``law run`` against the test cluster (:func:`slurm_cluster`, partition
    ``cpu``) whose jobs source ``bootstrap_prefix`` before the real bootstrap; ``request_gres``:
    GPU tasks ask Slurm for their share as ``--gres``."""
    bootstrap = tmp_path / "bootstrap.sh"
    bootstrap.write_text(bootstrap_prefix + (REPO / "tasks" / "bootstrap.sh").read_text())
    law_cfg = law_cfg_with(tmp_path / "law.cfg", {
        "slurm_site": {"partition": "cpu", "request_gres": str(request_gres).lower()},
        "diffana_remote": {"bootstrap_file": str(bootstrap), "venv": sys.prefix}})
    return {**cluster, "DIFFANA_STORE": str(store), "LAW_CONFIG_FILE": str(law_cfg),
            "LAW_JOB_FILE_DIR": str(tmp_path / "jobfiles")}


SLURM_CONF = """\
ClusterName=diffana
SlurmctldHost=localhost(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={dir}/munge/munge.socket
StateSaveLocation={dir}/state
SlurmdSpoolDir={dir}/spool
SlurmctldPidFile={dir}/slurmctld.pid
SlurmdPidFile={dir}/slurmd.pid
SlurmctldLogFile={dir}/slurmctld.log
SlurmdLogFile={dir}/slurmd.log
# no cgroups in a container: plain process tracking, no task binding, no accounting
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
# finished jobs stay visible to squeue (law polls with --states=all)
MinJobAge=600
MpiDefault=none
# two "GPUs" (plain files, see gres.conf) announced as gpu:2 and mps:200 (100 per GPU), so that
# Slurm grants --gres=mps:<percent> and --gres=gpu:<n> and sets CUDA_MPS_ACTIVE_THREAD_PERCENTAGE
# and CUDA_VISIBLE_DEVICES as on a GPU node
GresTypes=gpu,mps
NodeName=localhost NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={memory_mb} Gres=gpu:2,mps:200 \
State=UNKNOWN
PartitionName=cpu Nodes=localhost Default=YES MaxTime=INFINITE State=UP
"""

GRES_CONF = """# no GPU here: device nodes in the test directory stand for /dev/nvidia0 and 1
# (Slurm needs a File per GPU to bind devices and to split mps among them)
NodeName=localhost Name=gpu File={dir}/fake_nvidia[0-1]
NodeName=localhost Name=mps Count=200 File={dir}/fake_nvidia[0-1]
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _stop(pid_file: Path) -> None:
    """Terminate the daemon whose pid ``pid_file`` holds (one we started), and wait for it."""
    if not pid_file.exists():
        return
    pid = int(pid_file.read_text().split()[0])
    stat = Path(f"/proc/{pid}/stat")
    try:
        os.kill(pid, signal.SIGTERM)
        for _ in range(100):
            # a daemon is reparented to init; where nothing reaps it, it stays a zombie ("Z")
            if not stat.exists() or stat.read_text().rsplit(")", 1)[1].split()[0] == "Z":
                return
            time.sleep(0.05)
        os.kill(pid, signal.SIGKILL)
    except (ProcessLookupError, FileNotFoundError):
        pass


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A one-node Slurm cluster on 127.0.0.1 (munged, slurmctld, slurmd as root, a partition
    ``cpu`` whose node announces two stand-in GPUs as ``gpu:2,mps:200``); yields the environment
    (``SLURM_CONF``) that its commands need. Skips where Debian's
    slurm-wlm and munge are not installed (``.ci/run`` installs them) or we are not root."""
    binaries = ("munged", "munge", "slurmctld", "slurmd", "sbatch", "squeue", "sinfo")
    missing = [b for b in binaries if shutil.which(b) is None]
    if missing:
        pytest.skip(f"Slurm/munge not installed ({', '.join(missing)} missing): apt-get install "
                    f"slurm-wlm munge")
    if os.geteuid() != 0:
        pytest.skip("the one-node Slurm cluster runs slurmd as root")
    base = tmp_path_factory.mktemp("slurm")
    for sub in ("state", "spool", "munge"):
        (base / sub).mkdir()
    os.chmod(base / "munge", 0o700)  # munged refuses group/world-accessible directories
    key = base / "munge" / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    for index in (0, 1):
        # character devices with NVIDIA's major number: Slurm's gpu plugin derives the
        # CUDA_VISIBLE_DEVICES of a job from them (a plain file still serves mps)
        try:
            os.mknod(base / f"fake_nvidia{index}", 0o600 | stat.S_IFCHR, os.makedev(195, index))
        except OSError:
            (base / f"fake_nvidia{index}").touch()
    (base / "gres.conf").write_text(GRES_CONF.format(dir=base))  # beside slurm.conf: found there
    conf = base / "slurm.conf"
    memory_mb = min(4096, os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20 // 2)
    conf.write_text(SLURM_CONF.format(dir=base, ctld_port=_free_port(), slurmd_port=_free_port(),
                                      cpus=os.cpu_count() or 1, memory_mb=memory_mb))
    env = {**os.environ, "SLURM_CONF": str(conf)}
    munge = base / "munge"
    started: list[Path] = []
    try:
        subprocess.run(["munged", "--force", f"--socket={munge}/munge.socket",
                        f"--key-file={key}", f"--pid-file={munge}/munged.pid",
                        f"--log-file={munge}/munged.log", f"--seed-file={munge}/munged.seed"],
                       check=True, env=env)
        started.append(munge / "munged.pid")
        subprocess.run(["slurmctld", "-i"], check=True, env=env)
        started.append(base / "slurmctld.pid")
        subprocess.run(["slurmd", "-N", "localhost"], check=True, env=env)
        started.append(base / "slurmd.pid")
        deadline = time.monotonic() + 30
        while True:
            state = subprocess.run(["sinfo", "--noheader", "--format=%T"], env=env, text=True,
                                   capture_output=True, check=False).stdout.strip()
            if state == "idle":
                break
            if time.monotonic() > deadline:
                logs = "\n".join((base / f).read_text()[-2000:] for f in
                                 ("slurmctld.log", "slurmd.log") if (base / f).exists())
                raise RuntimeError(f"Slurm node not idle after 30 s (state {state!r}):\n{logs}")
            time.sleep(0.2)
        yield {"SLURM_CONF": str(conf)}
    finally:
        subprocess.run(["scancel", "--full", "--quiet", "--partition=cpu"], env=env, check=False,
                       capture_output=True)
        for pid_file in reversed(started):
            _stop(pid_file)
