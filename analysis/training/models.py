"""Event classifiers: an MLP on event-level features and a message-passing GNN on the event graph.

The two models are compared at a matched number of trainable parameters, following
"Graph neural networks versus deep neural networks" in ttH(bb), arXiv:2402.17386: the
:func:`matched_sizes` helper chooses the hidden width of each (at a fixed depth) so that its
trainable-parameter count is as close as possible to a common target, and reports the counts.

- :class:`EventDNN`: standardised inputs ``(x - mean) / std`` -> ``[Linear, ReLU, Dropout] * depth``
  -> ``Linear`` -> logits.
- :class:`EventGNN`: a fully connected graph per event whose nodes are the jets, the lepton and the
  MET (:func:`graph_inputs`), padded nodes masked. Each of ``n_layers`` residual message-passing
  layers computes, for receiver ``i`` and sender ``j != i`` (both real),
  ``m_ij = phi_e([h_i, h_j, e_ij])``, ``a_i = sum_j m_ij`` (or the mean) and
  ``h_i <- h_i + phi_n([h_i, a_i])`` (an interaction network, Battaglia et al., arXiv:1612.00222),
  with edge features ``e_ij = (dR_ij, log(1 + m_ij / GeV))``. The readout is the masked mean and max
  over the nodes, concatenated with optional global features, then an MLP to logits.
  The output is invariant under permutations of the jets and independent of padded nodes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from analysis.errors import ConfigError, InputDataError

__all__ = [
    "NODE_FEATURES",
    "seeded_build",
    "EventDNN",
    "EventGNN",
    "MatchedSizes",
    "count_parameters",
    "graph_inputs",
    "matched_sizes",
    "sized_dnn",
    "sized_gnn",
]

NODE_FEATURES = ("log_pt", "eta", "phi", "log_mass", "btag", "is_jet", "is_lepton", "is_met")
"""Columns of :func:`graph_inputs` nodes; ``log_x = log(1 + x / GeV)``, phi in rad."""

_KINEMATIC_COLUMNS = 4  # log_pt, eta, phi, log_mass: what the GNN edge features need
_N_EDGE_FEATURES = 2  # dR, log(1 + m_ij)
_MIN_MASS2 = 1e-12  # GeV^2: keeps sqrt differentiable for massless collinear pairs
_MAX_WIDTH = 1 << 14  # search limit of the sizing helpers
_JET_COLUMNS = ("jet_pt", "jet_eta", "jet_phi", "jet_mass", "jet_btag", "jet_mask")
_EVENT_COLUMNS = ("lepton_pt", "lepton_eta", "lepton_phi", "met_pt", "met_phi")


def seeded_build(build: Callable[[], nn.Module], generator: torch.Generator) -> nn.Module:
    """``build()`` with its random initialisation seeded by ``generator``.

    torch's layers draw their initial values from the global generator and take no generator of
    their own, so the module is built on a fork of the global CPU generator seeded with
    ``generator.initial_seed()``; the caller's global random state is the same afterwards.

    Args:
        build: makes the untrained module (e.g. ``lambda: sized_dnn(10, 3, 5000)``).
        generator: carries the seed (its initial seed; its state is not advanced).

    Returns:
        The module ``build`` returns.

    Example:
        >>> a = seeded_build(lambda: nn.Linear(2, 1), torch.Generator().manual_seed(3))
        >>> b = seeded_build(lambda: nn.Linear(2, 1), torch.Generator().manual_seed(3))
        >>> bool(torch.equal(a.weight, b.weight))
        True
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(generator.initial_seed())
        return build()


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters (``requires_grad``) of ``model``; buffers are not counted.

    Example:
        >>> count_parameters(nn.Linear(3, 2))
        8
    """
    return int(sum(p.numel() for p in model.parameters() if p.requires_grad))


def _mlp(sizes: Sequence[int], dropout: float = 0.0) -> nn.Sequential:
    """``Linear`` layers between ``sizes``, with ReLU (and dropout) between, none after the last."""
    layers: list[nn.Module] = []
    for k, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(n_in, n_out))
        if k < len(sizes) - 2:
            layers.append(nn.ReLU())
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


class EventDNN(nn.Module):
    """Fully connected classifier on event-level features (the DNN of arXiv:2402.17386).

    Args:
        n_features: number of input features.
        hidden: widths of the hidden layers, e.g. ``(64, 64, 64)``; may be empty (linear model).
        n_classes: number of output classes (logits).
        dropout: dropout probability after each hidden activation, in ``[0, 1)``.

    Raises:
        ConfigError: for non-positive sizes or a dropout outside ``[0, 1)``.

    Example:
        >>> model = EventDNN(4, (8, 8), 3)
        >>> model(torch.zeros(5, 4)).shape
        torch.Size([5, 3])
    """

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, n_features: int, hidden: Sequence[int], n_classes: int,
                 dropout: float = 0.0) -> None:
        super().__init__()
        if n_features < 1 or n_classes < 1 or any(h < 1 for h in hidden):
            raise ConfigError(f"EventDNN: need positive sizes, got {n_features=}, "
                              f"hidden={tuple(hidden)}, {n_classes=}")
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"EventDNN: dropout = {dropout}: must be in [0, 1)")
        self.n_features, self.n_classes = n_features, n_classes
        self.hidden = tuple(int(h) for h in hidden)
        self.register_buffer("mean", torch.zeros(n_features))
        self.register_buffer("std", torch.ones(n_features))
        self.net = _mlp((n_features, *self.hidden, n_classes), dropout)

    def set_standardisation(self, mean: torch.Tensor | np.ndarray,
                            std: torch.Tensor | np.ndarray) -> None:
        """Set the input shift and scale (e.g. weighted mean and std of the training fold).

        Args:
            mean: ``(n_features,)`` in the unit of each feature.
            std: ``(n_features,)``, > 0, same units.

        Raises:
            InputDataError: for a wrong shape or a non-positive or non-finite ``std``.
        """
        mean_t = torch.as_tensor(mean, dtype=self.mean.dtype, device=self.mean.device)
        std_t = torch.as_tensor(std, dtype=self.std.dtype, device=self.std.device)
        if mean_t.shape != self.mean.shape or std_t.shape != self.std.shape:
            raise InputDataError(f"EventDNN.set_standardisation: need shapes ({self.n_features},), "
                                 f"got mean {tuple(mean_t.shape)}, std {tuple(std_t.shape)}")
        if not (torch.all(torch.isfinite(mean_t)) and torch.all(torch.isfinite(std_t))
                and torch.all(std_t > 0)):
            raise InputDataError("EventDNN.set_standardisation: mean must be finite and std > 0")
        self.mean.copy_(mean_t)
        self.std.copy_(std_t)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Logits ``(n_events, n_classes)`` from ``features`` ``(n_events, n_features)``."""
        if features.ndim != 2 or features.shape[1] != self.n_features:
            raise InputDataError(f"EventDNN: need features (n_events, {self.n_features}), "
                                 f"got {tuple(features.shape)}")
        return self.net((features - self.mean) / self.std)


