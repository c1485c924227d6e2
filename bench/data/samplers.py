"""Vectorised samplers over the memory-mapped task arrays.

Every gather is one numpy fancy-index over the memmap (no per-sample Python loop), so a batch
reads only the rows it needs and the dataset never has to fit in RAM.

Episode split per task (the official HarmoDT loader): the first `fraction` of a task's episodes
are used (near-optimal 1.0, sub-optimal 0.5 = the first half, as the paper's 1000 of 2000), and
the last `prompt_episodes` of that range are kept out of training as Prompt-DT prompts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from bench.data.store import DatasetStore
from bench.data.task_cache import training_episodes
from bench.errors import UserError


@dataclass(frozen=True)
class Segment:
    """A batch of left-padded trajectory windows (torch tensors, batch first)."""

    states: torch.Tensor  # (B, L, obs_dim), normalised per task
    actions: torch.Tensor  # (B, L, act_dim)
    returns_to_go: torch.Tensor  # (B, L, 1), divided by the return scale
    timesteps: torch.Tensor  # (B, L) long, step index within the episode
    mask: torch.Tensor  # (B, L) bool, False on left padding
    task_ids: torch.Tensor  # (B,) long

    def to(self, device: torch.device) -> Segment:
        """The batch on `device` (itself where it is there: the CPU copies nothing)."""
        if device.type == "cpu":
            return self
        return Segment(**{name: value.to(device) for name, value in self.__dict__.items()})

    def expand(self, batch: int) -> Segment:
        """A batch of one window `batch` times over (a view: no copy), e.g. one prompt per row."""
        fields = self.__dict__.items()
        return Segment(**{name: value.expand(batch, *value.shape[1:]) for name, value in fields})


@dataclass(frozen=True)
class Transitions:
    """A batch of single-step transitions for TD and BC learners (numpy, raw observations)."""

    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    next_observations: np.ndarray
    terminals: np.ndarray
    timeouts: np.ndarray
    task_ids: np.ndarray


class TaskData:
    """One task's episodes split into training and prompt episodes, with its state statistics."""

    def __init__(
        self, store: DatasetStore, task: str, task_id: int, fraction: float, prompt_episodes: int
    ) -> None:
        arrays = store.open_task(task)
        num_train = training_episodes(arrays.num_episodes, fraction, prompt_episodes)
        if num_train < 1:
            raise UserError(
                f"task {arrays.task} has {arrays.num_episodes} episodes: with fraction {fraction} "
                f"and {prompt_episodes} prompt episodes none is left to train on"
            )
        self.task = arrays.task
        self.task_id = task_id
        self.arrays = arrays
        used = num_train + prompt_episodes
        starts = np.asarray(arrays.episode_starts[:used], dtype=np.int64)
        ends = np.asarray(arrays.episode_ends()[:used], dtype=np.int64)
        self.train_starts, self.train_ends = starts[:num_train], ends[:num_train]
        self.prompt_starts, self.prompt_ends = starts[num_train:], ends[num_train:]
        self.train_steps = int(self.train_ends[-1])  # training episodes are the first ones
        self.returns_to_go = _returns_to_go(arrays.rewards[: ends[-1]], starts, ends)
        # Per-task state normalisation from the training episodes, as the reference code does.
        self.state_mean, self.state_std = store.state_statistics(arrays, self.train_steps)
        prompt_returns = self.returns_to_go[self.prompt_starts]
        self.best_prompt = int(np.argmax(prompt_returns)) if prompt_episodes else -1

    @property
    def num_prompt_episodes(self) -> int:
        return len(self.prompt_starts)


