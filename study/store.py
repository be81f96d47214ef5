"""Results on disk: atomic writes, deterministic .npz files, and task checkpoints.

Every file is written to a temporary file in the same folder and renamed into place, so
an interrupted run never leaves a half-written file. A finished task is saved at once as
``checkpoints/m<m>-b<block>.ckpt`` (see :func:`pack_arrays`); ``checkpoints/design.json``
records the hash of the design the checkpoints belong to, and a run with another design
refuses them.
"""

from __future__ import annotations

import io
import json
import math
import os
import shutil
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from .design import Design, DesignError
from .paths import CHECKPOINT_DIR, RESULT_FILES


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file normal permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """An .npz archive (readable by ``np.load``) whose bytes depend only on the arrays.

    ``np.savez`` stamps each member with the current time; this writer does not.
    """
    method = zipfile.ZIP_DEFLATED
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=method) as zf:
        for name in sorted(arrays):
            member = io.BytesIO()
            np.lib.format.write_array(member, np.asarray(arrays[name]), allow_pickle=False)
            info = zipfile.ZipInfo(name + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = method
            info.external_attr = 0o644 << 16
            zf.writestr(info, member.getvalue())
    return buffer.getvalue()


def load_npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


_PACK_MAGIC = b"STUDYCKPT1\n"

# Bump whenever a change to the engine changes what a task computes: checkpoints written
# by another engine version are refused, never merged with new ones.
ENGINE_VERSION = 3


def pack_arrays(arrays: dict[str, np.ndarray]) -> bytes:
    """One header line of JSON (name, dtype, shape, offset) and the raw bytes of every array.

    A checkpoint holds some sixty small arrays; as .npz members each costs a header parse on
    load, which made reading the checkpoints a fifth of a fit-bound run.
    """
    index, chunks, offset = [], [], 0
    for name in sorted(arrays):
        a = np.array(arrays[name], order="C", copy=None)  # (ascontiguousarray makes 0-d 1-d)
        if a.dtype.hasobject:
            raise TypeError(f"cannot pack object array {name!r}")
        index.append([name, a.dtype.str, list(a.shape), offset])
        chunks.append(a.tobytes())
        offset += a.nbytes
    header = json.dumps(index, separators=(",", ":")).encode() + b"\n"
    return _PACK_MAGIC + header + b"".join(chunks)


def unpack_arrays(data: bytes) -> dict[str, np.ndarray]:
    """Inverse of :func:`pack_arrays`."""
    if not data.startswith(_PACK_MAGIC):
        raise ValueError("not a study checkpoint")
    end = data.index(b"\n", len(_PACK_MAGIC))
    index = json.loads(data[len(_PACK_MAGIC) : end])
    body = memoryview(data)[end + 1 :]
    out = {}
    for name, dtype, shape, offset in index:
        dt = np.dtype(dtype)
        count = math.prod(shape)
        out[name] = (
            np.frombuffer(body, dtype=dt, count=count, offset=offset).reshape(tuple(shape)).copy()
        )
    return out


class CheckpointStore:
    """The checkpoints of one results folder."""

    def __init__(self, results_dir: Path, design: Design):
        self.results_dir = Path(results_dir)
        self.dir = self.results_dir / CHECKPOINT_DIR
        self.design = design

    def _identity_file(self) -> Path:
        return self.dir / "design.json"

    def prepare(self, *, fresh: bool) -> None:
        """Make the folder ready; refuse checkpoints of another design unless ``fresh``.

        Raises
        ------
        DesignError
            When the checkpoints belong to a different design and ``fresh`` is False.
        """
        if fresh:
            shutil.rmtree(self.dir, ignore_errors=True)
            for name in RESULT_FILES:
                (self.results_dir / name).unlink(missing_ok=True)
        identity = self._identity_file()
        if identity.exists():
            try:
                info = json.loads(identity.read_text())
            except (OSError, ValueError):
                info = {}
            recorded = info.get("design_hash")
            if info.get("engine_version") != ENGINE_VERSION and recorded == self.design.hash:
                raise DesignError(
                    f"{self.dir}: checkpoints were written by engine version "
                    f"{info.get('engine_version')}, this is version {ENGINE_VERSION}; rerun "
                    "with --fresh to discard them"
                )
            if recorded != self.design.hash:
                raise DesignError(
                    f"{self.dir}: checkpoints are from a different design "
                    f"(hash {str(recorded)[:12]}…, this design {self.design.hash[:12]}…); "
                    "rerun with --fresh to discard them, or use --out for another folder"
                )
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(
            identity,
            json.dumps(
                {
                    "design_hash": self.design.hash,
                    "engine_version": ENGINE_VERSION,
                    "design": self.design.to_dict(),
                },
                indent=2,
                sort_keys=True,
            )
            + "\n",
        )

    def path(self, m: int, block: int) -> Path:
        return self.dir / f"m{m}-b{block}.ckpt"

    def done(self) -> set[tuple[int, int]]:
        """Tasks of the design whose checkpoint is on disk."""
        return {(m, b) for (m, b) in self.design.tasks() if self.path(m, b).exists()}

    def save(self, m: int, block: int, result: dict[str, np.ndarray]) -> None:
        atomic_write_bytes(self.path(m, block), pack_arrays(result))

    def load(self, m: int, block: int) -> dict[str, np.ndarray]:
        return unpack_arrays(self.path(m, block).read_bytes())
