"""Expert data for the meta-RL families (cheetah_dir, cheetah_vel, ant_dir) without downloads.

Prompt-DT's release holds expert trajectories of SAC policies; no dataset can be downloaded
here, so the harness makes its own: per family, one task-conditioned SAC (d3rlpy) is trained
online on every task of the family (its observation gets the task parameter appended: the
direction, the target velocity, or the goal angle's cosine and sine), then each requested task
is rolled out with that expert's own stochastic policy into the usual store format. Test tasks
are rolled out too: their prompts come from their data.

Resumable: a trained expert is kept in `<store>/.experts/<family>-steps<N>-seed<k>.pt` (named by
its settings, bench.data.locations.expert_path) and each task is written
whole (bench.data.store), so a re-run trains nothing twice and skips the tasks already listed.
Two processes asking for one store make it once: a task is made only under its lock, and an
expert trained only under its family's (bench.data.writers).
Each task's entry in the manifest says its task parameter (as an imported Prompt-DT one does)
and the expert's mean return on it.
"""

from __future__ import annotations

import importlib.metadata
import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from bench.atomic import atomic_file
from bench.data.generate import tasks_to_write
from bench.data.locations import expert_path
from bench.data.store import DatasetStore, add_tasks_to_manifest, provenance, write_task
from bench.data.task_cache import file_lock
from bench.data.writers import TaskLocks
from bench.envs import mujoco_meta
from bench.errors import UserError
from bench.stop_signals import StopRequest

BATCH_SIZE = 256
RANDOM_FRACTION = 0.1  # of the expert's steps: uniform random actions before SAC acts
MAX_RANDOM_STEPS = 10_000


def generate_sac_dataset(
    root: Path,
    tasks: Sequence[str],
    episodes_per_task: int,
    expert_steps: int,
    seed: int = 0,
    progress: bool = True,
    verify: bool = False,
) -> DatasetStore:
    """Train (or reuse) each family's expert and roll out the tasks `root` lacks; its store."""
    root = Path(root)
    tasks = list(dict.fromkeys(tasks))
    families = {mujoco_meta.parse_task(task)[0] for task in tasks}
    if episodes_per_task < 1 or expert_steps < 1 or seed < 0:
        raise UserError(
            f"episodes per task ({episodes_per_task}) and expert steps ({expert_steps}) must be "
            f"positive, the seed ({seed}) non-negative"
        )
    header = {
        "source": "sac",
        "generator": _generator_settings(episodes_per_task, expert_steps, seed),
        **provenance(),
    }

    def make(batch: list[str]) -> None:
        """Write those of `batch` (whose locks are held) that are missing or damaged, each
        lock let go once its task needs nothing more: another process may be waiting for it
        while holding a lock this one waits for next."""
        todo, damage = tasks_to_write(root, batch, header, verify, StopRequest())
        locks.release(task for task in batch if task not in todo)
        for family in sorted(families):
            family_tasks = [t for t in todo if mujoco_meta.parse_task(t)[0] == family]
            if not family_tasks:
                continue
            expert = train_expert(root, family, expert_steps, seed, progress)
            for task in family_tasks:
                arrays, mean_return = roll_out(expert, task, episodes_per_task, seed, progress)
                entry = write_task(root, task, arrays, replace=task in damage)
                _, index = mujoco_meta.parse_task(task)
                parameter = mujoco_meta.task_parameters(family, seed)[index]
                entry["task_parameters"] = {mujoco_meta.PARAMETER_NAMES[family]: parameter}
                entry["expert_mean_return"] = mean_return
                add_tasks_to_manifest(root, {task: entry}, header)
                locks.release([task])

    locks = TaskLocks(root)
    try:
        # As bench.data.generate: ours first, then those another process holds once it has
        # let go of them (made by then, they are only checked).
        mine = locks.take_free(tasks)
        others = [task for task in tasks if task not in mine]
        make(mine)
        if others:
            locks.wait_saying(others, lambda: False)
            make(others)
    finally:
        locks.release_all()
    return DatasetStore(root)


