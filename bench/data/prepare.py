"""Find the dataset a run asks for, generating the scripted one when it is missing."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bench.data.store import DatasetStore
from bench.errors import UserError


def dataset_path(data: Mapping[str, Any]) -> Path:
    """`data.path` when given, else the generated store `<root>/scripted-ep<episodes_per_task>`."""
    if data.get("path"):
        return Path(data["path"])
    return Path(data["root"]) / f"scripted-ep{data['episodes_per_task']}"


def check_dataset(data: Mapping[str, Any]) -> None:
    """Fail early (before a run directory exists) when an explicit `data.path` holds no dataset."""
    if data.get("path") and not (dataset_path(data) / "manifest.json").exists():
        raise UserError(
            f"no dataset at data.path={data['path']} (no manifest.json); "
            "import one with `bench data import-npz` or generate one with `bench data generate`"
        )


def open_dataset(
    data: Mapping[str, Any], tasks: Sequence[str], progress: bool, verify: bool = False
) -> DatasetStore:
    """The store holding `tasks`; missing or damaged scripted tasks are generated (resumably)
    first. Damage is found by file sizes, and with `verify` also by sha256."""
    path = dataset_path(data)
    if data.get("path"):
        check_dataset(data)
        return DatasetStore(path)
    from bench.data.generate import generate_dataset

    return generate_dataset(
        path,
        tasks,
        episodes_per_task=int(data["episodes_per_task"]),
        seed=int(data["seed"]),
        pool_seed=int(data["goal_pool_seed"]),
        workers=int(data["workers"]),
        progress=progress,
        verify=verify,
    )
