"""The blocks of a report (headings, paragraphs, tables, images) and their two renderings.

The Report task builds the blocks (headings, paragraphs, tables, images) from the results; the
same blocks give the Markdown twin (images as relative links) and the HTML page (images embedded
as base64 PNG, so the page is one file that can be mailed or attached to a talk).
"""

from __future__ import annotations

import base64
import html
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass

from analysis.io import atomic_path
from analysis.tables import markdown_table

__all__ = ["Block", "Heading", "Image", "Paragraph", "Table", "copy_images", "image_name",
           "render_html", "render_markdown"]


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
            lines += [markdown_table(block.header, block.rows), ""]
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


def copy_images(blocks: Sequence[Block], directory: str | os.PathLike[str]) -> list[str]:
    """Copy every :class:`Image`'s file into ``directory`` under its ``name`` (the Markdown's
    relative links point there).

    Args:
        blocks: the page's blocks; those that are not images are ignored.
        directory: the report's directory; it must exist.

    Returns:
        The written paths, in block order.
    """
    written = []
    for block in blocks:
        if isinstance(block, Image):
            destination = os.path.join(os.fspath(directory), block.name)
            with atomic_path(destination) as tmp:
                shutil.copyfile(block.path, tmp)
            written.append(destination)
    return written
