"""The on-disk dataset store: one folder per dataset, flat memory-mappable arrays per task.

    <root>/manifest.json              schema version, provenance, per task: sizes and sha256
    <root>/<task>/observations.npy    float32 (T, obs_dim)   the task's episodes, concatenated
    <root>/<task>/actions.npy         float32 (T, act_dim)   in collection order
    <root>/<task>/rewards.npy         float32 (T,)
    <root>/<task>/terminals.npy       bool    (T,)
    <root>/<task>/timeouts.npy        bool    (T,)
    <root>/<task>/episode_starts.npy  int64   (E,)           index of each episode's first step
    <root>/<task>/.verified.json      {file: [size, mtime_ns]} at the last good sha256 check
    <root>/<task>/.stats.json         state statistics per number of training steps

Arrays are opened memory-mapped: MT50 near-optimal is ~18 GB and is never read into RAM whole.
Nor are its 15 GB of observations summed at each run start: the state statistics of the splits
the configs use are computed when a task is written, any other split's at its first open, and kept
in `.stats.json` under the observations' sha256 and the numpy version that computed them.
A store others own (read-only shared storage) keeps its stamps and statistics per user instead,
in `$XDG_CACHE_HOME/mtbench/stores/<digest of its path>/<task>-<observations sha256>/`.
Every file is written whole (temporary name, fsync, rename) and the manifest last, so a task
folder the manifest does not list is a leftover of an interrupted write and may be replaced.
A task is staged in `<root>/.tmp-<task>-<pid>@<host>` first; what a killed writer leaves is
removed once it is gone (bench.data.writers, which also has the locks of concurrent writers).
Every name a manifest holds is checked to stay inside the store (bench.data.paths).

**Verification.** A run re-hashes every file it trains on before its first step
(`verify(tasks)`, a streaming sha256 compared with the manifest's), whatever the stamps say:
a size + mtime stamp cannot see a change that keeps both (a column overwritten and the mtime
restored, a bit flipped on disk), and neither could a content stamp written by `bench data
verify` or generation and trusted afterwards, which vouches only for the bytes of its day.
Hashing is cheap next to training: MT30 at 200 episodes per task (0.53 GB) takes 0.8 s from
the page cache and 1.6 s from disk on 2 busy cores (0.4 s of CPU), against about an hour of
training at `scale=small`; MT50's 18 GB take under a minute at that rate, against 36 GPU-hours.
The `.verified.json` stamps serve only the readers that train nothing (perf, analyses).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import json
import os
import platform
import shlex
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from bench.atomic import fsync_dir, write_json
from bench.data.disk_space import is_out_of_space, out_of_space, task_bytes
from bench.data.file_checks import (
    BadFile,
    check_sha256,
    checked_stat,
    load_array,
    sha256_of,
)
from bench.data.paths import manifest_problem, name_problem
from bench.data.task_cache import (
    PRECOMPUTED_SPLITS,
    add_statistics,
    cached_statistics,
    encode_statistics,
    file_lock,
    state_statistics,
    statistics_entries,
    statistics_key,
    training_episodes,
    user_cache_dir,
)
from bench.data.writers import manifest_lock, staging_folder
from bench.errors import UserError
from bench.suites import SUITES, Suite

SCHEMA_VERSION = 1
ARRAY_NAMES = ("observations", "actions", "rewards", "terminals", "timeouts", "episode_starts")
MANIFEST_NAME = "manifest.json"
STAMP_NAME = ".verified.json"

_DTYPES = {
    "observations": np.dtype(np.float32),
    "actions": np.dtype(np.float32),
    "rewards": np.dtype(np.float32),
    "terminals": np.dtype(np.bool_),
    "timeouts": np.dtype(np.bool_),
    "episode_starts": np.dtype(np.int64),
}
_MATRICES = ("observations", "actions")  # (T, dim); every other array is a vector
NPY_HEADER_BYTES = 128  # np.save's version-1 header, padded to 64 bytes; 128 for these shapes
# A file changed within the file system's timestamp granularity of its last hashing can keep
# its mtime (the "racy git" problem); 2 s covers the coarsest common one (FAT), so only files
# older than that are stamped as verified.
_MTIME_GRANULARITY_NS = 2_000_000_000


def bytes_per_step(obs_dim: int, act_dim: int) -> int:
    """Bytes one transition takes in a store: each step array's dtype times its width."""
    widths = {"observations": obs_dim, "actions": act_dim}
    return sum(_DTYPES[name].itemsize * (widths[name] if name in _MATRICES else 1)
               for name in ARRAY_NAMES if name != "episode_starts")  # fmt: skip


