"""One writer per run directory: an exclusive ``flock`` on ``RUN_DIR/lock``.

The lock file holds the holder's pid and host. The kernel drops the lock when
its holder dies, however it dies, so a lock file left by a killed process is
taken over by the next writer (with a line saying so); a live holder makes a
second writer fail at once, naming that pid. Locks are counted per process: the
launcher of a run and the library's :func:`~qtrl.train.train` it calls may both
hold the same directory.
"""

from __future__ import annotations

import fcntl
import logging
import os
import socket
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Self

from ..errors import UserError

__all__ = ["LOCK_FILE", "RunDirBusy", "RunDirLock", "lock_holder"]

log = logging.getLogger(__name__)

LOCK_FILE = "lock"

_held: dict[Path, tuple[int, int]] = {}   # resolved run dir -> (fd, holds) in this process
_guard = threading.Lock()


class RunDirBusy(UserError):
    """Another live process holds the run directory's lock."""


class RunDirLock:
    """``with RunDirLock(run_dir):`` — be the only writer of ``run_dir`` (which
    exists) for the block; raises :class:`RunDirBusy` naming the holder otherwise."""

    def __init__(self, run_dir: Path | str) -> None:
        self.run_dir = Path(run_dir)
        self._key = self.run_dir.resolve()
        self._path = self.run_dir / LOCK_FILE

    def acquire(self) -> None:
        """Take the lock (again, if this process holds it already)."""
        with _guard:
            if self._key in _held:
                fd, holds = _held[self._key]
                _held[self._key] = (fd, holds + 1)
                return
            _held[self._key] = (self._take(), 1)

    def release(self) -> None:
        """Give the lock back; the last release of this process removes the file."""
        with _guard:
            fd, holds = _held.pop(self._key)
            if holds > 1:
                _held[self._key] = (fd, holds - 1)
                return
            try:   # unlink while still holding it: a waiting writer re-checks the inode
                self._path.unlink(missing_ok=True)
            except OSError as err:
                log.warning("could not remove the lock file %s: %s", self._path, err)
            os.close(fd)

    def _take(self) -> int:
        while True:
            try:
                fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as err:
                raise UserError(f"{self.run_dir}: cannot create its lock file "
                                f"({err.strerror or err}); is the directory writable?") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                raise RunDirBusy(f"{self.run_dir} is in use by another qtrl process "
                                 f"({lock_holder(self.run_dir) or 'holder unknown'}); one "
                                 f"process at a time may write a run directory") from None
            if _same_file(fd, self._path):
                break
            os.close(fd)   # its holder removed that file as we locked it: take the new one
        stale = os.read(fd, 256).decode("utf-8", "replace").strip()
        if stale:
            log.warning("%s: taking over the lock of %s, which ended without releasing it",
                        self.run_dir, stale)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
        return fd

    def __enter__(self) -> Self:
        self.acquire()
        return self

    def __exit__(self, kind: type[BaseException] | None, err: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()


def lock_holder(run_dir: Path | str) -> str | None:
    """``"pid N on HOST"`` of the process that holds ``run_dir``'s lock, or None
    when no live process holds it. Reads only: takes no lock, creates nothing."""
    path = Path(run_dir) / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            # a shared probe conflicts with the holder's exclusive lock only
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            for _ in range(20):   # a fresh holder writes its pid just after locking
                text = os.pread(fd, 256, 0).decode("utf-8", "replace").strip()
                if text:
                    return text
                time.sleep(0.01)
            return "pid unknown"
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _same_file(fd: int, path: Path) -> bool:
    try:
        now = os.stat(path)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (mine.st_dev, mine.st_ino) == (now.st_dev, now.st_ino)
