"""Taylor coefficients of a model's output in its inputs (Wunsch et al., arXiv:1803.08782).

The model output ``f`` is Taylor-expanded at every event ``x`` of a dataset (the paper's Eq. (1)),

    f(x + Δx) ≈ f(x) + Σ_i t_i Δx_i + Σ_{i≤j} t_ij Δx_i Δx_j,

so a coefficient is the factor in front of one distinct monomial of the expansion:

    t_i  = ∂f/∂x_i,
    t_ii = ½ ∂²f/∂x_i²                (the 1/2! of the second order stays with the diagonal),
    t_ij = ∂²f/∂x_i∂x_j   for i ≠ j   (both orderings ij and ji combined: 2 × ½),

i.e. ``t_ij = ∂²f/∂x_i∂x_j / (1 + δ_ij)``; the KIT reference implementation (``tayloranalysis``)
uses the same factors. The paper's metric is the arithmetic mean of the absolute values over the
dataset, ``⟨t⟩ = Σ_k w_k |t(x_k)| / Σ_k w_k`` (unweighted: ``w_k = 1``), which ranks the inputs
(first order) and pairs of inputs (second order) by their influence on the output. So
``f = x0 * x1`` gives ``⟨t_01⟩ = 1`` and ``f = x0²`` gives ``⟨t_00⟩ = 1``.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.func import jacrev, vmap

from analysis.errors import EmptySelectionError, InputDataError
from analysis.io import write_json

__all__ = ["TaylorCoefficients", "taylor_coefficients", "write_coefficients"]

log = logging.getLogger(__name__)

CONVENTION = "t_i = df/dx_i; t_ij = d2f/dx_i dx_j / (1 + delta_ij); <t> = weighted mean of |t|"


@dataclass(frozen=True, eq=False)
class TaylorCoefficients:
    """Dataset means ``⟨t_i⟩``, ``⟨t_ij⟩`` of the absolute Taylor coefficients of one output.

    Attributes:
        feature_names: ``n_features`` input names, in the column order of the inputs.
        first: ``(n_features,)`` ``⟨|t_i|⟩`` in output units per input unit.
        second: ``(n_features, n_features)`` symmetric ``⟨|t_ij|⟩``, diagonal ``⟨|½ ∂²f/∂x_i²|⟩``,
            in output units per product of the two input units.
        n_events: number of events averaged over.
        output_index: the model output that was expanded; ``None`` for a scalar output.
    """

    feature_names: tuple[str, ...]
    first: torch.Tensor
    second: torch.Tensor
    n_events: int
    output_index: int | None

    def ranked(self) -> list[tuple[str, float]]:
        """All ``⟨t_i⟩`` and ``⟨t_ij⟩`` with ``i ≤ j``, largest first; ties keep first order first.

        Returns:
            ``(label, value)`` pairs with labels ``"t_<name>"`` and ``"t_<name_i>,<name_j>"``.

        Example:
            >>> tc = TaylorCoefficients(("a", "b"), torch.tensor([1.0, 3.0]),
            ...                         torch.tensor([[0.5, 2.0], [2.0, 0.0]]), 10, None)
            >>> tc.ranked()
            [('t_b', 3.0), ('t_a,b', 2.0), ('t_a', 1.0), ('t_a,a', 0.5), ('t_b,b', 0.0)]
        """
        names = self.feature_names
        items = [(f"t_{name}", float(value)) for name, value in zip(names, self.first.tolist())]
        second = self.second.tolist()
        items += [(f"t_{names[i]},{names[j]}", float(second[i][j]))
                  for i in range(len(names)) for j in range(i, len(names))]
        return sorted(items, key=lambda item: -item[1])

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready plain-Python form: names, both orders, the ranking and the convention."""
        return {
            "feature_names": list(self.feature_names),
            "first": self.first.tolist(),
            "second": self.second.tolist(),
            "ranked": [[label, value] for label, value in self.ranked()],
            "n_events": self.n_events,
            "output_index": self.output_index,
            "convention": CONVENTION,
            "reference": "Wunsch et al., arXiv:1803.08782",
        }


