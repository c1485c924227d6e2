"""Synthetic stores for `bench perf`: the configured shapes, random numbers, no simulator.

Speed depends on shapes, not on values, so a store of random Meta-World-shaped episodes
(39-dim states, 4-dim actions, 500-step episodes ending in a time-limit truncation) measures
what a real one would, and needs neither generated data nor a download.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from bench.data.store import DatasetStore, add_tasks_to_manifest, write_task

OBS_DIM, ACT_DIM, EPISODE_STEPS = 39, 4, 500


def synthetic_arrays(
    episodes: int, rng: np.random.Generator, episode_steps: int = EPISODE_STEPS
) -> dict[str, np.ndarray]:
    """One task's arrays: `episodes` episodes of `episode_steps` random steps."""
    steps = episodes * episode_steps
    return {
        "observations": rng.standard_normal((steps, OBS_DIM), dtype=np.float32),
        "actions": rng.uniform(-1.0, 1.0, (steps, ACT_DIM)).astype(np.float32),
        "rewards": rng.uniform(0.0, 10.0, steps).astype(np.float32),
        "terminals": np.zeros(steps, dtype=bool),
        "timeouts": np.arange(steps) % episode_steps == episode_steps - 1,
        "episode_starts": np.arange(0, steps, episode_steps, dtype=np.int64),
    }


def write_synthetic_store(
    root: Path,
    tasks: Sequence[str],
    episodes: int,
    seed: int = 0,
    episode_steps: int = EPISODE_STEPS,
) -> DatasetStore:
    """A store at `root` holding `episodes` synthetic episodes of each task."""
    rng = np.random.default_rng(seed)
    entries = {
        task: write_task(root, task, synthetic_arrays(episodes, rng, episode_steps))
        for task in tasks
    }
    add_tasks_to_manifest(root, entries, {"source": "synthetic (bench perf)"})
    return DatasetStore(root)
