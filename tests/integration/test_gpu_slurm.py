"""TrainModel --workflow slurm: the job file of each share, and real jobs on a one-node cluster
(the ``slurm_cluster`` fixture) that train, with a job that fails once and is retried."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tasks.gpu import REPO_ROOT, SHARE_TASK_VARIABLE
from tasks.train import TrainModel
from tests.integration.conftest import (
    FAKE_SBATCH,
    SKIM_VERSION,
    cluster_env,
    fake_submit_env,
    law_run,
    train_output,
)

pytestmark = pytest.mark.slow

# sourced before the real bootstrap: records the MPS environment the job got from Slurm, and the
# first job attempt of the whole run fails (mkdir is atomic: exactly one attempt sees no marker)
FAIL_ONCE = """\
env | grep ^CUDA_MPS_ | sort > "{env_dir}/$SLURM_JOB_ID.env"
if mkdir "{marker}" 2>/dev/null; then
    >&2 echo "diffana test: this attempt fails on purpose"
    return 1
fi
"""


def sbatch_lines(job_file: Path) -> list[str]:
    return [line for line in job_file.read_text().splitlines() if line.startswith("#SBATCH")]


@pytest.mark.parametrize(("share", "options", "expected"), [
    ("0.25", ["--gpu-memory-gb", "20"],
     ["#SBATCH --gres=mps:25", "#SBATCH --export=ALL,CUDA_MPS_PINNED_DEVICE_MEM_LIMIT=0=20G",
      "#SBATCH --cpus-per-task=1", "#SBATCH --mem=4096M", "#SBATCH --time=01:00:00"]),
    ("2", ["--cpus", "8", "--memory-gb", "16", "--runtime-minutes", "90"],
     ["#SBATCH --gres=gpu:2", "#SBATCH --cpus-per-task=8", "#SBATCH --mem=16384M",
      "#SBATCH --time=01:30:00"]),
])
def test_job_file_of_share(share: str, options: list[str], expected: list[str],
                           skimmed_store: Path, tmp_path: Path) -> None:
    # branch 7: not trained by any test of the session, so law submits it
    env = fake_submit_env(tmp_path, "sbatch", FAKE_SBATCH, skimmed_store, {"slurm_site": {
        "partition": "gpu", "request_gres": "true", "account": "cms"}})
    law_run(["tasks.train.TrainModel", "--version", SKIM_VERSION, "--config", "tth_bb_tiny",
             "--workflow", "slurm", "--branches", "7", "--no-poll", "--ignore-submission",
             "--gpu-share", share, *options], env, tmp_path)
    (job_file,) = Path(env["CAPTURE_DIR"]).iterdir()
    lines = sbatch_lines(job_file)
    for line in expected:
        assert line in lines
    assert "#SBATCH --partition=gpu" in lines and "#SBATCH --account=cms" in lines
    assert sum(line.startswith("#SBATCH --gres") for line in lines) == 1


@pytest.mark.batch
def test_slurm_jobs_train_and_a_failed_job_is_retried(slurm_cluster: dict[str, str],
                                                      skimmed_store: Path,
                                                      tmp_path: Path) -> None:
    # the two cheapest branches (fold 0, DNN, CE and inference-aware), in this test's own store
    branches = (0, 1)
    outputs = {b: train_output(skimmed_store, b) for b in branches}
    branch_map = TrainModel(version=SKIM_VERSION, config="tth_bb_tiny").get_branch_map()
    assert not any(p.exists() for out in outputs.values() for p in out.values())
    marker, env_dir = tmp_path / "failed_once", tmp_path / "job_env"
    env_dir.mkdir()
    env = cluster_env(slurm_cluster, skimmed_store, tmp_path,
                      FAIL_ONCE.format(marker=marker, env_dir=env_dir), request_gres=True)
    result = law_run(["tasks.train.TrainModel", "--version", SKIM_VERSION, "--config",
                      "tth_bb_tiny", "--workflow", "slurm", "--branches",
                      f"{branches[0]}:{branches[-1] + 1}", "--gpu-share", "0.25", "--memory-gb",
                      "1", "--retries", "1", "--poll-interval", "1s"], env, tmp_path,
                     timeout_s=170)
    assert marker.is_dir()  # one attempt did fail
    # three attempts (two jobs, one resubmitted), each granted --gres=mps:25 by Slurm, which set
    # the thread percentage; the pinned-memory limit came with the job file's --export
    job_envs = [p.read_text().splitlines() for p in env_dir.iterdir()]
    assert job_envs == 3 * [["CUDA_MPS_ACTIVE_THREAD_PERCENTAGE=25",
                             "CUDA_MPS_PINNED_DEVICE_MEM_LIMIT=0=20G"]]
    for b in branches:
        assert all(path.exists() for path in outputs[b].values()), b
        metadata = json.loads(outputs[b]["metadata"].read_text())
        assert (metadata["seed_index"], metadata["fold"], metadata["model"],
                metadata["strategy"]) == branch_map[b]
    assert "status: retry" in result.stdout  # law saw the failure and resubmitted
    records = [json.loads(path.read_text())  # law's job records
               for path in (skimmed_store / "tth_bb_tiny").rglob("slurm_jobs_*.json")]
    (record,) = [r for r in records if sorted(job["branches"] for job in r["jobs"].values())
                 == [[b] for b in branches]]
    assert sorted(job["status"] for job in record["jobs"].values()) == ["finished", "finished"]
    assert list(record["attempts"].values()) == [1]  # exactly one job needed a second attempt


# sourced before the real bootstrap: records the devices Slurm bound to the job
RECORD_DEVICES = """\
env | grep -E '^(CUDA_VISIBLE_DEVICES|SLURM_JOB_GPUS|CUDA_MPS_ACTIVE_THREAD_PERCENTAGE)=' \\
    | sort > "{env_dir}/$SLURM_JOB_ID.env"
