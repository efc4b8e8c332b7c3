"""The output classes of the multi-class classifier, and the class of each process of a config.

One definition for every user: the training samples (:mod:`analysis.training.skim_samples`),
the network's outputs (:mod:`analysis.training.network`), the learned skim
(:mod:`analysis.selection`), the statistical model's channels (:mod:`analysis.inference.model`)
and the AUC of Evaluate. It sits low in the import graph (it needs only the config), so that
:mod:`analysis.inference` and :mod:`analysis.selection` no longer import
:mod:`analysis.training` for a list of names.
"""

from __future__ import annotations

from analysis.config import AnalysisConfig
from analysis.errors import ConfigError

__all__ = ["CLASSES", "SIGNAL_CLASS", "TTBB_PROCESS", "class_of_process", "signal_labels"]

CLASSES: tuple[str, ...] = ("tth", "ttbb", "ttother")
"""Output classes of the multi-class classifier: the signal, tt+bb, every other background."""

SIGNAL_CLASS: str = CLASSES[0]
"""The class of the signal process(es) (``role: signal``)."""

TTBB_PROCESS = "tt_bb"
"""The config's process that is the ``ttbb`` class (the irreducible background)."""


def class_of_process(config: AnalysisConfig, ttbb_process: str = TTBB_PROCESS) -> dict[str, str]:
    """Class of :data:`CLASSES` of every process of ``config``, in the config's process order.

    The signal (``role: signal``) is ``"tth"``, ``ttbb_process`` is ``"ttbb"``, every other
    background is ``"ttother"``.

    Args:
        config: its ``processes`` (name -> role, in order).
        ttbb_process: the background process that is the ``ttbb`` class.

    Returns:
        process name -> class name, in the config's process order (that of the skim's
        ``label``).

    Raises:
        ConfigError: if ``ttbb_process`` is not a background process of ``config``.
    """
    spec = config.processes.get(ttbb_process)
    if spec is None or spec.role != "background":
        raise ConfigError(f"{config.source or config.name}: processes.{ttbb_process}: needed as "
                          f"the tt+bb background of the {CLASSES} classifier")
    return {name: ("tth" if p.role == "signal" else "ttbb" if name == ttbb_process else "ttother")
            for name, p in config.processes.items()}


def signal_labels(config: AnalysisConfig) -> list[int]:
    """The process labels (positions in the config, the skim's ``label`` column) of the
    :data:`SIGNAL_CLASS`.

    Raises:
        ConfigError: as :func:`class_of_process`.

    Example:
        >>> from analysis.config import load_config
        >>> signal_labels(load_config("tth_bb_tiny"))
        [0]
    """
    return [label for label, cls in enumerate(class_of_process(config).values())
            if cls == SIGNAL_CLASS]
