"""study/sources.py: the Makefile's prerequisites, read from the imports."""

import subprocess
import sys
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
