"""Results on disk: atomic, durable writes, deterministic .npz files, and task checkpoints
that prove where they come from.

Every file is written to a temporary file in the same folder, flushed to the disk
(``fsync``), renamed into place, and the folder is flushed too: an interrupted run or a
power cut leaves either the old file or the new one, never half of one. A finished task is
saved as it comes back (by a thread of the main process) as
``checkpoints/m<m>-c<first>-<stop>.ckpt`` (chunks first … stop − 1 of m;
see :func:`pack_checkpoint`): the arrays, the design hash, the engine version, the task and
a SHA-256 of all of it. A checkpoint that is truncated, damaged, or from another design,
engine version or task is refused on resume (:class:`CheckpointError`) and its chunks
computed again; so is one whose chunks another checkpoint already covers.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from pathlib import Path

import numpy as np

from study import engine
from study.design import Design
from study.engine.tasks import Task, TaskResult
from study.files import atomic_write_bytes, fsync_dir
from study.paths import CHECKPOINT_DIR

_MAGIC = b"STUDYCKPT3\n"
# m<m>-c<first>-<stop>.ckpt (study.folder owns the same names)
_NAME = re.compile(r"m([0-9]+)-c([0-9]+)-([0-9]+)\.ckpt")
_DIGEST = hashlib.sha256().digest_size


class CheckpointError(ValueError):
    """A checkpoint that cannot be trusted; the message says why in a few words."""


def pack_checkpoint(
    arrays: dict[str, np.ndarray],
    *,
    design_hash: str,
    task: Task,
    noise_draw: str = "sufficient",
) -> bytes:
    """A self-verifying checkpoint: magic line, one JSON header line (design hash, engine
    version, task, and for every array its name, dtype, shape and offset), the raw bytes of
    the arrays, and the SHA-256 of everything before it.

    Raw bytes rather than .npz members: a checkpoint holds some sixty small arrays, and an
    .npz header parse each made reading checkpoints a fifth of a fit-bound run.
    """
    index, chunks, offset = [], [], 0
    for name in sorted(arrays):
        a = np.array(arrays[name], order="C", copy=None)  # (ascontiguousarray makes 0-d 1-d)
        if a.dtype.hasobject:
            raise TypeError(f"cannot pack object array {name!r}")
        index.append([name, a.dtype.str, list(a.shape), offset])
        chunks.append(a.tobytes())
        offset += a.nbytes
    header = {
        "design_hash": design_hash,
        "engine_version": engine.ENGINE_VERSION,
        "task": [int(v) for v in task],
        "noise_draw": noise_draw,
        "payload_bytes": offset,
        "index": index,
    }
    head = _MAGIC + json.dumps(header, separators=(",", ":")).encode() + b"\n"
    body = head + b"".join(chunks)
    return body + hashlib.sha256(body).digest()


def unpack_checkpoint(
    data: bytes, *, design_hash: str, task: Task, noise_draw: str = "sufficient"
) -> dict[str, np.ndarray]:
    """Inverse of :func:`pack_checkpoint`, after proving the data are whole and belong to
    ``task`` of the design ``design_hash`` under this engine version.

    Raises
    ------
    CheckpointError
        Empty, truncated or damaged (checksum), not a checkpoint, or from another design,
        engine version, task or noise draw.
    """
    if not data:
        raise CheckpointError("empty")
    if len(data) <= len(_MAGIC) + _DIGEST or not data.startswith(_MAGIC[:-1]):
        raise CheckpointError("not a checkpoint of this version of study, or truncated")
    body, digest = data[:-_DIGEST], data[-_DIGEST:]
    if hashlib.sha256(body).digest() != digest:
        raise CheckpointError("truncated or damaged (SHA-256 mismatch)")
    if not body.startswith(_MAGIC):
        raise CheckpointError("written by another version of study")
    end = body.index(b"\n", len(_MAGIC))
    header = json.loads(body[len(_MAGIC) : end])
    if header["design_hash"] != design_hash:
        raise CheckpointError(f"from another design (hash {header['design_hash'][:12]}…)")
    if header["engine_version"] != engine.ENGINE_VERSION:
        raise CheckpointError(f"from engine version {header['engine_version']}")
    if header.get("noise_draw") != noise_draw:
        raise CheckpointError(f"drawn with the {header.get('noise_draw')} noise draw")
    if tuple(header["task"]) != tuple(task):
        raise CheckpointError(f"of another task ({Task(*header['task']).describe()})")
    payload = memoryview(body)[end + 1 :]
    if len(payload) != header["payload_bytes"]:
        raise CheckpointError("inconsistent length")
    out = {}
    for name, dtype, shape, offset in header["index"]:
        dt = np.dtype(dtype)
        count = math.prod(shape)
        out[name] = (
            np.frombuffer(payload, dtype=dt, count=count, offset=offset)
            .reshape(tuple(shape))
            .copy()
        )
    return out


class CheckpointStore:
    """The task checkpoints of one results folder (see :mod:`study.folder` for the folder)."""

    def __init__(self, results_dir: Path, design: Design, *, noise_draw: str = "sufficient"):
        self.results_dir = Path(results_dir)
        self.dir = self.results_dir / CHECKPOINT_DIR
        self.design = design
        self.noise_draw = noise_draw
        self._identity = dict(design_hash=design.hash, noise_draw=noise_draw)

    def path(self, task: Task) -> Path:
        return self.dir / f"{task.name}.ckpt"

    def save(self, task: Task, result: TaskResult) -> None:
        data = pack_checkpoint(result.to_arrays(), task=task, **self._identity)
        atomic_write_bytes(self.path(task), data)

    def load(self, task: Task) -> TaskResult:
        """The result of one task.

        Raises
        ------
        CheckpointError
            With the file named, when the checkpoint cannot be trusted.
        """
        path = self.path(task)
        try:
            arrays = unpack_checkpoint(path.read_bytes(), task=task, **self._identity)
        except CheckpointError as exc:
            raise CheckpointError(f"checkpoint '{path}' {exc}") from None
        return TaskResult.from_arrays(arrays)

    def done(self, *, on_reject=None) -> list[Task]:
        """The tasks of the design with a checkpoint that verifies, in order of (m, first
        chunk), covering each chunk at most once.

        Every other checkpoint named as a task of the design's m is moved to
        ``checkpoints/rejected/`` (its chunks will be computed again) and
        ``on_reject(path, moved_to, reason)`` is called: one that does not verify, one
        reaching beyond the design's chunks, and one whose chunks an earlier checkpoint
        (by first chunk, then the longer) already covers.
        """
        done: list[Task] = []
        covered: dict[int, int] = {}  # m → chunks covered so far (in order of first chunk)
        for task, path, reason in self._named():
            if reason is None and task.first < covered.get(task.m, 0):
                reason = "its chunks overlap those of another checkpoint"
            elif reason is None:
                try:
                    data = path.read_bytes()
                    unpack_checkpoint(data, task=task, **self._identity)
                except OSError as exc:  # a folder or something unreadable under a task's name
                    reason = exc.strerror or exc.__class__.__name__
                except (CheckpointError, ValueError, KeyError, TypeError) as exc:
                    reason = str(exc) or exc.__class__.__name__
            if reason is not None:
                target = self._reject(path)
                if on_reject is not None:
                    on_reject(path, target, reason)
                continue
            done.append(task)
            covered[task.m] = task.stop
        return done

    def covered_chunks(self) -> dict[int, int]:
        """The chunks of each m that a resumed run will not compute again, from the
        checkpoints' names alone, by the rules of :meth:`done` (nothing is read, moved or
        verified: a checkpoint whose contents fail is computed again after all). For the
        estimate a run prints before it takes the folder."""
        chunks: dict[int, int] = {}
        covered: dict[int, int] = {}
        try:
            named = self._named()
        except OSError:  # not a folder, not readable: the run says what is wrong
            return {}
        for task, _, reason in named:
            if reason is None and task.first >= covered.get(task.m, 0):
                chunks[task.m] = chunks.get(task.m, 0) + task.stop - task.first
                covered[task.m] = task.stop
        return chunks

    def _named(self) -> list[tuple[Task, Path, str | None]]:
        """The checkpoints named as tasks of the design's m, in order of (m, first chunk,
        the longer first), each with what rules it out by its name (None if nothing): a
        name other than the one study writes, or chunks outside the design's."""
        from study.engine.precision import valid_chunks

        found: list[tuple[Task, Path, str | None]] = []
        try:
            names = sorted(p.name for p in self.dir.iterdir())
        except FileNotFoundError:
            return []
        for name in names:
            hit = _NAME.fullmatch(name)
            if hit is None:
                continue
            task = Task(*(int(g) for g in hit.groups()))
            if task.m not in self.design.m:
                continue
            reason = None
            if name != f"{task.name}.ckpt":  # e.g. m08-c0-1.ckpt: not a name it writes
                reason = f"not named as study names it ({task.name}.ckpt)"
            elif not 0 <= task.first < task.stop <= valid_chunks(self.design, task.m):
                reason = f"chunks {task.first}–{task.stop - 1} outside the design's chunks"
            found.append((task, self.dir / name, reason))
        found.sort(key=lambda item: (item[0].m, item[0].first, -item[0].stop))
        return found

    def _reject(self, path: Path) -> Path:
        folder = self.dir / "rejected"
        folder.mkdir(exist_ok=True)
        target = folder / path.name
        n = 0
        while target.exists():
            n += 1
            target = folder / f"{path.name}.{n}"
        os.replace(path, target)
        fsync_dir(self.dir)
        return target
