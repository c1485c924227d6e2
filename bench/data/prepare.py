"""Find the dataset a run asks for, generating it when it is missing."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bench.data.locations import dataset_path, generator_choice
from bench.data.store import MANIFEST_NAME, DatasetStore
from bench.data.task_cache import training_episodes
from bench.data.writers import remove_stale_temporaries
from bench.errors import UserError
from bench.suites import Suite


def check_dataset(data: Mapping[str, Any], suite: Suite | None = None) -> None:
    """Fail early (before a run directory exists) when an explicit `data.path` holds no
    dataset, or, given the `suite`, not one the run can train on: a manifest that does not
    read, a task of the suite missing or with files of the wrong size (sha256 is checked when
    the run opens the task), too few episodes for `data.fraction` and `data.prompt_episodes`."""
    if not data.get("path"):
        return
    path = dataset_path(data)
    if not (path / MANIFEST_NAME).exists():
        raise UserError(
            f"no dataset at data.path={data['path']} (no manifest.json); import one with "
            "`bench data import-npz` / `import-prompt-dt` or generate one with "
            "`bench data generate`"
        )
    if suite is None:
        return
    store = DatasetStore(path)
    held = store.manifest["tasks"]
    missing = [task for task in suite.data_tasks if task not in held]
    if missing:
        raise UserError(
            f"data.path={data['path']} lacks {len(missing)} task(s) of {suite.name}, e.g. "
            f"{missing[0]!r}; it holds: {', '.join(held) or 'no tasks'}"
        )
    for task, damage in store.damaged_tasks(suite.data_tasks).items():  # the first one
        advice = store.repair_advice(task)
        raise UserError(f"data.path={data['path']}: {task} is damaged ({damage}); {advice}")
    fraction, prompts = float(data["fraction"]), int(data["prompt_episodes"])
    for task in suite.data_tasks:
        episodes = int(held[task].get("episodes", 0))
        if training_episodes(episodes, fraction, prompts) < 1:
            raise UserError(
                f"data.path={data['path']}: {task} has {episodes} episodes; with data.fraction="
                f"{fraction} and data.prompt_episodes={prompts} none is left to train on"
            )


def open_dataset(
    data: Mapping[str, Any], suite: Suite, progress: bool, verify: bool = False
) -> DatasetStore:
    """The store holding every task whose data `suite` reads; missing or damaged generated tasks
    are generated (resumably) first. Damage is found by file sizes, and with `verify` also by
    sha256."""
    path = dataset_path(data, suite)
    if data.get("path"):
        check_dataset(data)
        remove_stale_temporaries(path, MANIFEST_NAME)  # generation does so for its stores
        return DatasetStore(path)
    if suite.benchmark.trains_experts:
        from bench.data.sac_experts import generate_sac_dataset

        return generate_sac_dataset(
            path,
            suite.data_tasks,
            episodes_per_task=int(data["episodes_per_task"]),
            expert_steps=int(data["expert_steps"]),
            seed=int(data["seed"]),
            progress=progress,
            verify=verify,
        )
    from bench.data.generate import generate_dataset

    return generate_dataset(
        path,
        suite.data_tasks,
        episodes_per_task=int(data["episodes_per_task"]),
        seed=int(data["seed"]),
        pool_seed=int(data["goal_pool_seed"]),
        workers=int(data["workers"]),
        progress=progress,
        verify=verify,
        generator=generator_choice(data),
    )
