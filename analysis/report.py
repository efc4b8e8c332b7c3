"""A report as a list of blocks, rendered as Markdown and as one self-contained HTML page.

The Report task builds the blocks (headings, paragraphs, tables, images) from the results; the
same blocks give the Markdown twin (images as relative links) and the HTML page (images embedded
as base64 PNG, so the page is one file that can be mailed or attached to a talk).
"""

from __future__ import annotations

import base64
import html
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["Heading", "Image", "Paragraph", "Table", "render_html", "render_markdown",
           "strategy_verdict"]


@dataclass(frozen=True)
class Heading:
    """A section title; ``level`` 1 is the page title."""

    text: str
    level: int = 2


@dataclass(frozen=True)
class Paragraph:
    """Plain text (no markup)."""

    text: str


@dataclass(frozen=True)
class Table:
    """A table of strings; the first row of ``rows`` follows ``header``."""

    header: Sequence[str]
    rows: Sequence[Sequence[str]]


@dataclass(frozen=True)
class Image:
    """A PNG file, linked relative to the report directory as ``name``."""

    path: str
    name: str
    caption: str


Block = Heading | Paragraph | Table | Image


def render_markdown(blocks: Sequence[Block]) -> str:
    """The Markdown page (GitHub flavour).

    Args:
        blocks: the page's headings, paragraphs, tables and images, in order.

    Returns:
        The page text; images as relative links ``![caption](name)``.
    """
    lines: list[str] = []
    for block in blocks:
        if isinstance(block, Heading):
            lines += ["#" * block.level + " " + block.text, ""]
        elif isinstance(block, Paragraph):
            lines += [block.text, ""]
        elif isinstance(block, Table):
            lines.append("| " + " | ".join(block.header) + " |")
            lines.append("|" + "---|" * len(block.header))
            lines += ["| " + " | ".join(row) + " |" for row in block.rows]
            lines.append("")
        else:
            lines += [f"![{block.caption}]({block.name})", "", f"*{block.caption}*", ""]
    return "\n".join(lines)


def render_html(blocks: Sequence[Block], title: str) -> str:
    """One self-contained HTML page: inline CSS, images embedded as base64 PNG.

    Args:
        blocks: the page's headings, paragraphs, tables and images, in order (each
            :class:`Image`'s ``path`` is read).
        title: the page title.

    Returns:
        The HTML text; all text is escaped.
    """
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             f"<title>{html.escape(title)}</title>",
             "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
             "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #bbb;"
             "padding:3px 8px;text-align:right}th{background:#eee}td:first-child{text-align:left}"
             "img{max-width:100%}figcaption{font-style:italic;color:#444}</style>",
             "</head><body>"]
    for block in blocks:
        if isinstance(block, Heading):
            parts.append(f"<h{block.level}>{html.escape(block.text)}</h{block.level}>")
        elif isinstance(block, Paragraph):
            parts.append(f"<p>{html.escape(block.text)}</p>")
        elif isinstance(block, Table):
            parts.append("<table><tr>" + "".join(f"<th>{html.escape(h)}</th>"
                                                 for h in block.header) + "</tr>")
            parts += ["<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>"
                      for row in block.rows]
            parts.append("</table>")
        else:
            with open(block.path, "rb") as stream:
                data = base64.b64encode(stream.read()).decode()
            parts.append(f'<figure><img alt="{html.escape(block.caption)}" '
                         f'src="data:image/png;base64,{data}"><figcaption>'
                         f"{html.escape(block.caption)}</figcaption></figure>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def image_name(path: str | os.PathLike[str], *parts: str) -> str:
    """A flat file name for a copied image, e.g. ``fit_dnn_ce_impacts.png``."""
    return "_".join((*parts, os.path.basename(os.fspath(path))))


def strategy_verdict(results: Mapping[str, Mapping[str, Any]]) -> str:
    """One paragraph: which strategies change the expected sigma_mu against CE, fold by fold.

    A change is listed only when every fold's network shows it with the same sign (each fold
    is an independent network on independent events); with few folds that is a necessary
    condition for a real difference, not a significance, and the paragraph says so.

    Args:
        results: key -> ``{"learned_cuts": bool, "model": str, "strategy": str, "sigma_mu":
            float, "sigma_mu_no_mcstat": float, "sigma_mu_no_mcstat_folds": [float per
            fold]}`` (NaN: undetermined), with a ``"ce"`` entry per selection and model.

    Returns:
        The verdict in plain words.
    """
    determined = sum(math.isfinite(r["sigma_mu"]) for r in results.values())
    groups: dict[str, list[str]] = {"reduces": [], "increases": [], "undecided": []}
    for r in results.values():
        if r["strategy"] == "ce":
            continue
        reference = next((c for c in results.values() if c["strategy"] == "ce"
                          and c["model"] == r["model"]
                          and c["learned_cuts"] == r["learned_cuts"]), None)
        if reference is None:
            continue
        name = (f"{r['model'].upper()} {r['strategy']} "
                f"({'learned cuts' if r['learned_cuts'] else 'skim only'})")
        changes = [a / b - 1.0 for a, b in zip(r["sigma_mu_no_mcstat_folds"],
                                               reference["sigma_mu_no_mcstat_folds"])
                   if math.isfinite(a) and math.isfinite(b) and b > 0]
        complete = len(changes) == len(r["sigma_mu_no_mcstat_folds"]) > 1
        if complete and all(c < 0 for c in changes):
            groups["reduces"].append(f"{name} {', '.join(f'{100 * c:+.0f} %' for c in changes)}")
        elif complete and all(c > 0 for c in changes):
            groups["increases"].append(name)
        else:
            groups["undecided"].append(name)
    n_folds = max((len(r["sigma_mu_no_mcstat_folds"]) for r in results.values()), default=0)
    chance = 100.0 * 2.0 ** (1 - n_folds) if n_folds else 100.0
    return (f"Verdict: with the MC statistical uncertainty of the simulated samples, σ_μ is "
            f"determined for {determined} of {len(results)} networks. Without it, against CE, "
            f"with the same sign in all {n_folds} folds: lower σ_μ for "
            f"{'; '.join(groups['reduces']) or 'none'}; higher σ_μ for "
            f"{', '.join(groups['increases']) or 'none'}; folds disagree or σ_μ undetermined "
            f"for {', '.join(groups['undecided']) or 'none'}. Two networks that differ only by "
            f"their sample share the sign in {chance:.0f} % of the cases: a common sign is "
            f"necessary for a real difference, not a proof of one.")
