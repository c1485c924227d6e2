"""Shared fixtures: small real datasets generated once per test session."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from bench.data.generate import generate_dataset
from bench.data.store import DatasetStore, add_tasks_to_manifest, write_task
from bench.suites import Suite

SMOKE_EPISODES = 6  # configs/scale/smoke.yaml: data.episodes_per_task
TINY_TASKS = ("reach-v3", "button-press-v3")


@pytest.fixture(scope="session")
def smoke_data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A `data.root` already holding the mt5 smoke dataset, so CLI runs skip generation."""
    from bench.suites import get_suite

    root = tmp_path_factory.mktemp("data")
    generate_dataset(
        root / f"replay-ep{SMOKE_EPISODES}",
        get_suite("mt5").tasks,
        episodes_per_task=SMOKE_EPISODES,
        progress=False,
    )
    return root


@pytest.fixture(scope="session")
def meta_rl_data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A `data.root` holding cheetah_vel's smoke store (SAC experts), as a run would make it."""
    from bench.config import compose_run
    from bench.data.sac_experts import generate_sac_dataset
    from bench.suites import get_suite

    data = compose_run(["tasks=cheetah_vel", "scale=smoke"]).config["data"]
    root = tmp_path_factory.mktemp("meta-rl-data")
    generate_sac_dataset(
        root / f"sac-ep{data['episodes_per_task']}",
        get_suite("cheetah_vel").data_tasks,
        episodes_per_task=int(data["episodes_per_task"]),
        expert_steps=int(data["expert_steps"]),
        progress=False,
    )
    return root


@pytest.fixture(scope="session")
def tiny_suite() -> Suite:
    return Suite("tiny", TINY_TASKS)


@pytest.fixture(scope="session")
def tiny_store(tmp_path_factory: pytest.TempPathFactory) -> DatasetStore:
    """Two tasks, four episodes each (two train, two prompt)."""
    root = tmp_path_factory.mktemp("tiny") / "replay-ep4"
    return generate_dataset(root, TINY_TASKS, episodes_per_task=4, progress=False)


@pytest.fixture(scope="session")
def build_smoke() -> Callable[..., Any]:
    """Build a method with its options exactly as `bench run method=<name> scale=smoke` resolves
    them, plus any `values` given: `build_smoke(name, suite, data, seed=0, **values)`."""
    from bench.config import compose_run
    from bench.registry import build_method, get_method, make_config

    def build(name: str, suite: Suite, data: Any, seed: int = 0, **values: Any) -> Any:
        config = compose_run([f"method={name}", "scale=smoke"]).config
        smoke = {k: v for k, v in config["method"].items() if k != "name"}
        config = make_config(get_method(name), {**smoke, **values})
        return build_method(name, config, suite, data, seed)

    return build


def _wait_for(path: Path, process: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None, (
            f"the run ended before it was killed: {process.stderr.read()}"
        )
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.01)


def _kill_at_first_checkpoint(
    command: list[str], run_dir: Path
) -> subprocess.CompletedProcess:
    """Launch `command` (a run of `run_dir`), SIGKILL it once its first checkpoint is written,
    and check that it left no result; the killed process, its stderr read."""
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    _wait_for(run_dir / "checkpoint.pt", process)
    process.kill()
    _, stderr = process.communicate()
    assert not (run_dir / "result.json").exists()
    return subprocess.CompletedProcess(command, process.returncode, None, stderr)


@pytest.fixture(scope="session")
def kill_at_first_checkpoint() -> Callable[..., subprocess.CompletedProcess]:
    """`kill_at_first_checkpoint(command, run_dir)`: a run killed -9 mid-training."""
    return _kill_at_first_checkpoint


@pytest.fixture
def mount_tmpfs(tmp_path: Path) -> Iterator[Callable[[str], Path]]:
    """`mount_tmpfs("20m")`: a real small file system (a full disk on demand), unmounted after
    the test; the test is skipped where mounting is not permitted."""
    mounts = []

    def mount(size: str) -> Path:
        folder = tmp_path / f"disk-{len(mounts)}"
        folder.mkdir()
        made = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                              capture_output=True)  # fmt: skip
        if made.returncode != 0:
            pytest.skip("mounting a tmpfs is not permitted here")
        mounts.append(folder)
        return folder

    yield mount
    for folder in mounts:
        subprocess.run(["umount", "-l", str(folder)], check=True)


@pytest.fixture(scope="session")
def wait_for() -> Callable[..., None]:
    """`wait_for(path, process)`: until a run launched as `process` writes `path` (e.g. its
    first checkpoint, to kill it there); fails if it ends first or takes over `timeout` s."""
    return _wait_for


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Small updates on 2 shared cores: 2 threads are up to 10x slower (notes/d3rlpy.md)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _write_store(
    root: Path,
    tasks: Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray]],
    episode_length: int,
) -> DatasetStore:
    """A store of hand-made (observations, actions, rewards) per task, cut into equal episodes
    that end in a time-limit truncation, as Meta-World's do."""
    entries = {}
    for task, (observations, actions, rewards) in tasks.items():
        steps = len(observations)
        arrays = {
            "observations": np.asarray(observations, dtype=np.float32),
            "actions": np.asarray(actions, dtype=np.float32),
            "rewards": np.asarray(rewards, dtype=np.float32),
            "terminals": np.zeros(steps, dtype=bool),
            "timeouts": np.arange(steps) % episode_length == episode_length - 1,
            "episode_starts": np.arange(0, steps, episode_length, dtype=np.int64),
        }
        entries[task] = write_task(root, task, arrays)
    add_tasks_to_manifest(root, entries, {"source": "test"})
    return DatasetStore(root)


@pytest.fixture(scope="session")
def write_store() -> Callable[..., DatasetStore]:
    """`write_store(root, {task: (observations, actions, rewards)}, episode_length)`."""
    return _write_store
