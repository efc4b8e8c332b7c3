"""CPU tasks as batch workflows (tasks/batch.py): GenerateEvents and Skim as real jobs on the
one-node Slurm cluster (``slurm_cluster``), byte for byte what the session's local run wrote, a
failed chunk retried, a chunk that fails three times named with its log; the HTCondor submit file
of a CPU task; bad workflow names and impossible resources refused before submission."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import htcondor2
import pytest

from tasks.gpu import REPO_ROOT
from tests.integration.conftest import (
    FAKE_CONDOR_SUBMIT,
    SKIM_VERSION,
    TINY_CONFIG,
    cluster_env,
    fake_submit_env,
    link_store,
)

pytestmark = pytest.mark.slow

# tth_bb_tiny's GenerateEvents branches: 0 tth[0], 1 tth[1], 2 tt_extra_b[0], 3 tt_rest[0], ...
# and Skim's: 0 tth, 1 tt_extra_b, 2 tt_rest

# sourced before the real bootstrap: the first job attempt of the whole run fails (mkdir is
# atomic: exactly one attempt sees no marker)
FAIL_ONCE = """\
if mkdir "{marker}" 2>/dev/null; then
    >&2 echo "diffana test: this attempt fails on purpose"
    return 1
fi
"""

# every attempt of the job of branch {branch} fails (law names a job <task id>_<b>To<b+1>)
ALWAYS_FAIL = """\
case "$SLURM_JOB_NAME" in
    *_{branch}To{next}) >&2 echo "diffana test: chunk job fails on purpose"; return 1;;
esac
"""


def task_files(store: Path, family: str, branch: int) -> dict[str, Path]:
    """The output files of ``family``'s ``branch`` (tth_bb_tiny, t1) in ``store``."""
    from tasks.generate import GenerateEvents
    from tasks.skim import Skim

    cls = {"GenerateEvents": GenerateEvents, "Skim": Skim}[family]
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DIFFANA_STORE", str(store))
        task = cls(version=SKIM_VERSION, config=TINY_CONFIG, branch=branch)
        return {key: Path(target.abspath) for key, target in task.output().items()}


def private_store_without(shared: Path, destination: Path,
                          missing: list[tuple[str, int]]) -> Path:
    """A linked copy of the session's store with the outputs of ``missing`` (family, branch)
    removed from the copy only (the shared store keeps its files)."""
    store = link_store(shared, destination)
    for family, branch in missing:
        for path in task_files(store, family, branch).values():
            path.unlink()
    return store


def law(args: list[str], env: dict[str, str], timeout_s: float = 240) -> tuple[int, str]:
    """``law run <args>`` as a user types it, from the checkout: exit status and terminal text."""
    result = subprocess.run([str(Path(sys.executable).parent / "law"), "run", *args],
                            env={**os.environ, **env}, cwd=REPO_ROOT, capture_output=True,
                            text=True, timeout=timeout_s, check=False)
    return result.returncode, result.stdout + result.stderr


