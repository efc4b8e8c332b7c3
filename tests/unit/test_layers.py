"""The library's packages import each other one way: no two packages of analysis/ import each
other (a static reading of every ``from analysis.<package> ...``, lazy imports included)."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ANALYSIS = Path(__file__).resolve().parents[2] / "analysis"


def _package_imports() -> dict[str, dict[str, set[str]]]:
    """package -> imported package -> the files that import it."""
    imports: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for path in ANALYSIS.rglob("*.py"):
        package = path.relative_to(ANALYSIS).parts[0].removesuffix(".py")
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("analysis."):
                target = node.module.split(".")[1]
                if target != package:
                    imports[package][target].add(str(path.relative_to(ANALYSIS)))
    return imports


def test_no_two_packages_import_each_other() -> None:
    imports = _package_imports()
    assert imports["training"]["inference"]  # the reading finds imports (else the test is void)
    cycles = {(a, b): sorted(imports[a][b] | imports[b][a]) for a in imports for b in imports[a]
              if a < b and a in imports.get(b, {})}
    assert cycles == {}


def test_the_low_modules_import_no_package() -> None:
    imports = _package_imports()
    for low in ("errors", "config", "classes", "io"):
        assert set(imports.get(low, {})) <= {"errors", "config"}, low


# law internals that only tasks/law_adapter.py may touch (private attributes, or the layout of
# law's job bookkeeping)
_LAW_INTERNALS = {"_defined_workflow_proxy", "_local_workflow_has_yielded", "job_data",
                  "job_manager", "mp_manager", "local_workflow_tasks_yielded"}


def test_law_internals_only_in_the_adapter() -> None:
    root = ANALYSIS.parent
    adapter = root / "tasks" / "law_adapter.py"
    uses: dict[str, set[str]] = defaultdict(set)
    for path in [*(root / "tasks").rglob("*.py"), *(root / "tests").rglob("*.py")]:
        if path == Path(__file__).resolve():
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            name = (node.attr if isinstance(node, ast.Attribute)
                    else node.value if isinstance(node, ast.Constant) else None)
            if name in _LAW_INTERNALS:
                uses[str(path.relative_to(root))].add(name)
    assert uses.pop(str(adapter.relative_to(root))) == _LAW_INTERNALS  # the reading finds them
    assert dict(uses) == {}
