"""Importer of Prompt-DT's release (mxu34/prompt-dt): the MuJoCo meta tasks' pickled trajectories.

The layout of the repository's `config/` folder next to the `data/` folder of its download:

    <dir>/data/<env>/<env>-<i>-expert.pkl          task i's offline dataset
    <dir>/data/<env>/<env>-<i>-prompt-expert.pkl   task i's prompt trajectories
    <dir>/config/<env>/config_<env>_task<i>.pkl    [{'direction': ±1}], [{'velocity': v}] or
                                                   [{'goal': angle}]: the task's parameter

Each data file is a list of trajectories {observations, next_observations, actions,
rewards (T, 1), terminals (T, 1)}. They are NumPy 1 pickles, read with the restricted unpickler
(`safe_unpickle`): a release file never runs code. Only the "expert" files are imported: they
are the ones the release and Prompt-DT's defaults (`--dataset_mode expert`) use.

Task i of env becomes the store's task `<env>-<i>` (Prompt-DT's own name for it): its dataset
trajectories first, then its prompt trajectories, whose number its manifest entry records as
`prompt_episodes`, next to `task_parameters` from its config. As in `import_npz`, nothing is
imported partially: every task is checked and staged inside `dest` first, then all are moved in
and the manifest is written. One task is in memory at a time.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from bench.data.paths import file_refusal
from bench.data.safe_unpickle import load_numpy_pickle
from bench.data.store import (
    MANIFEST_NAME,
    DatasetStore,
    provenance,
    write_task,
)
from bench.data.whole_import import import_whole
from bench.envs import mujoco_meta
from bench.errors import UserError, unknown_choice

LAYOUT = "data/<env>/<env>-<i>-{expert,prompt-expert}.pkl, config/<env>/config_<env>_task<i>.pkl"
DATASET = "expert"
SOURCE = "prompt-dt"
# Every one of Prompt-DT's MuJoCo envs has a 200-step time limit (`max_ep_len` in gen_env).
MAX_EPISODE_STEPS = 200


@dataclass(frozen=True)
class Family:
    """One of Prompt-DT's task families: its env's dimensions and its task parameter's name."""

    observation_dim: int
    action_dim: int
    parameter: str


# HalfCheetahDirEnv / HalfCheetahVelEnv / AntDirEnv(include_goal=False); ant_dir's goal is an angle.
FAMILIES = {
    family: Family(
        mujoco_meta.OBSERVATION_DIM[family],
        mujoco_meta.ACTION_DIM[family],
        mujoco_meta.PARAMETER_NAMES[family],
    )
    for family in mujoco_meta.FAMILIES
}


@dataclass(frozen=True)
class _TaskFiles:
    family: str
    dataset: Path
    prompts: Path
    config: Path


def import_prompt_dt(
    source: Path, dest: Path, families: Sequence[str] | None = None, progress: bool = True
) -> DatasetStore:
    """Import the expert trajectories of `families` (default: every one in `source`) into `dest`.

    Running it again with the same source and families finds the import done and returns it.
    """
    source, dest = Path(source), Path(dest)
    tasks = _find_tasks(source, families)
    imported = list(dict.fromkeys(files.family for files in tasks.values()))
    # The resolved path, so that the same import run from another folder is recognised.
    record = {
        "path": str(source.resolve()),
        "families": imported,
        "dataset": DATASET,
        "layout": LAYOUT,
    }
    if (dest / MANIFEST_NAME).exists():
        return _finished_import(dest, record, list(tasks))

    def write_tasks(staging: Path) -> dict[str, dict]:
        entries = {}
        with tqdm(total=2 * len(tasks), unit="file", desc="importing", disable=not progress) as bar:
            for task, files in tasks.items():
                arrays, prompt_episodes, parameters = _read_task(files, bar)
                entries[task] = {
                    **write_task(staging, task, arrays),
                    "prompt_episodes": prompt_episodes,
                    "task_parameters": parameters,
                }
        return entries

    header = {
        "source": SOURCE,
        "import": record,
        "episode_order": "per task: the dataset's trajectories, then its prompt_episodes "
        "prompt trajectories",
        "done_flags": "terminals as in the release; a timeout at the last step of each "
        "trajectory that does not terminate",
        **provenance(),
    }
    return import_whole(dest, write_tasks, header)


