"""docs/api.md: every ```python block runs, in order, in one namespace, without raising."""

from __future__ import annotations

import functools
import importlib
import re
from pathlib import Path

import pytest

API_DOC = Path(__file__).resolve().parents[1] / "docs" / "api.md"
_BLOCK = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)
MIN_BLOCKS = 5  # the example, pyhf, significance, cuts, Taylor


def python_blocks(text: str) -> list[tuple[int, str]]:
    """``(line of the first code line, code)`` of each fenced ``python`` block of Markdown."""
    return [(text.count("\n", 0, m.start(1)) + 1, m.group(1)) for m in _BLOCK.finditer(text)]


_TABLE_ROW = re.compile(r"^\| (`analysis\.[^|]*) \| ([^|]*) \|", re.MULTILINE)
_CODE = re.compile(r"`([^`]+)`")


def api_table(text: str) -> list[tuple[list[str], list[str]]]:
    """``(modules, names)`` of each row of the Markdown table whose first column names
    ``analysis.`` modules; a name may be dotted (``Class.method``)."""
    return [(_CODE.findall(modules), _CODE.findall(names))
            for modules, names in _TABLE_ROW.findall(text)]


def test_api_table_names_what_exists() -> None:
    """Each module of docs/api.md's table imports, and each name of a row is in one of its
    modules: a renamed or moved module or function fails here."""
    rows = api_table(API_DOC.read_text(encoding="utf-8"))
    assert len(rows) >= 20, f"{API_DOC}: found {len(rows)} table rows"
    for modules, names in rows:
        imported = [importlib.import_module(m) for m in modules]
        for name in names:
            found = [m for m in imported if _has_path(m, name)]
            assert found, f"{API_DOC.name}: {name} is in none of {modules}"


def _has_path(obj: object, dotted: str) -> bool:
    try:
        functools.reduce(getattr, dotted.split("."), obj)
    except AttributeError:
        return False
    return True


def test_api_table_rows_are_found() -> None:
    text = ("| module | name |\n| --- | --- |\n| `analysis.a`, `analysis.b` | `f`, `C.m` | x |\n"
            "| `numpy` | `f` | y |\n")
    assert api_table(text) == [(["analysis.a", "analysis.b"], ["f", "C.m"])]


def test_python_blocks_are_found() -> None:
    blocks = python_blocks("text\n```python\nx = 1\n```\n```text\nno\n```\n```python\ny = 2\n```\n")
    assert blocks == [(3, "x = 1\n"), (9, "y = 2\n")]


# pyhf 0.7.6 validates workspaces with jsonschema's deprecated RefResolver: not ours to fix
@pytest.mark.filterwarnings(
    "ignore:jsonschema.RefResolver is deprecated:DeprecationWarning:pyhf.schema.validator")
def test_api_doc_examples_run(capsys: pytest.CaptureFixture[str]) -> None:
    blocks = python_blocks(API_DOC.read_text(encoding="utf-8"))
    assert len(blocks) >= MIN_BLOCKS, f"{API_DOC}: found {len(blocks)} python blocks"
    namespace: dict[str, object] = {"__name__": "docs_api"}
    for line, code in blocks:
        try:
            exec(compile(code, f"{API_DOC}:{line}", "exec"), namespace)  # noqa: S102
        except Exception as err:  # report the block, keep the traceback
            pytest.fail(f"{API_DOC.name}, block at line {line} raised "
                        f"{type(err).__name__}: {err}")
    out = capsys.readouterr().out
    for strategy in ("ce", "penalty", "inference"):
        assert re.search(rf"^{strategy} +loss .* with systematics \d", out, re.MULTILINE), out
    # what the document says of the numbers holds: with systematics, both systematic-aware
    # strategies beat cross entropy, the inference-aware one most; x1 leads the ranking
    results = namespace["results"]
    assert results["inference"].total < results["penalty"].total < results["ce"].total, results
    ranked = [label for label, _ in namespace["coefficients"].ranked()[:2]]
    assert set(ranked) == {"t_x1,x1", "t_x1"}, ranked
