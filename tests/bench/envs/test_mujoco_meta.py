"""The MuJoCo meta-RL envs: Prompt-DT's observations, rewards, task parameters and episode ends.

Rewards are recomputed here from the simulator state with the coefficients written out (not
imported), so a wrong coefficient in the module fails a test.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from bench.envs.mujoco_meta import (
    ACTION_DIM,
    EPISODE_STEPS,
    FAMILIES,
    NUM_TASKS,
    OBSERVATION_DIM,
    make_env,
    parse_task,
    task_name,
    task_parameters,
)
from bench.errors import UserError

DT = 0.05  # 0.01 s timestep x frame skip 5, as the old gym v2 envs


def _set_state(env, rng: np.random.Generator, z: float | None = None) -> None:
    """A fixed, non-trivial state (moving, so that forward terms are not zero)."""
    raw = env.unwrapped
    qpos = raw.init_qpos + rng.uniform(-0.2, 0.2, raw.model.nq)
    qvel = raw.init_qvel + rng.normal(0.0, 1.0, raw.model.nv)
    qvel[0] = 2.0  # run forward along x
    if z is not None:
        qpos[2] = z
    raw.set_state(qpos, qvel)


@pytest.mark.parametrize("family", FAMILIES)
def test_observation_and_action_dims_are_prompt_dts(family):
    env = make_env(task_name(family, 1))
    obs, info = env.reset(seed=0)
    assert env.observation_space.shape == obs.shape == (OBSERVATION_DIM[family],)
    assert env.action_space.shape == (ACTION_DIM[family],)
    assert env.unwrapped.dt == pytest.approx(DT)
    assert info["task_parameter"] == task_parameters(family)[1]
    assert (OBSERVATION_DIM[family], ACTION_DIM[family]) in {(20, 6), (27, 8)}


def test_cheetah_observation_is_qpos_without_x_then_qvel_then_torso_position():
    env = make_env("cheetah_vel-3")
    env.reset(seed=1)
    _set_state(env, np.random.default_rng(0))
    obs, *_ = env.step(np.zeros(6))
    data = env.unwrapped.data
    np.testing.assert_allclose(obs[:8], data.qpos[1:])
    np.testing.assert_allclose(obs[8:17], data.qvel)
    np.testing.assert_allclose(obs[17:], data.body("torso").xpos)
    # The x position is observed through the torso. MuJoCo computes body positions before it
    # integrates, so xpos trails qpos by one 0.01 s substep (as in Prompt-DT's mujoco-py).
    assert obs[17] != data.qpos[0]
    assert obs[17] == pytest.approx(data.qpos[0], abs=0.01 * 2 * abs(data.qvel[0]) + 1e-3)


def test_ant_observation_is_qpos_without_xy_then_qvel():
    env = make_env("ant_dir-0")
    env.reset(seed=1)
    obs, *_ = env.step(np.zeros(8))
    data = env.unwrapped.data
    np.testing.assert_allclose(obs, np.concatenate([data.qpos[2:], data.qvel]))


def test_task_parameters_are_deterministic_and_in_prompt_dts_ranges():
    assert task_parameters("cheetah_dir") == (1.0, -1.0)  # index 0 forward, 1 backward
    velocities = task_parameters("cheetah_vel")
    assert len(velocities) == 40
    assert velocities[0] == pytest.approx(0.075) and velocities[-1] == pytest.approx(3.0)
    assert velocities[2] == pytest.approx(0.225)  # a test task of Table 5
    assert np.allclose(np.diff(velocities), 0.075)
    goals = task_parameters("ant_dir", seed=0)
    assert len(goals) == 50 and all(0.0 <= g < 2 * math.pi for g in goals)
    assert len(set(goals)) == 50
    task_parameters.cache_clear()
    assert task_parameters("ant_dir", seed=0) == goals  # recomputed, not just cached


def test_seeds_change_ant_goals_but_not_the_fixed_cheetah_lists():
    assert task_parameters("ant_dir", seed=0) != task_parameters("ant_dir", seed=1)
    for family in ("cheetah_dir", "cheetah_vel"):
        assert task_parameters(family, seed=0) == task_parameters(family, seed=5)
    assert make_env("ant_dir-4", seed=3).parameter == task_parameters("ant_dir", seed=3)[4]
    assert make_env("ant_dir-4", parameter=0.5).parameter == 0.5


@pytest.mark.parametrize(("task", "target"), [("cheetah_vel-7", None), ("cheetah_vel-0", 1.3)])
def test_cheetah_vel_reward_is_minus_speed_error_minus_control(task, target):
    env = make_env(task, parameter=target)
    env.reset(seed=2)
    _set_state(env, np.random.default_rng(1))
    x_before = env.unwrapped.data.qpos[0]
    action = np.linspace(-0.9, 0.9, 6)
    _, reward, terminated, truncated, info = env.step(action)
    velocity = (env.unwrapped.data.qpos[0] - x_before) / DT
    goal = target if target is not None else 0.6  # index 7 of the 0.075-step grid
    forward = -abs(velocity - goal)
    ctrl = 0.05 * np.sum(action**2)
    assert info["forward_reward"] == pytest.approx(forward)
    assert info["ctrl_cost"] == pytest.approx(ctrl)
    assert reward == pytest.approx(forward - ctrl)
    assert info["task_parameter"] == pytest.approx(goal)
    assert not terminated and not truncated


def test_cheetah_dir_direction_flips_the_forward_term_only():
    action = np.full(6, 0.5)
    results = []
    for task in ("cheetah_dir-0", "cheetah_dir-1"):
        env = make_env(task)
        env.reset(seed=3)
        _set_state(env, np.random.default_rng(2))
        x_before = env.unwrapped.data.qpos[0]
        _, reward, _, _, info = env.step(action)
        velocity = (env.unwrapped.data.qpos[0] - x_before) / DT
        results.append((reward, info, velocity))
    (r_fwd, i_fwd, v_fwd), (r_bwd, i_bwd, v_bwd) = results
    assert v_fwd == pytest.approx(v_bwd) and abs(v_fwd) > 0.1  # same physics, moving
    assert i_fwd["forward_reward"] == pytest.approx(v_fwd)
    assert i_bwd["forward_reward"] == pytest.approx(-v_fwd)
    assert i_fwd["ctrl_cost"] == i_bwd["ctrl_cost"] == pytest.approx(0.05 * 6 * 0.25)
    assert r_fwd - r_bwd == pytest.approx(2 * v_fwd)


def test_ant_dir_reward_projects_velocity_on_the_goal_and_charges_prompt_dts_costs():
    goal = 2.0  # a direction with both x and y components
    env = make_env("ant_dir-0", parameter=goal)
    env.reset(seed=4)
    _set_state(env, np.random.default_rng(3), z=0.6)
    data = env.unwrapped.data
    xy_before = data.body("torso").xpos[:2].copy()
    action = np.linspace(-0.8, 0.8, 8)
    _, reward, terminated, truncated, info = env.step(action)
    velocity = (data.body("torso").xpos[:2] - xy_before) / DT
    forward = velocity[0] * math.cos(goal) + velocity[1] * math.sin(goal)
    ctrl = 0.5 * np.sum(action**2)
    contact = 0.5e-3 * np.sum(np.clip(data.cfrc_ext, -1.0, 1.0) ** 2)
    assert info["forward_reward"] == pytest.approx(forward)
    assert info["ctrl_cost"] == pytest.approx(ctrl)
    assert info["contact_cost"] == pytest.approx(contact)
    assert info["survive_reward"] == 1.0
    assert reward == pytest.approx(forward - ctrl - contact + 1.0)
    assert not terminated and not truncated
    assert not any(key.startswith("reward_") for key in info)  # gymnasium's own terms dropped


def test_ant_contact_cost_uses_real_contact_forces():
    env = make_env("ant_dir-1")
    env.reset(seed=5)
    costs = [env.step(np.zeros(8))[4]["contact_cost"] for _ in range(10)]
    assert max(costs) > 0.0  # standing on the floor: v5 computes cfrc_ext (old mujoco-py gave 0)


def test_ant_terminates_when_unhealthy_and_still_gets_the_survive_reward():
    env = make_env("ant_dir-2")
    env.reset(seed=6)
    _set_state(env, np.random.default_rng(4), z=1.5)  # torso above the healthy range [0.2, 1]
    _, _, terminated, truncated, info = env.step(np.zeros(8))
    assert terminated and not truncated
    assert info["survive_reward"] == 1.0


@pytest.mark.parametrize("task", ["cheetah_vel-5", "ant_dir-3"])
def test_episodes_truncate_at_200_steps(task):
    env = make_env(task)
    env.reset(seed=7)
    action = np.zeros(env.action_space.shape)
    for step in range(1, EPISODE_STEPS + 1):
        _, _, terminated, truncated, _ = env.step(action)
        assert not terminated  # a still ant stands: it is healthy
        assert truncated == (step == EPISODE_STEPS)


def test_task_names_round_trip():
    for family in FAMILIES:
        for index in range(NUM_TASKS[family]):
            assert parse_task(task_name(family, index)) == (family, index)
    assert task_name("cheetah_vel", 7) == "cheetah_vel-7"


@pytest.mark.parametrize(
    "name",
    [
        "cheetah_vel-40",
        "cheetah_dir-2",
        "cheetah_vel-07",
        "cheetah_vel",
        "hopper_vel-1",
        "cheetah_vel--1",
        "ant_dir-x",
        "ant_dir-",
        "",
        "cheetah-vel-3",
        "ant_dir-1.0",
    ],
)
def test_parse_task_rejects_bad_names(name):
    with pytest.raises(UserError):
        parse_task(name)


def test_bad_family_or_index_is_a_user_error():
    with pytest.raises(UserError, match="choose one of"):
        task_parameters("hopper_vel")
    with pytest.raises(UserError, match=r"0\.\.39"):
        task_name("cheetah_vel", 40)
    with pytest.raises(UserError):
        make_env("walker_vel-0")
