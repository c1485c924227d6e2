"""A full disk while a store is written: one line saying where, how much is free and needed.

numpy reports a short write as `OSError: 117000 requested and 36832 written`, with no errno;
fsync, close and json writes report ENOSPC. Either, with less room left than the write needs,
is a full disk: `OutOfSpace`, a UserError (exit status 2), after which the writer has removed
its partial files, so that the same command resumes once space is freed.
"""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from bench.errors import UserError

# Beyond the arrays: .npy headers, the statistics cache, the manifest entry, and rounding
# every file up to the file system's blocks.
_OVERHEAD_BYTES = 64 << 10


class OutOfSpace(UserError):
    """No room left for a store's files; the message says where and how much."""


def task_bytes(arrays: Mapping[str, np.ndarray]) -> int:
    """About how much one task written from `arrays` takes on disk."""
    return with_margin(sum(array.nbytes for array in arrays.values()))


def with_margin(file_bytes: int) -> int:
    """The room to ask for before writing a task whose array files take `file_bytes`."""
    return file_bytes + _OVERHEAD_BYTES


def is_out_of_space(error: OSError, folder: Path, needed: int) -> bool:
    """Whether `error`, raised while writing `needed` bytes into `folder`, means a full disk."""
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    return error.errno is None and free_bytes(folder) < needed  # numpy's short write


def out_of_space(folder: Path, needed: int, elsewhere: str = "data.root") -> OutOfSpace:
    """The one line for a full disk; `elsewhere` is the setting that moves the files."""
    mount = _mount_point(folder)
    return OutOfSpace(
        f"no space left on {mount}: {_megabytes(free_bytes(folder))} free, about "
        f"{_megabytes(needed)} needed for {folder}; free some space (or choose another "
        f"{elsewhere}), then run the same command to resume"
    )


def check_room(folder: Path, needed: int) -> None:
    """Refuse before any work when `folder`'s file system has less than `needed` bytes free."""
    if free_bytes(folder) < needed:
        raise out_of_space(folder, needed)


def free_bytes(folder: Path) -> int:
    """Bytes this user may still write on the file system that holds (or will hold) `folder`."""
    return shutil.disk_usage(_existing(folder)).free


def _existing(folder: Path) -> Path:
    path = Path(folder).absolute()
    while not path.exists() and path.parent != path:
        path = path.parent
    return path


def _mount_point(folder: Path) -> Path:
    path = _existing(folder).resolve()
    while not os.path.ismount(path) and path.parent != path:
        path = path.parent
    return path


def _megabytes(count: int) -> str:
    return f"{count / 1e6:.1f} MB"
