"""Taylor coefficients (arXiv:1803.08782) of a trained pipeline network on its held-out events."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import awkward as ak
import numpy as np
import torch

from analysis.config import AnalysisConfig
from analysis.folds import fold_mask
from analysis.interpret.taylor import TaylorCoefficients, taylor_coefficients
from analysis.training.architectures import NODE_FEATURES
from analysis.training.skim_samples import model_inputs

__all__ = ["SoftmaxProbabilities", "input_names", "signal_taylor_coefficients", "taylor_inputs"]


def input_names(model_kind: str, features: tuple[str, ...], n_inputs: int,
                n_jets_max: int) -> list[str]:
    """Names of the ``n_inputs`` input columns of a network.

    Args:
        model_kind: ``"dnn"`` (the event features, in order) or ``"gnn"`` (the flattened graph:
            per node ``jet1..jetN``, ``lepton``, ``met`` each of
            :data:`~analysis.training.architectures.NODE_FEATURES`, then one mask column per node).
        features: the DNN's event features.
        n_inputs: width of the input rows.
        n_jets_max: jet nodes of the graph.

    Returns:
        ``n_inputs`` names (``node<i>_<feature>`` if the graph layout does not match).
    """
    if model_kind == "dnn":
        return list(features)
    nodes = [f"jet{i + 1}" for i in range(n_jets_max)] + ["lepton", "met"]
    if len(nodes) * (len(NODE_FEATURES) + 1) != n_inputs:
        nodes = [f"node{i}" for i in range(n_inputs // (len(NODE_FEATURES) + 1))]
    return [f"{n}_{f}" for n in nodes for f in NODE_FEATURES] + [f"{n}_mask" for n in nodes]


class SoftmaxProbabilities(torch.nn.Module):
    """A classifier's class probabilities as a function of standardised inputs:
    ``z (n_events, n_inputs) -> softmax(network(mean + scale * z)) (n_events, n_classes)``,
    the output whose Taylor coefficients are reported."""

    def __init__(self, network: torch.nn.Module, mean: torch.Tensor, scale: torch.Tensor) -> None:
        super().__init__()
        self.network = network
        self.register_buffer("mean", mean)
        self.register_buffer("scale", scale)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.network(self.mean + self.scale * z), dim=1)


def taylor_inputs(tables: Mapping[str, Mapping[str, str]], config: AnalysisConfig,
                  model_kind: str, fold: int = 0, max_events: int = 2000
                  ) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """The events on which a network's Taylor coefficients are computed.

    A seeded random subset of at most ``max_events`` of the network's held-out nominal events
    (``event % n_folds == fold``) of every dataset: the per-event Hessians bound the time, and a
    random subset keeps every process in proportion.

    Args:
        tables: dataset -> shift -> Parquet path of the skim (the ``nominal`` shift is used).
        config: features, folds and the seed (``training.seed``).
        model_kind: ``"dnn"`` or ``"gnn"`` (the input layout).
        fold: the network's held-out fold.
        max_events: events used at most: per-event Hessians make the time grow with it, and
            2000 give means stable to a few per cent.

    Returns:
        ``(x, w, names)``: inputs ``(n, n_inputs)`` float32, weights ``|weight|`` ``(n,)``
        (expected events) and the :func:`input_names` of the columns.
    """
    inputs, weights = [], []
    for dataset, shifts in tables.items():
        table = ak.from_parquet(shifts["nominal"])
        keep = fold_mask(np.asarray(table["event"]), fold, config.training.n_folds)
        inputs.append(model_inputs(table, config.features.event, model_kind, dataset)[keep])
        weights.append(np.abs(np.asarray(table["weight"], dtype=np.float32))[keep])
    x_all, w_all = np.concatenate(inputs), np.concatenate(weights)
    chosen = np.sort(np.random.default_rng(config.training.seed).permutation(
        len(x_all))[:max_events])
    x, w = torch.as_tensor(x_all[chosen]), torch.as_tensor(w_all[chosen])
    names = input_names(model_kind, tuple(config.features.event), x.shape[1],
                        config.features.n_jets_max)
    return x, w, names


def signal_taylor_coefficients(network: torch.nn.Module, x: torch.Tensor, w: torch.Tensor,
                               names: list[str],
                               progress: Callable[[int], None] | None = None
                               ) -> TaylorCoefficients:
    """First- and second-order Taylor coefficients of the signal probability (node 0: the
    config's first class, the signal class).

    Taken with respect to the standardised inputs ``(x - mean) / std`` (each column's mean and
    standard deviation over ``x``; a column that never varies gets coefficients of 0, since
    nothing in the data moves along it), as arXiv:1803.08782 does with its
    standardised network inputs: otherwise a coefficient per GeV and one per unit of a
    dimensionless feature could not be ranked against each other.

    Args:
        network: the trained classifier, ``(n, n_inputs) -> (n, n_classes)`` logits.
        x, w, names: from :func:`taylor_inputs`.
        progress: called with the number of events done.

    Returns:
        The weighted mean absolute coefficients, ranked by :meth:`TaylorCoefficients.ranked`.
    """
    mean = x.mean(dim=0)
    scale = x.std(dim=0)
    z = torch.where(scale > 0, (x - mean) / torch.where(scale > 0, scale, 1.0), 0.0)
    return taylor_coefficients(SoftmaxProbabilities(network, mean, scale), z, w, names,
                               output_index=0, batch_size=256, progress=progress)
