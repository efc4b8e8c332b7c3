"""Data-parallel training: two gloo processes on the CPU end with identical replicas equal to one
process trained on all the events."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import pytest
import torch

from analysis.errors import InputDataError, ResourceError
from analysis.training.distributed import shard_slice, train_data_parallel, train_single_process
from analysis.training.models import count_parameters, sized_dnn

N_FEATURES, N_CLASSES, TARGET = 6, 3, 300


def test_shards_are_equal_and_disjoint() -> None:
    shards = [shard_slice(11, r, 3) for r in range(3)]
    assert [(s.start, s.stop) for s in shards] == [(0, 3), (3, 6), (6, 9)]  # 2 events left out
    with pytest.raises(InputDataError, match="2 events cannot be shared by 3 ranks"):
        shard_slice(2, 0, 3)
    with pytest.raises(InputDataError, match="rank 3 not in a world of size 3"):
        shard_slice(9, 3, 3)


def test_two_gloo_replicas_match_the_single_process_reference(tmp_path: Path) -> None:
    generator = torch.Generator().manual_seed(7)
    x = torch.randn(64, N_FEATURES, generator=generator)
    labels = torch.randint(0, N_CLASSES, (64,), generator=generator)
    make_model = partial(sized_dnn, N_FEATURES, N_CLASSES, TARGET)  # the pipeline's own DNN
    assert abs(count_parameters(make_model()) - TARGET) < 0.2 * TARGET
    kwargs = {"steps": 15, "lr": 0.5, "seed": 3}
    replicas = train_data_parallel(make_model, x, labels, world_size=2, workdir=tmp_path,
                                   backend="gloo", **kwargs)
    reference = train_single_process(make_model, x, labels, **kwargs)
    initial = train_single_process(make_model, x, labels, steps=0, lr=0.5, seed=3)
    assert len(replicas) == 2 and replicas[0].keys() == reference.keys()
    moved = 0.0
    for name, value in reference.items():
        # DDP applies the same averaged gradient on every rank: the replicas are bit-identical
        assert torch.equal(replicas[0][name], replicas[1][name]), name
        # mean of the two equal-shard gradients = full-batch gradient, up to float rounding
        torch.testing.assert_close(replicas[0][name], value, rtol=1e-5, atol=1e-6)
        moved = max(moved, (value - initial[name]).abs().max().item())
    assert moved > 1e-2  # training did change the parameters


def test_bad_requests_fail_before_spawning(tmp_path: Path) -> None:
    make_model = partial(sized_dnn, N_FEATURES, N_CLASSES, TARGET)
    x, labels = torch.zeros(1, N_FEATURES), torch.zeros(1, dtype=torch.int64)
    with pytest.raises(ResourceError, match="backend 'mpi'"):
        train_data_parallel(make_model, x, labels, steps=1, lr=0.1, seed=0, world_size=2,
                            workdir=tmp_path, backend="mpi")
    with pytest.raises(InputDataError, match="1 events cannot be shared by 2 ranks"):
        train_data_parallel(make_model, x, labels, steps=1, lr=0.1, seed=0, world_size=2,
                            workdir=tmp_path)
    if torch.cuda.device_count() < 64:
        with pytest.raises(ResourceError, match="64 ranks need 64 CUDA devices"):
            train_data_parallel(make_model, x, labels, steps=1, lr=0.1, seed=0, world_size=64,
                                workdir=tmp_path, backend="nccl")
