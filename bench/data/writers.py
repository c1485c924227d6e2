"""Several processes writing one store: who may write what, and what a killed writer leaves.

- `.manifest.lock`: held by every writer of `manifest.json` (and of the task caches), so that
  per-task generation jobs can list their tasks in one manifest at once.
- `.generating-<task>.lock`: held while a process decides whether a task must be generated and
  until it is listed, so that two processes asking for the same missing store (two seeds of a
  sweep, a run beside `bench data generate`) never make one task twice: the second waits and
  then finds it made. Per task rather than per store: Slurm generation jobs make the tasks of
  one store side by side.
- `.tmp-<task>-<pid>@<host>`: a task being staged (bench.data.store.write_task); abandoned
  once its writer, on this machine, is gone.
- `.import-staging-<pid>@<host>/`: the tasks of an import (bench.data.whole_import); abandoned
  likewise, and removed by the next import into the same folder.
- `.partial-<task>/`: the episodes of a task being generated, saved in chunks
  (bench.data.chunks), written only under the task's lock. A killed writer's are kept: the
  next holder of the lock resumes from them and deletes what their index does not list (a
  chunk's temporary, a bad chunk). Removed once the task is listed, or by the next holder that
  finds it listed and intact.
- `.<file>.tmp-<pid>`: a file being written whole (bench.atomic). The manifest's are all stale
  whenever the manifest lock is held; a task folder's (stamps, statistics) are written without
  a lock, by processes that may run on other machines, whose pids mean nothing here: they are
  stale once older than any such write takes.

The locks are POSIX record locks (`lockf`), which also hold across the machines of an NFS
store; the kernel drops them when their process ends in any way, kill -9 included.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import shutil
import socket
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO

from tqdm import tqdm

from bench.data.task_cache import file_lock

MANIFEST_LOCK = ".manifest.lock"
# A whole-file write takes milliseconds; a temporary this old has no live writer.
STALE_TEMPORARY_SECONDS = 600
_POLL_SECONDS = 0.25
# How long a lock held by another process may be a brief check of it before we say we wait.
_QUIET_WAIT_SECONDS = 1.0
# `.tmp-<task>-<pid>@<host>`; folders of earlier versions lack the `@<host>`.
_STAGING_NAME = re.compile(r"\.tmp-(?P<task>[^@]+)-(?P<pid>[0-9]+)(?:@(?P<host>[^@]+))?")
# `.import-staging-<pid>@<host>`; folders of earlier versions lack the `@<host>`.
_IMPORT_STAGING_NAME = re.compile(r"\.import-staging-(?P<pid>[0-9]+)(?:@(?P<host>[^@]+))?")


@contextlib.contextmanager
def manifest_lock(root: Path) -> Iterator[None]:
    root.mkdir(parents=True, exist_ok=True)
    with file_lock(root / MANIFEST_LOCK):
        yield


def staging_folder(root: Path, task: str) -> Path:
    """Where this process stages `task` before renaming it into `root`.

    The host is in the name because several machines may write into one shared store, and
    only on its own machine can a process tell whether a writer is still alive.
    """
    return root / f".tmp-{task}-{os.getpid()}@{socket.gethostname()}"


def import_staging_folder(dest: Path) -> Path:
    """Where this process stages an import's tasks before moving them into `dest`."""
    return dest / f".import-staging-{os.getpid()}@{socket.gethostname()}"


def remove_abandoned_staging(root: Path) -> list[Path]:
    """Delete the staging folders (a task's, an import's) whose writer died (kill -9, power
    loss); return them.

    Only folders written on this machine are judged: a live writer elsewhere has a pid that
    means nothing here.
    """
    removed = []
    for path in sorted(Path(root).glob(".*")):
        match = _STAGING_NAME.fullmatch(path.name) or _IMPORT_STAGING_NAME.fullmatch(path.name)
        if match is None or not path.is_dir():
            continue
        if match["host"] not in (None, socket.gethostname()) or _pid_alive(int(match["pid"])):
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed


def remove_stale_temporaries(root: Path, manifest_name: str) -> list[Path]:
    """Delete the temporaries of whole-file writes that a killed writer left; return them."""
    root = Path(root)
    removed = []
    manifest = list(root.glob(f".{manifest_name}.tmp-*"))
    # Locked only when needed: the lock would make the folder of a store not begun. Every
    # writer of the manifest holds it, so none of these is live. A read-only store keeps them.
    with contextlib.suppress(OSError):
        if manifest:
            with manifest_lock(root):
                for path in manifest:
                    path.unlink(missing_ok=True)
                    removed.append(path)
    old = time.time() - STALE_TEMPORARY_SECONDS
    for path in root.glob("*/.*.tmp-*"):
        with contextlib.suppress(OSError):  # gone already, or a read-only store
            if path.is_file() and path.stat().st_mtime < old:
                path.unlink()
                removed.append(path)
    return removed


class TaskLocks:
    """The `.generating-<task>.lock` files of one store that this process holds."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._held: dict[str, IO[str] | None] = {}  # None: a store this user cannot write

    def take_free(self, tasks: Iterable[str]) -> list[str]:
        """Take the locks of `tasks` that no other process holds; the tasks taken."""
        self.root.mkdir(parents=True, exist_ok=True)
        return [task for task in tasks if self._try(task)]

    def wait_for(
        self, tasks: Iterable[str], stopped: Callable[[], bool], seconds: float | None = None
    ) -> bool:
        """Take the locks of `tasks` as their holders let go; False if `stopped()` or the
        `seconds` pass first (the locks taken by then are kept).

        Polled, not blocking: a signal handler that only records a stop request must still end
        the wait.
        """
        deadline = None if seconds is None else time.monotonic() + seconds
        waiting = [task for task in tasks if task not in self._held]
        while waiting:
            waiting = [task for task in waiting if not self._try(task)]
            if not waiting:
                break
            if stopped() or (deadline is not None and time.monotonic() > deadline):
                return False
            time.sleep(_POLL_SECONDS)
        return True

    def wait_saying(self, tasks: Sequence[str], stopped: Callable[[], bool]) -> bool:
        """`wait_for` all of `tasks`, saying on stderr which ones another process is making
        once the wait outlasts a brief check of its locks; False if `stopped()` first."""
        if self.wait_for(tasks, stopped, _QUIET_WAIT_SECONDS):
            return True
        waiting = f"waiting for another process that is making {self.root}"
        tqdm.write(f"{waiting} ({', '.join(tasks)})", file=sys.stderr)
        return self.wait_for(tasks, stopped)

    def release(self, tasks: Iterable[str]) -> None:
        for task in tasks:
            handle = self._held.pop(task, None)
            if handle is not None:  # None: never locked (a read-only store)
                fcntl.lockf(handle, fcntl.LOCK_UN)
                handle.close()

    def release_all(self) -> None:
        self.release(list(self._held))

    def _try(self, task: str) -> bool:
        if task in self._held:
            return True
        try:
            handle = open(self.root / f".generating-{task}.lock", "a")
        except OSError as error:
            if error.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
                raise
            # A store others own, read-only: nothing can be generated into it, so there is
            # nothing to guard; its tasks are only checked.
            self._held[task] = None
            return True
        try:
            fcntl.lockf(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            handle.close()
            if error.errno in (errno.EAGAIN, errno.EACCES):  # another process holds it
                return False
            raise
        self._held[task] = handle
        return True


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True
