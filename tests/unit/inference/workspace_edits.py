"""Edits of pyhf workspace JSON for the fitter tests: a sample scaled with its modifiers."""

from __future__ import annotations

from typing import Any


def scale_sample(sample: dict[str, Any], scale: float) -> None:
    """Multiply a workspace sample's expected events by ``scale``, in place, with what is in
    events along with them: its histosys templates and its staterror widths (normsys and
    normfactors are relative and stay)."""
    sample["data"] = [scale * x for x in sample["data"]]
    for modifier in sample["modifiers"]:
        if modifier["type"] == "histosys":
            for key in ("hi_data", "lo_data"):
                modifier["data"][key] = [scale * x for x in modifier["data"][key]]
        elif modifier["type"] == "staterror":
            modifier["data"] = [scale * x for x in modifier["data"]]