def _edge_features(nodes: torch.Tensor, adjacency: torch.Tensor) -> torch.Tensor:
    """``(n_events, n_nodes, n_nodes, 2)``: dR and ``log(1 + m_ij / GeV)``, 0 off the adjacency."""
    pt = torch.expm1(nodes[..., 0])
    eta, phi, mass = nodes[..., 1], nodes[..., 2], torch.expm1(nodes[..., 3])
    deta = eta[:, :, None] - eta[:, None, :]
    dphi = torch.remainder(phi[:, :, None] - phi[:, None, :] + math.pi, 2 * math.pi) - math.pi
    dr2 = deta**2 + dphi**2
    dr = torch.sqrt(torch.where(adjacency, dr2, torch.ones_like(dr2)))
    px, py, pz = pt * torch.cos(phi), pt * torch.sin(phi), pt * torch.sinh(eta)
    energy = torch.sqrt(px**2 + py**2 + pz**2 + mass**2)

    def pair_sum(x: torch.Tensor) -> torch.Tensor:
        return x[:, :, None] + x[:, None, :]

    m2 = pair_sum(energy) ** 2 - pair_sum(px) ** 2 - pair_sum(py) ** 2 - pair_sum(pz) ** 2
    m2 = torch.where(adjacency, m2.clamp_min(_MIN_MASS2), torch.ones_like(m2))
    edges = torch.stack([dr, torch.log1p(torch.sqrt(m2))], dim=-1)
    return torch.where(adjacency[..., None], edges, torch.zeros_like(edges))


