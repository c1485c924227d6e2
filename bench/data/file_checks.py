"""One task file against its manifest record: a regular file inside the store, its size, its
sha256 (streamed), and the shape and dtype of the array it holds."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from bench.data.paths import file_refusal

_HASH_CHUNK_BYTES = 8 << 20


class BadFile(Exception):
    """A task file that disagrees with its manifest record; the store adds how to repair it."""

    def __init__(self, path: Path, problem: str) -> None:
        super().__init__(f"{path} {problem}")
        self.path = path
        self.problem = problem


def checked_stat(path: Path, expected_size: int, store_root: Path) -> os.stat_result:
    """The stat of a task file that is a regular file inside `store_root` of the recorded size.

    The size is compared only after that check: reporting it for a file outside the store
    would tell its size to whoever wrote the manifest.
    """
    refusal = file_refusal(path, store_root)
    if refusal:
        raise BadFile(path, refusal)
    stat = path.stat()
    if stat.st_size < expected_size:
        raise BadFile(path, f"is truncated ({stat.st_size} of {expected_size} bytes)")
    if stat.st_size > expected_size:
        raise BadFile(
            path, f"is longer than recorded ({stat.st_size} instead of {expected_size} bytes)"
        )
    return stat


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(_HASH_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def check_sha256(path: Path, expected: str) -> None:
    if sha256_of(path) != expected:
        raise BadFile(path, "is corrupt (its sha256 differs from the manifest's)")


def load_array(path: Path, record: Mapping[str, Any]) -> np.ndarray:
    """The array in `path`, memory-mapped read-only, if it has the recorded shape and dtype."""
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as exc:
        reason = " ".join(str(exc).split())  # the message must stay one line
        raise BadFile(path, f"is not a readable .npy array ({reason})") from None
    expected_shape, expected_dtype = tuple(record["shape"]), np.dtype(record["dtype"])
    if array.shape != expected_shape or array.dtype != expected_dtype:
        raise BadFile(
            path,
            f"holds {array.dtype} {array.shape} where the manifest records "
            f"{expected_dtype} {expected_shape}",
        )
    return array
