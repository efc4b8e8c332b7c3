"""The output classes of the multi-class classifier, read from the config's ``classes`` key.

One reading of :attr:`~analysis.config.AnalysisConfig.classes` for every user: the training
samples (:mod:`analysis.training.skim_samples`), the network's outputs
(:mod:`analysis.training.network`), the learned skim (:mod:`analysis.selection`), the statistical
model's channels (:mod:`analysis.inference.model`) and the AUC of Evaluate. Every function takes
the config: nothing here depends on a config at import time. The module sits low in the import
graph (it needs only the config), so that :mod:`analysis.inference` and :mod:`analysis.selection`
do not import :mod:`analysis.training` for a list of names.

The config validates the key (``analysis.config``): at least two classes, the first (the signal
class) holding exactly the ``role: signal`` processes, every process in exactly one class.
"""

from __future__ import annotations

import numpy as np

from analysis.config import AnalysisConfig

__all__ = ["class_index_of_labels", "class_names", "class_of_process", "score_column",
           "signal_class", "signal_labels"]


def class_names(config: AnalysisConfig) -> tuple[str, ...]:
    """The network's output classes, in node order (``classes`` of the config).

    Example:
        >>> from analysis.config import load_config
        >>> class_names(load_config("tth_bb_tiny"))
        ('tth', 'ttbb', 'ttother')
    """
    return tuple(output.name for output in config.classes)


def signal_class(config: AnalysisConfig) -> str:
    """The class of the signal process(es): the first of ``classes``.

    Example:
        >>> from analysis.config import load_config
        >>> signal_class(load_config("tth_bb_tiny"))
        'tth'
    """
    return config.classes[0].name


def score_column(name: str) -> str:
    """The column of class ``name``'s softmax output in the score tables (Evaluate).

    Example:
        >>> score_column("tth")
        'p_tth'
    """
    return f"p_{name}"


def class_of_process(config: AnalysisConfig) -> dict[str, str]:
    """The class of every process of ``config``, in the config's process order.

    Args:
        config: its ``processes`` (name -> role, in order) and ``classes``.

    Returns:
        process name -> class name, in the config's process order (that of the skim's
        ``label``).

    Example:
        >>> from analysis.config import load_config
        >>> class_of_process(load_config("tth_bb_tiny"))["tt_cc"]
        'ttother'
    """
    owner = {process: output.name for output in config.classes for process in output.processes}
    return {name: owner[name] for name in config.processes}


def class_index_of_labels(config: AnalysisConfig) -> np.ndarray:
    """``(n_processes,)`` int64: the output node (index into :func:`class_names`) of each
    process label (the process's position in the config, the skim's ``label``).

    Example:
        >>> from analysis.config import load_config
        >>> class_index_of_labels(load_config("tth_bb_tiny")).tolist()
        [0, 1, 2, 2, 2]
    """
    names = class_names(config)
    return np.array([names.index(c) for c in class_of_process(config).values()], dtype=np.int64)


def signal_labels(config: AnalysisConfig) -> list[int]:
    """The process labels (positions in the config, the skim's ``label`` column) of the
    :func:`signal_class`.

    Example:
        >>> from analysis.config import load_config
        >>> signal_labels(load_config("tth_bb_tiny"))
        [0]
    """
    signal = signal_class(config)
    return [label for label, cls in enumerate(class_of_process(config).values()) if cls == signal]
