"""Data-parallel training over several devices in one job (a share of n >= 2 whole GPUs).

Two entry points. :func:`train_network_data_parallel` trains the pipeline's own networks
(TrainModel) with every strategy: each rank holds all events, runs the network (wrapped in
DistributedDataParallel) on its own rows of every input (:class:`RowShardedModule`), and the
outputs are gathered from all ranks with a differentiable all-gather. Every rank then computes
the whole loss (the soft histograms and the likelihood of the inference-aware loss, which do not
split into per-event terms) on all events. The all-gather's backward sums the gradients of the
identical losses of the ``n`` ranks, ``n`` times each rank's share of the true gradient, and
DDP's average over the ranks divides by ``n``: the parameters get the gradient of one process
on all events. :func:`train_data_parallel` is the plain case, cross entropy on equal shards.

One process per device (``torch.multiprocessing.spawn``), each holding a replica wrapped in
:class:`torch.nn.parallel.DistributedDataParallel`: every rank computes the loss on its own shard
of the events, DDP averages the gradients over the ranks (an all-reduce), and every replica takes
the same optimiser step. With equal shards and a mean loss the averaged gradient is the gradient
of the full batch, so ``world_size`` replicas train the same model as one process would on all the
events, up to the rounding of the all-reduce (Li et al., "PyTorch Distributed", VLDB 2020,
arXiv:2006.15704, sec. 3). Backends: ``nccl`` for GPUs (one per rank, ``cuda:<rank>`` of the
job's ``CUDA_VISIBLE_DEVICES``), ``gloo`` for the CPU (the tests).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from analysis.errors import InputDataError, ResourceError
from analysis.io import atomic_path
from analysis.training.architectures import seeded_build

log = logging.getLogger(__name__)

__all__ = ["BACKENDS", "RowShardedModule", "shard_slice", "train_data_parallel",
           "train_network_data_parallel", "train_single_process"]

BACKENDS = ("gloo", "nccl")
"""torch.distributed backends: ``gloo`` (CPU tensors), ``nccl`` (CUDA tensors)."""

ModelFactory = Callable[[], nn.Module]


def shard_slice(n_events: int, rank: int, world_size: int) -> slice:
    """The contiguous shard of ``rank``: ``n_events // world_size`` events each.

    The last ``n_events % world_size`` events are left out, so that every shard has the same size
    and the average of the shard gradients is the full-batch gradient.

    Raises:
        InputDataError: if there are fewer events than ranks, or ``rank`` is not in the world.

    Example:
        >>> shard_slice(10, 1, 3)
        slice(3, 6, None)
    """
    if world_size < 1 or not 0 <= rank < world_size:
        raise InputDataError(f"shard_slice: rank {rank} not in a world of size {world_size}")
    size = n_events // world_size
    if size == 0:
        raise InputDataError(f"shard_slice: {n_events} events cannot be shared by {world_size} "
                             f"ranks (need at least one each)")
    return slice(rank * size, (rank + 1) * size)


def _sgd_steps(model: nn.Module, x: torch.Tensor, labels: torch.Tensor, steps: int,
               lr: float) -> None:
    optimiser = torch.optim.SGD(model.parameters(), lr=lr)
    for _ in range(steps):
        optimiser.zero_grad()
        nn.functional.cross_entropy(model(x), labels).backward()
        optimiser.step()


def train_single_process(make_model: ModelFactory, x: torch.Tensor, labels: torch.Tensor, *,
                         steps: int, lr: float, seed: int) -> dict[str, torch.Tensor]:
    """Reference: full-batch SGD on cross entropy in this process.

    Args:
        make_model: builds the network (its initialisation is drawn after ``seed``).
        x: ``(n_events, n_features)`` inputs.
        labels: ``(n_events,)`` class indices (int64).
        steps: optimiser steps.
        lr: learning rate.
        seed: torch seed for the initialisation.

    Returns:
        The final state dict (CPU tensors).
    """
    model = seeded_build(make_model, torch.Generator().manual_seed(seed))
    _sgd_steps(model, x, labels, steps, lr)
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def _worker(rank: int, world_size: int, init_file: str, backend: str, make_model: ModelFactory,
            x: torch.Tensor, labels: torch.Tensor, steps: int, lr: float, seed: int,
            out_dir: str) -> None:
    """One rank: join the group, train its replica on its shard, save the final state dict."""
    dist.init_process_group(backend, init_method=f"file://{init_file}", rank=rank,
                            world_size=world_size)
    try:
        device = torch.device(f"cuda:{rank}") if backend == "nccl" else torch.device("cpu")
        # the same seed on every rank; DDP also broadcasts rank 0's parameters at construction
        model = seeded_build(make_model, torch.Generator().manual_seed(seed)).to(device)
        ids = [rank] if device.type == "cuda" else None
        replica = nn.parallel.DistributedDataParallel(model, device_ids=ids)
        part = shard_slice(len(labels), rank, world_size)
        _sgd_steps(replica, x[part].to(device), labels[part].to(device), steps, lr)
        state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        with atomic_path(os.path.join(out_dir, f"rank{rank}.pt")) as tmp:
            torch.save(state, tmp)
        # no rank tears gloo down while another still has collectives in flight (that aborts
        # the process: "terminate called without an active exception")
        dist.barrier()
    finally:
        dist.destroy_process_group()


def train_data_parallel(make_model: ModelFactory, x: torch.Tensor, labels: torch.Tensor, *,
                        steps: int, lr: float, seed: int, world_size: int, workdir: str | Path,
                        backend: str = "gloo") -> list[dict[str, torch.Tensor]]:
    """Train ``world_size`` DDP replicas, one process each, on equal shards of the events.

    Args:
        make_model: builds the network; must pickle (a top-level function or a
            ``functools.partial`` of one), since each rank builds its own replica.
        x: ``(n_events, n_features)`` inputs, shared by all ranks (each takes its shard).
        labels: ``(n_events,)`` class indices (int64).
        steps: optimiser steps (full shard per step).
        lr: SGD learning rate.
        seed: torch seed for the initialisation (the same on every rank).
        world_size: number of processes (GPUs of the share for ``nccl``).
        workdir: an empty directory for the rendezvous file and the ranks' state dicts.
        backend: one of :data:`BACKENDS`.

    Returns:
        The final state dict of every rank, in rank order (CPU tensors).

    Raises:
        ResourceError: unknown backend, ``world_size < 1``, or fewer CUDA devices than ranks for
            ``nccl``.
        InputDataError: fewer events than ranks.
    """
    if backend not in BACKENDS:
        raise ResourceError(f"train_data_parallel: backend {backend!r}: must be one of {BACKENDS}")
    if world_size < 1:
        raise ResourceError(f"train_data_parallel: world_size = {world_size}: must be >= 1")
    if backend == "nccl" and torch.cuda.device_count() < world_size:
        raise ResourceError(f"train_data_parallel: {world_size} ranks need {world_size} CUDA "
                            f"devices, {torch.cuda.device_count()} visible")
    shard_slice(len(labels), 0, world_size)  # fail before spawning
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    init_file = workdir / "rendezvous"
    init_file.unlink(missing_ok=True)  # a stale file from an earlier run would hang the group
    mp.spawn(_worker, args=(world_size, str(init_file), backend, make_model, x, labels, steps, lr,
                            seed, str(workdir)), nprocs=world_size, join=True)
    return [torch.load(workdir / f"rank{r}.pt", weights_only=True) for r in range(world_size)]


class RowShardedModule(nn.Module):
    """The wrapped module on this rank's rows of each input, the outputs of all ranks gathered.

    Rank ``r`` of ``n`` evaluates rows ``[r k, (r + 1) k)`` with ``k = ceil(n_rows / n)``; the
    outputs are padded to ``k`` rows, all-gathered with autograd
    (``torch.distributed.nn.functional.all_gather``) and trimmed, so every rank returns the
    ``(n_rows, ...)`` output of all rows. Every rank must call it with the same inputs in the
    same order (they are collectives).
    """

    def __init__(self, module: nn.Module, rank: int, world_size: int) -> None:
        super().__init__()
        self.module = module
        self.rank = rank
        self.world_size = world_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from torch.distributed.nn.functional import all_gather

        n_rows = x.shape[0]
        size = math.ceil(n_rows / self.world_size) if n_rows else 0
        low, high = min(self.rank * size, n_rows), min((self.rank + 1) * size, n_rows)
        local = self.module(x[low:high])
        if high - low < size:
            local = torch.cat([local, local.new_zeros((size - (high - low),
                                                       *local.shape[1:]))])
        return torch.cat(all_gather(local))[:n_rows]


def _network_worker(rank: int, world_size: int, init_file: str, backend: str,
                    tables: Mapping[str, Any], config: Any, fold: int, model_kind: str,
                    strategy: str, out_file: str, progress_label: str | None,
                    seed_index: int, cpu_threads: int) -> None:
    """One rank of :func:`train_network_data_parallel`; rank 0 saves the result and shows
    the progress. ``cpu_threads``: torch's intra-op threads of a rank on the CPU."""
    from tqdm import tqdm

    from analysis.training.loop import DataParallel
    from analysis.training.network import planned_steps, train_network

    dist.init_process_group(backend, init_method=f"file://{init_file}", rank=rank,
                            world_size=world_size)
    try:
        device = torch.device(f"cuda:{rank}") if backend == "nccl" else torch.device("cpu")
        if device.type == "cuda":
            torch.cuda.set_device(device)
        else:
            torch.set_num_threads(cpu_threads)
        ids = [rank] if device.type == "cuda" else None

        def wrap(model: nn.Module) -> nn.Module:
            return RowShardedModule(nn.parallel.DistributedDataParallel(model, device_ids=ids),
                                    rank, world_size)

        bar = None
        if rank == 0 and progress_label is not None:
            bar = tqdm(total=planned_steps(config.training, strategy), desc=progress_label,
                       unit="step")

        def progress(done: int) -> None:
            if bar is not None:
                bar.update(done - bar.n)

        result = train_network(tables, config, fold, model_kind, strategy, device=device,
                               progress=progress,
                               data_parallel=DataParallel(wrap), seed_index=seed_index)
        if bar is not None:
            bar.close()
        result.data_parallel_processes = dist.get_world_size()
        if rank == 0:
            with atomic_path(out_file) as tmp:
                torch.save(result, tmp)
        dist.barrier()  # as above: every rank done before any tears gloo down
    finally:
        dist.destroy_process_group()