def _generator_settings(episodes_per_task: int, expert_steps: int, seed: int) -> dict[str, Any]:
    """Everything that decides the data; a resumed generation must match it exactly."""
    return {
        "policy": "d3rlpy SAC (SACConfig defaults), one per family, task parameter in the input",
        "episodes_per_task": episodes_per_task,
        "expert_steps": expert_steps,
        "episode_steps": mujoco_meta.EPISODE_STEPS,
        "seed": seed,
        "task_parameters": "bench.envs.mujoco_meta.task_parameters(family, seed)",
        "d3rlpy": importlib.metadata.version("d3rlpy"),
        "gymnasium": importlib.metadata.version("gymnasium"),
        "mujoco": importlib.metadata.version("mujoco"),
    }


def task_feature(family: str, parameter: float) -> np.ndarray:
    """What the expert is told about its task (an angle as cosine and sine: no wrap-around)."""
    if family == "ant_dir":
        return np.array([math.cos(parameter), math.sin(parameter)], dtype=np.float32)
    return np.array([parameter], dtype=np.float32)


def _input_dim(family: str) -> int:
    """The expert's input: an observation and its task feature."""
    return mujoco_meta.OBSERVATION_DIM[family] + len(task_feature(family, 0.0))


class Expert:
    """A family's trained SAC: acts for a batch of observations of one task."""

    def __init__(self, learner: Any) -> None:
        self.learner = learner

    def act(self, observations: np.ndarray, feature: np.ndarray) -> np.ndarray:
        inputs = np.concatenate(
            [
                observations.astype(np.float32),
                np.broadcast_to(feature, (len(observations), len(feature))),
            ],
            axis=1,
        )
        return np.clip(self.learner.sample_action(inputs), -1.0, 1.0).astype(np.float32)


def _make_learner(family: str, seed: int) -> Any:
    import d3rlpy

    d3rlpy.seed(seed)
    learner = d3rlpy.algos.SACConfig(batch_size=BATCH_SIZE).create(device="cpu:0")
    learner.create_impl((_input_dim(family),), mujoco_meta.ACTION_DIM[family])
    return learner