class _MessagePassing(nn.Module):
    """One residual interaction-network layer on a masked, fully connected graph."""

    def __init__(self, hidden: int, n_edge_features: int, aggregation: str) -> None:
        super().__init__()
        self.aggregation = aggregation
        self.edge_net = _mlp((2 * hidden + n_edge_features, hidden, hidden))
        self.node_net = _mlp((2 * hidden, hidden, hidden))

    def forward(self, h: torch.Tensor, edges: torch.Tensor, adjacency: torch.Tensor) -> torch.Tensor:
        n_nodes = h.shape[1]
        receiver = h[:, :, None, :].expand(-1, -1, n_nodes, -1)
        sender = h[:, None, :, :].expand(-1, n_nodes, -1, -1)
        messages = self.edge_net(torch.cat([receiver, sender, edges], dim=-1))
        messages = torch.where(adjacency[..., None], messages, torch.zeros_like(messages))
        aggregated = messages.sum(dim=2)  # (n_events, n_nodes, hidden)
        if self.aggregation == "mean":
            degree = adjacency.sum(dim=2, keepdim=True).clamp_min(1).to(h.dtype)
            aggregated = aggregated / degree
        return h + self.node_net(torch.cat([h, aggregated], dim=-1))


class EventGNN(nn.Module):
    """Message-passing classifier on the jets + lepton + MET graph (the GNN of arXiv:2402.17386).

    Args:
        n_node_features: columns of the node tensor; with edge features its first four columns must
            be ``log(1 + pt/GeV), eta, phi/rad, log(1 + mass/GeV)`` as from :func:`graph_inputs`.
        hidden: width of the node embedding and of every MLP.
        n_layers: number of message-passing layers (>= 0).
        n_classes: number of output classes (logits).
        n_global_features: event-level features concatenated to the readout (0 for none).
        aggregation: ``"sum"`` or ``"mean"`` over the real neighbours.
        edge_features: use ``(dR_ij, log(1 + m_ij/GeV))`` as edge features.

    Raises:
        ConfigError: for non-positive sizes, an unknown aggregation, or edge features with fewer
            than four node columns.

    Example:
        >>> model = EventGNN(len(NODE_FEATURES), hidden=8, n_layers=1, n_classes=3)
        >>> model(torch.zeros(2, 5, 8), torch.ones(2, 5, dtype=torch.bool)).shape
        torch.Size([2, 3])
    """

    def __init__(self, n_node_features: int, hidden: int, n_layers: int, n_classes: int,
                 n_global_features: int = 0, aggregation: str = "sum",
                 edge_features: bool = True) -> None:
        super().__init__()
        if n_node_features < 1 or hidden < 1 or n_layers < 0 or n_classes < 1 or n_global_features < 0:
            raise ConfigError(f"EventGNN: need positive sizes, got {n_node_features=}, {hidden=}, "
                              f"{n_layers=}, {n_classes=}, {n_global_features=}")
        if aggregation not in ("sum", "mean"):
            raise ConfigError(f"EventGNN: aggregation = {aggregation!r}: must be 'sum' or 'mean'")
        if edge_features and n_node_features < _KINEMATIC_COLUMNS:
            raise ConfigError(f"EventGNN: edge features need {_KINEMATIC_COLUMNS} kinematic node "
                              f"columns, got {n_node_features=}")
        self.n_node_features, self.n_global_features = n_node_features, n_global_features
        self.hidden, self.n_classes, self.use_edge_features = hidden, n_classes, edge_features
        self.embed = _mlp((n_node_features, hidden, hidden))
        n_edge = _N_EDGE_FEATURES if edge_features else 0
        self.layers = nn.ModuleList(_MessagePassing(hidden, n_edge, aggregation)
                                    for _ in range(n_layers))
        self.head = _mlp((2 * hidden + n_global_features, hidden, n_classes))

    def forward(self, nodes: torch.Tensor, mask: torch.Tensor,
                global_features: torch.Tensor | None = None) -> torch.Tensor:
        """Logits ``(n_events, n_classes)``.

        Args:
            nodes: ``(n_events, n_nodes, n_node_features)``; values of padded nodes are ignored.
            mask: ``(n_events, n_nodes)`` bool, True for a real node.
            global_features: ``(n_events, n_global_features)`` or None when there are none.

        Raises:
            InputDataError: for inconsistent shapes.
        """
        self._check(nodes, mask, global_features)
        node_mask = mask[..., None]
        nodes = torch.where(node_mask, nodes, torch.zeros_like(nodes))
        n_nodes = nodes.shape[1]
        eye = torch.eye(n_nodes, dtype=torch.bool, device=nodes.device)
        adjacency = mask[:, :, None] & mask[:, None, :] & ~eye
        if self.use_edge_features:
            edges = _edge_features(nodes, adjacency)
        else:
            edges = nodes.new_zeros((*adjacency.shape, 0))
        h = torch.where(node_mask, self.embed(nodes), torch.zeros(()).to(nodes))
        for layer in self.layers:
            h = torch.where(node_mask, layer(h, edges, adjacency), torch.zeros(()).to(nodes))
        n_real = mask.sum(dim=1, keepdim=True).clamp_min(1).to(h.dtype)
        mean = h.sum(dim=1) / n_real
        maximum = torch.where(node_mask, h, torch.full((), -torch.inf).to(h)).amax(dim=1)
        maximum = torch.where(mask.any(dim=1, keepdim=True), maximum, torch.zeros_like(maximum))
        readout = [mean, maximum] + ([global_features] if global_features is not None else [])
        return self.head(torch.cat(readout, dim=-1))

    def _check(self, nodes: torch.Tensor, mask: torch.Tensor,
               global_features: torch.Tensor | None) -> None:
        if nodes.ndim != 3 or nodes.shape[2] != self.n_node_features:
            raise InputDataError(f"EventGNN: need nodes (n_events, n_nodes, {self.n_node_features}),"
                                 f" got {tuple(nodes.shape)}")
        if mask.dtype != torch.bool or mask.shape != nodes.shape[:2]:
            raise InputDataError(f"EventGNN: need a bool mask {tuple(nodes.shape[:2])}, "
                                 f"got {mask.dtype} {tuple(mask.shape)}")
        n_global = 0 if global_features is None else global_features.shape[-1]
        if n_global != self.n_global_features or (
                global_features is not None and global_features.shape != (len(nodes), n_global)):
            raise InputDataError(f"EventGNN: need global features ({len(nodes)}, "
                                 f"{self.n_global_features}), got "
                                 f"{None if global_features is None else tuple(global_features.shape)}")


