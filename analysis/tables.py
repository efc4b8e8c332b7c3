"""Markdown tables: the one writer behind the report, the trade-off table and the GPU benchmark."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["markdown_table"]


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub-flavoured Markdown table, without a trailing newline.

    Args:
        header: ``(n_columns,)`` column titles.
        rows: rows of ``n_columns`` cells, already formatted as strings.

    Returns:
        The header line, the separator line and one line per row.

    Example:
        >>> print(markdown_table(["a", "b"], [["1", "2"]]))
        | a | b |
        |---|---|
        | 1 | 2 |
    """
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)