def task_file_bytes(steps: int, episodes: int, obs_dim: int, act_dim: int) -> int:
    """The bytes of one task's array files of `steps` transitions in `episodes` episodes, as
    the store writes them (headers included): what sizes and disk checks estimate from."""
    return (steps * bytes_per_step(obs_dim, act_dim)
            + episodes * _DTYPES["episode_starts"].itemsize
            + len(ARRAY_NAMES) * NPY_HEADER_BYTES)  # fmt: skip


@dataclass(frozen=True)
class TaskArrays:
    """One task's arrays, memory-mapped read-only; episodes are contiguous row ranges."""

    task: str
    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    terminals: np.ndarray
    timeouts: np.ndarray
    episode_starts: np.ndarray

    @property
    def num_episodes(self) -> int:
        return len(self.episode_starts)

    @property
    def num_steps(self) -> int:
        return len(self.rewards)

    def episode_ends(self) -> np.ndarray:
        """The exclusive end row of each episode."""
        return np.append(self.episode_starts[1:], self.num_steps).astype(np.int64)


def read_manifest(root: Path) -> dict:
    """The dataset manifest of `root`, or a UserError saying why there is none."""
    path = Path(root) / MANIFEST_NAME
    try:
        text = path.read_text()
    except FileNotFoundError:
        message = f"no dataset at {root} ({path} is missing); generate or import one"
        raise UserError(message) from None
    except OSError as exc:
        raise UserError(f"cannot read dataset manifest {path}: {exc.strerror}") from None
    try:
        manifest = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"dataset manifest {path} is not valid JSON ({exc.msg})") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("tasks"), dict):
        raise UserError(f"{path} is not a dataset manifest (it has no 'tasks' table)")
    version = manifest.get("schema_version")
    if version != SCHEMA_VERSION:
        raise UserError(
            f"dataset manifest {path} has schema version {version!r}, this mtbench reads "
            f"version {SCHEMA_VERSION}; regenerate or re-import the dataset"
        )
    problem = manifest_problem(manifest)
    if problem:
        raise UserError(f"dataset manifest {path} {problem}; a manifest names files inside {root}")
    return manifest


