"""Scripted-expert datasets for Meta-World v3, from random to expert within every task.

The paper's MT50 data is a SAC replay buffer "from random to expert". We emulate it with
Meta-World's scripted experts and a per-task schedule: episode 0 acts uniformly at random, the
last episode is the pure expert. Gaussian noise alone cannot get near random (a clipped expert
with sigma=3 still succeeds 31 % of the time, shared/notes/metaworld-v3.md section 2), so the
schedule anneals the probability of a uniform-random action from 1 to 0, and the Gaussian noise
on the other actions from 0.5 to 0.

Generation is long work (MT50 near-optimal is ~3.6 h on 2 cores): tasks run in parallel worker
processes, each finished task is written and added to the manifest at once, and a re-run skips
the tasks the manifest already lists.
"""

from __future__ import annotations

import importlib.metadata
import multiprocessing
import queue
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from bench.data.store import (
    DatasetStore,
    add_tasks_to_manifest,
    provenance,
    read_manifest,
    write_task,
)
from bench.envs.metaworld import (
    ACTION_DIM,
    MAX_EPISODE_STEPS,
    OBSERVATION_DIM,
    ScriptedExpert,
    make_env,
    sample_goals,
)
from bench.errors import UserError, unknown_choice
from bench.suites import HARMODT_MT50_ORDER, v3_name

MAX_NOISE_STD = 0.5
NOISE_SCHEDULE = (
    "progress = e / max(N - 1, 1); random_prob = 1 - progress; noise_std = 0.5 * (1 - progress)"
)
_POLL_SECONDS = 0.25  # how often the parent refreshes the progress bar


def noise_schedule(episode: int, num_episodes: int) -> tuple[float, float]:
    """(random_prob, noise_std) of an episode of a task: random first, pure expert last."""
    progress = episode / max(num_episodes - 1, 1)
    return 1.0 - progress, MAX_NOISE_STD * (1.0 - progress)


def generate_task(
    task: str,
    episodes: int,
    seed: int,
    pool_seed: int,
    on_episode: Callable[[], None] | None = None,
) -> dict[str, np.ndarray]:
    """Roll `episodes` full episodes of the annealed scripted expert; the store's arrays.

    Deterministic given the arguments: Meta-World's only randomness is the goal, and the goals
    and the exploration noise both come from one generator seeded by (seed, task index).
    `on_episode` is called after each episode (progress reporting).
    """
    rng = np.random.default_rng([seed, _task_index(task)])
    goals = sample_goals(task, episodes, pool_seed, rng)
    num_steps = episodes * MAX_EPISODE_STEPS
    observations = np.empty((num_steps, OBSERVATION_DIM), dtype=np.float32)
    actions = np.empty((num_steps, ACTION_DIM), dtype=np.float32)
    rewards = np.empty(num_steps, dtype=np.float32)
    terminals = np.zeros(num_steps, dtype=bool)
    timeouts = np.zeros(num_steps, dtype=bool)

    # One env for all episodes: set_task + reset gives the same states as a fresh env, and
    # building an env costs as much as ~100 steps.
    env = make_env(task, goals[0])
    for episode, goal in enumerate(goals):
        random_prob, noise_std = noise_schedule(episode, episodes)
        policy = ScriptedExpert(task, rng, random_prob=random_prob, noise_std=noise_std)
        env.set_task(goal)
        observation, _ = env.reset()
        start = episode * MAX_EPISODE_STEPS
        for row in range(start, start + MAX_EPISODE_STEPS):
            action = policy.act(observation[None], None)[0]
            observations[row] = observation
            actions[row] = action
            observation, reward, terminated, truncated, _ = env.step(action)
            rewards[row] = reward
            terminals[row] = terminated
            timeouts[row] = truncated
        if on_episode is not None:
            on_episode()
    env.close()

    episode_starts = np.arange(episodes, dtype=np.int64) * MAX_EPISODE_STEPS
    last_steps = episode_starts + MAX_EPISODE_STEPS - 1
    # The whole format assumes the raw env's semantics: no termination, truncation at step 500.
    if terminals.any() or timeouts.sum() != episodes or not timeouts[last_steps].all():
        raise RuntimeError(f"{task}: Meta-World no longer truncates exactly at step 500 only")
    return {
        "observations": observations,
        "actions": actions,
        "rewards": rewards,
        "terminals": terminals,
        "timeouts": timeouts,
        "episode_starts": episode_starts,
    }


def generate_dataset(
    root: Path,
    tasks: Sequence[str],
    episodes_per_task: int,
    seed: int = 0,
    pool_seed: int = 0,
    workers: int = 2,
    progress: bool = True,
) -> DatasetStore:
    """Generate (or finish generating) a scripted-expert dataset in `root`; return its store."""
    root = Path(root)
    tasks = list(dict.fromkeys(tasks))
    if not tasks:
        raise UserError("no tasks to generate data for")
    for task in tasks:
        _task_index(task)
    if episodes_per_task < 1 or workers < 1 or seed < 0 or pool_seed < 0:
        raise UserError(
            f"episodes per task ({episodes_per_task}) and workers ({workers}) must be positive, "
            f"seed ({seed}) and pool seed ({pool_seed}) non-negative"
        )
    header = {
        "source": "scripted",
        "generator": _generator_settings(episodes_per_task, seed, pool_seed),
        **provenance(),
    }
    finished = _tasks_already_generated(root, header)
    todo = [task for task in tasks if task not in finished]
    if todo:
        _generate_in_workers(root, todo, header, workers, progress)
        _list_in_order(root, tasks, header)
    return DatasetStore(root)


