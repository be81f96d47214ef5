"""The source files a module of the package depends on, for the Makefile's prerequisites.

    python3 study/sources.py study/steps.py   # prints the files, one line, sorted
    python3 study/sources.py engine=study/engine/run.py theory=study/theory/step.py
        # several lists from one run, each file as name:file (the Makefile's form)

Reads the imports of each file with :mod:`ast` (nothing is imported or run, so the system
Python suffices before the virtual environment exists) and follows those inside the
package, however deep, so that no list of files is kept by hand.
"""

from __future__ import annotations

import ast
import functools
import sys
from collections.abc import Iterator
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent


def _module_file(parts: list[str]) -> Path | None:
    """The file of the package module ``study.<parts>``, or None if there is none."""
    base = PACKAGE.joinpath(*parts)
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


@functools.cache
def _imports(path: Path) -> frozenset[Path]:
    """Package files that ``path`` imports (relatively or as ``study.…``)."""
    here = list(path.relative_to(PACKAGE).parent.parts)
    modules: list[list[str]] = []
    text = path.read_text(encoding="utf-8")
    tree = ast.parse(text)
    for node in _statements(tree.body):
        if isinstance(node, ast.ImportFrom):
            named = (node.module or "").split(".") if node.module else []
            if node.level:
                module = here[: len(here) - node.level + 1] + named
            elif named[:1] == ["study"]:
                module = named[1:]
            else:
                continue
            modules.append(module)
            # `from . import kernel` names a module; a name that is not one finds no file
            modules.extend([*module, alias.name] for alias in node.names)
        elif isinstance(node, ast.Import):
            modules.extend(
                alias.name.split(".")[1:]
                for alias in node.names
                if alias.name.split(".")[0] == "study"
            )
    # importing study.a.b runs study/__init__.py and study/a/__init__.py first
    modules += [module[:i] for module in list(modules) for i in range(len(module))]
    found = {f for f in map(_module_file, modules) if f is not None}
    # a module that imports by name (study.models: one module per model family) may load
    # any module of its package
    if "import_module" in text and any(_is_import_by_name(node) for node in ast.walk(tree)):
        found |= set(path.parent.glob("*.py"))
    return frozenset(found)


def _statements(body: list) -> Iterator[ast.AST]:
    """The statements of ``body`` and of every block inside them, however deep (an import
    is a statement; walking every expression as well took most of the time)."""
    for node in body:
        yield node
        for block in ("body", "orelse", "finalbody", "handlers", "cases"):
            inner = getattr(node, block, None)
            if isinstance(inner, list):
                yield from _statements(inner)


def _is_import_by_name(node: ast.AST) -> bool:
    """``importlib.import_module(…)``."""
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "import_module"
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id == "importlib"
    )


def sources(*roots: Path) -> list[Path]:
    """Every package file reachable from ``roots`` through imports, ``roots`` included."""
    seen: set[Path] = set()
    todo = [Path(r).resolve() for r in roots]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        todo.extend(_imports(path) - seen)
    return sorted(seen)


def _main(arguments: list[str]) -> str:
    """One line: the files of the roots given, or with ``name=root`` arguments each list's
    files as ``name:file`` (a file in several lists once for each)."""
    root = Path.cwd()

    def shown(files: list[Path]) -> list[str]:
        return [str(p.relative_to(root)) if p.is_relative_to(root) else str(p) for p in files]

    if not any("=" in a for a in arguments):
        return " ".join(shown(sources(*arguments)))
    if not all("=" in a for a in arguments):
        raise SystemExit("sources.py: give roots either all as name=root or all without names")
    named = [a.split("=", 1) for a in arguments]
    return " ".join(f"{name}:{f}" for name, start in named for f in shown(sources(start)))


if __name__ == "__main__":
    print(_main(sys.argv[1:]))