"""


@pytest.mark.batch
def test_slurm_job_of_two_whole_gpus_trains_data_parallel(slurm_cluster: dict[str, str],
                                                          skimmed_store: Path,
                                                          tmp_path: Path) -> None:
    # branch 5 (fold 1, DNN, CE)
    branch = 5
    outputs = train_output(skimmed_store, branch)
    assert not any(p.exists() for p in outputs.values())
    env_dir = tmp_path / "job_env"
    env_dir.mkdir()
    env = cluster_env(slurm_cluster, skimmed_store, tmp_path,
                      RECORD_DEVICES.format(env_dir=env_dir), request_gres=True)
    law_run(["tasks.train.TrainModel", "--version", SKIM_VERSION, "--config", "tth_bb_tiny",
             "--workflow", "slurm", "--branches", str(branch), "--gpu-share", "2",
             "--memory-gb", "2", "--poll-interval", "1s"], env, tmp_path, timeout_s=240)
    # Slurm granted --gres=gpu:2: both stand-in GPUs bound to the job, no MPS percentage
    (env_file,) = env_dir.iterdir()
    job_env = env_file.read_text().splitlines()
    assert not any(line.startswith("CUDA_MPS_") for line in job_env)
    job = subprocess.run(["scontrol", "show", "job", env_file.stem], capture_output=True,
                         text=True, env={**os.environ, **slurm_cluster}, check=True).stdout
    assert "TresPerNode=gres:gpu:2" in job and "JobState=COMPLETED" in job
    # the two-GPU share trained with two data-parallel processes (gloo on this CPU)
    assert all(path.exists() for path in outputs.values())
    metadata = json.loads(outputs["metadata"].read_text())
    assert metadata["data_parallel_processes"] == 2
    assert (metadata["seed_index"], metadata["fold"], metadata["model"],
            metadata["strategy"]) == (0, 1, "dnn", "ce")
    # Slurm names the GPUs it bound only for device files (the fixture's mknod)
    if not (Path(slurm_cluster["SLURM_CONF"]).parent / "fake_nvidia0").is_char_device():
        pytest.skip("no mknod here: Slurm granted gpu:2 and the job trained, but which GPUs it "
                    "bound (CUDA_VISIBLE_DEVICES) cannot be checked")
    assert "CUDA_VISIBLE_DEVICES=0,1" in job_env and "SLURM_JOB_GPUS=0,1" in job_env


@pytest.mark.batch
def test_slurm_job_runs_its_payload_in_a_share_process(slurm_cluster: dict[str, str],
                                                       tmp_path: Path) -> None:
    """A --gpu-share 0.5 job: the payload runs in a share process started inside the job, which
    saw the share's MPS limits (Slurm's percentage, the job file's memory limit, the same values
    that the share process sets) and the share-process marker."""
    store = tmp_path / "store"
    env = cluster_env(slurm_cluster, store, tmp_path, request_gres=True)
    env["PYTHONPATH"] = os.pathsep.join(  # law finds the stand-in task in the checkout
        p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH")) if p)
    law_run(["tests.integration.gpu_tasks.RecordShare", "--version", "s1", "--config",
             "tth_bb_tiny", "--workflow", "slurm", "--n-branches", "1", "--gpu-share", "0.5",
             "--memory-gb", "1", "--poll-interval", "1s"], env, REPO_ROOT, timeout_s=170)
    (path,) = store.rglob("branch0.json")
    record = json.loads(path.read_text())
    assert record["env"]["CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"] == "50"
    assert record["env"]["CUDA_MPS_PINNED_DEVICE_MEM_LIMIT"] == "0=40G"
    assert record["env"][SHARE_TASK_VARIABLE] == record["task_id"]
