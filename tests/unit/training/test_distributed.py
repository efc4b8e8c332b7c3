"""Data-parallel training: two gloo processes on the CPU end with identical replicas equal to one
process trained on all the events."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from analysis.errors import InputDataError, ResourceError
from analysis.threads import torch_thread_count
from analysis.training.architectures import count_parameters, seeded_build, sized_dnn
from analysis.training.distributed import (
    RowShardedModule,
    shard_slice,
    train_data_parallel,
    train_network_data_parallel,
    train_single_process,
)

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


def _nonseparable_loss(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Like the inference-aware loss: a nonlinear function of sums over all events, from two
    forward passes (nominal and shifted inputs) before one backward."""
    nominal = torch.softmax(model(x), dim=1)[:, 0]
    shifted = torch.softmax(model(1.05 * x), dim=1)[:, 0]
    return (nominal.sum() / (1.0 + shifted.sum())) ** 2 + torch.log1p((nominal * shifted).sum())


def _sharded_gradients(rank: int, world_size: int, init_file: str, x: torch.Tensor,
                       out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank,
                            world_size=world_size)
    try:
        model = seeded_build(lambda: sized_dnn(N_FEATURES, N_CLASSES, TARGET), torch.Generator().manual_seed(3))
        rows: list[int] = []  # what this rank's network saw: its own rows only
        model.register_forward_pre_hook(lambda _, args: rows.append(args[0].shape[0]))
        wrapped = RowShardedModule(torch.nn.parallel.DistributedDataParallel(model), rank,
                                   world_size)
        loss = _nonseparable_loss(wrapped, x)
        loss.backward()
        torch.save({"loss": loss.detach(), "rows": torch.tensor(rows),
                    **{n: p.grad for n, p in model.named_parameters()}},
                   f"{out_dir}/rank{rank}.pt")
        dist.barrier()  # no rank tears gloo down while the other is mid-collective
    finally:
        dist.destroy_process_group()


def test_row_sharded_ddp_gives_the_full_gradient_of_a_nonseparable_loss(tmp_path: Path) -> None:
    # 37 rows: 19 on rank 0, 18 on rank 1 (padded for the all-gather)
    x = torch.randn(37, N_FEATURES, generator=torch.Generator().manual_seed(11))
    mp.spawn(_sharded_gradients, args=(2, str(tmp_path / "rendezvous"), x, str(tmp_path)),
             nprocs=2, join=True)
    model = seeded_build(lambda: sized_dnn(N_FEATURES, N_CLASSES, TARGET), torch.Generator().manual_seed(3))
    loss = _nonseparable_loss(model, x)
    loss.backward()
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    # two forward passes each; rank 0 ran rows 0-18, rank 1 rows 19-36
    assert [rank["rows"].tolist() for rank in ranks] == [[19, 19], [18, 18]]
    for rank in ranks:
        torch.testing.assert_close(rank["loss"], loss.detach(), rtol=1e-6, atol=0.0)
        for name, parameter in model.named_parameters():
            torch.testing.assert_close(rank[name], parameter.grad, rtol=1e-5, atol=1e-7)
    assert max(p.grad.abs().max().item() for p in model.parameters()) > 1e-4  # not all zero


def test_network_data_parallel_refuses_one_rank_and_unknown_backends(tmp_path: Path) -> None:
    with pytest.raises(ResourceError, match="world_size = 1: must be >= 2"):
        train_network_data_parallel({}, None, 0, "dnn", "ce", world_size=1, workdir=tmp_path)
    with pytest.raises(ResourceError, match="backend 'mpi'"):
        train_network_data_parallel({}, None, 0, "dnn", "ce", world_size=2, workdir=tmp_path,
                                    backend="mpi")


def test_network_ranks_on_the_cpu_share_the_callers_threads(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # a spawned rank starts with torch's default (all cores), so its count must be passed to it
    spawned: list[tuple[object, ...]] = []

    class Spawned(Exception):
        pass

    def record(function: object, args: tuple[object, ...], nprocs: int, join: bool) -> None:
        spawned.append(args)
        raise Spawned

    monkeypatch.setattr(mp, "spawn", record)
    for threads, world_size, per_rank in ((4, 2, 2), (5, 2, 2), (1, 3, 1)):
        with torch_thread_count(threads), pytest.raises(Spawned):
            train_network_data_parallel({}, None, 0, "dnn", "ce", world_size=world_size,
                                        workdir=tmp_path, backend="gloo")
        assert spawned.pop()[-1] == per_rank
