"""`bench perf data`: how long a run takes to open a store and to sample from it, in what memory.

Each open is timed in a fresh interpreter, as a run's would be: the writer's memory and its
page cache of the store (evicted first, where the OS allows) must not flatter the figures.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

import bench
from bench.data.samplers import OfflineData, sample_segments
from bench.data.store import MANIFEST_NAME, DatasetStore, read_manifest
from bench.errors import UserError
from bench.perf.load import peak_rss_mib
from bench.perf.synthetic import write_synthetic_store

# The paper's (configs/scale/paper.yaml); they scale values, not the work a batch takes.
RETURN_SCALE, MAX_TIMESTEP = 1000.0, 1000
# Runs the measurement in the child and prints its figures as one JSON line.
_CHILD = (
    "import json, sys; from bench.perf.data import open_and_sample; "
    "print(json.dumps(open_and_sample(**json.loads(sys.argv[1]))))"
)


def measure_data(
    root: Path,
    tasks: Sequence[str],
    episodes: int,
    batches: int = 1000,
    batch_size: int = 8,
    context_length: int = 20,
    keep: bool = False,
) -> dict[str, Any]:
    """Open a synthetic store at `root` the way a run does, twice, and sample from it.

    `root` is written first (`write_synthetic_store`, `episodes` 500-step episodes of each task)
    unless it already holds such a store. Then, in a fresh subprocess each, the store is opened
    (`DatasetStore` and `OfflineData(store, tasks)`, near-optimal split) and `batches` DT training
    batches of `batch_size` windows of `context_length` steps are drawn with `sample_segments`,
    one task after the other. The first open after writing hashes the files and stamps them;
    the second ("warm") trusts the stamps, as every later run start does. Both start with the
    store out of the page cache where the OS allows (`posix_fadvise`). A store written here is
    deleted afterwards unless `keep`; one found at `root` is always kept.

    Returns JSON-serialisable figures, each for the "first" and the "warm" open:
    "<open>_open_s" (seconds to open), "<open>_ms_per_batch", "<open>_open_peak_rss_mib" (the
    subprocess's peak resident memory once the store is open, its imports included) and
    "<open>_peak_rss_mib" (after sampling too: the pages of the memory-mapped store it touched
    count, with the kernel's read-ahead, although they are page cache the kernel may reclaim);
    then "store_bytes" (on disk), "write_s" (seconds to write the store, None when it was
    found), and what was measured: "tasks", "episodes_per_task", "steps", "batches",
    "batch_size", "context_length".
    """
    root, tasks = Path(root), list(tasks)
    if batches < 1 or batch_size < 1 or context_length < 1 or episodes < 1 or not tasks:
        raise UserError("tasks, episodes, batches, batch size and context length must be positive")
    write_seconds = None
    if (root / MANIFEST_NAME).exists():
        _check_store_holds(root, tasks, episodes)
    else:
        if root.exists() and any(root.iterdir()):
            raise UserError(f"{root} holds files but no dataset; measure into a new folder")
        started = time.perf_counter()
        write_synthetic_store(root, tasks, episodes)
        write_seconds = time.perf_counter() - started
    try:
        job = {
            "root": str(root),
            "tasks": tasks,
            "batches": batches,
            "batch_size": batch_size,
            "context_length": context_length,
        }
        first = _in_fresh_process(root, job)
        warm = _in_fresh_process(root, job)
        store_bytes = _disk_bytes(root)
        steps = sum(read_manifest(root)["tasks"][task]["steps"] for task in tasks)
    finally:
        if write_seconds is not None and not keep:
            shutil.rmtree(root, ignore_errors=True)
    figures: dict[str, Any] = {
        "tasks": len(tasks),
        "episodes_per_task": episodes,
        "steps": steps,
        "batches": batches,
        "batch_size": batch_size,
        "context_length": context_length,
        "store_bytes": store_bytes,
        "write_s": write_seconds,
    }
    for name, measured in (("first", first), ("warm", warm)):
        figures.update({f"{name}_{key}": value for key, value in measured.items()})
    return figures


def open_and_sample(
    root: str, tasks: Sequence[str], batches: int, batch_size: int, context_length: int
) -> dict[str, float]:
    """In this process: seconds to open `root` for `tasks`, ms per training batch, and the
    peak RSS after the open and after sampling."""
    started = time.perf_counter()
    data = OfflineData(DatasetStore(Path(root)), tasks)
    open_seconds = time.perf_counter() - started
    open_peak = peak_rss_mib()
    rng = np.random.default_rng(0)
    started = time.perf_counter()
    for batch in range(batches):
        task = data.task_data[batch % data.num_tasks]
        sample_segments(task, batch_size, context_length, rng, RETURN_SCALE, MAX_TIMESTEP)
    sample_seconds = time.perf_counter() - started
    return {
        "open_s": open_seconds,
        "open_peak_rss_mib": open_peak,
        "ms_per_batch": 1000 * sample_seconds / batches,
        "peak_rss_mib": peak_rss_mib(),
    }


def _check_store_holds(root: Path, tasks: list[str], episodes: int) -> None:
    held = read_manifest(root)["tasks"]
    wrong = [t for t in tasks if t not in held or held[t].get("episodes") != episodes]
    if wrong:
        raise UserError(
            f"{root} holds a store without {episodes} episodes of {', '.join(wrong)}; "
            "delete it or measure into a new folder"
        )


def _in_fresh_process(root: Path, job: dict[str, Any]) -> dict[str, float]:
    _evict_from_page_cache(root)
    # The child imports this very checkout, whatever its working directory.
    checkout = str(Path(bench.__file__).resolve().parents[1])
    path = os.pathsep.join(p for p in (checkout, os.environ.get("PYTHONPATH")) if p)
    child = subprocess.run(
        [sys.executable, "-c", _CHILD, json.dumps(job)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": path},
    )
    if child.returncode != 0:
        raise RuntimeError(f"measuring the open of {root} failed:\n{child.stderr}")
    return json.loads(child.stdout.splitlines()[-1])


def _evict_from_page_cache(root: Path) -> None:
    if not hasattr(os, "posix_fadvise"):  # macOS: the figures may include cached reads
        return
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def _disk_bytes(root: Path) -> int:
    """What the store takes on disk (allocated blocks, like `du`)."""
    return sum(p.lstat().st_blocks * 512 for p in root.rglob("*") if p.is_file())