def taylor_coefficients(
    model: torch.nn.Module,
    inputs: torch.Tensor,
    weights: torch.Tensor | None = None,
    feature_names: Sequence[str] | None = None,
    output_index: int | None = None,
    batch_size: int = 1024,
    progress: Callable[[int], None] | None = None,
) -> TaylorCoefficients:
    """First- and second-order mean absolute Taylor coefficients of ``model`` over a dataset.

    Gradients and Hessians per event come from ``torch.func`` (``vmap`` over reverse-over-reverse
    ``jacrev(jacrev(f))``; forward mode would load torch's deprecated TorchScript decompositions),
    batch by batch; the model runs in eval mode (its mode is restored
    afterwards) and no parameter gradients are built. Convention: module docstring, Eq. (1) of
    Wunsch et al., arXiv:1803.08782.

    Args:
        model: maps ``(batch, n_features)`` to ``(batch,)``, ``(batch, 1)`` or ``(batch, n_out)``;
            on the device and in the dtype of ``inputs``. Put a softmax inside the model to expand
            class probabilities rather than logits.
        inputs: ``(n_events, n_features)`` finite input features, in the units the model sees.
        weights: ``(n_events,)`` event weights with a positive sum; ``None`` for unit weights.
        feature_names: ``n_features`` names for labels; ``None`` for ``x0, x1, ...``.
        output_index: which of ``n_out`` outputs to expand (e.g. a class); ``None`` if scalar.
        batch_size: events per vectorised evaluation (memory ~ ``batch_size × n_features²``).
        progress: called after each batch with the number of events processed so far.

    Returns:
        The coefficients, in the dtype and on the device of ``inputs``.

    Raises:
        InputDataError: on a wrong shape or length of ``inputs``, ``weights`` or
            ``feature_names``, non-finite values, a non-positive weight sum, ``batch_size < 1``,
            or an ``output_index`` that does not fit the model output.
        EmptySelectionError: if ``inputs`` has no events.

    Example:
        >>> class Product(torch.nn.Module):
        ...     def forward(self, x: torch.Tensor) -> torch.Tensor:
        ...         return x[:, 0] * x[:, 1]
        >>> x = torch.tensor([[1.0, -2.0], [3.0, 4.0]])
        >>> tc = taylor_coefficients(Product(), x, feature_names=["pt", "eta"])
        >>> tc.first, tc.second
        (tensor([3., 2.]), tensor([[0., 1.],
                [1., 0.]]))
        >>> tc.ranked()[:2]
        [('t_pt', 3.0), ('t_eta', 2.0)]
    """
    names = _check_inputs(inputs, weights, feature_names, batch_size)
    n_events, n_features = inputs.shape
    if weights is None:
        weights = torch.ones(n_events, dtype=inputs.dtype, device=inputs.device)
    was_training = model.training
    start = time.perf_counter()
    model.eval()
    try:
        with torch.no_grad():
            n_out = _check_output(model, inputs[:1], output_index)
            scalar = _scalar_output(model, n_out, output_index)
            derivatives = vmap(jacrev(_with_gradient(scalar), has_aux=True))
            first = torch.zeros(n_features, dtype=torch.float64, device=inputs.device)
            second = torch.zeros(n_features, n_features, dtype=torch.float64, device=inputs.device)
            for begin in range(0, n_events, batch_size):
                batch = inputs[begin:begin + batch_size]
                w = weights[begin:begin + batch_size].to(torch.float64)
                hessian, gradient = derivatives(batch)  # (b, n, n), (b, n)
                hessian = 0.5 * (hessian + hessian.transpose(1, 2))
                first += (w[:, None] * gradient.abs().to(torch.float64)).sum(dim=0)
                second += (w[:, None, None] * hessian.abs().to(torch.float64)).sum(dim=0)
                if progress is not None:
                    progress(begin + batch.shape[0])
    finally:
        model.train(was_training)
    total = weights.to(torch.float64).sum()
    # t_ij = H_ij / (1 + δ_ij): halve the diagonal only (Eq. (1) of arXiv:1803.08782)
    eye = torch.eye(n_features, dtype=torch.float64, device=inputs.device)
    second = second / total / (1.0 + eye)
    log.info("taylor coefficients: %d events, %d features in %.1f s",
             n_events, n_features, time.perf_counter() - start)
    return TaylorCoefficients(tuple(names), (first / total).to(inputs.dtype),
                              second.to(inputs.dtype), n_events, output_index)