def _task_index(task: str) -> int:
    """The task's index in the paper's MT50 order: a seed component that no suite choice shifts."""
    stems = {v3_name(stem): index for index, stem in enumerate(HARMODT_MT50_ORDER)}
    if task not in stems:
        raise unknown_choice("Meta-World v3 task", task, stems)
    return stems[task]


def _generator_settings(episodes_per_task: int, seed: int, pool_seed: int) -> dict[str, Any]:
    """Everything that decides the data; a resumed generation must match it exactly."""
    return {
        "policy": "metaworld.policies scripted experts, actions clipped to [-1, 1]",
        "episodes_per_task": episodes_per_task,
        "episode_steps": MAX_EPISODE_STEPS,
        "seed": seed,
        "pool_seed": pool_seed,
        "rng": "numpy.random.default_rng([seed, index of the task in HARMODT_MT50_ORDER])",
        "goals": "bench.envs.metaworld.sample_goals from metaworld.MT1(task, seed=pool_seed)",
        "noise_schedule": NOISE_SCHEDULE,
        "metaworld": importlib.metadata.version("metaworld"),
        "mujoco": importlib.metadata.version("mujoco"),
    }


def _tasks_already_generated(root: Path, header: dict[str, Any]) -> set[str]:
    """Tasks `root` already holds, after checking they were made with the same settings.

    On a match the header keeps the dataset's original creation time.
    """
    if not (root / "manifest.json").exists():
        return set()
    manifest = read_manifest(root)
    old = {"source": manifest.get("source"), **(manifest.get("generator") or {})}
    new = {"source": header["source"], **header["generator"]}
    differences = [
        f"{key} {old.get(key)!r} (asked: {new.get(key)!r})"
        for key in dict.fromkeys([*old, *new])
        if old.get(key) != new.get(key)
    ]
    if differences:
        raise UserError(
            f"{root} holds a dataset made with other settings: {'; '.join(differences)}; "
            "generate into another folder or delete it"
        )
    header["created"] = manifest.get("created", header["created"])
    return set(manifest["tasks"])


def _generate_and_write(
    root: Path, task: str, episodes: int, seed: int, pool_seed: int, ticks: Any
) -> dict:
    """Worker body: one task from rollout to its folder on disk; returns the manifest entry."""
    arrays = generate_task(task, episodes, seed, pool_seed, on_episode=lambda: ticks.put(1))
    return write_task(root, task, arrays)


def _generate_in_workers(
    root: Path, todo: list[str], header: dict[str, Any], workers: int, progress: bool
) -> None:
    settings = header["generator"]
    episodes = settings["episodes_per_task"]
    # "spawn": forking a parent that may hold threads (tqdm, torch) is unsafe.
    context = multiprocessing.get_context("spawn")
    failures: list[tuple[str, BaseException]] = []
    bar = tqdm(
        total=len(todo) * episodes, unit="ep", desc="generating", disable=not progress, smoothing=0
    )
    with (
        bar,
        context.Manager() as manager,
        ProcessPoolExecutor(min(workers, len(todo)), mp_context=context) as pool,
    ):
        ticks = manager.Queue()
        seed, pool_seed = settings["seed"], settings["pool_seed"]
        pending: dict[Future, str] = {
            pool.submit(_generate_and_write, root, task, episodes, seed, pool_seed, ticks): task
            for task in todo
        }
        written = 0
        try:
            while pending:
                done, _ = wait(pending, timeout=_POLL_SECONDS, return_when=FIRST_COMPLETED)
                _show_ticks(ticks, bar)
                for future in done:
                    task = pending.pop(future)
                    try:
                        entry = future.result()
                    except Exception as exc:  # keep the other tasks going: their work is kept
                        failures.append((task, exc))
                        continue
                    add_tasks_to_manifest(root, {task: entry}, header)
                    written += 1
                    bar.set_postfix_str(f"{written}/{len(todo)} tasks written")
        finally:
            # Interrupted: start none of the queued tasks (the running ones end on their own).
            pool.shutdown(wait=False, cancel_futures=True)
        _show_ticks(ticks, bar)
    if failures:
        failed = ", ".join(task for task, _ in failures)
        raise RuntimeError(
            f"generating {failed} failed; the other tasks are saved, re-run to resume"
        ) from failures[0][1]


def _show_ticks(ticks: Any, bar: tqdm) -> None:
    """Advance the bar by the episodes the workers finished since the last call."""
    episodes = 0
    while True:
        try:
            ticks.get_nowait()
        except queue.Empty:
            break
        episodes += 1
    if episodes:  # an update by 0 would still redraw the bar at every poll
        bar.update(episodes)


def _list_in_order(root: Path, tasks: list[str], header: dict[str, Any]) -> None:
    """List `tasks` in the requested order in the manifest, not in the order they finished."""
    listed = read_manifest(root)["tasks"]
    if [task for task in listed if task in tasks] != tasks:
        add_tasks_to_manifest(root, {task: listed[task] for task in tasks}, header)