def _finished_import(dest: Path, record: dict, tasks: list[str]) -> DatasetStore:
    """The store at `dest` if it is this very import, intact; a UserError otherwise."""
    store = DatasetStore(dest)
    manifest = store.manifest
    if manifest.get("source") != SOURCE or manifest.get("import") != record or store.tasks != tasks:
        raise UserError(f"{dest} already holds a different dataset; import into a new folder")
    for task, problem in store.damaged_tasks(tasks).items():  # the first one
        message = f"{dest} holds this import, but task {task}: {problem}"
        raise UserError(f"{message}; delete {dest} and import again")
    return store


def _find_tasks(source: Path, families: Sequence[str] | None) -> dict[str, _TaskFiles]:
    """{`<env>-<i>`: its files} for the requested families, in family then task order."""
    if not source.is_dir():
        raise UserError(f"{source} is not a folder; expected Prompt-DT's data/ and config/ folders")
    if not (source / "data").is_dir():
        raise UserError(f"{source} has no data/ folder; download Prompt-DT's data/ into it")
    for family in families or ():
        if family not in FAMILIES:
            raise unknown_choice("Prompt-DT task family", family, FAMILIES)
    present = [family for family in FAMILIES if (source / "data" / family).is_dir()]
    wanted = list(dict.fromkeys(families)) if families else present
    if not wanted:
        raise UserError(f"{source / 'data'} holds none of {', '.join(FAMILIES)}")
    tasks = {}
    for family in wanted:
        folder = source / "data" / family
        if not folder.is_dir():
            raise UserError(f"{folder} is missing; it holds the {family} tasks' trajectories")
        pattern = re.compile(rf"{family}-(0|[1-9][0-9]*)-{DATASET}\.pkl")
        found = [int(m.group(1)) for p in folder.iterdir() if (m := pattern.fullmatch(p.name))]
        if not found:
            raise UserError(f"{folder} holds no {family}-<i>-{DATASET}.pkl files")
        for index in sorted(found):
            files = _TaskFiles(
                family=family,
                dataset=folder / f"{family}-{index}-{DATASET}.pkl",
                prompts=folder / f"{family}-{index}-prompt-{DATASET}.pkl",
                config=source / "config" / family / f"config_{family}_task{index}.pkl",
            )
            for path in (files.dataset, files.prompts, files.config):
                refusal = file_refusal(path)  # a FIFO or device would never end a read
                if refusal:
                    raise UserError(f"{path} {refusal}; task {index} of {family} needs it")
            tasks[f"{family}-{index}"] = files
    return tasks


def _read_task(files: _TaskFiles, bar: tqdm) -> tuple[dict[str, np.ndarray], int, dict]:
    """(the store's arrays, the number of prompt episodes, the task parameters) of one task."""
    parameters = _read_parameters(files.config, FAMILIES[files.family].parameter)
    trajectories = _read_trajectories(files.dataset, files.family)
    bar.update(1)
    prompts = _read_trajectories(files.prompts, files.family)
    bar.update(1)
    episodes = trajectories + prompts  # prompts last: the samplers keep a task's last episodes
    lengths = np.array([len(episode[2]) for episode in episodes], dtype=np.int64)
    ends = np.cumsum(lengths)
    terminals = np.concatenate([episode[3] for episode in episodes])
    timeouts = np.zeros(len(terminals), dtype=bool)
    timeouts[ends - 1] = ~terminals[ends - 1]
    arrays = {
        "observations": np.concatenate([episode[0] for episode in episodes]),
        "actions": np.concatenate([episode[1] for episode in episodes]),
        "rewards": np.concatenate([episode[2] for episode in episodes]),
        "terminals": terminals,
        "timeouts": timeouts,
        "episode_starts": (ends - lengths).astype(np.int64),
    }
    return arrays, len(prompts), parameters


