"""One writer at a time, and requests that arrive meanwhile coalesce.

The writer holds an exclusive `flock` on `<state>/lock`. A second `index` that
finds it taken leaves a `pending` mark and returns at once; the writer sees the
mark when it finishes and runs once more, so any number of requests during a
run cost at most one extra run. The OS drops the lock if the writer dies.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path


class WriterLock:
    """Non-blocking exclusive lock on a file."""

    def __init__(self, state: Path) -> None:
        self.path = state / "lock"
        self.pending_path = state / "pending"
        self._fd: int | None = None

    def acquire(self, wait: bool = False) -> bool:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def request_rerun(self) -> None:
        """Ask the current writer to run once more when it finishes."""
        self.pending_path.touch()

    def take_rerun_request(self) -> bool:
        try:
            self.pending_path.unlink()
            return True
        except FileNotFoundError:
            return False

    def is_held(self) -> bool:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)
        return False
