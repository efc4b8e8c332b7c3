"""Atomic writes of every output kind: JSON, text, Parquet, figures, torch files (one scheme).

A killed task must leave nothing that looks complete (DESIGN.md, "Contracts"), so every output
is written to a temporary file beside its destination and renamed into place with
:func:`os.replace`, which is atomic on one file system. One temporary-name scheme serves every
writer: ``.<name>.tmp-<pid>-<8 hex><suffix>`` in the destination's directory, hidden, unique per
process and call, and keeping the file's suffix so that libraries that pick a format from the
suffix (matplotlib, ONNX) still do.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from analysis.errors import InputDataError

__all__ = ["atomic_path", "read_columns", "read_json", "read_tables", "temporary_name",
           "write_json", "write_parquet",
           "write_text"]


def temporary_name(path: str | os.PathLike[str]) -> Path:
    """The temporary file that stands in for ``path`` until it is renamed into place.

    Args:
        path: the destination file.

    Returns:
        ``<dir>/.<name>.tmp-<pid>-<8 hex><suffix>``, in the destination's directory.

    Example:
        >>> name = temporary_name("/store/report.md")
        >>> (name.parent, name.name.startswith(".report.md.tmp-"), name.suffix)
        (PosixPath('/store'), True, '.md')
    """
    destination = Path(path)
    return destination.with_name(f".{destination.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}"
                                 f"{destination.suffix}")


@contextmanager
def atomic_path(path: str | os.PathLike[str], keep_name: bool = False) -> Iterator[Path]:
    """Yield a temporary path to write; on success rename it to ``path``, on error remove it.

    Args:
        path: the destination file; its directory must exist.
        keep_name: the temporary file has the destination's own name, in a temporary folder
            (:func:`temporary_name` of the destination) beside it: for writers that record the
            file's name inside it (ROOT files), so that the bytes do not depend on the
            temporary name.

    Yields:
        The temporary path (:func:`temporary_name`, or ``<that folder>/<name>``).

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     with atomic_path(f"{folder}/a.txt") as tmp:
        ...         _ = tmp.write_text("done")
        ...     sorted(os.listdir(folder))
        ['a.txt']
    """
    folder = temporary_name(path).with_suffix("") if keep_name else None
    if folder is not None:
        folder.mkdir()
    tmp = folder / Path(path).name if folder is not None else temporary_name(path)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)  # after a failure (after success it is already renamed)
        if folder is not None:
            folder.rmdir()


def read_columns(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A flat Parquet table (what :func:`write_parquet` wrote) as column -> ``(n_rows,)`` numpy
    array."""
    import awkward as ak
    import numpy as np

    table = ak.from_parquet(os.fspath(path))
    return {name: np.asarray(table[name]) for name in ak.fields(table)}


def read_json(path: str | os.PathLike[str]) -> Any:
    """The JSON content of ``path`` (what :func:`write_json` wrote)."""
    with open(path, encoding="utf-8") as stream:
        return json.load(stream)


def read_tables(tables: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Parquet tables as awkward arrays, in the nesting of ``tables`` (dataset -> shift).

    Args:
        tables: dataset -> shift (``nominal``, ``jes_up``, ...) -> Parquet path, or an awkward
            array already read (kept as it is).

    Returns:
        dataset -> shift -> ``(n_events,)`` awkward record array.

    Raises:
        InputDataError: a path that is not a readable Parquet file (the message names it).
    """
    import awkward as ak

    def read(table: Any) -> Any:
        if not isinstance(table, (str, os.PathLike)):
            return table
        try:
            return ak.from_parquet(os.fspath(table))
        except (OSError, ValueError) as err:
            raise InputDataError(f"{table}: unreadable table ({err})") from err

    return {dataset: {shift: read(t) for shift, t in shifts.items()}
            for dataset, shifts in tables.items()}


def write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | os.PathLike[str], payload: Mapping[str, Any],
               provenance: Mapping[str, Any] | None = None) -> None:
    """Write ``payload`` as indented, key-sorted JSON to ``path`` atomically.

    Args:
        path: destination file.
        payload: JSON-ready mapping; values that are not JSON types are written with ``str``.
        provenance: if given, stored under the key ``"provenance"`` (config hash, versions, seed).
    """
    content = dict(payload) if provenance is None else {**payload, "provenance": dict(provenance)}
    write_text(path, json.dumps(content, indent=2, sort_keys=True, default=str) + "\n")


def write_parquet(path: str | os.PathLike[str], table: Any,
                  provenance: Mapping[str, Any]) -> None:
    """Write an awkward array of records as Parquet, the provenance in its key-value metadata.

    Args:
        path: destination file.
        table: ``(n_events,)`` awkward record array (one field per column), or a mapping
            column -> ``(n_events,)`` array.
        provenance: stored as JSON under the schema metadata key ``diffana_provenance``.
    """
    import awkward as ak
    import pyarrow.parquet as pq

    arrow = ak.to_arrow_table(ak.Array(dict(table)) if isinstance(table, Mapping) else table)
    metadata = {**(arrow.schema.metadata or {}),
                b"diffana_provenance": json.dumps(dict(provenance), sort_keys=True).encode()}
    with atomic_path(path) as tmp:
        pq.write_table(arrow.replace_schema_metadata(metadata), str(tmp))
