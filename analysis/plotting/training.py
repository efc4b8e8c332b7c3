"""Training curves: the loss of each training stage against the optimiser step."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

from analysis.plotting.figures import cms_style, new_figure, save_figure

__all__ = ["plot_training_curves"]


@cms_style
def plot_training_curves(stages: Sequence[tuple[str, Sequence[float]]], title: str,
                         path_base: str | os.PathLike[str],
                         validation: Mapping[str, Sequence[Sequence[float]]] | None = None,
                         best_steps: Mapping[str, int] | None = None) -> list[str]:
    """Plot the loss of consecutive training stages and write it as PNG and PDF.

    Args:
        stages: ``(name, losses)`` per stage in order, e.g. ``[("ce", [...]), ("inference",
            [...])]``; each stage gets its own axis (the losses have different units).
        title: plot title (model, strategy, fold).
        path_base: output path without suffix.
        validation: stage name -> ``(step, loss)`` on the validation events (early stopping),
            drawn as points over the training loss of that stage.
        best_steps: stage name -> the step whose model was kept (a vertical line).

    Returns:
        The written files, ``[<base>.png, <base>.pdf]``.
    """
    figure, axes = new_figure(len(stages), width=6.0, height=5.0)
    for axis, (name, losses) in zip(axes[0], stages):
        axis.plot(range(1, len(losses) + 1), losses, label="training (batch)")
        points = (validation or {}).get(name, [])
        if points:
            axis.plot([p[0] for p in points], [p[1] for p in points], "o-", markersize=3,
                      label="validation (all events)")
        if best_steps and best_steps.get(name):
            axis.axvline(best_steps[name], color="grey", linestyle="--", label="model kept")
        if points or (best_steps and best_steps.get(name)):
            axis.legend(fontsize=10)
        axis.set_xlabel("optimiser step")
        axis.set_ylabel(f"{name} loss")
    figure.suptitle(title, fontsize=14)
    return save_figure(figure, path_base)
