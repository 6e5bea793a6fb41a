"""Atomic file writes: a reader (or a run resumed after a crash) sees the old
file or the new one, never a part of one, and a failed write leaves no
temporary file behind."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

__all__ = ["atomic_write_bytes", "atomic_write_text", "temporary_of"]


def temporary_of(path: Path) -> Path:
    """The temporary file beside ``path`` that :func:`atomic_write_bytes` writes first
    (one name per file: a run directory has a single writer, its lock holder)."""
    return path.with_name(f".{path.name}.tmp")


def atomic_write_bytes(path: Path, data: bytes, tmp: Path | None = None) -> None:
    """Write ``data`` to a temporary file, fsync, then ``os.replace`` it onto ``path``.

    On any failure the temporary file is removed and ``path`` is untouched; an
    ``OSError`` is raised again with ``path`` as its file name (a failed
    ``write`` names no file itself). ``tmp``: the temporary file (default
    :func:`temporary_of` ``path``; writers that may race give their own).
    """
    path = Path(path)
    tmp = temporary_of(path) if tmp is None else tmp
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as err:
        _discard(tmp)
        raise OSError(err.errno, err.strerror or str(err), str(path)) from None
    except BaseException:
        _discard(tmp)
        raise


def _discard(tmp: Path) -> None:
    # best effort: the disk that refused the write may refuse this too
    with contextlib.suppress(OSError):
        tmp.unlink(missing_ok=True)


def atomic_write_text(path: Path, text: str) -> None:
    """:func:`atomic_write_bytes` of ``text`` encoded as UTF-8."""
    atomic_write_bytes(path, text.encode("utf-8"))