def train_network_data_parallel(tables: Mapping[str, Any], config: Any, fold: int,
                                model_kind: str, strategy: str, *, world_size: int,
                                workdir: str | Path, backend: str | None = None,
                                progress_label: str | None = None, seed_index: int = 0) -> Any:
    """:func:`~analysis.training.network.train_network` on ``world_size`` processes.

    On the CPU (gloo) each rank trains with ``max(1, n // world_size)`` torch threads, ``n`` being
    this process's count (:func:`torch.get_num_threads`), so the ranks share its cores.

    Args:
        tables: dataset -> shift -> skim table or its Parquet path (paths pickle cheaply).
        config: the :class:`~analysis.config.AnalysisConfig`.
        fold, model_kind, strategy: as for ``train_network``.
        world_size: processes, one per GPU for ``nccl``; >= 2.
        workdir: a directory for the rendezvous file and rank 0's result.
        backend: ``"nccl"`` or ``"gloo"``; default ``nccl`` when ``world_size`` CUDA devices
            are visible, else ``gloo`` on the CPU (with a warning).
        progress_label: if given, rank 0 shows a progress bar of the steps with this label.
        seed_index: as for ``train_network``.

    Returns:
        Rank 0's :class:`~analysis.training.network.TrainingResult` (model on the CPU,
        ``data_parallel_processes`` the size of the process group that trained it); every rank
        ends with the same parameters.

    Raises:
        ResourceError: an unknown backend, ``world_size < 2``, or ``nccl`` without enough GPUs.
    """
    if world_size < 2:
        raise ResourceError(f"train_network_data_parallel: world_size = {world_size}: "
                            f"must be >= 2 (one process trains without it)")
    if backend is None:
        backend = "nccl" if torch.cuda.device_count() >= world_size else "gloo"
        if backend == "gloo":
            log.warning("train_network_data_parallel: %d CUDA devices visible for %d ranks: "
                        "data-parallel on the CPU (gloo)", torch.cuda.device_count(), world_size)
    if backend not in BACKENDS:
        raise ResourceError(f"train_network_data_parallel: backend {backend!r}: must be one "
                            f"of {BACKENDS}")
    if backend == "nccl" and torch.cuda.device_count() < world_size:
        raise ResourceError(f"train_network_data_parallel: {world_size} ranks need "
                            f"{world_size} CUDA devices, {torch.cuda.device_count()} visible")
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    init_file = workdir / "rendezvous"
    init_file.unlink(missing_ok=True)  # a stale file from an earlier run would hang the group
    out_file = workdir / "result.pt"
    out_file.unlink(missing_ok=True)
    # the ranks share this process's threads (a spawned process starts with torch's default,
    # all cores): more threads than cores spin-wait for each other
    cpu_threads = max(1, torch.get_num_threads() // world_size)
    mp.spawn(_network_worker, args=(world_size, str(init_file), backend, tables, config, fold,
                                    model_kind, strategy, str(out_file), progress_label,
                                    seed_index, cpu_threads),
             nprocs=world_size, join=True)
    return torch.load(out_file, weights_only=False)
