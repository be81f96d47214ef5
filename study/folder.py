"""The results folder: something the tool owns, locks and can prove, like a database's
data directory.

- **Ownership.** A folder is the tool's only if it is empty (or new) or carries the marker
  file ``.study-results`` (written first, with the design hash and the engine version).
  Anything else is refused before a byte is written. In a folder it owns, the tool writes
  and removes only the names in :data:`RESULT_FILES`, :data:`MARKER`, :data:`LOCK` and,
  under ``checkpoints/``, the task checkpoints ``m<m>-c<first>-<stop>.ckpt`` (and
  ``m<m>-b<block>.ckpt`` of engine versions before 6, which ``--fresh`` removes), the folder
  ``rejected/`` and its own temporary files; every other file is left alone, and a
  symbolic link is never followed.
- **One writer at a time.** ``study simulate`` holds an exclusive ``flock`` on the folder
  itself for the whole run (and notes its process id in ``.study-lock``); ``study check``
  and ``study report`` hold a shared one while they read. The kernel releases the lock
  when the process dies, so a ``kill -9`` leaves no stale lock (a forked child, such as a
  local Dask cluster's worker, closes its copy of the lock at once).
- **A commit point.** ``manifest.json`` is removed before a run rewrites any result file
  and written last, with the size and SHA-256 of every result file: a folder without a
  manifest, whose manifest disagrees with its design hash or the marker, or whose files
  disagree with it, is refused by the readers.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import re
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from study.design import DesignError
from study.paths import (
    CHECKPOINT_DIR,
    MANIFEST_FILE,
    RESULT_FILES,
    THEORY_FILES,
)

MARKER = ".study-results"
LOCK = ".study-lock"
REJECTED_DIR = "rejected"
FORMAT = 1
# chunks first … stop − 1 of m; "-b<block>" is the name engine versions ≤ 5 gave them
CHECKPOINT_NAME = re.compile(r"m[0-9]+-(c[0-9]+-[0-9]+|b[0-9]+)\.ckpt")
REJECTED_NAME = re.compile(r"m[0-9]+-(c[0-9]+-[0-9]+|b[0-9]+)\.ckpt(\.[0-9]+)?")
# what study.files.atomic_write_bytes leaves behind when a process dies between write and rename
TEMP_NAME = re.compile(r"\.(?P<name>[^/]+)\.[A-Za-z0-9_]+\.tmp")
_TOP_NAMES = frozenset(RESULT_FILES) | {MARKER, LOCK}


class FolderError(DesignError):
    """A results folder that cannot be used as asked; the message is one line."""


def _is_tool_temp(name: str, owned: frozenset[str] | re.Pattern) -> bool:
    hit = TEMP_NAME.fullmatch(name)
    if hit is None:
        return False
    inner = hit["name"]
    return inner in owned if isinstance(owned, frozenset) else bool(owned.fullmatch(inner))


def _owned_top(name: str) -> bool:
    return name in _TOP_NAMES or _is_tool_temp(name, _TOP_NAMES)


def _owned_checkpoint(name: str) -> bool:
    return bool(CHECKPOINT_NAME.fullmatch(name)) or _is_tool_temp(name, CHECKPOINT_NAME)


def _forbidden_targets() -> list[Path]:
    """Folders a run must never take as its results folder: the file-system root, the home
    folder, and any folder that holds this package (the repository root, site-packages)."""
    package = Path(__file__).resolve().parent
    return [Path("/"), Path.home().resolve(), package, *package.parents]


def check_out_path(out: Path | str, *, option: str = "--out") -> Path:
    """The absolute results folder for ``out``, or a FolderError naming what is wrong.

    Refuses the empty path, a symbolic link, something that is not a folder, the
    file-system root, the home folder and the folder holding the package itself.
    """
    if str(out).strip() == "":
        raise FolderError(f"option '{option}': got ''; expected a folder path")
    path = Path(out).expanduser()
    absolute = Path(os.path.abspath(path))
    if absolute.is_symlink():
        raise FolderError(
            f"option '{option}': got {_quote(out)}, a symbolic link; expected a real folder (give "
            "the folder it points to, if that is what you mean)"
        )
    if absolute.exists() and not absolute.is_dir():
        raise FolderError(f"option '{option}': got {_quote(out)}; expected a folder, not a file")
    resolved = absolute.resolve()
    if resolved in _forbidden_targets():
        raise FolderError(
            f"option '{option}': got {_quote(out)} ({resolved}); expected a folder of its own, "
            "not the file-system root, the home folder or the folder that holds the package"
        )
    return resolved


def _first_entry(folder: Path) -> str | None:
    """The first entry of ``folder`` in name order, other than the lock file; None if none."""
    try:
        names = sorted(name for name in os.listdir(folder) if not _is_lock_note(folder, name))
    except FileNotFoundError:
        return None
    return names[0] if names else None


def _is_lock_note(folder: Path, name: str) -> bool:
    """Whether ``name`` is the tool's lock note: ``.study-lock``, a regular file that is
    empty or holds one process id (a user's own file of that name is foreign)."""
    if name != LOCK:
        return False
    path = folder / name
    try:
        return (
            path.is_file()
            and not path.is_symlink()
            and re.fullmatch(r"[0-9]*\n?", path.read_text(errors="replace")[:64]) is not None
        )
    except OSError:
        return False


def read_marker(folder: Path) -> dict | None:
    """The marker's content, or None when the folder has no (readable) marker."""
    path = folder / MARKER
    if not path.is_file() or path.is_symlink():
        return None
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(info, dict) or info.get("tool") != "study":
        return None
    return info


def _not_ours(folder: Path, foreign: str) -> FolderError:
    return FolderError(
        f"results folder {_quote(folder)} is not empty and not one that study created (it holds "
        f"{_quote(foreign)} and no {MARKER}); nothing was touched: choose a new or empty folder "
        "with --out"
    )


def refuse_foreign(folder: Path) -> None:
    """Raise FolderError unless ``folder`` is new, empty, or carries the tool's marker.

    Without the marker nothing in the folder is taken for the tool's, whatever its name: a
    user's own ``summary.csv`` is as foreign as their ``model.pt``."""
    if folder.exists() and read_marker(folder) is None:
        foreign = _first_entry(folder)
        if foreign is not None:
            raise _not_ours(folder, foreign)


# --- the lock ------------------------------------------------------------------------------


@dataclass(eq=False)  # hashed by identity (the set of held locks)
class Lock:
    """An flock on the results folder itself; released by close() or by the process's death.

    The folder is locked, not a file in it: a folder always exists, can be locked even when
    it is read-only, and cannot be deleted from under the lock. A writer also leaves its
    process id in ``.study-lock`` for the message another run prints, and clears it when
    it is done."""

    fd: int
    note: Path | None = None

    def __post_init__(self) -> None:
        _HELD.add(self)

    def close(self) -> None:
        if self.fd >= 0:
            if self.note is not None:
                with contextlib.suppress(OSError):
                    self.note.write_text("")
            os.close(self.fd)  # closing the descriptor releases the flock
            self.fd = -1
        _HELD.discard(self)


# The locks this process holds. A forked child (a LocalCluster's worker, study.engine.run)
# shares each flock through its copy of the descriptor, and would hold the folder locked
# after this process ends until the child ends too: the child closes its copies at once.
_HELD: weakref.WeakSet[Lock] = weakref.WeakSet()


def _release_in_child() -> None:
    for lock in list(_HELD):
        with contextlib.suppress(OSError):
            os.close(lock.fd)
        lock.fd = -1  # the parent's: the child's close() clears not its note
    _HELD.clear()


os.register_at_fork(after_in_child=_release_in_child)


def _holder(folder: Path, exclusive: bool) -> str:
    """Who holds the lock, as far as the note in ``.study-lock`` tells."""
    try:
        pid = (folder / LOCK).read_text().strip()
    except OSError:
        pid = ""
    if pid.isdigit():
        return f"a run is writing it (process {pid})"
    return "a study check or report is reading it" if exclusive else "a run is writing it"


def acquire(folder: Path, *, exclusive: bool) -> Lock:
    """Lock ``folder`` at once (exclusively for a writer, shared for readers) or raise
    FolderError saying who holds it."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise
        raise FolderError(
            f"results folder {_quote(folder)} is locked: {_holder(folder, exclusive)}; wait for "
            "it to finish, or use another --out"
        ) from None
    if not exclusive:
        return Lock(fd)
    note = folder / LOCK
    if note.is_symlink():
        os.close(fd)
        raise FolderError(f"results folder {_quote(folder)}: '{LOCK}' is a symbolic link; refused")
    note.write_text(f"{os.getpid()}\n")
    return Lock(fd, note)


def _quote(path: Path | str) -> str:
    """A path in quotes, on one line whatever characters its name holds."""
    text = str(path)
    return repr(text) if any(c in text for c in "\n\r\t'") else f"'{text}'"


# --- writing -------------------------------------------------------------------------------


def _remove_owned(folder: Path) -> None:
    """Remove what the tool wrote in ``folder`` (never the marker or the lock): the result
    files, the task checkpoints, rejected checkpoints and temporary files. Nothing is
    followed through a symbolic link, and every other entry is left as it is."""
    for entry in os.scandir(folder):
        if entry.name in (MARKER, LOCK):
            continue
        if entry.is_file(follow_symlinks=False) and _owned_top(entry.name):
            os.unlink(entry.path)
    checkpoints = folder / CHECKPOINT_DIR
    if checkpoints.is_dir() and not checkpoints.is_symlink():
        for entry in os.scandir(checkpoints):
            if entry.is_file(follow_symlinks=False) and _owned_checkpoint(entry.name):
                os.unlink(entry.path)
            elif entry.name == REJECTED_DIR and entry.is_dir(follow_symlinks=False):
                for rej in os.scandir(entry.path):
                    if rej.is_file(follow_symlinks=False) and REJECTED_NAME.fullmatch(rej.name):
                        os.unlink(rej.path)
                _rmdir_if_empty(Path(entry.path))
        _rmdir_if_empty(checkpoints)


def _rmdir_if_empty(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.rmdir()


def remove_stale_temporaries(folder: Path) -> int:
    """Remove temporary files a killed process left behind (safe under the exclusive lock:
    no other writer can be running). Returns how many were removed."""
    removed = 0
    for parent, owned in ((folder, _TOP_NAMES), (folder / CHECKPOINT_DIR, CHECKPOINT_NAME)):
        if not parent.is_dir() or parent.is_symlink():
            continue
        for entry in os.scandir(parent):
            if entry.is_file(follow_symlinks=False) and _is_tool_temp(entry.name, owned):
                os.unlink(entry.path)
                removed += 1
    return removed


def _write_marker(folder: Path, design_hash: str, engine_version: int) -> None:
    from study.files import atomic_write_text

    info = {
        "tool": "study",
        "format": FORMAT,
        "design_hash": design_hash,
        "engine_version": engine_version,
    }
    atomic_write_text(folder / MARKER, json.dumps(info, indent=2, sort_keys=True) + "\n")


def _refuse_other_run(
    folder: Path, marker: dict | None, design_hash: str, engine_version: int
) -> None:
    """Raise FolderError when the folder holds results of another design or engine."""
    if marker is None or (marker.get("design_hash"), marker.get("engine_version")) == (
        design_hash,
        engine_version,
    ):
        return
    if marker.get("design_hash") != design_hash:
        why = (
            f"results of a different design (hash {str(marker.get('design_hash'))[:12]}…, "
            f"this design {design_hash[:12]}…)"
        )
    else:
        why = (
            f"results of engine version {marker.get('engine_version')} (this is version "
            f"{engine_version})"
        )
    raise FolderError(
        f"results folder {_quote(folder)} holds {why}; rerun with --fresh to discard them, or use "
        "--out for another folder"
    )


@contextlib.contextmanager
def writing(
    out: Path | str, *, design_hash: str, engine_version: int, fresh: bool
) -> Iterator[Path]:
    """Own, lock and prepare the results folder of a run; yields its absolute path.

    Raises
    ------
    FolderError
        The folder is not the tool's, is locked by another run, or holds results of another
        design or engine version (and ``fresh`` is False).
    """
    folder = check_out_path(out)
    refuse_foreign(folder)  # before writing anything, the lock file included
    for sub in (folder / CHECKPOINT_DIR, folder / CHECKPOINT_DIR / REJECTED_DIR):
        # a link would lead the writes out of the folder; a file would stop them half-way
        if sub.is_symlink() or (sub.exists() and not sub.is_dir()):
            raise FolderError(
                f"results folder {_quote(folder)}: {_quote(sub.relative_to(folder))} is not a "
                "folder (a symbolic link or a file); refused"
            )
    if not fresh:  # refuse before writing anything; again under the lock below
        _refuse_other_run(folder, read_marker(folder), design_hash, engine_version)
    folder.mkdir(parents=True, exist_ok=True)
    lock = acquire(folder, exclusive=True)
    try:
        marker = read_marker(folder)
        if marker is None:
            refuse_foreign(folder)  # in case something appeared while we took the lock
        elif not fresh:
            _refuse_other_run(folder, marker, design_hash, engine_version)
        if fresh:
            _remove_owned(folder)
        if marker is None or fresh:
            _write_marker(folder, design_hash, engine_version)
        (folder / CHECKPOINT_DIR).mkdir(exist_ok=True)
        remove_stale_temporaries(folder)
        yield folder
    finally:
        lock.close()


def uncommit(folder: Path) -> None:
    """Remove the manifest before result files are rewritten: until the new manifest is
    written, readers see an uncommitted folder rather than a mix of old and new files."""
    (folder / MANIFEST_FILE).unlink(missing_ok=True)


def file_digest(path: Path) -> dict[str, int | str]:
    """Size and SHA-256 of one file, as the manifest records them."""
    sha = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            sha.update(chunk)
            size += len(chunk)
    return {"bytes": size, "sha256": sha.hexdigest()}


# --- reading -------------------------------------------------------------------------------


@contextlib.contextmanager
def reading(results: Path | str, needed: tuple[str, ...]) -> Iterator[dict]:
    """Hold a shared lock on a committed results folder and yield its manifest.

    Raises FolderError, naming the file, when the folder is not a study results folder, is
    being written, has no manifest (an unfinished run), or when a needed file is missing or
    differs from the size and checksum the manifest records.
    """
    folder = Path(results)
    hint = "(run `study simulate` first)"
    if not folder.is_dir():
        raise FolderError(f"argument RESULTS: got '{results}'; expected a results folder {hint}")
    marker = read_marker(folder)
    if marker is None:
        raise FolderError(
            f"argument RESULTS: {_quote(folder)} is not a study results folder (no {MARKER}) "
            + hint
        )
    lock = acquire(folder, exclusive=False)
    try:
        manifest = read_manifest(folder)
        _check_manifest(folder, manifest, marker)
        files = manifest["files"]
        for name in sorted(set(files) | set(needed)):
            verify_file(folder, name, files.get(name))
        yield manifest
    finally:
        lock.close()


# Readers (check, report) refuse results of engine versions before this one, whose design
# hash and draws.npz differ (version 6: block_size left out of the hash, the audit's
# records added) or whose summary.csv lacks what the check and the report read (bias_asym1
# from version 7, the tail shares p_gt_* from version 8) or whose draws the audit of
# `study check` no longer recomputes (version 10: Cholesky, and m noise values for m ≤ K + 1),
# or whose Rao–Blackwell columns carried rounding where m < p (version 11: one rule for
# every folder, as at 10); tests/test_folder.py holds it to the engine's version.
OLDEST_ENGINE_VERSION_READ = 11

_MANIFEST_KEYS = {
    "design": dict,
    "design_hash": str,
    "files": dict,
    "run": dict,
    "versions": dict,
    "counts": dict,
}


def _check_manifest(folder: Path, manifest: dict, marker: dict) -> None:
    """Refuse a manifest that lacks what readers use, or whose design is not the one its
    hash, and the folder's marker, say."""
    from study.design import design_from_dict

    path = folder / MANIFEST_FILE
    for key, kind in _MANIFEST_KEYS.items():
        if not isinstance(manifest.get(key), kind):
            raise FolderError(
                f"{_quote(path)} has no valid '{key}' (written by an older version of study, or "
                "edited); rerun `study simulate`"
            )
    version = manifest.get("engine_version")
    if isinstance(version, int) and version < OLDEST_ENGINE_VERSION_READ:
        raise FolderError(
            f"{_quote(path)}: results of engine version {version}, which this version of study "
            f"no longer reads (it reads {OLDEST_ENGINE_VERSION_READ} and later); rerun "
            "`study simulate DESIGN --fresh` into this folder"
        )
    try:
        design_hash = design_from_dict(manifest["design"]).hash
    except DesignError:
        design_hash = None
    if not (design_hash == manifest["design_hash"] == marker.get("design_hash")):
        raise FolderError(
            f"{_quote(path)} does not describe the design the folder was run with (its design, "
            f"its design_hash and {MARKER} disagree): edited or from another run; rerun "
            "`study simulate`"
        )


def read_manifest(folder: Path) -> dict:
    path = folder / MANIFEST_FILE
    if not path.is_file():
        raise FolderError(
            f"{_quote(folder)} has no {MANIFEST_FILE}: its run did not finish (run the same "
            "`study simulate` command again to complete it)"
        )
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise FolderError(
            f"{_quote(path)} is damaged (not valid JSON); rerun `study simulate`"
        ) from None
    if not isinstance(manifest, dict):
        raise FolderError(f"{_quote(path)} is damaged (not a JSON object); rerun `study simulate`")
    return manifest


def verify_file(folder: Path, name: str, recorded) -> None:
    """Raise FolderError unless ``folder/name`` has the size and SHA-256 ``recorded``."""
    path = folder / name
    if not isinstance(recorded, dict):
        if name in THEORY_FILES:
            raise FolderError(
                f"{_quote(path)} is not listed in {MANIFEST_FILE}: the theory step has not run "
                f"(run `study theory {folder}`)"
            )
        raise FolderError(
            f"{_quote(path)} is not listed in {MANIFEST_FILE}; rerun `study simulate`"
        )
    if not path.is_file():
        raise FolderError(f"{_quote(path)} is missing; rerun `study simulate`")
    if file_digest(path) != {"bytes": recorded.get("bytes"), "sha256": recorded.get("sha256")}:
        raise FolderError(
            f"{_quote(path)} differs from the run that wrote it (size or SHA-256 in "
            f"{MANIFEST_FILE}): truncated, edited or from another run; rerun `study simulate`"
        )
