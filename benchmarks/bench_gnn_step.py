"""Training-step time of the GNN against its predecessor, at the demo's size, on the CPU.

Usage: python benchmarks/bench_gnn_step.py [--events 1120 4096] [--steps 20] [--threads 1]

Prints a Markdown table: per model and batch size the median time of one optimiser step
(forward, backward, Adam) on a batch of 10-node graphs (8 jet slots, 2-8 of them real, the lepton
and the MET), and its ratio to the interaction network that EventGNN replaced (issue 17, kept
here as ``_OldGNN``, a frozen copy), both sized to the same target (5000: the demo's).
1120 events is the demo's full-batch fit sample per fold (its CE stage uses every event every
step); 4096 the GPU benchmark's medium batch.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

from analysis.training.architectures import (
    NODE_FEATURES,
    _edge_features,
    _mlp,
    count_parameters,
    seeded_build,
    sized_gnn,
)


class _OldLayer(nn.Module):
    """The interaction-network layer of the previous EventGNN (arXiv:1612.00222)."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.edge_net = _mlp((2 * hidden + 2, hidden, hidden))
        self.node_net = _mlp((2 * hidden, hidden, hidden))

    def forward(self, h: torch.Tensor, edges: torch.Tensor, adjacency: torch.Tensor) -> torch.Tensor:
        n = h.shape[1]
        pairs = torch.cat([h[:, :, None].expand(-1, -1, n, -1), h[:, None].expand(-1, n, -1, -1),
                           edges], dim=-1)
        messages = torch.where(adjacency[..., None], self.edge_net(pairs), 0.0).sum(dim=2)
        return h + self.node_net(torch.cat([h, messages], dim=-1))


class _OldGNN(nn.Module):
    """The previous EventGNN: raw node features, 2 interaction layers, mean+max readout."""

    def __init__(self, hidden: int, n_layers: int = 2) -> None:
        super().__init__()
        self.hidden = hidden
        self.embed = _mlp((len(NODE_FEATURES), hidden, hidden))
        self.layers = nn.ModuleList(_OldLayer(hidden) for _ in range(n_layers))
        self.head = _mlp((2 * hidden, hidden, 3))

    def forward(self, nodes: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        m = mask[..., None]
        nodes = torch.where(m, nodes, 0.0)
        adjacency = mask[:, :, None] & mask[:, None, :] & ~torch.eye(mask.shape[1], dtype=torch.bool)
        edges = _edge_features(nodes, adjacency)
        h = torch.where(m, self.embed(nodes), 0.0)
        for layer in self.layers:
            h = torch.where(m, layer(h, edges, adjacency), 0.0)
        mean = h.sum(dim=1) / mask.sum(dim=1, keepdim=True)
        return self.head(torch.cat([mean, torch.where(m, h, -torch.inf).amax(dim=1)], dim=-1))


def _old_sized(target: int) -> _OldGNN:
    """The width whose parameter count is closest to ``target``, as the old sized_gnn chose."""
    widths = range(1, 200)
    return _OldGNN(min(widths, key=lambda w: abs(count_parameters(_OldGNN(w)) - target)))


def _graphs(n_events: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Demo-like 10-node graphs: log pt ~ 3-6, |eta| < 2.4, 2-8 real jets, lepton and MET."""
    nodes = torch.rand(n_events, 10, len(NODE_FEATURES), generator=generator)
    nodes[..., 0] = 3 + 3 * nodes[..., 0]
    nodes[..., 1] = 4.8 * nodes[..., 1] - 2.4
    nodes[..., 2] = 6.28 * nodes[..., 2] - 3.14
    n_jets = torch.randint(2, 9, (n_events, 1), generator=generator)
    mask = torch.cat([torch.arange(8)[None] < n_jets, torch.ones(n_events, 2, dtype=torch.bool)], 1)
    return nodes, mask


def _step_seconds(models: dict[str, nn.Module], nodes: torch.Tensor, mask: torch.Tensor,
                  steps: int) -> dict[str, float]:
    """Median seconds of one Adam step on the full batch, per model, after two warm-up steps.

    The models take turns step by step, so that a load from elsewhere on the machine slows
    each of them alike and the ratios stay meaningful."""
    labels = torch.zeros(len(nodes), dtype=torch.long)
    optimisers = {name: torch.optim.Adam(m.parameters(), lr=1e-3) for name, m in models.items()}
    times: dict[str, list[float]] = {name: [] for name in models}
    for k in range(steps + 2):
        for name, model in models.items():
            start = time.perf_counter()
            optimisers[name].zero_grad()
            nn.functional.cross_entropy(model(nodes, mask), labels).backward()
            optimisers[name].step()
            if k >= 2:
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, nargs="+", default=[1120, 4096])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--target", type=int, default=5000)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    seeds = torch.Generator().manual_seed(0)
    builds: dict[str, Callable[[], nn.Module]] = {
        "old: interaction net, 2 layers": lambda: _old_sized(args.target),
        "new: edge conv, 1 layer, max (default)": lambda: sized_gnn(len(NODE_FEATURES), 3,
                                                                    args.target),
        "new: edge conv, 2 layers, max": lambda: sized_gnn(len(NODE_FEATURES), 3, args.target,
                                                           n_layers=2),
        "new: edge conv, 1 layer, mean": lambda: sized_gnn(len(NODE_FEATURES), 3, args.target,
                                                           aggregation="mean"),
    }
    print("| model | width | parameters | events | ms / step | ratio to old |\n"
          "|---|---|---|---|---|---|")
    models = {name: seeded_build(build, torch.Generator().manual_seed(1))
              for name, build in builds.items()}
    for n_events in args.events:
        nodes, mask = _graphs(n_events, seeds)
        seconds = _step_seconds(models, nodes, mask, args.steps)
        baseline = next(iter(seconds.values()))
        for name, model in models.items():
            print(f"| {name} | {model.hidden} | {count_parameters(model)} | {n_events} | "
                  f"{1e3 * seconds[name]:.1f} | {seconds[name] / baseline:.2f} |", flush=True)

if __name__ == "__main__":
    main()
