"""CPU tasks as batch workflows (tasks/batch.py): GenerateEvents, Skim (from an empty store, the
generation first) and LearnCuts as real jobs on the one-node Slurm cluster (``slurm_cluster``),
byte for byte what the session's local run wrote, a failed chunk retried, a chunk that fails
three times named with its log; the HTCondor submit files of GenerateEvents, LearnCuts and Fit;
bad workflow names and impossible resources refused before submission."""

from __future__ import annotations

import configparser
import json
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
    FAKE_SBATCH,
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


def reproducible_files(store: Path, family: str, branch: int) -> dict[str, Path]:
    """:func:`task_files` without GenerateEvents' ``cost`` (its CPU time), which exists but
    differs from run to run."""
    files = task_files(store, family, branch)
    cost = files.pop("cost", None)
    assert cost is None or cost.is_file(), cost
    return files


def task_files(store: Path, family: str, branch: int) -> dict[str, Path]:
    """The output files of ``family``'s ``branch`` (tth_bb_tiny, t1) in ``store``."""
    from tasks.cuts import LearnCuts
    from tasks.generate import GenerateEvents
    from tasks.skim import Skim

    cls = {"GenerateEvents": GenerateEvents, "Skim": Skim, "LearnCuts": LearnCuts}[family]
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
                            "--poll-interval", "1s"], env)
    assert status == 0, terminal[-6000:]
    assert marker.is_dir() and "status: retry" in terminal  # one attempt failed, law resubmitted
    # the session's store was generated locally (luigi.build); the Slurm jobs wrote the same bytes
    for branch in branches:
        for key, path in reproducible_files(store, "GenerateEvents", branch).items():
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


def job_options(job_dir: Path) -> dict[str, set[str]]:
    """The ``#SBATCH`` lines of every Slurm job file law wrote under ``job_dir``, by the task
    family that its job name starts with (law names a job ``<task id>_<b>To<b+1>``)."""
    options: dict[str, set[str]] = {}
    for job_file in job_dir.rglob("slurm_job*.sh"):
        lines = [line for line in job_file.read_text().splitlines() if line.startswith("#SBATCH")]
        (name,) = [line.split("=", 1)[1] for line in lines if line.startswith("#SBATCH --job-name=")]
        options.setdefault(name.split("_", 1)[0], set()).update(lines)
    return options


def site_resources(family: str) -> tuple[int, float, int]:
    """(cpus, memory_gb, runtime_minutes) of law.cfg's ``[luigi_<family>]`` (the repository's)."""
    parser = configparser.ConfigParser(allow_no_value=True, interpolation=None)
    parser.read(REPO_ROOT / "law.cfg")
    options = parser[f"luigi_{family}"]
    return int(options["cpus"]), float(options["memory_gb"]), int(options["runtime_minutes"])


@pytest.mark.batch
def test_skim_on_slurm_from_an_empty_store_generates_first(
        slurm_cluster: dict[str, str], tiny_skim_store: Path, tmp_path: Path) -> None:
    """A user's first command, ``law run Skim --workflow slurm``, in an empty store: every
    generation chunk goes to Slurm first (the same ``--workflow``; Skim's ``--branches`` do not
    reach GenerateEvents' own branching), then the skim of one dataset; both write what the
    session's local run wrote."""
    branch = 1  # the skim of tt_extra_b: its events and those of its complement, tt_rest
    store = tmp_path / "store"
    env = cluster_env(slurm_cluster, store, tmp_path)
    status, terminal = law(["tasks.skim.Skim", "--version", SKIM_VERSION, "--config", TINY_CONFIG,
                            "--workflow", "slurm", "--branches", str(branch), "--memory-gb", "1",
                            "--poll-interval", "1s"], env, timeout_s=480)
    assert status == 0, terminal[-6000:]
    for family in ("GenerateEvents", "Skim"):  # both went to Slurm, not to this process
        assert list((store / TINY_CONFIG / family).rglob("slurm_jobs_*.json")), family
    for generated in range(5):  # tth[0], tth[1], tt_extra_b[0], tt_rest[0], tt_rest[1]
        for key, path in reproducible_files(store, "GenerateEvents", generated).items():
            local = task_files(tiny_skim_store, "GenerateEvents", generated)[key]
            assert path.read_bytes() == local.read_bytes(), (generated, key)
    outputs, local = task_files(store, "Skim", branch), task_files(tiny_skim_store, "Skim", branch)
    for key, path in outputs.items():
        if path.suffix == ".parquet":
            assert path.read_bytes() == local[key].read_bytes(), key
    cutflow, local_cutflow = (json.loads(p.read_text()) for p in (outputs["cutflow"],
                                                                   local["cutflow"]))
    # "files" names each store's own generated files
    for key in ("cutflow", "sum_gen_weight", "n_events"):
        assert cutflow[key] == local_cutflow[key], key
    assert not any(task_files(store, "Skim", other)["cutflow"].exists() for other in (0, 2))
    # each family's own resources: GenerateEvents law.cfg's, the skim the command line's memory
    options = job_options(tmp_path / "jobfiles")
    assert {"#SBATCH --mem=2048M", "#SBATCH --time=02:00:00"} <= options["GenerateEvents"]
    assert "#SBATCH --mem=1024M" in options["Skim"]
    assert not any("gres" in line for lines in options.values() for line in lines)


