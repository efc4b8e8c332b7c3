"""Which networks a config trains and where each lives: the (seed index, fold, model,
strategy) branches of TrainModel, their seeds and directories.

Kept free of torch, so that a law process that only builds the task graph (TrainModel's branch
map and outputs, Evaluate's and Report's requirements) does not import it.
"""

from __future__ import annotations

from analysis.config import AnalysisConfig
from analysis.errors import ConfigError

__all__ = ["FOLD_SEED_STRIDE", "JOINT_CUTS_SUFFIX", "SEED_INDEX_STRIDE", "network_directory",
           "network_seed", "network_variants", "training_branches"]

JOINT_CUTS_SUFFIX = "+cuts"
"""Strategy suffix of a DNN trained with the cuts in front of it (``training.joint_cuts``)."""

SEED_INDEX_STRIDE = 1_000_000
"""Distance between the seeds of two seed indices (:func:`network_seed`)."""
FOLD_SEED_STRIDE = 1000
"""Distance between the initialisation seeds of two folds (fewer folds than this: no overlap)."""


def network_seed(seed: int, seed_index: int, fold: int | None = None) -> int:
    """The torch seed of one network: ``training.seed`` moved by the seed index (and the fold).

    Seed index ``s`` draws its batches with ``seed + SEED_INDEX_STRIDE * s`` and initialises
    the network of fold ``k`` with that plus ``FOLD_SEED_STRIDE * k``. Seed index 0 is
    therefore the single seed of a config without ``training.seeds`` (the same networks as
    before seeds existed), every (seed index, fold) pair gets its own initialisation for
    ``fold < FOLD_SEED_STRIDE``, and all strategies of one pair start from the same one (the
    paired comparison against CE compares losses, not initialisations).

    Args:
        seed: ``training.seed``, >= 0.
        seed_index: ``0 <= seed_index < training.seeds``.
        fold: the held-out fold for the initialisation seed; None for the batches' seed.

    Returns:
        A non-negative integer for ``torch.Generator().manual_seed``.

    Raises:
        ConfigError: a negative ``seed_index`` or ``fold``.

    Example:
        >>> network_seed(1, 0), network_seed(1, 0, fold=1), network_seed(1, 2, fold=1)
        (1, 1001, 2001001)
    """
    if seed_index < 0 or (fold is not None and fold < 0):
        raise ConfigError(f"network_seed: seed index {seed_index}, fold {fold}: must be >= 0")
    return seed + SEED_INDEX_STRIDE * seed_index + FOLD_SEED_STRIDE * (fold or 0)


def network_variants(config: AnalysisConfig) -> list[tuple[str, str]]:
    """Every ``(model kind, strategy)`` the config trains, in order.

    Args:
        config: its ``training`` section (models, strategies, joint_cuts).

    Returns:
        Each model with each strategy, then the DNN with each ``training.joint_cuts`` strategy
        as ``"<strategy>+cuts"``, e.g. ``[("dnn", "ce"), ..., ("dnn", "inference+cuts")]``.
    """
    training = config.training
    variants = [(m, s) for m in training.models for s in training.strategies]
    if "dnn" in training.models:
        variants += [("dnn", f"{s}{JOINT_CUTS_SUFFIX}") for s in training.joint_cuts]
    return variants


def training_branches(config: AnalysisConfig) -> list[tuple[int, int, str, str]]:
    """Every network TrainModel trains: ``(seed index, fold, model kind, strategy)``, in order.

    Seed index first, so that with ``training.seeds = 1`` the branches are those of a config
    before seeds existed (fold, then :func:`network_variants`).

    Args:
        config: its ``training`` section (seeds, n_folds, models, strategies, joint_cuts).

    Returns:
        ``seeds x n_folds x len(network_variants(config))`` tuples.

    Example:
        >>> from analysis.config import load_config
        >>> branches = training_branches(load_config("tth_bb_tiny"))
        >>> branches[0], len(branches)
        ((0, 0, 'dnn', 'ce'), 10)
    """
    settings = config.training
    return [(seed_index, fold, model, strategy) for seed_index in range(settings.seeds)
            for fold in range(settings.n_folds) for model, strategy in network_variants(config)]


def network_directory(seed_index: int, fold: int, model_kind: str, strategy: str) -> str:
    """TrainModel's directory of one network: seed index 0 keeps the name it had before seeds.

    Example:
        >>> network_directory(0, 1, "dnn", "ce"), network_directory(2, 1, "dnn", "ce")
        ('dnn_ce_fold1', 'dnn_ce_seed2_fold1')
    """
    seed = f"_seed{seed_index}" if seed_index else ""
    return f"{model_kind}_{strategy}{seed}_fold{fold}"
