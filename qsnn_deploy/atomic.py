"""Atomic file writes: a reader sees the old file or the complete new one, never a part.

Every file qsnn-deploy writes goes through here: the content is written to a temporary
file in the destination folder, flushed to disk, then renamed over the destination
(``os.replace`` is atomic within one file system).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it onto ``path``.

    For writers that need a file name (torch.save, h5py, onnx.save). On an exception the
    temporary file is removed and ``path`` is left as it was.
    """
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        # mkstemp creates 0600; give the file the mode a plain open() would (0666 minus umask)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``path``; on success it replaces ``path``.

    For exports that are a folder of files. An existing ``path`` is first renamed aside and
    removed only once the new folder is in place (POSIX cannot rename a folder over a
    non-empty one), so a reader finds the old folder or the complete new one, except between
    the two renames, when ``path`` is briefly absent. On an exception the temporary folder is
    removed and ``path`` is left as it was.
    """
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
    try:
        yield tmp
        for item in sorted(tmp.rglob("*")):  # formats may nest folders (e.g. templates, ROM files)
            if item.is_dir():
                os.chmod(item, 0o777 & ~_umask())
                continue
            with open(item, "rb+") as fh:
                os.fsync(fh.fileno())
            os.chmod(item, 0o666 & ~_umask())
        os.chmod(tmp, 0o777 & ~_umask())
        old = None
        if dest.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".old", dir=dest.parent))
            try:
                os.replace(dest, old / dest.name)
            except BaseException:
                old.rmdir()
                raise
        try:
            os.replace(tmp, dest)
        except BaseException:
            if old is not None:  # put the previous folder back
                os.replace(old / dest.name, dest)
            raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_atomic(path: str | os.PathLike[str], writer: Callable[[IO[bytes]], None]) -> Path:
    """Call ``writer`` on a binary file handle and atomically publish the result at ``path``."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            writer(fh)
    return Path(path)


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> Path:
    """Atomically replace ``path`` with ``data``."""
    return write_atomic(path, lambda fh: fh.write(data))


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """Atomically replace ``path`` with UTF-8 ``text``."""
    return write_bytes_atomic(path, text.encode("utf-8"))