@pytest.mark.batch
def test_learn_cuts_on_slurm_equals_local(slurm_cluster: dict[str, str], tiny_skim_store: Path,
                                          tmp_path: Path) -> None:
    """LearnCuts (one branch per fold) goes through the same batch base: fold 0's cuts as a
    Slurm job with law.cfg's [luigi_LearnCuts] resources, the cuts of the session's local run."""
    fold = 0
    store = private_store_without(tiny_skim_store, tmp_path / "store", [("LearnCuts", fold)])
    env = cluster_env(slurm_cluster, store, tmp_path)
    status, terminal = law(["tasks.cuts.LearnCuts", "--version", SKIM_VERSION, "--config",
                            TINY_CONFIG, "--workflow", "slurm", "--branches", str(fold),
                            "--poll-interval", "1s"], env)
    assert status == 0, terminal[-6000:]
    assert list((store / TINY_CONFIG / "LearnCuts").rglob("slurm_jobs_*.json"))
    outputs, local = task_files(store, "LearnCuts", fold), task_files(tiny_skim_store,
                                                                      "LearnCuts", fold)
    assert all(path.exists() for path in outputs.values())
    learned, local_learned = (json.loads(p.read_text()) for p in (outputs["cuts"], local["cuts"]))
    # torch's thread count differs between the job and the session's run: floats to 1e-5
    assert learned["n_events"] == local_learned["n_events"] and learned["fold"] == fold
    assert learned["thresholds"] == pytest.approx(local_learned["thresholds"], rel=1e-5, abs=1e-6)
    # fold 1 was complete (linked from the session's store): not submitted, not rewritten
    assert task_files(store, "LearnCuts", 1)["cuts"].samefile(
        task_files(tiny_skim_store, "LearnCuts", 1)["cuts"])
    cpus, memory_gb, runtime = site_resources("LearnCuts")
    assert {f"#SBATCH --cpus-per-task={cpus}", f"#SBATCH --mem={int(memory_gb * 1024)}M",
            f"#SBATCH --time={runtime // 60:02d}:{runtime % 60:02d}:00"} <= \
        job_options(tmp_path / "jobfiles")["LearnCuts"]


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
                            "--memory-gb", "1", "--poll-interval", "1s"], env)
    assert status != 0, terminal[-6000:]
    log = task_files(store, "GenerateEvents", failing)["events"].parent.parent / "jobs" / \
        "slurm" / "stderr_0To1.txt"
    assert ("BatchJobError: GenerateEvents --workflow slurm: chunk tth[0] (branch 0): failed 3 "
            "time(s)") in terminal, terminal[-6000:]
    assert str(log) in terminal and "Traceback" not in terminal, terminal[-6000:]
    assert "chunk job fails on purpose" in log.read_text()
    wait_for_empty_queue(slurm_cluster)
    assert not any(p.exists() for p in task_files(store, "GenerateEvents", failing).values())
    for key, path in reproducible_files(store, "GenerateEvents", other).items():  # kept, right
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


