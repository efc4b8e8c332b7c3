"""BenchmarkGPUSharing as a law task: a clear refusal without a GPU, a CPU smoke run."""

from __future__ import annotations

import json
from pathlib import Path

import luigi
import pytest

import analysis.gpu.benchmark as sharing
from analysis.errors import ResourceError
from tasks.benchmark import BenchmarkGPUSharing
from tasks.gpu import SHARE_TASK_VARIABLE


def test_refuses_without_gpu(store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sharing, "gpu_count", lambda: 0)
    task = BenchmarkGPUSharing(version="b1", config="tth_bb_tiny", branch=0)
    # run the payload here, as its share process would, so that the pretended GPU count holds
    # also on a machine with a GPU
    monkeypatch.setenv(SHARE_TASK_VARIABLE, task.task_id)
    with pytest.raises(ResourceError, match=r"no CUDA GPU visible .*--device cpu"):
        task.run()
    assert not luigi.build([task], local_scheduler=True, workers=1, log_level="CRITICAL")
    assert not any(Path(t.abspath).exists() for t in task.output().values())


@pytest.mark.slow
def test_cpu_smoke_run_writes_table_and_plot(store: Path) -> None:
    task = BenchmarkGPUSharing(version="b1", config="tth_bb_tiny", branch=0, device="cpu",
                               size="tiny", n_jobs=(1, 2))
    assert luigi.build([task], local_scheduler=True, workers=1, log_level="WARNING")
    outputs = {k: Path(t.abspath) for k, t in task.output().items()}
    result = json.loads(outputs["json"].read_text())
    assert result["intensity"]["model"] == "dnn" and result["device"] == "cpu"
    assert result["finished"] is True
    rows = result["rows"]
    assert [(r["mode"], r["n_jobs"]) for r in rows] == [("exclusive", 1), ("exclusive", 2),
                                                        ("time_sliced", 2)]  # no MPS on a CPU
    assert rows[0]["speedup"] == 1.0 and rows[0]["slowdown"] == 1.0
    for row in rows:
        assert row["throughput"] > 0 and row["energy_per_training_j"] is None
        events = 2 * 10 * 256 if row["n_jobs"] == 2 else 10 * 256  # N x steps x batch
        assert row["throughput"] == pytest.approx(events / row["wall_s"])
    assert outputs["table"].read_text().count("\n") == 5
    assert outputs["plot"].stat().st_size > 0 and outputs["plot"].with_suffix(".pdf").exists()
