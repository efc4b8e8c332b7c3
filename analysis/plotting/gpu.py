"""Figure of the GPU-sharing benchmark: aggregate speed-up against the number of trainings.

Plain matplotlib, not the mplhep style of :mod:`analysis.plotting.figures`: the benchmark runs on
GPU nodes whose images carry matplotlib but not mplhep. Written atomically through
:func:`analysis.io.atomic_path`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from analysis.gpu.benchmark import MODES, SharingRow
from analysis.io import atomic_path

__all__ = ["plot_sharing"]


def plot_sharing(rows: Sequence[SharingRow], path_base: str | os.PathLike[str]) -> list[str]:
    """Speed-up (aggregate throughput / one exclusive job) against N, per intensity and mode.

    Args:
        rows: benchmark rows (:func:`~analysis.gpu.benchmark.run_sharing_benchmark`); a partial
            set is drawn as far as it goes.
        path_base: output path without suffix; its directory must exist.

    Returns:
        The written paths, ``<path_base>.png`` and ``<path_base>.pdf``.
    """
    # a Figure outside pyplot: no backend is chosen or switched
    from matplotlib.figure import Figure

    intensities = sorted({r.intensity for r in rows})
    figure = Figure(figsize=(5 * max(1, len(intensities)), 4))
    axes = figure.subplots(1, max(1, len(intensities)), squeeze=False)
    for ax, name in zip(axes[0], intensities):
        for mode in MODES:
            points = sorted((r.n_jobs, r.speedup) for r in rows if r.intensity == name
                            and (r.mode == mode or r.n_jobs == 1))
            if len(points) > 1:
                ax.plot(*zip(*points), marker="o", label=mode.replace("_", "-"))
        ax.axhline(1.0, color="grey", linewidth=0.8)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("concurrent trainings N")
        ax.set_ylabel("aggregate throughput / exclusive")
        ax.set_title(f"{name} intensity")
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
    figure.tight_layout()
    written = []
    for suffix in (".png", ".pdf"):
        path = f"{os.fspath(path_base)}{suffix}"
        with atomic_path(path) as tmp:  # no creation date: equal rows give equal PDF bytes
            figure.savefig(tmp, metadata={"CreationDate": None} if suffix == ".pdf" else None)
        written.append(path)
    return written