def write_coefficients(path: str | os.PathLike[str], coefficients: TaylorCoefficients,
                       provenance: dict[str, Any] | None = None) -> None:
    """Write ``coefficients.to_dict()`` (plus ``provenance``) as JSON, atomically.

    Args:
        path: destination ``.json`` file; its directory must exist.
        coefficients: the result of :func:`taylor_coefficients`.
        provenance: config hash, package versions, seed, ... stored under ``"provenance"``.
    """
    write_json(path, coefficients.to_dict(), provenance=provenance or {})


def _check_inputs(inputs: torch.Tensor, weights: torch.Tensor | None,
                  feature_names: Sequence[str] | None, batch_size: int) -> list[str]:
    """Validate the boundary; return the feature names (defaults ``x0, x1, ...``)."""
    if inputs.ndim != 2:
        raise InputDataError(f"taylor_coefficients: inputs must be (n_events, n_features), "
                             f"got shape {tuple(inputs.shape)}")
    n_events, n_features = inputs.shape
    if n_events == 0:
        raise EmptySelectionError("taylor_coefficients: inputs have no events")
    if not bool(torch.isfinite(inputs).all()):
        raise InputDataError("taylor_coefficients: inputs contain NaN or infinite values")
    if weights is not None:
        if weights.shape != (n_events,):
            raise InputDataError(f"taylor_coefficients: weights must have shape ({n_events},), "
                                 f"got {tuple(weights.shape)}")
        if not bool(torch.isfinite(weights).all()) or float(weights.sum()) <= 0:
            raise InputDataError("taylor_coefficients: weights must be finite with a sum > 0")
    if batch_size < 1:
        raise InputDataError(f"taylor_coefficients: batch_size = {batch_size}: must be >= 1")
    names = [f"x{i}" for i in range(n_features)] if feature_names is None else list(feature_names)
    if len(names) != n_features:
        raise InputDataError(f"taylor_coefficients: {len(names)} feature_names for "
                             f"{n_features} input columns")
    return names


def _check_output(model: torch.nn.Module, probe: torch.Tensor, output_index: int | None) -> int:
    """Number of model outputs per event, checked against ``output_index``."""
    n_out = int(model(probe).reshape(probe.shape[0], -1).shape[1])
    if output_index is None and n_out != 1:
        raise InputDataError(f"taylor_coefficients: the model has {n_out} outputs per event; "
                             f"choose one with output_index")
    if output_index is not None and not 0 <= output_index < n_out:
        raise InputDataError(f"taylor_coefficients: output_index = {output_index}: must be in "
                             f"[0, {n_out}) for this model")
    return n_out


def _scalar_output(model: torch.nn.Module, n_out: int,
                   output_index: int | None) -> Callable[[torch.Tensor], torch.Tensor]:
    """``(n_features,) -> ()``: the chosen model output for one event."""
    index = 0 if output_index is None else output_index

    def scalar(x: torch.Tensor) -> torch.Tensor:
        return model(x[None]).reshape(n_out)[index]

    return scalar


def _with_gradient(
    scalar: Callable[[torch.Tensor], torch.Tensor],
) -> Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """Gradient twice, so ``jacrev(..., has_aux=True)`` yields the Hessian and the gradient."""
    gradient = jacrev(scalar)

    def both(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        g = gradient(x)
        return g, g

    return both
