"""Per-task caches beside a store's arrays: the state statistics a run normalises with.

    <root>/<task>/.stats.json   {"key": {observations_sha256, numpy}, "statistics":
                                 {"<train_steps>": {"mean": [...], "std": [...]}}}

Computing a task's state statistics reads all its training observations (15 GB at MT50
near-optimal size), so they are computed once, with the one function that defines them, and
kept under the observations' sha256 and the numpy version that summed them (its summation
order decides the last bits). A store others own keeps them, and its verification stamps, per
user instead (`user_cache_dir`).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from bench.atomic import write_json

STATS_NAME = ".stats.json"
# The splits runs use (configs/data/*.yaml's fractions, configs/config.yaml's prompt_episodes):
# write_task computes their statistics, so that no run start has to read the observations.
PRECOMPUTED_SPLITS = ((1.0, 2), (0.5, 2))


def training_episodes(num_episodes: int, fraction: float, prompt_episodes: int) -> int:
    """How many of a task's episodes a split trains on (fewer than 1: none).

    The first `fraction` of the episodes are used, of which the last `prompt_episodes` are kept
    out of training as prompts (the official HarmoDT loader's split).
    """
    return round(num_episodes * fraction) - prompt_episodes


def state_statistics(observations: np.ndarray, train_steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-dimension float32 (mean, std + 1e-6) of the first `train_steps` observations.

    The reference code's per-task state normalisation. The only place it is computed, so that a
    cached value is bit for bit the one a run would compute.
    """
    train = observations[:train_steps]
    mean = train.mean(axis=0, dtype=np.float64).astype(np.float32)
    std = (train.std(axis=0, dtype=np.float64) + 1e-6).astype(np.float32)
    return mean, std


def user_cache_dir() -> Path | None:
    """Where this user keeps the stamps and statistics of read-only stores (None: nowhere)."""
    base = os.environ.get("XDG_CACHE_HOME", "")
    if os.path.isabs(base):  # the XDG spec: a relative path is invalid and is ignored
        return Path(base) / "mtbench"
    try:
        return Path.home() / ".cache" / "mtbench"
    except RuntimeError:  # no HOME and a uid without a passwd entry (some containers)
        return None


def statistics_key(records: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
    """What cached statistics are valid for: these observations, summed by this numpy (whose
    summation order, and so the last bits, may change between versions)."""
    return {"observations_sha256": records["observations.npy"]["sha256"], "numpy": np.__version__}


def encode_statistics(mean: np.ndarray, std: np.ndarray) -> dict[str, list[float]]:
    # A float32 is exact as a Python float, whose JSON repr reads back to the same value.
    return {"mean": [float(x) for x in mean], "std": [float(x) for x in std]}


def statistics_entries(observations: np.ndarray, train_steps: Iterable[int]) -> dict[str, dict]:
    """The `.stats.json` entries of the given numbers of training steps."""
    return {str(n): encode_statistics(*state_statistics(observations, n)) for n in train_steps}


def _read_statistics(folder: Path, key: Mapping[str, str]) -> dict[str, Any]:
    """The entries of `folder/.stats.json` if it was made for `key`, else none."""
    try:
        cache = json.loads((folder / STATS_NAME).read_text())
    except (OSError, ValueError):
        return {}  # none, or damaged: computed again
    valid = isinstance(cache, dict) and cache.get("key") == key
    return cache["statistics"] if valid and isinstance(cache.get("statistics"), dict) else {}


def cached_statistics(
    folder: Path, key: Mapping[str, str], train_steps: int, dim: int
) -> tuple[np.ndarray, np.ndarray] | None:
    entry: Any = _read_statistics(folder, key).get(str(train_steps))  # checked as it is read
    try:
        mean = np.array(entry["mean"], dtype=np.float32)
        std = np.array(entry["std"], dtype=np.float32)
    except (KeyError, TypeError, ValueError):
        return None
    return (mean, std) if mean.shape == std.shape == (dim,) else None


def add_statistics(folder: Path, key: Mapping[str, str], entries: Mapping[str, dict]) -> None:
    """Add `entries` to `folder/.stats.json`, dropping any made for other data; the caller
    holds a lock when another process may add to it too."""
    statistics = {**_read_statistics(folder, key), **entries}
    write_json(folder / STATS_NAME, {"key": dict(key), "statistics": statistics})


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    with open(path, "a") as lock_file:
        fcntl.lockf(lock_file, fcntl.LOCK_EX)  # POSIX record locks also work on NFS
        try:
            yield
        finally:
            fcntl.lockf(lock_file, fcntl.LOCK_UN)