@dataclass(frozen=True)
class MatchedSizes:
    """Hidden widths and exact trainable-parameter counts of a DNN and a GNN at a common target."""

    target_parameters: int
    dnn_width: int
    dnn_parameters: int
    gnn_width: int
    gnn_parameters: int


def _closest_width(build: Callable[[int], nn.Module], target: int, what: str) -> int:
    """Width whose model's parameter count (increasing in the width) is closest to ``target``."""
    if target < 1:
        raise ConfigError(f"{what}: target parameters = {target}: must be > 0")

    def count(width: int) -> int:
        with torch.device("meta"):  # no memory, no initialisation cost
            return count_parameters(build(width))

    low, high = 1, _MAX_WIDTH
    if count(high) < target:
        raise ConfigError(f"{what}: target parameters = {target}: above the largest width {high}")
    while low < high:  # smallest width with count >= target
        middle = (low + high) // 2
        low, high = (middle + 1, high) if count(middle) < target else (low, middle)
    if low > 1 and target - count(low - 1) <= count(low) - target:
        return low - 1
    return low


def sized_dnn(n_features: int, n_classes: int, target: int, depth: int = 3,
              dropout: float = 0.0) -> EventDNN:
    """:class:`EventDNN` with ``depth`` equal hidden layers, width chosen so that its trainable
    parameter count is closest to ``target`` (arXiv:2402.17386 matched-size comparison).

    Raises:
        ConfigError: for ``target < 1`` or a target beyond the widest model searched.
    """
    width = _closest_width(lambda w: EventDNN(n_features, (w,) * depth, n_classes, dropout),
                           target, "sized_dnn")
    return EventDNN(n_features, (width,) * depth, n_classes, dropout)


def sized_gnn(n_node_features: int, n_classes: int, target: int, n_layers: int = 2,
              n_global_features: int = 0, aggregation: str = "sum") -> EventGNN:
    """:class:`EventGNN` with ``n_layers`` message-passing layers, hidden width chosen so that its
    trainable parameter count is closest to ``target`` (arXiv:2402.17386 matched-size comparison).

    Raises:
        ConfigError: for ``target < 1`` or a target beyond the widest model searched.
    """
    def build(width: int) -> EventGNN:
        return EventGNN(n_node_features, width, n_layers, n_classes, n_global_features, aggregation)

    return build(_closest_width(build, target, "sized_gnn"))