class DatasetStore:
    """A dataset folder: its manifest and, per task, memory-mapped arrays checked against it."""

    def __init__(self, root: Path, cache_dir: Path | None = None) -> None:
        self.root = Path(root)
        self.manifest = read_manifest(self.root)
        self._cache_dir = Path(cache_dir) if cache_dir is not None else None
        # {task: {file: [size, mtime_ns]}} hashed by `verify`: a run verifies, then maps, and
        # the files are not hashed a second time, however fresh their mtime.
        self._verified: dict[str, dict[str, list[int]]] = {}

    @property
    def tasks(self) -> list[str]:
        """The tasks present, in manifest order."""
        return list(self.manifest["tasks"])

    def open_task(self, task: str) -> TaskArrays:
        """The task's arrays after checking sizes always and sha256 unless already stamped."""
        try:
            self._check_files(task, trust_stamp=True)
            records = self._file_records(task)
            arrays = {
                name: load_array(self.root / task / f"{name}.npy", records[f"{name}.npy"])
                for name in ARRAY_NAMES
            }
        except BadFile as bad:
            raise self._damaged(task, bad) from None
        return TaskArrays(task=task, **arrays)

    def state_statistics(
        self, arrays: TaskArrays, train_steps: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """`state_statistics(arrays.observations, train_steps)` of a task opened from this store:
        read from the task's cache, or computed once and added to it."""
        records = self._file_records(arrays.task)
        key = statistics_key(records)
        dim = arrays.observations.shape[1]
        task_dir = self.root / arrays.task
        user = self._user_folder(arrays.task)
        for folder in (task_dir, user) if user else (task_dir,):
            cached = cached_statistics(folder, key, train_steps, dim)
            if cached is not None:
                return cached
        mean, std = state_statistics(arrays.observations, train_steps)
        entry = {str(train_steps): encode_statistics(mean, std)}
        try:
            with manifest_lock(self.root):  # runs starting together may add different splits
                add_statistics(task_dir, key, entry)
        except OSError:  # a read-only store: cached for this user instead
            with contextlib.suppress(OSError):  # no cache at all: computed again next time
                if user is not None:
                    user.mkdir(parents=True, exist_ok=True)
                    with file_lock(user / ".stats.lock"):
                        add_statistics(user, key, entry)
        return mean, std

    def verify(self, tasks: Sequence[str] | None = None) -> None:
        """Re-hash every file of `tasks` (default: every task), whatever the stamps say; a
        UserError names the first bad file and how to repair it."""
        for task in self.tasks if tasks is None else tasks:
            try:
                self._verified[task] = self._check_files(task, trust_stamp=False)
            except BadFile as bad:
                raise self._damaged(task, bad) from None

    def damage(self, task: str, checksums: bool) -> str | None:
        """Why a listed task's files disagree with the manifest, or None when they agree.

        One line naming the file, e.g. "observations.npy is missing". Sizes are always checked;
        with `checksums` every file is also re-hashed, ignoring the verified stamp.
        """
        if not (self.root / task).is_dir():
            return "its folder is missing"
        try:
            if checksums:
                self._check_files(task, trust_stamp=False)
            else:
                for name, record in self._file_records(task).items():
                    checked_stat(self.root / task / name, record["size"], self.root)
        except BadFile as bad:
            return f"{bad.path.name} {bad.problem}"
        return None

    def damaged_tasks(self, tasks: Sequence[str], checksums: bool = False) -> dict[str, str]:
        """{task: `damage`} for those of `tasks` whose files disagree with the manifest, in
        `tasks` order (empty when all agree)."""
        found = {task: self.damage(task, checksums) for task in tasks}
        return {task: problem for task, problem in found.items() if problem is not None}

    def repair_advice(self, task: str) -> str:
        """What replaces a damaged file of `task`: for a generated store, the exact command."""
        source = self.manifest.get("source")
        if source == "npz-import":
            return "re-import it"
        from bench.config import hydra_quoted
        from bench.data.generate import generator_name
        from bench.data.locations import STORE_PREFIXES

        generator = self.manifest.get("generator") or {}
        episodes = generator.get("episodes_per_task")
        name = generator_name(self.manifest)
        # Only `<data.root>/<the generator's prefix>-ep<episodes>` is a store the CLI can
        # generate into.
        prefix = STORE_PREFIXES.get(name)
        if source != "scripted" or self.root.name != f"{prefix}-ep{episodes}":
            return "regenerate or re-import it"
        suite = _largest_suite_holding(task, self.tasks)
        suite_name = suite.name if suite else "<a suite holding it>"
        command = [
            "bench data generate --verify",
            f"tasks={suite_name}",
            # Quoted twice: for Hydra, whose grammar refuses non-ASCII (and other) characters
            # unquoted, then for the shell.
            shlex.quote(f"data.root={hydra_quoted(str(self.root.parent))}"),
            f"data.generator={name}",
            f"episodes_per_task={episodes}",
            f"data.seed={generator.get('seed')}",
            f"data.goal_pool_seed={generator.get('pool_seed')}",
        ]
        return f"repair with `{' '.join(command)}`"

    def _damaged(self, task: str, bad: BadFile) -> UserError:
        return UserError(f"dataset file {bad.path} {bad.problem}; {self.repair_advice(task)}")

    def _file_records(self, task: str) -> dict[str, dict]:
        entries = self.manifest["tasks"]
        if task not in entries:
            held = ", ".join(entries) or "no tasks"
            raise UserError(f"task {task!r} is not in the dataset at {self.root}; it holds: {held}")
        files = entries[task].get("files", {})
        for name in ARRAY_NAMES:
            if f"{name}.npy" not in files:
                raise BadFile(self.root / task / f"{name}.npy", "is not in the manifest")
        return files

    def _user_folder(self, task: str) -> Path | None:
        """The per-user stand-in for a task folder that is not writable (None: no home folder).

        Keyed by the store's real path and the observations' sha256, so that another store, or
        this one rewritten, never finds the stamp or statistics of the old files.
        """
        cache_dir = self._cache_dir if self._cache_dir is not None else user_cache_dir()
        if cache_dir is None:
            return None
        store = hashlib.sha256(str(self.root.resolve()).encode()).hexdigest()[:16]
        observations = self._file_records(task)["observations.npy"]["sha256"]
        return cache_dir / "stores" / store / f"{task}-{observations}"

    def _check_files(self, task: str, trust_stamp: bool) -> dict[str, list[int]]:
        """Check the task's files (sha256 unless stamped); their [size, mtime_ns] by name."""
        task_dir = self.root / task
        records = self._file_records(task)
        # Sizes first: they are cheap and catch the common damage (an interrupted copy).
        stats = {
            name: checked_stat(task_dir / name, record["size"], self.root)
            for name, record in records.items()
        }
        user = self._user_folder(task)
        in_store, per_user = _read_stamp(task_dir), (_read_stamp(user) if user else {})
        trusted = [in_store, per_user, self._verified.get(task, {})] if trust_stamp else []
        hashing_started_ns = time.time_ns()
        keys, verified = {}, {}
        for name, record in records.items():
            key = keys[name] = [stats[name].st_size, stats[name].st_mtime_ns]
            if all(stamp.get(name) != key for stamp in trusted):
                check_sha256(task_dir / name, record["sha256"])
            if key[1] < hashing_started_ns - _MTIME_GRANULARITY_NS:
                verified[name] = key
        if verified == in_store:
            return keys
        try:
            write_json(task_dir / STAMP_NAME, verified)
        except OSError:  # a read-only store (shared storage): this user's stamp stands in
            if user is not None and verified != per_user:
                with contextlib.suppress(OSError):  # no cache either: hashed on every open
                    write_json(user / STAMP_NAME, verified)
        return keys


def write_task(
    root: Path, task: str, arrays: Mapping[str, np.ndarray], replace: bool = False
) -> dict:
    """Write one task's arrays as `root/<task>/` (whole or not at all); return its manifest entry.

    The folder also holds the state statistics of the PRECOMPUTED_SPLITS (`.stats.json`).

    The caller adds the entry to the manifest (`add_tasks_to_manifest`); until then the folder
    is not part of the dataset. A task the manifest already lists is replaced only with
    `replace` (a repair of damaged files): its entry must then be replaced too.
    """
    root = Path(root)
    if name_problem(task):
        raise ValueError(f"task name {task!r} cannot be a folder name")
    num_steps, num_episodes = _validate_arrays(arrays)
    root.mkdir(parents=True, exist_ok=True)
    staging = staging_folder(root, task)
    if staging.exists():  # left by a killed earlier process that had our pid
        shutil.rmtree(staging)
    staging.mkdir()
    try:
        files = {}
        for name in ARRAY_NAMES:
            path = staging / f"{name}.npy"
            array = arrays[name]
            with open(path, "wb") as file:
                np.save(file, array, allow_pickle=False)
                file.flush()
                os.fsync(file.fileno())
            files[path.name] = {
                "sha256": sha256_of(path),
                "size": path.stat().st_size,
                "shape": list(array.shape),
                "dtype": array.dtype.name,
            }
        # From the file as a run maps it, so the cached values are those a run would compute.
        observations = np.load(staging / "observations.npy", mmap_mode="r", allow_pickle=False)
        ends = np.append(arrays["episode_starts"][1:], num_steps)
        counts = {training_episodes(num_episodes, *split) for split in PRECOMPUTED_SPLITS}
        train_steps = sorted(int(ends[count - 1]) for count in counts if count >= 1)
        entries = statistics_entries(observations, train_steps)
        add_statistics(staging, statistics_key(files), entries)
        fsync_dir(staging)
        _remove_leftover(root, task, replace)
        os.rename(staging, root / task)
        fsync_dir(root)
    except BaseException as error:
        shutil.rmtree(staging, ignore_errors=True)
        needed = task_bytes(arrays)
        if isinstance(error, OSError) and is_out_of_space(error, root, needed):
            raise out_of_space(root, needed) from None  # one line, not numpy's short write
        raise
    return {"episodes": num_episodes, "steps": num_steps, "files": files}


def add_tasks_to_manifest(
    root: Path, entries: Mapping[str, dict], header: Mapping[str, Any]
) -> None:
    """Create or update `root/manifest.json` atomically with `entries` and `header`.

    Tasks already listed and not in `entries` keep their place; `entries` follow in their order
    (so passing every task again reorders them). `header` keys replace earlier values.
    """
    root = Path(root)
    reserved = {"schema_version", "suites", "tasks"} & set(header)
    if reserved:
        raise ValueError(f"manifest header cannot set {sorted(reserved)}")
    # Several processes (per-task generation jobs) may add tasks to one dataset at once.
    with manifest_lock(root):
        path = root / MANIFEST_NAME
        old = read_manifest(root) if path.exists() else {"tasks": {}}
        # What decides the data is checked when a writer starts; two writers with different
        # settings started before either listed a task meet here: never mix their tasks.
        for key in ("source", "generator"):
            if key in old and key in header and old[key] != header[key]:
                raise UserError(
                    f"{root} was listed meanwhile by a writer with other {key} settings "
                    f"({old[key]!r}, this one {header[key]!r}); generate into another folder"
                )
        tasks = {task: entry for task, entry in old["tasks"].items() if task not in entries}
        tasks.update(entries)
        manifest: dict[str, Any] = {"schema_version": SCHEMA_VERSION}
        manifest.update((key, value) for key, value in old.items() if key != "tasks")
        manifest.update(header)
        # Which suites this store can serve whole; derived, so it is never stale.
        manifest["suites"] = [
            name for name, suite in SUITES.items() if set(suite.tasks) <= set(tasks)
        ]
        manifest["tasks"] = tasks
        write_json(path, manifest)


def provenance() -> dict[str, Any]:
    """When and with which library versions a dataset is made (for the manifest header)."""
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for package in ("numpy", "metaworld", "mujoco", "gymnasium"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    created = datetime.now(UTC).isoformat(timespec="seconds")
    return {"created": created, "versions": versions}


def _validate_arrays(arrays: Mapping[str, np.ndarray]) -> tuple[int, int]:
    """(steps, episodes) of well-formed arrays; a ValueError for a caller's bug."""
    if set(arrays) != set(ARRAY_NAMES):
        raise ValueError(f"arrays must be exactly {ARRAY_NAMES}, got {sorted(arrays)}")
    for name, dtype in _DTYPES.items():
        array = arrays[name]
        if array.dtype != dtype:
            raise ValueError(f"{name} must be {dtype}, got {array.dtype}")
        if array.ndim != (2 if name in _MATRICES else 1):
            raise ValueError(f"{name} has shape {array.shape}")
    num_steps = len(arrays["rewards"])
    lengths = {name: len(arrays[name]) for name in ARRAY_NAMES if name != "episode_starts"}
    if num_steps == 0 or set(lengths.values()) != {num_steps}:
        raise ValueError(f"step arrays must have one equal, non-zero length, got {lengths}")
    starts = np.asarray(arrays["episode_starts"])
    increasing = len(starts) > 0 and starts[0] == 0 and bool(np.all(np.diff(starts) > 0))
    if not increasing or starts[-1] >= num_steps:
        raise ValueError("episode_starts must start at 0 and increase strictly below the steps")
    return num_steps, len(starts)


def _largest_suite_holding(task: str, tasks: list[str]) -> Suite | None:
    """The largest suite that `tasks` hold whole and that includes `task`, if any."""
    held = [s for s in SUITES.values() if task in s.tasks and set(s.tasks) <= set(tasks)]
    return max(held, key=lambda s: s.num_tasks, default=None)


def _read_stamp(task_dir: Path) -> dict:
    try:
        stamp = json.loads((task_dir / STAMP_NAME).read_text())
    except (OSError, ValueError):
        return {}  # no stamp or a damaged one: hash again
    return stamp if isinstance(stamp, dict) else {}


def _remove_leftover(root: Path, task: str, replace: bool) -> None:
    """Make room for `root/<task>`: a folder there is a leftover unless the manifest lists it,
    and a listed one goes only on request (`replace`)."""
    target = root / task
    if not target.exists():
        return
    listed = (root / MANIFEST_NAME).exists() and task in read_manifest(root)["tasks"]
    if listed and not replace:
        raise UserError(f"{target} is already part of the dataset at {root}; not overwriting it")
    # A crash between this and the rename leaves the task listed without its folder: damage
    # that the next generation finds and repairs.
    shutil.rmtree(target)