def _returns_to_go(rewards: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Undiscounted reward-to-go of every step up to the end of its own episode."""
    cumulative = np.concatenate([[0.0], np.cumsum(rewards, dtype=np.float64)])
    # Episodes are contiguous from row 0, so a step's row is its index: no gathers (MT50's
    # 100M steps would take seconds of every run start).
    return (np.repeat(cumulative[ends], ends - starts) - cumulative[:-1]).astype(np.float32)


class OfflineData:
    """The multi-task dataset a method trains on: one TaskData per suite task, in suite order.

    The unseen test tasks of a meta-RL suite have TaskData too (ids after the training tasks':
    `Suite.task_id`), for their prompts and state statistics only: nothing trains on them.
    """

    def __init__(
        self,
        store: DatasetStore,
        tasks: Sequence[str],
        fraction: float = 1.0,
        prompt_episodes: int = 2,
        unseen_tasks: Sequence[str] = (),
    ) -> None:
        missing = [t for t in (*tasks, *unseen_tasks) if t not in store.tasks]
        if missing:
            raise UserError(
                f"dataset {store.root} has no data for task(s) {', '.join(missing)}; "
                f"it holds: {', '.join(store.tasks)}"
            )
        self.store = store
        self.tasks = list(tasks)
        self.fraction = fraction
        self.prompt_episodes = prompt_episodes
        self.task_data = [
            TaskData(store, task, i, fraction, prompt_episodes) for i, task in enumerate(tasks)
        ]
        self.unseen_task_data = [
            TaskData(store, task, len(self.tasks) + i, fraction, prompt_episodes)
            for i, task in enumerate(unseen_tasks)
        ]
        first = self.task_data[0].arrays
        self.obs_dim = int(first.observations.shape[1])
        self.act_dim = int(first.actions.shape[1])

    @property
    def num_tasks(self) -> int:
        """Training tasks only."""
        return len(self.tasks)

    def task(self, task_id: int) -> TaskData:
        """A training task's data, or an unseen test task's (ids from `num_tasks` on)."""
        if task_id < self.num_tasks:
            return self.task_data[task_id]
        return self.unseen_task_data[task_id - self.num_tasks]

    def nearest_training_task(self, task_id: int) -> int:
        """The training task whose prompt episodes look most like this task's: the smallest
        Euclidean distance between the mean observations of the two tasks' prompt episodes.

        For a method that knows tasks only by id (MTDT with a task embedding) this is the one
        thing an unseen task shows about itself before acting: its prompt (docs/fidelity.md).
        """
        if task_id < self.num_tasks:
            return task_id
        target = _prompt_mean_observation(self.task(task_id))
        distances = [
            np.linalg.norm(_prompt_mean_observation(task) - target) for task in self.task_data
        ]
        return int(np.argmin(distances))

    def summary(self) -> dict[str, object]:
        """Counts that belong in a run's record of what it trained on."""
        return {
            "path": str(self.store.root),
            "fraction": self.fraction,
            "prompt_episodes": self.prompt_episodes,
            "train_episodes_per_task": [len(t.train_starts) for t in self.task_data],
            "train_steps_per_task": [t.train_steps for t in self.task_data],
        }


def _prompt_mean_observation(task: TaskData) -> np.ndarray:
    if task.num_prompt_episodes == 0:
        raise UserError(f"task {task.task} has no prompt episodes (data.prompt_episodes=0)")
    rows = np.concatenate(
        [np.arange(s, e) for s, e in zip(task.prompt_starts, task.prompt_ends, strict=True)]
    )
    return np.asarray(task.arrays.observations[rows], dtype=np.float64).mean(axis=0)


def _window(
    starts: np.ndarray, window_starts: np.ndarray, window_ends: np.ndarray, length: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row indices (B, L) of left-padded windows [window_start, window_end) capped at `length`.

    Returns (rows, valid, timesteps); invalid (padding) rows point at the window's first row.
    """
    valid_count = np.minimum(window_ends - window_starts, length)
    offsets = np.arange(length)[None, :] - (length - valid_count)[:, None]
    valid = offsets >= 0
    first = window_ends - valid_count
    rows = first[:, None] + np.where(valid, offsets, 0)
    timesteps = rows - starts[:, None]
    return rows, valid, timesteps


def _segment(
    task: TaskData,
    rows: np.ndarray,
    valid: np.ndarray,
    timesteps: np.ndarray,
    return_scale: float,
    max_timestep: int,
) -> Segment:
    arrays = task.arrays
    flat = rows.reshape(-1)
    states = (arrays.observations[flat] - task.state_mean) / task.state_std
    actions = np.asarray(arrays.actions[flat], dtype=np.float32)
    rtg = task.returns_to_go[flat] / return_scale
    shape = rows.shape
    zero = ~valid.reshape(-1)
    states[zero] = 0.0
    actions[zero] = 0.0
    rtg[zero] = 0.0
    timesteps = np.where(valid, np.minimum(timesteps, max_timestep - 1), 0)
    return Segment(
        states=torch.from_numpy(states.reshape(*shape, -1).astype(np.float32)),
        actions=torch.from_numpy(actions.reshape(*shape, -1)),
        returns_to_go=torch.from_numpy(rtg.reshape(*shape, 1).astype(np.float32)),
        timesteps=torch.from_numpy(timesteps.astype(np.int64)),
        mask=torch.from_numpy(valid),
        task_ids=torch.full((shape[0],), task.task_id, dtype=torch.long),
    )


def sample_segments(
    task: TaskData,
    batch_size: int,
    length: int,
    rng: np.random.Generator,
    return_scale: float,
    max_timestep: int,
) -> Segment:
    """DT training windows of `length` steps starting at uniformly drawn training steps.

    Drawing the start uniformly over all training steps equals the reference code's "episode
    with probability proportional to its length, then a uniform start inside it".
    """
    window_starts = rng.integers(0, task.train_steps, size=batch_size)
    episode = np.searchsorted(task.train_starts, window_starts, side="right") - 1
    window_ends = np.minimum(window_starts + length, task.train_ends[episode])
    rows, valid, timesteps = _window(
        task.train_starts[episode], window_starts, window_ends, length
    )
    return _segment(task, rows, valid, timesteps, return_scale, max_timestep)


def episode_openings(
    task: TaskData,
    episodes: int,
    steps: int,
    length: int,
    return_scale: float,
    max_timestep: int,
) -> Segment:
    """The first `steps` steps of the task's latest `episodes` training episodes, left-padded to
    `length`: the context an evaluation acts from at its step `steps` (bench/conditioning.py)."""
    starts = task.train_starts[-episodes:]
    ends = np.minimum(starts + steps, task.train_ends[-episodes:])
    rows, valid, timesteps = _window(starts, starts, ends, length)
    return _segment(task, rows, valid, timesteps, return_scale, max_timestep)


def prompt_segments(
    task: TaskData,
    episodes: np.ndarray,
    length: int,
    return_scale: float,
    max_timestep: int,
) -> Segment:
    """The last `length` steps of the given prompt episodes (indices into the prompt episodes)."""
    starts, ends = task.prompt_starts[episodes], task.prompt_ends[episodes]
    rows, valid, timesteps = _window(starts, np.maximum(ends - length, starts), ends, length)
    return _segment(task, rows, valid, timesteps, return_scale, max_timestep)


def sample_prompts(
    task: TaskData,
    batch_size: int,
    length: int,
    rng: np.random.Generator,
    return_scale: float,
    max_timestep: int,
) -> Segment:
    """One training prompt per batch row, from a uniformly drawn prompt episode."""
    episodes = rng.integers(0, task.num_prompt_episodes, size=batch_size)
    return prompt_segments(task, episodes, length, return_scale, max_timestep)


def sample_transitions(
    data: OfflineData, batch_size: int, rng: np.random.Generator
) -> Transitions:
    """Transitions with uniformly drawn tasks, then uniform over each task's training steps.

    An episode's last step has no stored next observation, so it is never drawn; every drawn
    step has a real successor in its own episode. In Meta-World and the Cheetah families that
    step is a time-limit truncation; ant_dir's data can end in a true terminal, which no drawn
    step carries (MTIQL, the one learner that reads terminals, is refused on that suite).
    """
    task_ids = rng.integers(0, data.num_tasks, size=batch_size)
    fields: dict[str, list[np.ndarray]] = {
        name: [] for name in Transitions.__dataclass_fields__ if name != "task_ids"
    }
    order = np.argsort(task_ids, kind="stable")
    for task_id in np.unique(task_ids):
        task = data.task_data[task_id]
        count = int((task_ids == task_id).sum())
        lengths = task.train_ends - task.train_starts - 1
        cumulative = np.concatenate([[0], np.cumsum(lengths)])
        draws = rng.integers(0, cumulative[-1], size=count)
        episode = np.searchsorted(cumulative, draws, side="right") - 1
        rows = task.train_starts[episode] + draws - cumulative[episode]
        arrays = task.arrays
        fields["observations"].append(arrays.observations[rows])
        fields["actions"].append(arrays.actions[rows])
        fields["rewards"].append(arrays.rewards[rows])
        fields["next_observations"].append(arrays.observations[rows + 1])
        fields["terminals"].append(arrays.terminals[rows])
        fields["timeouts"].append(arrays.timeouts[rows])
    # Put rows back in the order the task ids were drawn, so a batch is a pure function of rng.
    inverse = np.empty_like(order)
    inverse[order] = np.arange(batch_size)
    stacked = {name: np.concatenate(parts)[inverse] for name, parts in fields.items()}
    return Transitions(**stacked, task_ids=task_ids)
