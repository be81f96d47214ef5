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
    for module, root in (("study.simulate", "simulate.py"), ("study.report", "report.py")):
        found = set(sources(STUDY / root))
        assert _loaded_by(module) <= found, module


def test_simulation_sources_leave_the_report_out():
    names = {p.name for p in sources(STUDY / "simulate.py")}
    assert {"engine.py", "kernel.py", "dgp.py", "summary.py", "theory.py"} <= names
    assert not names & {"render.py", "tables.py", "report.py", "cli.py"}


def test_the_makefile_calls_it_with_the_system_python():
    cmd = ["python3", "study/sources.py", "study/simulate.py"]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, check=True)
    assert "study/engine.py" in proc.stdout.split()
