"""The results folder is the tool's: ownership, --fresh, locking, self-verifying
checkpoints, committed result files, signals and crashes. Every case runs the real command
line in a temporary folder, on processes the test started."""

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import study.engine as engine_package
from study import cli
from study.design import design_from_dict
from study.engine.store import CheckpointStore, pack_checkpoint
from study.engine.tasks import Task
from study.folder import LOCK, MARKER, check_out_path
from study.results import to_csv

from conftest import RESULTS, ROOT, one_line, result_bytes, run_cli, small_design, write_design


def tree(folder: Path) -> dict[str, str]:
    """Every file below ``folder`` (links as links) with the SHA-256 of its bytes."""
    out = {}
    for path in sorted(folder.rglob("*")):
        rel = str(path.relative_to(folder))
        if path.is_symlink():
            out[rel] = "link -> " + os.readlink(path)
        elif path.is_file():
            out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


# 300 replications in tasks of one chunk (256, 44): the last chunk is partial
DESIGN = {"replications": 300, "block_size": 256, "grid.m": [5, 2000], "output.keep_draws": 5}


@pytest.fixture(scope="module")
def design_file(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("design")
    return write_design(folder / "d.toml", small_design(**DESIGN))


@pytest.fixture(scope="module")
def reference(design_file, tmp_path_factory) -> Path:
    """A finished run of ``design_file``, never modified by the tests."""
    out = tmp_path_factory.mktemp("ref") / "out"
    run_cli("simulate", design_file, "--out", out, "--quiet", check=True)
    return out


def copy_of(reference: Path, tmp_path: Path) -> Path:
    out = tmp_path / "copy"
    shutil.copytree(reference, out, symlinks=True)
    return out


# --- ownership ---------------------------------------------------------------------------


def user_folder(tmp_path: Path) -> Path:
    user = tmp_path / "user"
    (user / "checkpoints" / "epoch_10").mkdir(parents=True)
    (user / "checkpoints" / "epoch_10" / "model.pt").write_bytes(b"\x00weights" * 100)
    (user / "manifest.json").write_text('{"mine": true}\n')
    (user / "check.csv").write_text("a,b\n1,2\n")
    (user / "src").mkdir()
    (user / "src" / "train.py").write_text("print('hi')\n")
    return user


@pytest.mark.parametrize("fresh", [False, True])
def test_a_folder_study_did_not_create_is_never_touched(tmp_path, design_file, fresh):
    user = user_folder(tmp_path)
    before = tree(user)
    args = ["simulate", design_file, "--out", user, "--quiet"] + (["--fresh"] if fresh else [])
    proc = run_cli(*args)
    assert proc.returncode == 2
    line = one_line(proc.stderr)
    assert str(user) in line and "'check.csv'" in line  # the first foreign entry by name
    assert tree(user) == before
    assert not (user / LOCK).exists() and not (user / MARKER).exists()


@pytest.mark.parametrize("name", ["summary.csv", "manifest.json", "checkpoints"])
def test_a_single_file_with_a_tool_name_is_foreign_without_the_marker(tmp_path, design_file, name):
    user = tmp_path / "user"
    user.mkdir()
    if name == "checkpoints":
        (user / name).mkdir()
        (user / name / "m5-c0-1.ckpt").write_bytes(b"not ours")
    else:
        (user / name).write_text("my own file\n")
    before = tree(user)
    proc = run_cli("simulate", design_file, "--out", user, "--quiet")
    assert proc.returncode == 2 and f"'{name}'" in one_line(proc.stderr)
    assert tree(user) == before


def test_fresh_removes_only_what_study_wrote(tmp_path, reference, design_file):
    out = copy_of(reference, tmp_path)
    (out / "notes.txt").write_text("keep me\n")
    (out / "checkpoints" / "notes.txt").write_text("keep me too\n")
    (out / "checkpoints" / "epoch_10").mkdir()
    (out / "checkpoints" / "epoch_10" / "model.pt").write_bytes(b"weights")
    outside = tmp_path / "outside.csv"
    outside.write_text("the user's own table\n")
    (out / "check.csv").unlink(missing_ok=True)
    (out / "check.csv").symlink_to(outside)  # a link with a tool name: never followed
    foreign = {k: v for k, v in tree(out).items() if "notes" in k or "epoch" in k}
    proc = run_cli("simulate", design_file, "--out", out, "--quiet", "--fresh")
    assert proc.returncode == 0, proc.stderr
    after = tree(out)
    assert {k: after[k] for k in foreign} == foreign
    assert outside.read_text() == "the user's own table\n"
    assert result_bytes(out) == result_bytes(reference)


def test_symbolic_links_and_empty_paths_are_refused(tmp_path, design_file):
    target = tmp_path / "target"
    target.mkdir()
    (target / "precious.txt").write_text("x")
    link = tmp_path / "link"
    link.symlink_to(target)
    proc = run_cli("simulate", design_file, "--out", link, "--quiet", "--fresh")
    assert proc.returncode == 2 and "symbolic link" in one_line(proc.stderr)
    proc = run_cli("simulate", design_file, "--out", "", "--quiet", cwd=tmp_path)
    assert proc.returncode == 2 and "got ''" in one_line(proc.stderr)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link", "target"]
    assert tree(target) == {"precious.txt": hashlib.sha256(b"x").hexdigest()}


def test_a_checkpoints_link_out_of_the_folder_is_refused(tmp_path, reference, design_file):
    out = copy_of(reference, tmp_path)
    elsewhere = tmp_path / "elsewhere"
    shutil.move(out / "checkpoints", elsewhere)
    (out / "checkpoints").symlink_to(elsewhere)
    before = tree(elsewhere)
    proc = run_cli("simulate", design_file, "--out", out, "--quiet", "--fresh")
    assert proc.returncode == 2 and "symbolic link" in one_line(proc.stderr)
    assert tree(elsewhere) == before


def test_the_home_folder_is_refused(tmp_path, design_file):
    home = tmp_path / "home"
    home.mkdir()
    (home / ".bashrc").write_text("# mine\n")
    env = {**os.environ, "HOME": str(home)}
    cmd = [sys.executable, "-m", "study", "simulate", str(design_file), "--out", str(home)]
    proc = subprocess.run([*cmd, "--fresh", "--quiet"], capture_output=True, text=True, env=env)
    assert proc.returncode == 2 and "home folder" in one_line(proc.stderr)
    assert [p.name for p in home.iterdir()] == [".bashrc"]


def test_the_forbidden_folders_are_the_root_home_and_repository():
    from study.folder import _forbidden_targets

    forbidden = _forbidden_targets()
    assert Path("/") in forbidden and Path.home().resolve() in forbidden
    assert ROOT.resolve() in forbidden


def test_a_folder_path_that_is_a_file_is_refused(tmp_path):
    path = tmp_path / "file"
    path.write_text("x")
    with pytest.raises(cli.DesignError, match="not a file"):
        check_out_path(path)


def test_deleting_the_marker_makes_the_folder_foreign(tmp_path, reference, design_file):
    out = copy_of(reference, tmp_path)
    (out / MARKER).unlink()
    before = tree(out)
    proc = run_cli("simulate", design_file, "--out", out, "--quiet", "--fresh")
    assert proc.returncode == 2 and "not one that study created" in one_line(proc.stderr)
    assert tree(out) == before


def test_another_design_is_refused_then_replaced_with_fresh(tmp_path, reference, design_file):
    out = copy_of(reference, tmp_path)
    # the design file's settings under the same file name, the seed alone changed
    other = write_design(tmp_path / design_file.name, small_design(**DESIGN, seed=99))
    before = tree(out)
    proc = run_cli("simulate", other, "--out", out, "--quiet")
    line = one_line(proc.stderr)
    assert proc.returncode == 2 and "different design" in line and "--fresh" in line
    assert tree(out) == before
    proc = run_cli("simulate", other, "--out", out, "--quiet", "--fresh")
    assert proc.returncode == 0, proc.stderr
    assert result_bytes(out) != result_bytes(reference)


# --- checkpoints ---------------------------------------------------------------------------


def _damage(kind: str, path: Path, tmp_path: Path, design_file: Path) -> None:
    data = path.read_bytes()
    if kind == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "garbled":
        middle = len(data) // 2
        garbled = bytes(b ^ 0x5A for b in data[middle : middle + 64])
        path.write_bytes(data[:middle] + garbled + data[middle + 64 :])
    elif kind == "other task":
        sibling = sorted(p for p in path.parent.glob("m2000-c*.ckpt") if p != path)[0]
        path.write_bytes(sibling.read_bytes())
    elif kind == "other design":
        raw = small_design(**DESIGN, seed=7)
        other = tmp_path / "other"
        other_file = write_design(tmp_path / "o.toml", raw)
        run_cli("simulate", other_file, "--out", other, "--quiet", check=True)
        path.write_bytes((other / "checkpoints" / path.name).read_bytes())
    elif kind == "other engine version":
        raw = json.loads((path.parent.parent / "manifest.json").read_text())["design"]
        design = design_from_dict(raw)
        task = Task(2000, 1, 2)
        arrays = CheckpointStore(path.parent.parent, design).load(task).to_arrays()
        version = engine_package.ENGINE_VERSION
        engine_package.ENGINE_VERSION = version - 1
        try:
            path.write_bytes(pack_checkpoint(arrays, design_hash=design.hash, task=task))
        finally:
            engine_package.ENGINE_VERSION = version


# the default suite covers one kind of damage and each kind of foreign checkpoint; the
# other damages (slow) take the same path
KINDS = [
    "truncated",
    pytest.param("empty", marks=pytest.mark.slow),
    pytest.param("garbled", marks=pytest.mark.slow),
    "other task",
    pytest.param("other design", marks=pytest.mark.slow),
    "other engine version",
]


@pytest.mark.parametrize("kind", KINDS)
def test_a_damaged_checkpoint_is_rejected_and_recomputed(tmp_path, reference, design_file, kind):
    out = copy_of(reference, tmp_path)
    target = out / "checkpoints" / "m2000-c1-2.ckpt"
    _damage(kind, target, tmp_path, design_file)
    damaged = target.read_bytes()
    proc = run_cli("simulate", design_file, "--out", out, "--quiet")
    assert proc.returncode == 0, proc.stderr
    line = one_line(proc.stderr)
    assert "warning" in line and "m2000-c1-2.ckpt" in line and "rejected" in line
    assert (out / "checkpoints" / "rejected" / "m2000-c1-2.ckpt").read_bytes() == damaged
    assert result_bytes(out) == result_bytes(reference)
    assert "3 resumed" in proc.stdout  # 2 values of m × 2 chunks, one computed again


def test_a_user_lock_file_is_foreign_and_odd_entries_are_refused(tmp_path, reference, design_file):
    user = tmp_path / "user"
    user.mkdir()
    (user / LOCK).write_text("my precious notes\n")
    proc = run_cli("simulate", design_file, "--out", user, "--quiet")
    assert proc.returncode == 2 and LOCK in one_line(proc.stderr)
    assert (user / LOCK).read_text() == "my precious notes\n"
    out = copy_of(reference, tmp_path)  # a file where the checkpoints folder should be
    shutil.rmtree(out / "checkpoints")
    (out / "checkpoints").write_text("x")
    before = tree(out)
    proc = run_cli("simulate", design_file, "--out", out, "--quiet", "--fresh")
    assert proc.returncode == 2 and "not a folder" in one_line(proc.stderr)
    assert tree(out) == before
    (out / "checkpoints").unlink()
    (out / "checkpoints").mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (out / "checkpoints" / "rejected").symlink_to(outside)
    proc = run_cli("simulate", design_file, "--out", out, "--quiet")
    assert proc.returncode == 2 and "not a folder" in one_line(proc.stderr)
    assert list(outside.iterdir()) == []


def test_a_folder_under_a_checkpoint_name_is_rejected(tmp_path, reference, design_file):
    out = copy_of(reference, tmp_path)
    target = out / "checkpoints" / "m5-c0-1.ckpt"
    target.unlink()
    target.mkdir()
    proc = run_cli("simulate", design_file, "--out", out, "--quiet")
    assert proc.returncode == 0 and "rejected" in one_line(proc.stderr)
    assert (out / "checkpoints" / "rejected" / "m5-c0-1.ckpt").is_dir()
    assert result_bytes(out) == result_bytes(reference)


def test_stale_temporary_files_are_removed_and_foreign_ones_kept(tmp_path, reference, design_file):
    out = copy_of(reference, tmp_path)
    stale = [out / ".summary.csv.k2j3h4.tmp", out / "checkpoints" / ".m5-c0-1.ckpt.abc_12.tmp"]
    for path in stale:
        path.write_bytes(b"half")
    mine = out / ".mine.tmp"
    mine.write_text("user")
    proc = run_cli("simulate", design_file, "--out", out, "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert not any(p.exists() for p in stale)
    assert mine.read_text() == "user"


def test_an_unexpected_error_is_one_line_and_a_log(tmp_path, design_file, monkeypatch, capsys):
    import study.engine.run

    def broken(*args, **kwargs):
        raise RuntimeError("something\nunforeseen")

    monkeypatch.setattr(study.engine.run, "summarise", broken)
    out = tmp_path / "out"
    code = cli.main(["simulate", str(design_file), "--out", str(out), "--quiet"])
    err = capsys.readouterr().err
    assert code == 1
    line = one_line(err)
    assert "RuntimeError: something unforeseen" in line
    log = Path(line.split("traceback in ")[1].split(";")[0])
    try:
        assert "Traceback" in log.read_text() and "broken" in log.read_text()
    finally:
        log.unlink()
    with pytest.raises(RuntimeError):
        cli.main(["simulate", str(design_file), "--out", str(out), "--quiet", "--debug"])


def test_a_failed_write_names_the_result_file(tmp_path, monkeypatch):
    from study.files import atomic_write_text

    def full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    target = tmp_path / "summary.csv"
    with pytest.raises(OSError) as info:
        atomic_write_text(target, "x" * 100)
    assert info.value.filename == str(target)
    monkeypatch.undo()
    assert list(tmp_path.iterdir()) == []  # no temporary file left behind


# --- a forked child (a local Dask cluster's worker) -----------------------------------------


def _forked(child) -> int:
    """Fork from a thread, as a LocalCluster's nanny does, run ``child()`` in the child
    (its exit status: 0 if it returns True) and return the child's exit code. The child
    only reads and exits: it runs no test machinery."""
    import threading

    got = {}

    def fork():
        pid = os.fork()
        if pid == 0:
            os._exit(0 if child() else 3)
        got["status"] = os.waitpid(pid, 0)[1]

    thread = threading.Thread(target=fork)
    thread.start()
    thread.join()
    return os.waitstatus_to_exitcode(got["status"])


def test_a_forked_child_gives_up_the_folder_lock(tmp_path):
    """The child closes its copy of the lock's descriptor at once: with it, the folder would
    stay locked after the run's process ends until the child ends too."""
    from study import folder as results_folder

    lock = results_folder.acquire(tmp_path, exclusive=True)
    read, write = os.pipe()
    ready_read, ready_write = os.pipe()
    pid = os.fork()
    if pid == 0:  # past the fork's handlers: says so, and holds on until the parent is done
        os.close(write)
        lock.close()  # the parent's lock: closes nothing, clears not the parent's note
        os.write(ready_write, b"r")
        os.read(read, 1)
        os._exit(0)
    os.close(read)
    os.close(ready_write)
    try:
        assert os.read(ready_read, 1) == b"r"
        os.close(ready_read)
        assert (tmp_path / LOCK).read_text() == f"{os.getpid()}\n"
        with pytest.raises(results_folder.FolderError, match="locked"):
            results_folder.acquire(tmp_path, exclusive=True)  # still the parent's
        lock.close()
        results_folder.acquire(tmp_path, exclusive=True).close()  # the child holds none
    finally:
        os.close(write)
        os.waitpid(pid, 0)
    assert (tmp_path / LOCK).read_text() == ""  # cleared by the parent's close


def test_a_forked_child_gets_the_signal_handlers_from_before_the_run():
    """A LocalCluster's worker is forked while the run turns SIGTERM and SIGHUP into
    Interrupted: the child must not, so that a SIGTERM from its nanny stops it."""
    import signal

    before = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGHUP)}
    with cli._signals_as_interrupts():
        assert signal.getsignal(signal.SIGTERM) is cli._raise_interrupted
        code = _forked(lambda: all(signal.getsignal(s) is h for s, h in before.items()))
    assert code == 0
    assert {sig: signal.getsignal(sig) for sig in before} == before


