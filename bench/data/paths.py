"""Names read from data (a manifest, a release) or from an override, kept inside their folder.

A manifest is data, yet it names files: an entry `../../../../dev/zero` would have every run
hash an endless file, `/etc/shadow` would leak that file's size in an error, and an override
`data.name=../../x` would put a run's files outside `run.root`. So a name read from any of them
must be one plain path component (no separator, no `..`, not absolute, not hidden, no NUL);
the file it names must be a regular file (not a device, FIFO or folder) and, with symbolic
links followed, lie inside the folder it was read for (the store, itself resolved: a store
reached through a link is fine, a link out of it is refused). Every refusal is one line.
"""

from __future__ import annotations

import re
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from bench.errors import UserError

_SHA256 = re.compile(r"[0-9a-f]{64}")


def name_problem(name: object) -> str | None:
    """Why `name` cannot be one path component inside a folder, or None when it can."""
    if not isinstance(name, str) or not name:
        return "is not a name"
    if "/" in name or "\\" in name or "\0" in name:
        return "holds a path separator"
    if name.startswith("."):  # `.`, `..` and the hidden files the store keeps for itself
        return "starts with '.'"
    return None


def check_plain_name(key: str, value: object) -> None:
    """An override whose value becomes a folder name (`data.name`) names one plain folder."""
    problem = name_problem(value)
    if problem:
        raise UserError(
            f"{key}={value!r} {problem}; it names a folder of the run directory, so it must be "
            "a plain name such as near_optimal"
        )


def manifest_problem(manifest: Mapping[str, Any]) -> str | None:
    """Why a manifest's tasks name something outside their folders, or None.

    Task and file names become paths below the store, and a file's sha256 a folder name in
    the user's cache (bench.data.store `_user_folder`), so all three are checked.
    """
    for task, entry in manifest["tasks"].items():
        problem = name_problem(task)
        if problem:
            return f"lists the task {task!r}, which {problem}"
        files = entry.get("files", {}) if isinstance(entry, dict) else None
        if not isinstance(files, dict):
            return f"lists task {task} without a table of files"
        for name, record in files.items():
            problem = name_problem(name)
            if problem:
                return f"lists the file {name!r} for task {task}, which {problem}"
            if not isinstance(record, dict) or not _SHA256.fullmatch(str(record.get("sha256"))):
                return f"lists the file {name} of task {task} without a sha256"
            problem = _record_problem(record)
            if problem:
                return f"lists the file {name} of task {task} {problem}"
    return None


def _record_problem(record: Mapping[str, Any]) -> str | None:
    """What a file record lacks of what opening the file checks (size, shape, dtype), or None:
    a hand-edited manifest is named, not a KeyError."""
    size, shape, dtype = record.get("size"), record.get("shape"), record.get("dtype")
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        return f"without a size in bytes (got {size!r})"
    if not isinstance(shape, list) or not all(
        isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape
    ):
        return f"without a shape (got {shape!r})"
    try:
        known = isinstance(dtype, str) and bool(np.dtype(dtype))
    except (TypeError, ValueError):
        known = False
    return None if known else f"without a dtype numpy knows (got {dtype!r})"


def file_refusal(path: Path, folder: Path | None = None) -> str | None:
    """Why the file at `path` may not be read: missing, unreadable, not a regular file or (with
    `folder`) outside `folder` once links are followed; None when it may.

    A release's files need no `folder`: they are found by listing it, not named by its data,
    and may well be links into a download kept on another disk.
    """
    try:
        mode = path.stat().st_mode
        outside = folder is not None and not path.resolve(strict=True).is_relative_to(
            folder.resolve(strict=True)
        )
    except FileNotFoundError:
        return "is missing"
    except (OSError, RuntimeError) as error:  # a link loop: RuntimeError before Python 3.13
        return f"cannot be read ({getattr(error, 'strerror', None) or error})"
    if not stat.S_ISREG(mode):
        return "is not a regular file"
    if outside:
        return f"is a link to a file outside {folder}"
    return None