def _read_parameters(path: Path, name: str) -> dict[str, float | int]:
    """{name: value} from a task config, which holds `[{name: number}]` in the release."""
    config = load_numpy_pickle(path)
    entry = config[0] if isinstance(config, list) and len(config) == 1 else None
    value: Any = entry.get(name) if isinstance(entry, dict) and len(entry) == 1 else None
    if isinstance(value, np.generic) and value.dtype.kind in "iuf":
        value = value.item()
    if type(value) not in (int, float) or not np.isfinite(value):
        held = " ".join(repr(config).split())[:80]  # the message must stay one line
        raise UserError(f"task config {path} holds {held}; expected [{{'{name}': a number}}]")
    return {name: value}


def _read_trajectories(path: Path, family: str) -> list[tuple[np.ndarray, ...]]:
    """(observations, actions, rewards, terminals) as stored of every trajectory in `path`."""
    trajectories = load_numpy_pickle(path)
    if not isinstance(trajectories, list) or not trajectories:
        what = "an empty list" if trajectories == [] else f"a {type(trajectories).__name__}"
        raise UserError(f"trajectory file {path} holds {what}, not a list of trajectories")
    episodes = []
    for index, trajectory in enumerate(trajectories):
        episode = _checked_episode(trajectory, FAMILIES[family], family)
        if isinstance(episode, str):
            raise UserError(f"trajectory file {path}: trajectory {index} {episode}")
        episodes.append(episode)
    return episodes


def _checked_episode(trajectory: object, dims: Family, family: str) -> tuple[np.ndarray, ...] | str:
    """One trajectory's arrays in the store's dtypes, or what is wrong with it."""
    if not isinstance(trajectory, dict):
        return f"is a {type(trajectory).__name__}, not a dict of arrays"
    done_key = "terminals" if "terminals" in trajectory else "dones"  # Prompt-DT reads either
    wanted = ["observations", "actions", "rewards", done_key]
    wanted += ["next_observations"] if "next_observations" in trajectory else []
    missing = [key for key in wanted if key not in trajectory]
    if missing:
        return f"has no {', '.join(missing).replace('dones', 'terminals or dones')}"
    arrays = {key: trajectory[key] for key in wanted}
    for key, array in arrays.items():
        if not isinstance(array, np.ndarray) or array.dtype.kind not in "biuf":
            kind = array.dtype if isinstance(array, np.ndarray) else type(array).__name__
            return f"has {key} of type {kind}, not a numeric array"
        if key in ("rewards", done_key) and array.ndim == 2 and array.shape[1] == 1:
            arrays[key] = array[:, 0]  # the release's (T, 1) columns
    widths = (dims.observation_dim, dims.action_dim, dims.observation_dim)
    expected = dict(zip(("observations", "actions", "next_observations"), widths, strict=True))
    for key, array in arrays.items():
        width = expected.get(key)
        if width is not None and (array.ndim != 2 or array.shape[1] != width):
            return f"has {key} of shape {array.shape}, expected (T, {width}) for {family}"
        if width is None and array.ndim != 1:
            return f"has {key} of shape {trajectory[key].shape}, expected (T,) or (T, 1)"
    lengths = {key: len(array) for key, array in arrays.items()}
    if len(set(lengths.values())) > 1:
        listed = ", ".join(f"{key} {length}" for key, length in lengths.items())
        return f"has arrays of different lengths: {listed}"
    steps = lengths["rewards"]
    if not 1 <= steps <= MAX_EPISODE_STEPS:
        return f"has {steps} steps; a Prompt-DT episode has 1 to {MAX_EPISODE_STEPS}"
    with np.errstate(over="ignore"):  # a float64 beyond float32's range: refused just below
        stored = [arrays[key].astype(np.float32) for key in ("observations", "actions", "rewards")]
    for key, array in zip(("observations", "actions", "rewards"), stored, strict=True):
        if not np.isfinite(array).all():  # NaN, inf, or beyond float32's range
            return f"has non-finite {key} (as float32)"
    # A terminal before the last step is kept: ant_dir ends an episode when the ant falls, and a
    # collector may have stepped on; the step after it is still the real next observation.
    done = arrays[done_key]
    if not np.isin(done, (0, 1)).all():
        return f"has {done_key} other than 0 and 1"
    return (*stored, done.astype(bool))