# --- readers ---------------------------------------------------------------------------------


def test_readers_refuse_a_folder_being_written(tmp_path, reference):
    """While a writer holds the lock (here: this test process), check reads nothing."""
    import fcntl

    out = copy_of(reference, tmp_path)
    fd = os.open(out, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        (out / LOCK).write_text(f"{os.getpid()}\n")
        proc = run_cli("check", out)
        assert proc.returncode == 2 and "PASS" not in proc.stdout
        assert f"process {os.getpid()}" in one_line(proc.stderr)
        assert (
            not (out / "check.csv").exists()
            or (out / "check.csv").read_bytes() == (reference / "check.csv").read_bytes()
        )
        (out / LOCK).unlink()  # a copy without the note: the folder itself is still locked
        proc = run_cli("check", out)
        assert proc.returncode == 2 and "locked" in one_line(proc.stderr)
    finally:
        os.close(fd)
    assert run_cli("check", out).returncode == 0


def test_check_refuses_folders_whose_files_disagree(tmp_path, reference, capsys):
    """The first case through the command line, the others through its main function (the
    same code, without starting Python for each)."""
    assert run_cli("check", reference, "--brief").returncode == 0
    cases = {}
    out = copy_of(reference, tmp_path / "truncated")
    data = (out / "summary.csv").read_bytes()
    (out / "summary.csv").write_bytes(data[: len(data) // 2])
    cases["truncated"] = out
    out = copy_of(reference, tmp_path / "mixed")
    other = tmp_path / "other"
    other_file = write_design(tmp_path / "o.toml", small_design(seed=5))
    assert _cli(capsys, "simulate", other_file, "--out", other, "--quiet")[0] == 0
    shutil.copy(other / "risk.csv", out / "risk.csv")
    cases["mixed"] = out
    out = copy_of(reference, tmp_path / "no-manifest")
    (out / "manifest.json").unlink()
    cases["no manifest"] = out
    out = copy_of(reference, tmp_path / "garbled")
    (out / "manifest.json").write_bytes(b"{\x00garbage")
    cases["garbled manifest"] = out
    out = copy_of(reference, tmp_path / "foreign")
    (out / MARKER).unlink()
    cases["no marker"] = out
    out = copy_of(reference, tmp_path / "edited-design")
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["design"]["dgp"]["slope"] = -7.0  # the files still match their checksums
    (out / "manifest.json").write_text(json.dumps(manifest))
    cases["edited design in the manifest"] = out
    out = copy_of(reference, tmp_path / "draws")
    (out / "draws.npz").write_bytes((out / "draws.npz").read_bytes()[:100])
    cases["truncated draws.npz (check does not read it, but verifies it)"] = out
    for i, (case, folder) in enumerate(cases.items()):
        if i == 0:
            proc = run_cli("check", folder)
            code, stdout, stderr = proc.returncode, proc.stdout, proc.stderr
        else:
            # a Python warning would be a line of the command's stderr, which pytest keeps
            # from capsys: it must not be there at all
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                code, stdout, stderr = _cli(capsys, "check", folder)
            assert not caught, (case, [str(w.message) for w in caught])
        assert code == 2, case
        assert "PASS" not in stdout, case
        line = one_line(stderr)
        assert str(folder) in line, (case, line)


def test_check_on_a_read_only_copy_gives_its_verdict(reference, capsys, monkeypatch):
    """Root ignores file modes, so the refusal to write is simulated where it happens."""
    import study.check

    def read_only(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(reference / "check.csv"))

    monkeypatch.setattr(study.check, "write_check", read_only)
    code, stdout, stderr = _cli(capsys, "check", reference, "--brief")
    expected = run_cli("check", reference, "--brief")
    assert (code, stderr) == (expected.returncode, "")
    assert "(check.csv not written: the results folder is read-only)" in stdout
    assert stdout.splitlines()[-1] == expected.stdout.splitlines()[-1]


def test_report_refuses_a_mixed_folder(tmp_path, reference):
    out = copy_of(reference, tmp_path)
    tuning = (out / "tuning.csv").read_text().splitlines()
    (out / "tuning.csv").write_text("\n".join(tuning[:3]) + "\n")
    project = tmp_path / "project"
    project.mkdir()
    (project / "_quarto.yml").write_text((ROOT / "report" / "_quarto.yml").read_text())
    proc = run_cli("report", out, "--no-render", "--project", project)
    assert proc.returncode == 2 and "tuning.csv" in one_line(proc.stderr)
    assert sorted(p.name for p in project.iterdir()) == ["_quarto.yml"]


def test_check_fails_on_cells_with_impossible_values(tmp_path, reference):
    """A cell that holds a non-finite or negative variance fails the check, named."""
    import pandas as pd

    from study.check import check

    out = copy_of(reference, tmp_path)
    summary = pd.read_csv(out / "summary.csv")
    cell = (summary.m == 2000) & (summary.degree == 2) & (summary["lambda"] == 0.5)
    row = summary.index[cell & (summary.scaling == "k") & (summary.coef == 1)][0]
    summary.loc[row, "status"] = "negative variance"
    (out / "summary.csv").write_text(to_csv(summary))
    result = check(out)
    assert not result.ok
    assert result.impossible == ["m = 2000, degree 2, λ = 0.5, k (negative variance)"]
    assert "negative variance" in result.summary_line()


def test_impossible_values_get_a_status_other_than_ok():
    import numpy as np
    import pandas as pd

    from study.results import flag_impossible as _flag_impossible

    frame = pd.DataFrame(
        {
            "status": ["ok", "ok", "ok", "not identifiable", "ok"],
            "n": [10, 10, 10, 0, 1],
            "alpha": [1.0, np.inf, 1.0, 1.0, 1.0],
            "risk": [0.1, 0.1, -1e-3, np.nan, np.nan],
            "risk_mcse": 0.01,
            "risk_rb": [0.1, 0.1, 0.1, np.nan, np.nan],
        }
    )
    _flag_impossible(frame, "risk")
    expected = ["ok", "non-finite", "negative variance", "not identifiable", "ok"]
    assert frame.status.tolist() == expected


# --- any damage: recovered byte-identically or refused in one line ---------------------------


def _cli(capsys, *args) -> tuple[int, str, str]:
    code = cli.main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def mutation_base(tmp_path_factory) -> tuple[Path, Path, tuple[int, str]]:
    """A tiny design, its finished results, and the exit status and verdict line of
    `study check` on them."""
    folder = tmp_path_factory.mktemp("mutation")
    grid = {"grid.m": [6, 30], "grid.degree": [1, 2]}
    raw = small_design(replications=30, block_size=20, **grid, **{"output.keep_draws": 3})
    path = write_design(folder / "tiny.toml", raw)
    out = folder / "ref"
    run_cli("simulate", path, "--out", out, "--quiet", check=True)
    proc = run_cli("check", out, "--brief")
    return path, out, (proc.returncode, proc.stdout.splitlines()[-1])


def _mutation_test(tmp_path, capsys, mutation_base, data) -> None:
    path, ref, verdict = mutation_base
    out = tmp_path / f"case{time.monotonic_ns()}"
    shutil.copytree(ref, out)
    files = sorted(p for p in out.rglob("*") if p.is_file() and p.name != LOCK)
    target = data.draw(st.sampled_from(files), label="file")
    original = target.read_bytes()
    size = max(len(original), 1)
    positions = data.draw(st.lists(st.integers(0, size - 1), min_size=1, max_size=8))
    damaged = bytearray(original)
    for pos in positions:
        if pos < len(damaged):
            damaged[pos] ^= data.draw(st.integers(1, 255))
    if data.draw(st.booleans(), label="truncate"):
        damaged = damaged[: data.draw(st.integers(0, len(damaged)))]
    if bytes(damaged) == original:
        damaged = damaged + b"\x00"
    target.write_bytes(bytes(damaged))
    rel = str(target.relative_to(out))

    code, stdout, stderr = _cli(capsys, "check", out, "--brief")
    assert "Traceback" not in stderr
    if rel in (*RESULTS, "manifest.json", MARKER):  # every committed file is verified
        assert code == 2 and "PASS" not in stdout, (rel, stdout, stderr)
        one_line(stderr)
    else:  # a checkpoint: the results are whole, and so is the verdict
        assert (code, stdout.splitlines()[-1]) == verdict, (rel, stderr)

    code, stdout, stderr = _cli(capsys, "simulate", path, "--out", out, "--quiet")
    assert "Traceback" not in stderr
    if code == 0:
        assert result_bytes(out) == result_bytes(ref), rel
        lines = stderr.strip().splitlines()
        assert all(line.startswith("study: warning: checkpoint") for line in lines), stderr
    else:  # only a damaged marker makes the folder another's
        assert rel == MARKER and code == 2, (rel, stderr)
        one_line(stderr)


@settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_damaged_files_are_recovered_or_refused(tmp_path, capsys, mutation_base, data):
    _mutation_test(tmp_path, capsys, mutation_base, data)


# --- what cannot fit is refused before anything is written -----------------------------------

BOMBS = {
    "replications": ({"replications": 10**12}, "replications"),
    "many lambdas": ({"grid.lambda": [i / 1000 for i in range(100_000)]}, "grid.lambda"),
    "tiny tasks": (
        {"replications": 40_000, "block_size": 1, "grid.m": list(range(3, 1003))},
        "block_size",
    ),
    "huge lambda": ({"grid.lambda": [0.0, 1e308]}, "grid.lambda"),
    "far x range": ({"dgp.x": {"distribution": "uniform", "low": 1e6, "high": 1e6 + 1}}, "dgp.x"),
    "extreme x range": (
        {"dgp.x": {"distribution": "uniform", "low": -1.7e308, "high": 1.7e308}},
        "dgp.x",
    ),
    "huge noise": ({"dgp.noise_sd": 1e200}, "dgp.noise_sd"),
}


@pytest.mark.parametrize("case", BOMBS)
def test_designs_that_cannot_fit_are_refused_at_once(tmp_path, capsys, monkeypatch, case):
    """Refused from the design and the closed-form estimate alone: no task is planned and
    no worker started (either would take hours on these designs, or fill the memory)."""
    import study.engine.run

    def reached(*args, **kwargs):
        raise AssertionError("a design that cannot fit reached the task planner or the pool")

    monkeypatch.setattr(study.engine.run, "plan_tasks", reached)
    monkeypatch.setattr(study.engine.run, "_run_tasks", reached)
    changes, key = BOMBS[case]
    path = write_design(tmp_path / "bomb.toml", small_design(**changes))
    out = tmp_path / "out"
    code, stdout, stderr = _cli(capsys, "simulate", path, "--out", out, "--jobs", 2)
    assert code == 2 and key in one_line(stderr), stderr
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bomb.toml"]


def test_dry_run_prints_the_estimate_and_writes_nothing(tmp_path, capsys):
    path = write_design(tmp_path / "big.toml", small_design(**{"grid.m": [10, 10**10]}))
    out = tmp_path / "out"
    code, stdout, stderr = _cli(capsys, "simulate", path, "--out", out, "--dry-run")
    assert code == 0 and stderr == ""
    line = one_line(stdout)
    # m = 10¹⁰: one data set per chunk (at most 2²² points), a minute or more each, one
    # chunk per task: 70 tasks; m = 10: 70 data sets in one chunk and task
    assert line.startswith("study: estimate: 71 tasks")
    assert re.search(r"~[0-9.]+ (h|d) with 1 job", line), line  # 6e11 points: hours
    assert not out.exists()


def test_a_resumed_run_is_estimated_for_what_is_left(tmp_path, capsys, reference, design_file):
    """The estimate of a run on a folder with checkpoints counts their chunks as done, read
    from the names alone before the run takes the folder (nothing is read, moved or
    written): a stray name, chunks beyond the design's and another design's folder count
    for nothing, and --fresh starts over."""
    from study.design import load_design
    from study.engine import budget
    from study.engine.streams import n_chunks

    design = load_design(design_file)
    chunks = {m: n_chunks(design.replications, m) for m in design.m}
    assert chunks == {5: 2, 2000: 2}  # 300 data sets: chunks of 256 and 44
    out = copy_of(reference, tmp_path)
    store = CheckpointStore(out, design)
    assert store.covered_chunks() == chunks
    (out / "checkpoints" / "m2000-c1-2.ckpt").unlink()
    for stray in ("m05-c0-1.ckpt", "m5-c2-3.ckpt", "m2000-c0-1.ckpt.tmp"):
        (out / "checkpoints" / stray).write_bytes(b"not a checkpoint")
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    assert store.covered_chunks() == {5: 2, 2000: 1}
    _, stdout, _ = _cli(capsys, "simulate", design_file, "--out", out, "--dry-run")
    assert "(75 % of the chunks already checkpointed)" in one_line(stdout)
    _, stdout, _ = _cli(capsys, "simulate", design_file, "--out", out, "--dry-run", "--fresh")
    assert "checkpointed" not in one_line(stdout)
    other = write_design(tmp_path / "other.toml", small_design(**DESIGN, seed=99))
    _, stdout, _ = _cli(capsys, "simulate", other, "--out", out, "--dry-run")
    assert "checkpointed" not in one_line(stdout)
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before
    (out / "checkpoints" / "m5-c0-2.ckpt").write_bytes(b"")  # covers what two others do
    assert store.covered_chunks() == {5: 2, 2000: 1}  # by the longer, each chunk once
    assert CheckpointStore(tmp_path / "none", design).covered_chunks() == {}
    (tmp_path / "file").mkdir()
    (tmp_path / "file" / "checkpoints").write_text("")
    assert CheckpointStore(tmp_path / "file", design).covered_chunks() == {}

    # the time: each m's chunks take their own share off, additively (one worker: no
    # task waits for another), and with every chunk done the startup and the files remain
    def seconds(**done) -> float:
        return budget.estimate(
            design, jobs=1, done={int(m[1:]): n for m, n in done.items()}
        ).seconds

    none, every = seconds(), seconds(m5=2, m2000=2)
    share = {m: seconds(**{f"m{m}": 2}) for m in design.m}
    assert none > share[5] > every and none > share[2000] > every > 0
    assert none - every == pytest.approx((none - share[5]) + (none - share[2000]), rel=1e-12)
    assert seconds(m5=9, m2000=9) == every  # more than the design's: all of them
    assert budget.estimate(design, jobs=1, done={5: 1, 2000: 2}).resumed_fraction == 0.75


def test_results_of_an_older_engine_are_refused_by_the_readers_naming_the_version(
    tmp_path, reference
):
    """A folder from before engine version 6 (another design hash, no audit records) is
    named as such by check and report, not called edited."""
    from study.engine import ENGINE_VERSION
    from study.folder import OLDEST_ENGINE_VERSION_READ

    assert OLDEST_ENGINE_VERSION_READ <= ENGINE_VERSION
    out = copy_of(reference, tmp_path)
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["engine_version"] = 5
    (out / "manifest.json").write_text(json.dumps(manifest))
    project = tmp_path / "project"  # a project of its own: nothing of the repository's
    project.mkdir()
    (project / "_quarto.yml").write_text("project:\n  type: default\n")
    elsewhere = ("--no-render", "--project", project)
    for command in (("check",), ("report", *elsewhere)):
        proc = run_cli(command[0], out, *command[1:])
        assert proc.returncode == 2, proc.stderr
        line = one_line(proc.stderr)
        assert "engine version 5" in line and "--fresh" in line
    assert sorted(p.name for p in project.iterdir()) == ["_quarto.yml"]
