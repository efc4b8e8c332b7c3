"""Fixtures of the GPU-workflow tests: a store with TrainModel's inputs, law on the command line."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import luigi
import pytest
from luigi.task import flatten

REPO = Path(__file__).resolve().parents[2]
SKIM_VERSION = "t1"


@pytest.fixture(scope="session")
def skimmed_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store holding what TrainModel on ``tth_bb_tiny`` (version ``t1``) requires, built once
    per session, so that the batch jobs of the tests only train."""
    from tasks.train import TrainModel

    store = tmp_path_factory.mktemp("gpu_store")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DIFFANA_STORE", str(store))
        needs = flatten(TrainModel(version=SKIM_VERSION, config="tth_bb_tiny", branch=0).requires())
        assert luigi.build(needs, local_scheduler=True, workers=1, log_level="WARNING")
    return store


def train_output(store: Path, branch: int) -> dict[str, Path]:
    """The output paths of TrainModel's ``branch`` (t1, tth_bb_tiny) in ``store``."""
    from tasks.train import TrainModel

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DIFFANA_STORE", str(store))
        task = TrainModel(version=SKIM_VERSION, config="tth_bb_tiny", branch=branch)
        return {key: Path(target.abspath) for key, target in task.output().items()}


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
