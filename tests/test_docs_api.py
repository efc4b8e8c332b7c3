"""docs/api.md: every ```python block runs, in order, in one namespace, without raising."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

API_DOC = Path(__file__).resolve().parents[1] / "docs" / "api.md"
_BLOCK = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)
MIN_BLOCKS = 5  # the example, pyhf, significance, cuts, Taylor


def python_blocks(text: str) -> list[tuple[int, str]]:
    """``(line of the first code line, code)`` of each fenced ``python`` block of Markdown."""
    return [(text.count("\n", 0, m.start(1)) + 1, m.group(1)) for m in _BLOCK.finditer(text)]


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
