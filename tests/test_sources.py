"""study/sources.py: the Makefile's prerequisites, read from the imports."""

import os
import subprocess
import sys
import time
from pathlib import Path

from study.sources import sources

from conftest import ROOT

STUDY = ROOT / "study"


def _loaded_by(module: str) -> set[Path]:
    """The package files Python actually loads when it imports ``module``."""
    code = (
        f"import {module}, sys; print('\\n'.join(m.__file__ for n, m in sys.modules.items() "
        "if n.split('.')[0] == 'study' and getattr(m, '__file__', None)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    ).stdout
    return {Path(line).resolve() for line in out.split()}


def test_sources_cover_every_module_an_import_loads():
    for module, root in (
        ("study.steps", "steps.py"),
        ("study.engine.run", "engine/run.py"),
        ("study.report.assets", "report/assets.py"),
    ):
        found = set(sources(STUDY / root))
        assert _loaded_by(module) <= found, module


def _relative(paths) -> set[str]:
    return {str(p.relative_to(STUDY)) for p in paths}


def test_simulation_sources_leave_the_report_out():
    names = _relative(sources(STUDY / "steps.py"))
    needed = {"engine/tasks.py", "engine/kernel.py", "engine/streams.py", "engine/merge.py"}
    assert needed | {"theory/largem.py", "theory/step.py", "engine/__init__.py"} <= names
    assert not {n for n in names if n.startswith("report/")} | (names & {"cli.py"})


def test_the_engine_imports_neither_the_theory_nor_the_report():
    names = _relative(sources(STUDY / "engine" / "run.py"))
    assert not {n for n in names if n.startswith(("theory/", "report/"))}, names


def test_the_makefile_calls_it_with_the_system_python():
    cmd = ["python3", "study/sources.py", "study/steps.py"]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, check=True)
    assert "study/engine/tasks.py" in proc.stdout.split()


def test_named_lists_from_one_run_are_each_roots_own():
    """The Makefile's form, several lists from one run as name:file words (a file shared
    by two lists in each), equals each root's list alone."""
    roots = {"engine": "study/engine/run.py", "theory": "study/theory/step.py"}
    cmd = ["python3", "study/sources.py", *(f"{n}={r}" for n, r in roots.items())]
    words = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, check=True).stdout
    for name, root in roots.items():
        named = sorted(w.split(":", 1)[1] for w in words.split() if w.startswith(f"{name}:"))
        alone = sorted(p.relative_to(ROOT).as_posix() for p in sources(root))
        assert named == alone and "study/design.py" in alone, name


# --- the import graph: data flows one way -----------------------------------------------
# The steps of a run in order; a module may import its own step and earlier ones only.
LAYERS = [
    (
        "shared",
        {"__init__.py", "basis.py", "design.py", "limits.py", "scaling.py", "fit.py"}
        | {"logistic.py", "minibatch.py"}
        | {"moments.py", "measures.py", "results.py", "existence.py", "numbers.py"}
        | {"paths.py", "files.py", "folder.py", "sources.py"},
    ),
    ("engine", {"engine/", "models/", "conditional.py"}),
    ("theory", {"theory/"}),
    ("check", {"check.py", "audit.py"}),
    ("report", {"report/"}),
    ("pipeline", {"steps.py", "plan.py", "cli.py", "__main__.py"}),
]


def _layer(rel: str) -> int:
    for i, (_, members) in enumerate(LAYERS):
        if rel in members or any(m.endswith("/") and rel.startswith(m) for m in members):
            return i
    raise AssertionError(f"{rel} is in no layer: add it to LAYERS")