def matched_sizes(target_parameters: int, n_features: int, n_node_features: int, n_classes: int,
                  dnn_depth: int = 3, gnn_layers: int = 2,
                  n_global_features: int = 0) -> MatchedSizes:
    """Widths of a DNN and a GNN whose trainable-parameter counts are closest to one target.

    The comparison of GNN and DNN at matched size of arXiv:2402.17386; the counts are exact
    (:func:`count_parameters` of the models :func:`sized_dnn` and :func:`sized_gnn` build).

    Raises:
        ConfigError: for ``target_parameters < 1`` or one beyond the widest model searched.
    """
    dnn = sized_dnn(n_features, n_classes, target_parameters, dnn_depth)
    gnn = sized_gnn(n_node_features, n_classes, target_parameters, gnn_layers, n_global_features)
    return MatchedSizes(target_parameters, dnn.hidden[0] if dnn.hidden else 0,
                        count_parameters(dnn), gnn.hidden, count_parameters(gnn))


def graph_inputs(columns: Mapping[str, np.ndarray],
                 dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """Node tensor and mask of the jets + lepton + MET graph from the skim's columns.

    Node order: the ``n_jets_max`` jet slots, then the lepton, then the MET; columns
    :data:`NODE_FEATURES` = ``log(1 + pt/GeV), eta, phi/rad, log(1 + mass/GeV), btag`` and the
    node-type one-hot. The lepton is massless with btag 0; the MET has eta 0, mass 0, btag 0.
    Padded jet slots are all zero and masked.

    Args:
        columns: ``jet_pt/eta/phi/mass/btag/mask`` as ``(n_events, n_jets_max)`` (pt, mass in GeV,
            mask nonzero for a real jet) and ``lepton_pt/eta/phi``, ``met_pt``, ``met_phi`` as
            ``(n_events,)``.
        dtype: floating dtype of the node tensor.

    Returns:
        ``nodes`` ``(n_events, n_jets_max + 2, 8)`` and ``mask`` ``(n_events, n_jets_max + 2)`` bool.

    Raises:
        InputDataError: naming a missing column or one of the wrong shape.
    """
    missing = [name for name in _JET_COLUMNS + _EVENT_COLUMNS if name not in columns]
    if missing:
        raise InputDataError(f"graph_inputs: missing columns {', '.join(missing)}")
    jets = {name: np.asarray(columns[name], dtype=np.float64) for name in _JET_COLUMNS}
    event = {name: np.asarray(columns[name], dtype=np.float64) for name in _EVENT_COLUMNS}
    shape = jets["jet_mask"].shape
    if len(shape) != 2:
        raise InputDataError(f"graph_inputs: column jet_mask must be (n_events, n_jets_max), "
                             f"got {shape}")
    for name, values in jets.items():
        if values.shape != shape:
            raise InputDataError(f"graph_inputs: column {name} has shape {values.shape}, "
                                 f"expected {shape} like jet_mask")
    for name, values in event.items():
        if values.shape != shape[:1]:
            raise InputDataError(f"graph_inputs: column {name} has shape {values.shape}, "
                                 f"expected ({shape[0]},)")
    n_events, n_jets = shape
    is_jet = jets["jet_mask"] != 0
    nodes = np.zeros((n_events, n_jets + 2, len(NODE_FEATURES)))
    jet_block = np.stack([np.log1p(np.clip(jets["jet_pt"], 0, None)), jets["jet_eta"],
                          jets["jet_phi"], np.log1p(np.clip(jets["jet_mass"], 0, None)),
                          jets["jet_btag"], np.ones(shape)], axis=-1)
    nodes[:, :n_jets, :6] = np.where(is_jet[..., None], jet_block, 0.0)
    nodes[:, n_jets, [0, 1, 2, 6]] = np.stack(
        [np.log1p(np.clip(event["lepton_pt"], 0, None)), event["lepton_eta"],
         event["lepton_phi"], np.ones(n_events)], axis=-1)
    nodes[:, n_jets + 1, [0, 2, 7]] = np.stack(
        [np.log1p(np.clip(event["met_pt"], 0, None)), event["met_phi"], np.ones(n_events)], axis=-1)
    mask = np.concatenate([is_jet, np.ones((n_events, 2), dtype=bool)], axis=1)
    return torch.as_tensor(nodes, dtype=dtype), torch.as_tensor(mask)
