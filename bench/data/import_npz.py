"""Importer of the published MT50 release: one `.npz` file per episode, `<task>-v2/<i>.npz`.

This is the layout the official HarmoDT code (and MTDiff) reads: one folder per task named by its
Meta-World v2 name, episodes numbered 0..N-1 in collection order, each file holding
`observations (T, 39)`, `actions (T, 4)`, `rewards (T,)` or `(T, 1)`, and the done flags as
`terminals` or `dones` (float or bool).

Nothing is imported partially: every task is validated and written to a staging folder inside
`dest` first; only when all of them passed are they moved in and the manifest written. One task
is in memory at a time (the whole release is ~18 GB).
"""

from __future__ import annotations

import re
import zipfile
import zlib
from pathlib import Path

import numpy as np
from tqdm import tqdm

from bench.data.paths import file_refusal
from bench.data.store import (
    MANIFEST_NAME,
    DatasetStore,
    provenance,
    write_task,
)
from bench.data.whole_import import import_whole
from bench.envs.metaworld import ACTION_DIM, MAX_EPISODE_STEPS, OBSERVATION_DIM
from bench.errors import UserError
from bench.suites import HARMODT_MT50_ORDER, v3_name

LAYOUT = "<task>-v2/<i>.npz"
_EPISODE_FILE = re.compile(r"(0|[1-9][0-9]*)\.npz")
# What a damaged or foreign file raises from np.load or from reading one of its arrays.
_READ_ERRORS = (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error)


def import_npz(
    source: Path, dest: Path, episodes: int | None = None, progress: bool = True
) -> DatasetStore:
    """Import the first `episodes` files of every task in `source` (default: all) into `dest`."""
    source, dest = Path(source), Path(dest)
    task_folders = _find_task_folders(source)
    count = _episodes_per_task(task_folders, episodes)
    if (dest / MANIFEST_NAME).exists():
        raise UserError(f"{dest} already holds a dataset; import into a new folder")

    def write_tasks(staging: Path) -> dict[str, dict]:
        total = len(task_folders) * count
        with tqdm(total=total, unit="file", desc="importing", disable=not progress) as bar:
            return {
                task: write_task(staging, task, _read_task(folder, count, bar))
                for task, folder in task_folders.items()
            }

    header = {
        "source": "npz-import",
        "import": {"path": str(source), "episodes_per_task": count, "layout": LAYOUT},
        # Meta-World never terminates: an episode's only end is the 500-step time limit, so
        # a done flag in the release (set only at the last step) is a timeout, not a terminal.
        "done_flags": "mapped to timeouts",
        **provenance(),
    }
    return import_whole(dest, write_tasks, header)


def _find_task_folders(source: Path) -> dict[str, Path]:
    """{v3 task: its folder} for the task folders in `source`, in HARMODT_MT50_ORDER."""
    if not source.is_dir():
        raise UserError(f"{source} is not a folder; expected the release's <task>-v2/ folders")
    known = {v3_name(stem) for stem in HARMODT_MT50_ORDER}
    found: dict[str, Path] = {}
    unknown = []
    for path in sorted(source.iterdir()):
        if not path.is_dir() or path.name.startswith("."):  # hidden: .git, .cache and the like
            continue
        task = v3_name(path.name)
        if task not in known:
            unknown.append(path.name)
        elif task in found:
            raise UserError(f"{found[task]} and {path} are both the task {task}; keep one")
        else:
            found[task] = path
    if unknown:
        raise UserError(
            f"{source} holds folders that are not Meta-World tasks: {', '.join(unknown)}; "
            "expected only task folders such as basketball-v2"
        )
    if not found:
        raise UserError(f"{source} holds no task folders such as basketball-v2/0.npz")
    order = [v3_name(stem) for stem in HARMODT_MT50_ORDER]
    return {task: found[task] for task in order if task in found}


def _episodes_per_task(task_folders: dict[str, Path], episodes: int | None) -> int:
    """How many files to import per task, after checking each task has files 0..N-1."""
    if episodes is not None and episodes < 1:
        raise UserError(f"episodes per task must be positive, got {episodes}")
    counts = {}
    for task, folder in task_folders.items():
        names = {path.name for path in folder.iterdir()}
        numbers = [int(m.group(1)) for name in names if (m := _EPISODE_FILE.fullmatch(name))]
        if episodes is None and not numbers:
            raise UserError(f"{folder} holds no episode files (0.npz, 1.npz, ...)")
        wanted = episodes if episodes is not None else max(numbers) + 1
        missing = next((i for i in range(wanted) if f"{i}.npz" not in names), None)
        if missing is not None:
            raise UserError(
                f"episode file {folder / f'{missing}.npz'} is missing; a task's episodes must "
                f"be numbered 0..{wanted - 1} without gaps"
            )
        counts[task] = wanted
    if len(set(counts.values())) > 1:
        listed = ", ".join(f"{task} {count}" for task, count in counts.items())
        raise UserError(
            f"the tasks hold different numbers of episodes ({listed}); "
            "pass an episode count to import the first N of each"
        )
    return next(iter(counts.values()))