def wait_for_empty_queue(cluster: dict[str, str], timeout_s: float = 120) -> None:
    """Wait until the test cluster runs no job (law stops polling at a final failure; the other
    jobs go on)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        queue = subprocess.run(["squeue", "--noheader", "--states=PENDING,RUNNING,CONFIGURING,"
                                "COMPLETING"], env={**os.environ, **cluster}, text=True,
                               capture_output=True, check=True).stdout.strip()
        if not queue:
            return
        time.sleep(1)
    raise AssertionError(f"Slurm jobs still running after {timeout_s} s")


GENERATE = ["tasks.generate.GenerateEvents", "--version", SKIM_VERSION, "--config", TINY_CONFIG]


@pytest.mark.batch
def test_generate_on_slurm_is_byte_identical_and_a_failed_chunk_is_retried(
        slurm_cluster: dict[str, str], tiny_skim_store: Path, tmp_path: Path) -> None:
    """The whole tiny config's generation (every chunk of every dataset) as Slurm jobs, one of
    them failing once: the same bytes as the session's local run."""
    from tasks.generate import GenerateEvents

    branches = sorted(GenerateEvents(version=SKIM_VERSION, config=TINY_CONFIG, branch=0)
                      .get_branch_map())
    assert len(branches) == 5  # tth[0], tth[1], tt_extra_b[0], tt_rest[0], tt_rest[1]
    store = private_store_without(tiny_skim_store, tmp_path / "store",
                                  [("GenerateEvents", b) for b in branches])
    marker = tmp_path / "failed_once"
    env = cluster_env(slurm_cluster, store, tmp_path, FAIL_ONCE.format(marker=marker))
    status, terminal = law([*GENERATE, "--workflow", "slurm", "--memory-gb", "1",
                            "--poll-interval", "2s"], env)
    assert status == 0, terminal[-6000:]
    assert marker.is_dir() and "status: retry" in terminal  # one attempt failed, law resubmitted
    # the session's store was generated locally (luigi.build); the Slurm jobs wrote the same bytes
    for branch in branches:
        for key, path in task_files(store, "GenerateEvents", branch).items():
            local = task_files(tiny_skim_store, "GenerateEvents", branch)[key]
            assert path.read_bytes() == local.read_bytes(), (branch, key)
    job_files = list((tmp_path / "jobfiles").rglob("slurm_job*.sh"))
    assert job_files
    for job_file in job_files:
        options = [line for line in job_file.read_text().splitlines()
                   if line.startswith("#SBATCH")]
        # law.cfg [luigi_GenerateEvents] (runtime) and the command line (memory): no GPU for a
        # CPU task
        assert {"#SBATCH --cpus-per-task=1", "#SBATCH --mem=1024M", "#SBATCH --time=02:00:00",
                "#SBATCH --partition=cpu"} <= set(options)
        assert not any("gres" in line for line in options)


@pytest.mark.batch
def test_skim_on_slurm_follows(slurm_cluster: dict[str, str], tiny_skim_store: Path,
                               tmp_path: Path) -> None:
    branch = 1  # the skim of tt_extra_b, from the (linked) generated events
    store = private_store_without(tiny_skim_store, tmp_path / "store", [("Skim", branch)])
    env = cluster_env(slurm_cluster, store, tmp_path)
    status, terminal = law(["tasks.skim.Skim", "--version", SKIM_VERSION, "--config", TINY_CONFIG,
                            "--workflow", "slurm", "--branches", str(branch), "--memory-gb", "1",
                            "--poll-interval", "2s"], env)
    assert status == 0, terminal[-6000:]
    assert "slurm" in terminal.lower()
    outputs = task_files(store, "Skim", branch)
    for key, path in outputs.items():
        if path.suffix == ".parquet":  # cutflow.json names the store's own files
            assert path.read_bytes() == task_files(tiny_skim_store, "Skim", branch)[key] \
                .read_bytes(), key
    assert outputs["cutflow"].exists()
    assert list((store / "tth_bb_tiny" / "Skim").rglob("slurm_jobs_*.json"))


