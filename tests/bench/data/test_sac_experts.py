"""The meta-RL families' generated data: SAC experts rolled out into the store, resumably."""

from __future__ import annotations

import json
import shutil

import numpy as np

from bench.data.sac_experts import generate_meta_rl_dataset
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
    (copy / ".experts").mkdir(parents=True)
    shutil.copy(source / ".experts" / "cheetah_vel.pt", copy / ".experts")
    expert_time = (copy / ".experts" / "cheetah_vel.pt").stat().st_mtime_ns
    store = generate_meta_rl_dataset(
        copy, ["cheetah_vel-7"], SMOKE_EPISODES, SMOKE_EXPERT_STEPS, progress=False
    )
    assert (copy / ".experts" / "cheetah_vel.pt").stat().st_mtime_ns == expert_time
    original = DatasetStore(source).open_task("cheetah_vel-7")
    again = store.open_task("cheetah_vel-7")
    for name in ("observations", "actions", "rewards", "timeouts", "episode_starts"):
        assert np.array_equal(getattr(original, name), getattr(again, name)), name
    listed = json.loads((copy / "manifest.json").read_text())["tasks"]
    assert listed["cheetah_vel-7"]["expert_mean_return"] == (
        DatasetStore(source).manifest["tasks"]["cheetah_vel-7"]["expert_mean_return"]
    )
