"""The results folder: something the tool owns, locks and can prove, like a database's
data directory.

- **Ownership.** A folder is the tool's only if it is empty (or new) or carries the marker
  file ``.study-results`` (written first, with the design hash and the engine version).
  Anything else is refused before a byte is written. In a folder it owns, the tool writes
  and removes only the names in :data:`RESULT_FILES`, :data:`MARKER`, :data:`LOCK` and,
  under ``checkpoints/``, the task checkpoints ``m<m>-b<block>.ckpt``, the folder
  ``rejected/`` and its own temporary files; every other file is left alone, and a
  symbolic link is never followed.
- **One writer at a time.** ``study simulate`` holds an exclusive ``flock`` on
  ``.study-lock`` for the whole run; ``study check`` and ``study report`` hold a shared
  one while they read. The kernel releases the lock when the process dies, so a
  ``kill -9`` leaves no stale lock.
- **A commit point.** ``manifest.json`` is removed before a run rewrites any result file
  and written last, with the size and SHA-256 of every result file: a folder without a
  manifest, or whose files disagree with it, is refused by the readers.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .design import DesignError
from .paths import CHECKPOINT_DIR, MANIFEST_FILE, RESULT_FILES

MARKER = ".study-results"
LOCK = ".study-lock"
REJECTED_DIR = "rejected"
FORMAT = 1
CHECKPOINT_NAME = re.compile(r"m[0-9]+-b[0-9]+\.ckpt")
REJECTED_NAME = re.compile(r"m[0-9]+-b[0-9]+\.ckpt(\.[0-9]+)?")
# what store.atomic_write_bytes leaves behind when a process dies between write and rename
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
    return [Path("/"), Path.home().resolve(), *package.parents]


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
            f"option '{option}': got '{out}', a symbolic link; expected a real folder (give "
            "the folder it points to, if that is what you mean)"
        )
    if absolute.exists() and not absolute.is_dir():
        raise FolderError(f"option '{option}': got '{out}'; expected a folder, not a file")
    resolved = absolute.resolve()
    if resolved in _forbidden_targets():
        raise FolderError(
            f"option '{option}': got '{out}' ({resolved}); expected a folder of its own, not the "
            "file-system root, the home folder or the folder that holds the study package"
        )
    return resolved


def _first_entry(folder: Path) -> str | None:
    """The first entry of ``folder`` in name order, other than the lock file; None if none."""
    try:
        names = sorted(name for name in os.listdir(folder) if name != LOCK)
    except FileNotFoundError:
        return None
    return names[0] if names else None


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
        f"results folder '{folder}' is not empty and not one that study created (it holds "
        f"'{foreign}' and no {MARKER}); nothing was touched: choose a new or empty folder "
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


@dataclass
class Lock:
    """An flock on the folder's lock file; released by close() or by the process's death."""

    fd: int

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)  # closing the descriptor releases the flock
            self.fd = -1


def _holder(path: Path) -> str:
    try:
        pid = path.read_text().strip()
    except OSError:
        pid = ""
    return f"process {pid}" if pid.isdigit() else "another process"


def acquire(folder: Path, *, exclusive: bool) -> Lock | None:
    """Lock ``folder`` at once or raise FolderError saying who holds it.

    A shared lock on a folder without a lock file (read-only copies of results) is None:
    no writer can be running there, since every writer creates the file first.
    """
    path = folder / LOCK
    if exclusive:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    else:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
    try:
        fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise
        doing = "a run is writing it" if not exclusive else "another run is using it"
        raise FolderError(
            f"results folder '{folder}' is locked: {doing} ({_holder(path)}); wait for it to "
            "finish, or use another --out"
        ) from None
    if exclusive:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
    return Lock(fd)


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
    from .store import atomic_write_text

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
        f"results folder '{folder}' holds {why}; rerun with --fresh to discard them, or use "
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
    if (folder / CHECKPOINT_DIR).is_symlink():  # it would lead the writes out of the folder
        raise FolderError(
            f"results folder '{folder}': '{CHECKPOINT_DIR}' is a symbolic link; refused"
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
            f"argument RESULTS: '{folder}' is not a study results folder (no {MARKER}) {hint}"
        )
    lock = acquire(folder, exclusive=False)
    try:
        manifest = read_manifest(folder)
        if manifest.get("design_hash") != marker.get("design_hash"):
            raise FolderError(
                f"'{folder / MANIFEST_FILE}' belongs to another design than the folder's "
                f"{MARKER}; rerun `study simulate`"
            )
        files = manifest.get("files")
        if not isinstance(files, dict):
            raise FolderError(
                f"'{folder / MANIFEST_FILE}' lists no result files (written by an older "
                "version of study?); rerun `study simulate`"
            )
        for name in needed:
            verify_file(folder, name, files.get(name))
        yield manifest
    finally:
        if lock is not None:
            lock.close()


def read_manifest(folder: Path) -> dict:
    path = folder / MANIFEST_FILE
    if not path.is_file():
        raise FolderError(
            f"'{folder}' has no {MANIFEST_FILE}: its run did not finish (run the same "
            "`study simulate` command again to complete it)"
        )
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise FolderError(
            f"'{path}' is damaged (not valid JSON); rerun `study simulate`"
        ) from None
    if not isinstance(manifest, dict):
        raise FolderError(f"'{path}' is damaged (not a JSON object); rerun `study simulate`")
    return manifest


def verify_file(folder: Path, name: str, recorded) -> None:
    """Raise FolderError unless ``folder/name`` has the size and SHA-256 ``recorded``."""
    path = folder / name
    if not isinstance(recorded, dict):
        raise FolderError(f"'{path}' is not listed in {MANIFEST_FILE}; rerun `study simulate`")
    if not path.is_file():
        raise FolderError(f"'{path}' is missing; rerun `study simulate`")
    if file_digest(path) != {"bytes": recorded.get("bytes"), "sha256": recorded.get("sha256")}:
        raise FolderError(
            f"'{path}' differs from the run that wrote it (size or SHA-256 in "
            f"{MANIFEST_FILE}): truncated, edited or from another run; rerun `study simulate`"
        )