def _read_task(folder: Path, count: int, bar: tqdm) -> dict[str, np.ndarray]:
    """Episodes 0..count-1 of one task folder, checked and concatenated into the store's arrays."""
    observations, actions, rewards = [], [], []
    for index in range(count):
        episode = _read_episode(folder / f"{index}.npz")
        observations.append(episode[0])
        actions.append(episode[1])
        rewards.append(episode[2])
        bar.update(1)
    lengths = np.array([len(r) for r in rewards], dtype=np.int64)
    num_steps = int(lengths.sum())
    episode_starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    timeouts = np.zeros(num_steps, dtype=bool)
    timeouts[episode_starts + lengths - 1] = True  # see "done_flags" in import_npz
    return {
        "observations": np.concatenate(observations),
        "actions": np.concatenate(actions),
        "rewards": np.concatenate(rewards),
        "terminals": np.zeros(num_steps, dtype=bool),
        "timeouts": timeouts,
        "episode_starts": episode_starts,
    }


def _read_episode(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(observations, actions, rewards) as float32 of one episode file, or a UserError."""
    obs, act, rew, done, done_key = _load_episode(path)
    rew = rew[:, 0] if rew.ndim == 2 and rew.shape[1] == 1 else rew
    done = done[:, 0] if done.ndim == 2 and done.shape[1] == 1 else done
    problem = _episode_problem(obs, act, rew, done, done_key)
    if problem:
        raise UserError(f"episode file {path} {problem}")
    return obs.astype(np.float32), act.astype(np.float32), rew.astype(np.float32)


def _load_episode(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, str]:
    """The raw (observations, actions, rewards, done flags, done key) of one episode file."""
    refusal = file_refusal(path)  # a FIFO or device would never end a read
    if refusal:
        raise UserError(f"episode file {path} {refusal}")
    try:
        archive = np.load(path, allow_pickle=False)
        if not isinstance(archive, np.lib.npyio.NpzFile):  # an .npy file named .npz
            raise UserError(f"episode file {path} is not an .npz archive")
        with archive:
            done_key = "terminals" if "terminals" in archive.files else "dones"
            wanted = ("observations", "actions", "rewards", done_key)
            missing = [key for key in wanted if key not in archive.files]
            if missing:
                names = ", ".join(missing).replace("dones", "terminals or dones")
                raise UserError(f"episode file {path} has no {names}")
            obs, act, rew, done = (archive[key] for key in wanted)
    except _READ_ERRORS as exc:
        reason = " ".join(str(exc).split())  # the message must stay one line
        raise UserError(f"episode file {path} cannot be read ({reason})") from None
    return obs, act, rew, done, done_key


def _episode_problem(
    obs: np.ndarray, act: np.ndarray, rew: np.ndarray, done: np.ndarray, done_key: str
) -> str | None:
    """What is wrong with one episode's arrays, or None."""
    arrays = {"observations": obs, "actions": act, "rewards": rew, done_key: done}
    for name, array in arrays.items():
        if array.dtype.kind not in "biuf":
            return f"has {name} of type {array.dtype}, not numbers"
    if obs.ndim != 2 or obs.shape[1] != OBSERVATION_DIM:
        return f"has observations of shape {obs.shape}, expected (T, {OBSERVATION_DIM})"
    if act.ndim != 2 or act.shape[1] != ACTION_DIM:
        return f"has actions of shape {act.shape}, expected (T, {ACTION_DIM})"
    if rew.ndim != 1 or done.ndim != 1:
        return f"has rewards {rew.shape} or {done_key} {done.shape} that are not (T,)"
    lengths = {name: len(array) for name, array in arrays.items()}
    if len(set(lengths.values())) > 1:
        listed = ", ".join(f"{name} {length}" for name, length in lengths.items())
        return f"has arrays of different lengths: {listed}"
    steps = len(obs)
    if steps == 0 or steps > MAX_EPISODE_STEPS:
        return f"has {steps} steps; a Meta-World episode has 1 to {MAX_EPISODE_STEPS}"
    for name, array in arrays.items():
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            return f"has non-finite {name}"
    early = np.flatnonzero(done[:-1])
    if early.size:
        return (
            f"has {done_key} set at step {early[0]} before its last step {steps - 1}; "
            "Meta-World episodes end only at the 500-step time limit"
        )
    return None
