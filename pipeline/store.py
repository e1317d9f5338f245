"""The run directory: atomic writes, stage manifests, streamed .npy files.

Every artifact is written under a temporary name in its final directory and renamed into
place (`os.replace` is atomic on POSIX), so a crash never leaves a half-written file under a
name that looks complete. A stage is complete only once its `manifest.json` exists, and the
manifest is the last file a stage writes.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import threading
import time
from pathlib import Path

import numpy as np

MANIFEST = "manifest.json"
TEMP_MARK = ".tmp-"
# Transient subfolders a stage may keep while it runs (e.g. resumable checkpoints); they are
# not part of the finished stage's file list.
TRANSIENT_DIRS = ("checkpoint",)


@contextlib.contextmanager
def atomic_path(final: Path):
    """Yield a temporary path beside `final`; rename it to `final` if the block succeeds."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    temp = final.with_name(f".{final.name}{TEMP_MARK}{os.getpid()}")
    try:
        yield temp
        _fsync_file(temp)
        os.replace(temp, final)
    finally:
        if temp.exists():
            temp.unlink()


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_text(path: Path, text: str) -> None:
    with atomic_path(path) as temp:
        temp.write_text(text, encoding="utf-8")


def write_json(path: Path, obj) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def read_json(path: Path):
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def save_npy(path: Path, array: np.ndarray) -> None:
    with atomic_path(path) as temp:
        with open(temp, "wb") as handle:
            np.save(handle, np.ascontiguousarray(array), allow_pickle=False)


def save_npz(path: Path, **arrays) -> None:
    with atomic_path(path) as temp:
        with open(temp, "wb") as handle:
            np.savez(handle, **arrays)


class BackgroundWriter:
    """Runs writes (e.g. checkpoints) in a background thread, one at a time, so that the
    caller goes on working while a file is written and synced. The caller hands over data
    that it will not change afterwards (copies). run() first waits for the previous write;
    wait() returns once the last write has finished and raises its error, if it had one.
    As a context manager it waits on leaving the block, also when an exception ends it, so
    an interrupted run still keeps the write it had started (and a failed write is never
    silently dropped: its error is raised, chained to the one that ended the block)."""

    def __init__(self):
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def run(self, write, *args) -> None:
        self.wait()
        self._thread = threading.Thread(target=self._guarded, args=(write, *args),
                                        name="background-writer")
        self._thread.start()

    def _guarded(self, write, *args) -> None:
        try:
            write(*args)
        except BaseException as error:          # handed to the caller's thread by wait()
            self._error = error

    def wait(self) -> None:
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        error, self._error = self._error, None
        if error is not None:
            raise error

    def __enter__(self) -> "BackgroundWriter":
        return self

    def __exit__(self, *exc_info) -> None:
        self.wait()


def load_npy(path: Path, mmap: bool = False) -> np.ndarray:
    return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)


def load_npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        return {name: data[name] for name in data.files}


class NpyAppender:
    """Stream a 1-D array of unknown final length into an .npy file in constant memory.

    A fixed 128-byte header is reserved first and rewritten with the real length at the end
    (the .npy format pads its header with spaces, so any length fits in 128 bytes)."""

    HEADER_BYTES = 128

    def __init__(self, path: Path, dtype):
        self.dtype = np.dtype(dtype)
        self.length = 0
        self._handle = open(path, "wb")
        self._handle.write(b"\0" * self.HEADER_BYTES)

    def append(self, values) -> None:
        array = np.asarray(values, dtype=self.dtype)
        self._handle.write(array.tobytes())
        self.length += array.size

    def close(self) -> None:
        header = {"descr": self.dtype.str, "fortran_order": False, "shape": (self.length,)}
        text = repr(header).encode("latin1")
        pad = self.HEADER_BYTES - 10 - len(text) - 1
        self._handle.seek(0)
        self._handle.write(b"\x93NUMPY\x01\x00" + (self.HEADER_BYTES - 10).to_bytes(2, "little"))
        self._handle.write(text + b" " * pad + b"\n")
        self._handle.close()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 22):
            digest.update(block)
    return digest.hexdigest()


def artifact_files(stage_dir: Path) -> list[Path]:
    """The finished files of a stage: everything but the manifest, temporaries and
    transient folders, sorted."""
    found = []
    for path in sorted(stage_dir.rglob("*")):
        rel = path.relative_to(stage_dir)
        if not path.is_file() or path.name == MANIFEST or TEMP_MARK in path.name:
            continue
        if rel.parts[0] in TRANSIENT_DIRS:
            continue
        found.append(path)
    return found


def describe_files(stage_dir: Path) -> dict:
    """{relative name: {size, sha256, mtime_ns}} for the manifest."""
    table = {}
    for path in artifact_files(stage_dir):
        stat = path.stat()
        table[str(path.relative_to(stage_dir))] = {
            "size": stat.st_size, "sha256": sha256_file(path), "mtime_ns": stat.st_mtime_ns}
    return table


def file_problems(stage_dir: Path, files: dict) -> list[str]:
    """Why the files recorded in a manifest no longer match the disk (empty: they match).
    A file whose size and mtime are unchanged is trusted; otherwise its SHA-256 is checked."""
    problems = []
    for name, record in files.items():
        path = stage_dir / name
        if not path.is_file():
            problems.append(f"{name} is missing")
            continue
        stat = path.stat()
        if stat.st_size != record["size"]:
            problems.append(f"{name} changed size")
        elif stat.st_mtime_ns != record["mtime_ns"] and sha256_file(path) != record["sha256"]:
            problems.append(f"{name} changed content")
    return problems


def remove_temporaries(stage_dir: Path) -> None:
    """Delete half-written files left by a killed process."""
    if stage_dir.is_dir():
        for path in stage_dir.rglob(f"*{TEMP_MARK}*"):
            if path.is_file():
                path.unlink()


class StageDir:
    """What a stage gets as `out`: its directory, atomic writers and the progress setting."""

    def __init__(self, path: Path, quiet: bool = False, fingerprint: str = ""):
        self.path = Path(path)
        self.quiet = quiet
        self.fingerprint = fingerprint   # lets a stage tell its own checkpoints from stale ones
        self.path.mkdir(parents=True, exist_ok=True)

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    def atomic(self, name: str):
        return atomic_path(self.path / name)

    def write_json(self, name: str, obj) -> None:
        write_json(self.path / name, obj)

    def write_text(self, name: str, text: str) -> None:
        write_text(self.path / name, text)

    def save_npy(self, name: str, array) -> None:
        save_npy(self.path / name, array)

    def save_npz(self, name: str, **arrays) -> None:
        save_npz(self.path / name, **arrays)

    def discard(self, name: str) -> None:
        """Delete a file (a finished stage's checkpoint) and its folder if that is left empty."""
        path = self.path / name
        path.unlink(missing_ok=True)
        if path.parent != self.path and path.parent.is_dir() and not any(path.parent.iterdir()):
            path.parent.rmdir()


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")
