"""The scripted-expert generator: layout, determinism, resuming, and the noise schedule."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from bench.cli import main
from bench.data.generate import generate_dataset, noise_schedule
from bench.data.store import ARRAY_NAMES, DatasetStore
from bench.errors import UserError
from bench.suites import get_suite

TASKS = ["basketball-v3", "reach-v3"]
EPISODES = 3


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> DatasetStore:
    root = tmp_path_factory.mktemp("scripted")
    return generate_dataset(root, TASKS, EPISODES, seed=0, pool_seed=0, workers=2, progress=False)


def file_mtimes(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.glob("*/*.npy")}


def test_noise_schedule_anneals_from_random_to_pure_expert():
    assert noise_schedule(0, 10) == (1.0, 0.5)
    assert noise_schedule(9, 10) == (0.0, 0.0)
    middle = noise_schedule(3, 7)
    assert middle == pytest.approx((0.5, 0.25))
    probs = [noise_schedule(e, 10)[0] for e in range(10)]
    assert probs == sorted(probs, reverse=True)


def test_each_task_holds_full_500_step_episodes_ending_in_timeouts(generated):
    assert generated.tasks == TASKS
    for task in TASKS:
        arrays = generated.open_task(task)
        assert arrays.observations.shape == (EPISODES * 500, 39)
        assert arrays.actions.shape == (EPISODES * 500, 4)
        assert arrays.rewards.shape == (EPISODES * 500,)
        np.testing.assert_array_equal(np.flatnonzero(arrays.timeouts), [499, 999, 1499])
        assert not arrays.terminals.any()
        np.testing.assert_array_equal(arrays.episode_starts, [0, 500, 1000])
        assert np.abs(arrays.actions).max() <= 1.0
    generator = generated.manifest["generator"]
    assert generated.manifest["source"] == "scripted"
    assert (generator["episodes_per_task"], generator["seed"], generator["pool_seed"]) == (3, 0, 0)


def test_episodes_go_from_random_to_expert(generated):
    # Uniform-random actions earn ~230 on reach, the expert ~4800 (notes/metaworld-v3.md).
    arrays = generated.open_task("reach-v3")
    returns = [arrays.rewards[s : s + 500].sum() for s in arrays.episode_starts]
    assert returns[0] < 1000 < 4000 < returns[-1]


def test_generation_is_deterministic_across_workers_and_resumes(generated, tmp_path):
    # One task first, then both with one worker: resuming and worker count change nothing.
    generate_dataset(tmp_path, ["reach-v3"], EPISODES, workers=1, progress=False)
    again = generate_dataset(tmp_path, TASKS, EPISODES, workers=1, progress=False)

    assert again.tasks == TASKS
    for task in TASKS:
        for name in ARRAY_NAMES:
            first = (generated.root / task / f"{name}.npy").read_bytes()
            assert (tmp_path / task / f"{name}.npy").read_bytes() == first, (task, name)


def test_rerun_skips_finished_tasks(generated):
    manifest_before = (generated.root / "manifest.json").read_text()
    mtimes_before = file_mtimes(generated.root)

    generate_dataset(generated.root, TASKS, EPISODES, workers=2, progress=False)

    assert (generated.root / "manifest.json").read_text() == manifest_before
    assert file_mtimes(generated.root) == mtimes_before


@pytest.mark.parametrize(
    "settings, named",
    [({"episodes_per_task": 4}, "episodes_per_task 3"), ({"seed": 1}, "seed 0"),
     ({"pool_seed": 2}, "pool_seed 0")],
)  # fmt: skip
def test_other_settings_in_an_existing_dataset_are_refused(generated, settings, named):
    arguments = {"episodes_per_task": EPISODES, "seed": 0, "pool_seed": 0, **settings}
    with pytest.raises(UserError, match=f"other settings: {named}"):
        generate_dataset(generated.root, TASKS, progress=False, **arguments)


def test_unknown_task_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="unknown Meta-World v3 task 'reach-v2'"):
        generate_dataset(tmp_path, ["reach-v2"], 1, progress=False)
    assert not (tmp_path / "manifest.json").exists()


def test_rerun_removes_staging_folders_of_dead_writers(generated):
    finished = subprocess.Popen(["true"])
    finished.wait()
    abandoned = generated.root / f".tmp-reach-v3-{finished.pid}@{socket.gethostname()}"
    abandoned.mkdir()
    (abandoned / "observations.npy").write_bytes(b"half a file")

    generate_dataset(generated.root, TASKS, EPISODES, workers=2, progress=False)

    assert not abandoned.exists()


def listed_tasks(store: Path) -> list[str]:
    try:
        return list(json.loads((store / "manifest.json").read_text())["tasks"])
    except FileNotFoundError:
        return []


def wait_until(condition: Callable[[], object], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_ctrl_c_saves_finished_tasks_in_one_line_and_a_rerun_completes_them(tmp_path):
    store = tmp_path / "scripted-ep1"
    arguments = ["tasks=mt5", "episodes_per_task=1", f"data.root={tmp_path}", "progress=false"]
    # In a session of its own, like a shell job: a terminal's Ctrl-C reaches its whole process
    # group, the generation's workers included.
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.cli", "data", "generate", *arguments],
        cwd=tmp_path,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert wait_until(lambda: listed_tasks(store) or process.poll() is not None, 120)
        os.killpg(process.pid, signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)

    saved = listed_tasks(store)
    assert "Traceback" not in stderr
    assert stderr == (
        f"interrupted: {len(saved)} of 5 tasks are saved in {store}; "
        "run the same command to resume\n"
    )
    assert process.returncode == 130
    assert 1 <= len(saved) < 5
    assert not list(store.glob(".tmp-*"))

    def group_is_gone() -> bool:  # no worker lives on to write after the parent has gone
        try:
            os.killpg(process.pid, 0)
        except ProcessLookupError:
            return True
        return False

    assert wait_until(group_is_gone, 10)

    assert main(["data", "generate", *arguments]) == 0
    assert DatasetStore(store).tasks == list(get_suite("mt5").tasks)
    assert main(["data", "verify", str(store)]) == 0