def _runtime_imports(path: Path) -> set[str]:
    """Package modules ``path`` imports at run time (not under ``if TYPE_CHECKING``)."""
    import ast

    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped |= {id(n) for n in ast.walk(node)}
    names = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("study"):
            names.add(node.module)
            names |= {f"{node.module}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            names |= {a.name for a in node.names if a.name.startswith("study")}
    files = set()
    for name in names:
        parts = name.split(".")[1:]
        base = STUDY.joinpath(*parts)
        for candidate in (base.with_suffix(".py"), base / "__init__.py"):
            if candidate.is_file() and candidate != path:
                files.add(str(candidate.relative_to(STUDY)))
    return {f for f in files if not f.endswith("__init__.py") or f == "__init__.py"}


def test_no_module_imports_a_later_step():
    upward = []
    for path in sorted(STUDY.rglob("*.py")):
        rel = str(path.relative_to(STUDY))
        for dep in _runtime_imports(path):
            if _layer(dep) > _layer(rel):
                upward.append(f"{rel} ({LAYERS[_layer(rel)][0]}) imports {dep}")
    assert not upward, upward


def test_the_report_and_the_check_read_files_and_draw_nothing():
    for path in [STUDY / "check.py", *sorted((STUDY / "report").rglob("*.py"))]:
        deps = _runtime_imports(path)
        assert not {d for d in deps if _layer(d) in (1, 2)}, (path.name, deps)


def test_the_audit_is_a_second_implementation():
    """The audit re-derives the simulation from the seeds on its own: of the package it
    reads the design alone, not the basis, the fit, the scalings or the engine."""
    assert _runtime_imports(STUDY / "audit.py") == {"design.py"}


def _make_dry_run(*args: str) -> str:
    """The commands `make -n` would run in the repository (-n runs none of them), with the
    venv and results pointing nowhere, so that every step is listed."""
    proc = subprocess.run(
        ["make", "-n", *args, "VENV=/nonexistent-venv"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    return proc.stdout


def test_make_simulate_runs_the_two_default_studies_and_another_design_alone():
    both = _make_dry_run(
        "simulate", "assets", "RESULTS=/nonexistent/default", "LRESULTS=/nonexistent/lg"
    )
    assert "study simulate simulations/default.toml" in both
    assert "study simulate simulations/logistic.toml" in both
    assert "--logistic /nonexistent/lg" in both  # the report's assets read it
    alone = _make_dry_run("simulate", "DESIGN=simulations/smoke.toml", "RESULTS=/nonexistent/s")
    assert "study simulate simulations/smoke.toml" in alone
    assert "logistic" not in alone


def test_make_reruns_the_theory_alone_when_only_its_code_changed(tmp_path):
    """The stamp of a run beside its folder: when it is up to date nothing runs; when only
    the theory's code is newer, `study theory` (no simulating); when the engine's code, the
    design or the folder's manifest (another command wrote it, `--no-theory` say) is newer,
    or the folder's marker is gone, `study simulate`, theory included, in one pool. make's
    -W pretends a file is new without touching it; -n runs nothing."""
    results = tmp_path / "smoke"
    results.mkdir()
    for name in ("manifest.json", ".study-results"):
        (results / name).write_text("")
    stamp = tmp_path / ".smoke.done"
    stamp.write_text("")
    later = time.time() + 60  # newer than every file of the repository
    os.utime(stamp, (later, later))
    engine = {path.relative_to(ROOT).as_posix() for path in sources("study/engine/run.py")}
    assert "study/theory/tuning.py" not in engine and "study/design.py" in engine

    def steps(*new: str, design: str = "simulations/smoke.toml") -> list[str]:
        out = _make_dry_run(
            "simulate", f"DESIGN={design}", f"RESULTS={results}", *map("-W{}".format, new)
        )
        return [line.split(" -m ", 1)[1] for line in out.splitlines() if " -m study " in line]

    simulate = [f"study simulate simulations/smoke.toml --jobs 2 --out {results}"]
    # make names the design in $? without the ./ it was given with
    dotted = steps("simulations/smoke.toml", design="./simulations/smoke.toml")
    assert dotted == [simulate[0].replace("simulate simulations", "simulate ./simulations")]
    assert steps() == []
    assert steps("study/theory/tuning.py") == [f"study theory {results}"]
    assert steps("study/engine/merge.py") == simulate
    assert steps("study/design.py") == simulate  # the theory's code too, and the engine's
    assert steps("simulations/smoke.toml") == simulate
    assert steps(str(results / "manifest.json")) == simulate
    (results / ".study-results").unlink()
    assert steps() == simulate
    # the stamp stays beside the folder when the folder is given with a trailing slash
    out = _make_dry_run("simulate", "DESIGN=simulations/smoke.toml", f"RESULTS={results}/")
    assert f"touch {stamp}" in out.splitlines()