def placeholder_outputs(task_cls: type, store: Path) -> None:
    """Empty files in place of ``task_cls``'s outputs (tth_bb_tiny, t1) in ``store``: luigi
    takes the task as complete and does not run it or anything it requires (the jobs that would
    read them are only captured, never run)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DIFFANA_STORE", str(store))
        for target in task_cls(version=SKIM_VERSION, config=TINY_CONFIG).output().values():
            Path(target.abspath).parent.mkdir(parents=True, exist_ok=True)
            Path(target.abspath).touch()


@pytest.mark.parametrize(("family", "postfixes"), [
    ("LearnCuts", ["_0To1", "_1To2"]),  # one branch per fold
    ("Fit", ["_0To1"]),  # one branch: the model and strategy
])
def test_htcondor_submit_files_of_learn_cuts_and_fit(
        family: str, postfixes: list[str], condor_env: dict[str, str],
        tiny_skim_store: Path) -> None:
    """LearnCuts and Fit go through the same batch base as GenerateEvents: a submit file that
    htcondor2 parses, with law.cfg's [luigi_<family>] resources and no GPU."""
    from tasks.inference import BuildWorkspace

    store = Path(condor_env["DIFFANA_STORE"])
    if family == "LearnCuts":  # the skims it requires, from the session's store
        private_store_without(tiny_skim_store, store, [("LearnCuts", 0), ("LearnCuts", 1)])
    else:  # a workspace stands for Evaluate, CreateHistograms, BuildWorkspace and the trainings
        placeholder_outputs(BuildWorkspace, store)
    module = {"LearnCuts": "tasks.cuts", "Fit": "tasks.inference"}[family]
    status, terminal = law([f"{module}.{family}", "--version", SKIM_VERSION, "--config",
                            TINY_CONFIG, "--workflow", "htcondor", "--no-poll"], condor_env)
    assert status == 0, terminal[-6000:]
    (path,) = Path(condor_env["CAPTURE_DIR"]).iterdir()
    parsed = htcondor2.Submit(path.read_text())  # raises on a malformed description
    cpus, memory_gb, runtime = site_resources(family)
    assert (parsed["request_cpus"], parsed["request_memory"], parsed["MY.MaxRuntime"]) == (
        str(cpus), str(int(memory_gb * 1024)), str(runtime * 60))
    commands = {key.lower() for key in parsed.keys()}
    assert not {"request_gpus", "gpus_minimum_memory", "my.diffanagpushare"} & commands
    assert "CUDA_" not in parsed.get("environment", "")
    assert [item["law_job_postfix"] for item in parsed.itemdata()] == postfixes


def test_resources_beyond_the_slurm_partition_refused_before_submission(tmp_path: Path) -> None:
    """The Slurm site's caps as HTCondor's: a request beyond ``[slurm_site] max_runtime_minutes``
    stops LearnCuts before anything is submitted, naming the setting."""
    env = fake_submit_env(tmp_path, "sbatch", FAKE_SBATCH, tmp_path / "store", {
        "slurm_site": {"partition": "cpu", "request_gres": "false", "max_runtime_minutes": "30"},
        "diffana_remote": {"bootstrap_file": "tasks/bootstrap.sh", "venv": sys.prefix}})
    status, terminal = law(["tasks.cuts.LearnCuts", "--version", SKIM_VERSION, "--config",
                            TINY_CONFIG, "--workflow", "slurm", "--runtime-minutes", "45",
                            "--no-poll"], env)
    assert status != 0, terminal[-6000:]
    assert ("ResourceError: LearnCuts (law.cfg [luigi_LearnCuts] or the command line): "
            "runtime_minutes = 45") in terminal and "[slurm_site] max_runtime_minutes = 30" \
        in terminal, terminal[-6000:]
    assert not list(Path(env["CAPTURE_DIR"]).iterdir())  # nothing submitted
    assert not (tmp_path / "store").exists()  # nothing ran, not even the skim it requires


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