@pytest.mark.batch
def test_chunk_failing_three_times_stops_the_run_and_names_it(
        slurm_cluster: dict[str, str], tiny_skim_store: Path, tmp_path: Path) -> None:
    failing, other = 0, 1  # tth[0] fails on every attempt, tth[1] runs
    store = private_store_without(tiny_skim_store, tmp_path / "store",
                                  [("GenerateEvents", failing), ("GenerateEvents", other)])
    env = cluster_env(slurm_cluster, store, tmp_path,
                      ALWAYS_FAIL.format(branch=failing, next=failing + 1))
    # retries from law.cfg [luigi_GenerateEvents] retries = 2: three attempts
    status, terminal = law([*GENERATE, "--workflow", "slurm", "--branches", "0:2",
                            "--memory-gb", "1", "--poll-interval", "2s"], env)
    assert status != 0, terminal[-6000:]
    log = task_files(store, "GenerateEvents", failing)["events"].parent.parent / "jobs" / \
        "slurm" / "stderr_0To1.txt"
    assert ("BatchJobError: GenerateEvents --workflow slurm: chunk tth[0] (branch 0): failed 3 "
            "time(s)") in terminal, terminal[-6000:]
    assert str(log) in terminal and "Traceback" not in terminal, terminal[-6000:]
    assert "chunk job fails on purpose" in log.read_text()
    wait_for_empty_queue(slurm_cluster)
    assert not any(p.exists() for p in task_files(store, "GenerateEvents", failing).values())
    for key, path in task_files(store, "GenerateEvents", other).items():  # kept, and right
        assert path.read_bytes() == task_files(tiny_skim_store, "GenerateEvents", other)[key] \
            .read_bytes(), key


# ---- HTCondor: the submit file of a CPU task (a fake condor_submit keeps it) ------------------

@pytest.fixture
def condor_env(tmp_path: Path) -> dict[str, str]:
    """A fake condor_submit, an empty store and a site law.cfg (:func:`fake_submit_env`)."""
    return fake_submit_env(tmp_path, "condor_submit", FAKE_CONDOR_SUBMIT, tmp_path / "store", {
        "htcondor_site": {"universe": "vanilla", "accounting_group": "cms.higgs",
                          "runtime_attribute": "+MaxRuntime", "runtime_unit": "s",
                          "max_memory_gb": "16"},
        "diffana_remote": {"bootstrap_file": "tasks/bootstrap.sh", "venv": sys.prefix}})


def test_htcondor_submit_file_of_a_cpu_task(condor_env: dict[str, str]) -> None:
    status, terminal = law([*GENERATE, "--workflow", "htcondor", "--branches", "0:2",
                            "--cpus", "2", "--no-poll"], condor_env)
    assert status == 0, terminal[-6000:]
    (path,) = Path(condor_env["CAPTURE_DIR"]).iterdir()
    parsed = htcondor2.Submit(path.read_text())  # raises on a malformed description
    # --cpus from the command line, memory and runtime from law.cfg [luigi_GenerateEvents]
    assert (parsed["request_cpus"], parsed["request_memory"], parsed["MY.MaxRuntime"]) == (
        "2", "2048", "7200")
    assert parsed["accounting_group"] == "cms.higgs" and parsed["universe"] == "vanilla"
    commands = {key.lower() for key in parsed.keys()}
    assert not {"request_gpus", "gpus_minimum_memory", "my.diffanagpushare"} & commands
    assert "CUDA_" not in parsed.get("environment", "")
    assert [item["law_job_postfix"] for item in parsed.itemdata()] == ["_0To1", "_1To2"]


@pytest.mark.parametrize(("options", "message"), [
    (["--workflow", "condor"], "ConfigError: GenerateEvents: --workflow 'condor' does not exist; "
                               "choose one of local, htcondor, slurm"),
    (["--workflow", "htcondor", "--memory-gb", "32"],
     "ResourceError: GenerateEvents (law.cfg [luigi_GenerateEvents] or the command line): "
     "memory_gb = 32 GiB exceeds law.cfg [htcondor_site] max_memory_gb = 16 GiB"),
    (["--workflow", "htcondor", "--cpus", "0"], "cpus = 0: must be an integer >= 1"),
], ids=["unknown-workflow", "beyond-site-cap", "no-cpus"])
def test_bad_workflow_or_resources_refused_before_submission(
        options: list[str], message: str, condor_env: dict[str, str]) -> None:
    status, terminal = law([*GENERATE, *options, "--no-poll"], condor_env)
    assert status != 0 and message in terminal, terminal[-6000:]
    assert not list(Path(condor_env["CAPTURE_DIR"]).iterdir())  # nothing submitted
    assert not (Path(condor_env["DIFFANA_STORE"])).exists()  # nothing ran
