"""What a Python file imports inside the project, read from its source (nothing is executed).

Every import statement counts, at module level or inside a function (slimline imports heavy
modules lazily, and a lazy import runs as surely as an eager one), except those under
`if TYPE_CHECKING:`. Importing `slimline.a.b` also runs `slimline/__init__.py` and
`slimline/a/__init__.py`, so package files belong to a closure too.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

from tests.support.paths import ROOT

SRC = ROOT / "src"
PACKAGE = "slimline"
STAGES = sorted(p.stem for p in (ROOT / "stages").glob("*.py"))


def module_file(name: str) -> Path | None:
    """The file that defines module `name` (a module or a package's __init__), if any."""
    base = SRC.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def module_name(path: Path) -> str:
    rel = path.resolve().relative_to(SRC).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def _type_checking(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (
        (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
        or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")
    )


def _import_nodes(tree: ast.AST):
    stack = [tree]
    while stack:
        node = stack.pop()
        if _type_checking(node):
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        stack.extend(ast.iter_child_nodes(node))


@cache
def imported_names(path: Path) -> frozenset[str]:
    """Every module name an import in `path` names (`from a import b` gives `a` and `a.b`)."""
    names: set[str] = set()
    for node in _import_nodes(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return frozenset(names)


def project_imports(path: Path) -> set[str]:
    """The slimline modules `path` imports directly, with the packages above each."""
    found: set[str] = set()
    for name in imported_names(path):
        parts = name.split(".")
        if parts[0] != PACKAGE:
            continue
        for i in range(1, len(parts) + 1):
            prefix = ".".join(parts[:i])
            if module_file(prefix) is not None:
                found.add(prefix)
    return found


def closure(path: Path) -> set[Path]:
    """Every project file that runs when `path` runs: its slimline imports, transitively."""
    seen: set[Path] = set()
    todo = [module_file(m) for m in project_imports(path)]
    while todo:
        file = todo.pop()
        if file is None or file in seen:
            continue
        seen.add(file)
        todo += [module_file(m) for m in project_imports(file)]
    return seen


def third_party(path: Path) -> set[str]:
    """Top-level names of the non-project packages `path` imports (`mlflow`, `prefect`, ...)."""
    return {n.split(".")[0] for n in imported_names(path) if n.split(".")[0] != PACKAGE}


def stage_code(stage: str) -> set[str]:
    """The stage script and every project file it runs, as paths relative to the project."""
    script = ROOT / "stages" / f"{stage}.py"
    return {f"stages/{stage}.py"} | {str(p.relative_to(ROOT)) for p in closure(script)}