def train_expert(root: Path, family: str, steps: int, seed: int, progress: bool) -> Expert:
    """The family's expert: loaded from `<root>/.experts/` when it was trained before (by
    another process too: it is trained under the family's lock)."""
    path = expert_path(root, family, steps, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(path.with_name(f".{family}.lock")):
        return _load_or_train_expert(path, family, steps, seed, progress)


def _load_or_train_expert(path: Path, family: str, steps: int, seed: int, progress: bool) -> Expert:
    from d3rlpy.dataset import TransitionMiniBatch

    learner = _make_learner(family, seed)
    if path.exists():
        learner.impl.load_model(io.BytesIO(path.read_bytes()))
        return Expert(learner)
    parameters = mujoco_meta.task_parameters(family, seed)
    rng = np.random.default_rng([seed, 7, len(family)])
    observation_dim = _input_dim(family)
    action_dim = mujoco_meta.ACTION_DIM[family]
    buffer = {
        "observations": np.zeros((steps, observation_dim), np.float32),
        "actions": np.zeros((steps, action_dim), np.float32),
        "rewards": np.zeros((steps, 1), np.float32),
        "next_observations": np.zeros((steps, observation_dim), np.float32),
        "terminals": np.zeros((steps, 1), np.float32),
    }
    random_steps = min(int(steps * RANDOM_FRACTION), MAX_RANDOM_STEPS)
    env, observation, feature = None, None, None
    bar = tqdm(total=steps, desc=f"SAC expert {family}", unit="step", disable=not progress)
    with bar:
        for step in range(steps):
            if env is None:  # a new episode on a task drawn uniformly from the family
                index = int(rng.integers(len(parameters)))
                env = mujoco_meta.make_env(mujoco_meta.task_name(family, index), seed=seed)
                observation = env.reset(seed=int(rng.integers(2**31 - 1)))[0]
                feature = task_feature(family, parameters[index])
            assert observation is not None  # set with env
            inputs = np.concatenate([observation.astype(np.float32), feature])
            if step < random_steps:
                action = rng.uniform(-1.0, 1.0, size=action_dim).astype(np.float32)
            else:
                action = learner.sample_action(inputs[None])[0].astype(np.float32)
            next_observation, reward, terminated, truncated, _ = env.step(action)
            buffer["observations"][step] = inputs
            buffer["actions"][step] = action
            buffer["rewards"][step] = reward
            buffer["next_observations"][step] = np.concatenate([next_observation, feature])
            buffer["terminals"][step] = float(terminated)  # a time limit is not a terminal
            observation = next_observation
            if terminated or truncated:
                env.close()
                env = None
            if step >= random_steps:
                rows = rng.integers(0, step + 1, size=BATCH_SIZE)
                learner.update(
                    TransitionMiniBatch(
                        **{name: array[rows] for name, array in buffer.items()},
                        next_actions=buffer["actions"][rows],
                        intervals=np.ones((BATCH_SIZE, 1), np.float32),
                        transitions=[],
                    )
                )
            bar.update()
    if env is not None:
        env.close()
    saved = io.BytesIO()
    learner.impl.save_model(saved)
    with atomic_file(path, "wb") as handle:  # fsynced: a crash leaves no half an expert
        handle.write(saved.getvalue())
    return Expert(learner)


def roll_out(
    expert: Expert, task: str, episodes: int, seed: int, progress: bool
) -> tuple[dict[str, np.ndarray], float]:
    """`episodes` episodes of `task` in lockstep with the expert's stochastic policy; the
    store's arrays and the mean episode return."""
    family, index = mujoco_meta.parse_task(task)
    feature = task_feature(family, mujoco_meta.task_parameters(family, seed)[index])
    rng = np.random.default_rng([seed, 11, index, len(family)])
    torch.manual_seed(int(rng.integers(2**31 - 1)))  # sample_action draws from torch
    envs = [mujoco_meta.make_env(task, seed=seed) for _ in range(episodes)]
    steps = mujoco_meta.EPISODE_STEPS
    observation_dim, action_dim = (
        mujoco_meta.OBSERVATION_DIM[family],
        mujoco_meta.ACTION_DIM[family],
    )
    observations = np.zeros((episodes, steps, observation_dim), np.float32)
    actions = np.zeros((episodes, steps, action_dim), np.float32)
    rewards = np.zeros((episodes, steps), np.float32)
    terminals = np.zeros((episodes, steps), bool)
    lengths = np.full(episodes, steps)
    reset_seeds = rng.integers(0, 2**31 - 1, size=episodes)
    try:
        current = np.stack(
            [env.reset(seed=int(s))[0] for env, s in zip(envs, reset_seeds, strict=True)]
        )
        running = np.ones(episodes, bool)
        for t in tqdm(range(steps), desc=task, unit="step", disable=not progress, leave=False):
            batch_actions = expert.act(current, feature)
            for i in np.flatnonzero(running):
                observations[i, t], actions[i, t] = current[i], batch_actions[i]
                current[i], rewards[i, t], terminated, truncated, _ = envs[i].step(batch_actions[i])
                terminals[i, t] = terminated
                if terminated or truncated:
                    running[i] = False
                    lengths[i] = t + 1
            if not running.any():
                break
    finally:
        for env in envs:
            env.close()
    keep = np.arange(steps)[None, :] < lengths[:, None]
    timeouts = np.zeros_like(terminals)
    timeouts[np.arange(episodes), lengths - 1] = ~terminals[np.arange(episodes), lengths - 1]
    arrays = {
        "observations": observations[keep],
        "actions": actions[keep],
        "rewards": rewards[keep],
        "terminals": terminals[keep],
        "timeouts": timeouts[keep],
        "episode_starts": np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64),
    }
    mean_return = float((rewards * keep).sum(axis=1).mean())
    return arrays, mean_return
