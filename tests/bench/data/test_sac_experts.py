"""The meta-RL families' generated data: SAC experts rolled out into the store, resumably."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time

import numpy as np

from bench.data.locations import expert_path
from bench.data.sac_experts import generate_sac_dataset
from bench.data.store import DatasetStore
from bench.envs import mujoco_meta
from bench.suites import get_suite

SMOKE_EPISODES, SMOKE_EXPERT_STEPS = 6, 300  # configs/scale/smoke.yaml


def test_every_cheetah_vel_task_is_written_with_its_parameter_and_expert_return(
    meta_rl_data_root,
):
    store = DatasetStore(meta_rl_data_root / f"sac-ep{SMOKE_EPISODES}")
    suite = get_suite("cheetah_vel")
    assert set(store.tasks) == {f"cheetah_vel-{i}" for i in range(40)} == set(suite.data_tasks)
    parameters = mujoco_meta.task_parameters("cheetah_vel", 0)
    manifest = store.manifest
    assert manifest["source"] == "sac"
    assert manifest["generator"]["expert_steps"] == SMOKE_EXPERT_STEPS
    for task in ("cheetah_vel-2", "cheetah_vel-39"):
        arrays = store.open_task(task)
        entry = manifest["tasks"][task]
        index = int(task.rsplit("-", 1)[1])
        assert entry["task_parameters"] == {"velocity": parameters[index]}
        assert arrays.num_episodes == SMOKE_EPISODES
        assert arrays.observations.shape[1] == mujoco_meta.OBSERVATION_DIM["cheetah_vel"]
        assert arrays.actions.shape[1] == mujoco_meta.ACTION_DIM["cheetah_vel"]
        assert np.abs(np.asarray(arrays.actions)).max() <= 1.0
        # HalfCheetah never terminates: every episode runs its 200 steps into a time limit.
        assert arrays.num_steps == SMOKE_EPISODES * mujoco_meta.EPISODE_STEPS
        assert not np.asarray(arrays.terminals).any()
        assert np.flatnonzero(arrays.timeouts).tolist() == list(range(199, 1200, 200))
        returns = np.asarray(arrays.rewards).reshape(SMOKE_EPISODES, -1).sum(axis=1)
        assert np.isclose(entry["expert_mean_return"], returns.mean(), rtol=1e-5)


def test_a_rerun_reuses_the_expert_and_regenerates_a_lost_task_identically(
    meta_rl_data_root, tmp_path
):
    """Resuming into a fresh store with the same saved expert makes the same bits."""
    source = meta_rl_data_root / f"sac-ep{SMOKE_EPISODES}"
    copy = tmp_path / "store"
    expert = expert_path(copy, "cheetah_vel", SMOKE_EXPERT_STEPS, seed=0)
    expert.parent.mkdir(parents=True)
    shutil.copy(expert_path(source, "cheetah_vel", SMOKE_EXPERT_STEPS, seed=0), expert)
    expert_time = expert.stat().st_mtime_ns
    store = generate_sac_dataset(
        copy, ["cheetah_vel-7"], SMOKE_EPISODES, SMOKE_EXPERT_STEPS, progress=False
    )
    assert expert.stat().st_mtime_ns == expert_time
    assert list(expert.parent.glob("*.pt")) == [expert]  # reused, no other trained
    # An expert of other settings is another file: never loaded in its place.
    assert expert_path(copy, "cheetah_vel", SMOKE_EXPERT_STEPS + 1, seed=0) != expert
    assert expert_path(copy, "cheetah_vel", SMOKE_EXPERT_STEPS, seed=1) != expert
    original = DatasetStore(source).open_task("cheetah_vel-7")
    again = store.open_task("cheetah_vel-7")
    for name in ("observations", "actions", "rewards", "timeouts", "episode_starts"):
        assert np.array_equal(getattr(original, name), getattr(again, name)), name
    listed = json.loads((copy / "manifest.json").read_text())["tasks"]
    assert listed["cheetah_vel-7"]["expert_mean_return"] == (
        DatasetStore(source).manifest["tasks"]["cheetah_vel-7"]["expert_mean_return"]
    )


# A process that makes the tasks argv[4:] of the store at argv[1] once argv[2] exists (so that
# two start at once, d3rlpy imported), counting what it made: experts trained, tasks rolled out.
# It takes its first task's lock a second before the others: time for the other process to
# take its own first one.
_MAKE_ON_GO = """
import json, sys, time
from pathlib import Path
import torch
from bench.data import sac_experts
from bench.data.writers import TaskLocks
torch.set_num_threads(1)  # two threads on two busy cores: SAC's updates are 50x slower
store, go, ready = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
made = {"experts": 0, "tasks": 0}
load_or_train, roll_out = sac_experts._load_or_train_expert, sac_experts.roll_out
def counting_trainer(path, *args):
    made["experts"] += not path.exists()
    return load_or_train(path, *args)
def counting_roll_out(*args):
    made["tasks"] += 1
    return roll_out(*args)
sac_experts._load_or_train_expert, sac_experts.roll_out = counting_trainer, counting_roll_out
take_free = TaskLocks.take_free
def first_then_the_rest(self, tasks):
    first = take_free(self, tasks[:1])
    time.sleep(1.0)
    return first + take_free(self, tasks[1:])
TaskLocks.take_free = first_then_the_rest
sac_experts._make_learner("cheetah_vel", 0)
ready.touch()
while not go.exists():
    time.sleep(0.01)
sac_experts.generate_sac_dataset(store, sys.argv[4:], 2, 20, progress=False)
print(json.dumps(made))
"""


def test_two_processes_asking_for_one_store_make_it_once(tmp_path):
    """Asked in opposite orders, each takes one task's lock and then waits for the other's."""
    store, go, tasks = tmp_path / "store", tmp_path / "go", ["cheetah_vel-0", "cheetah_vel-1"]
    command = [sys.executable, "-c", _MAKE_ON_GO, str(store), str(go)]
    processes = [
        subprocess.Popen(
            [*command, str(tmp_path / f"ready{i}"), *(tasks if i == 0 else tasks[::-1])],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    deadline = time.monotonic() + 120
    while not all((tmp_path / f"ready{i}").exists() for i in range(2)):
        assert time.monotonic() < deadline and all(p.poll() is None for p in processes)
        time.sleep(0.01)
    go.touch()
    outputs = [process.communicate(timeout=180) for process in processes]
    assert [process.returncode for process in processes] == [0, 0], outputs
    made = [json.loads(out) for out, _ in outputs]
    assert made[0]["tasks"] == made[1]["tasks"] == 1  # each made the task it had locked
    assert sum(m["experts"] for m in made) == 1  # the second waited for the expert, then loaded it
    assert set(DatasetStore(store).tasks) == set(tasks)
    DatasetStore(store).verify()
