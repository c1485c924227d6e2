"""One process per run directory: an exclusive lock held for as long as the run's process lives.

`flock` on `<run_dir>/.lock`: the kernel drops it when the process ends in any way (kill -9
included), so a lock that can be taken means nobody is running the run, whatever `status` says.
The holder writes its pid, host and start time into the file for the message others see.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path
from typing import IO, Any

from bench.errors import UserError

LOCK = ".lock"


class RunLock:
    """Held from `acquire()` until `release()` or the end of the process."""

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / LOCK
        self._handle: IO[str] | None = None

    def acquire(self) -> None:
        handle = open(self.path, "a+")
        try:
            _lock_soon(handle)
        except BlockingIOError:
            holder = _describe(self.path)
            handle.close()
            raise UserError(
                f"{self.path.parent} is already being run by {holder}; wait for it, or stop it "
                "and run the same command to resume"
            ) from None
        try:
            handle.seek(0)
            handle.truncate()
            started = time.strftime("%Y-%m-%d %H:%M:%S")
            record = {"pid": os.getpid(), "host": socket.gethostname(), "since": started}
            json.dump(record, handle)
            handle.flush()
        except BaseException:  # a full disk: not left held by a process that goes on
            handle.close()
            raise
        self._handle = handle

    def release(self) -> None:
        if self._handle is not None:
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None


def is_held(run_dir: Path) -> bool:
    """Whether a live process holds the run's lock (False when there is no lock file). It only
    reads: a shared lock on a read-only handle conflicts with the holder's exclusive one, so
    that `bench status` works on a tree it may not write (a read-only mount, another user's)."""
    path = Path(run_dir) / LOCK
    if not path.exists():
        return False
    with open(path, "rb") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False


def _lock_soon(handle: IO[str], attempts: int = 10) -> None:
    """Take the lock, waiting up to a second: `is_held` (bench status, a submission) holds it
    for an instant, and a run starting in that instant must not be refused."""
    for attempt in range(attempts):
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if attempt == attempts - 1:
                raise
            time.sleep(0.1)


def _describe(path: Path) -> str:
    try:
        holder: dict[str, Any] = json.loads(path.read_text())
        return f"process {holder['pid']} on {holder['host']} (since {holder['since']})"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"
