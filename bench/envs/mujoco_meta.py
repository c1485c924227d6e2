"""The MuJoCo meta-RL task families of HarmoDT's Table 4: cheetah_dir, cheetah_vel, ant_dir.

They follow Prompt-DT's environments (github.com/mxu34/prompt-dt, `envs/mujoco-control-envs`),
rebuilt on gymnasium's HalfCheetah-v5 and Ant-v5: gymnasium supplies the physics, the reset noise
and the Ant's unhealthy termination; `TaskReward` rebuilds Prompt-DT's observation and its
task-dependent reward. Every choice, and every difference from Prompt-DT, is in
docs/unseen-envs.md.

A task is `f"{family}-{index}"` (Prompt-DT's file naming). Its parameter is fixed per index:
+1 / -1 (forward / backward) for cheetah_dir, a target velocity for cheetah_vel, a goal angle in
radians for ant_dir.
"""

from __future__ import annotations

import functools
import math
from typing import TYPE_CHECKING, Any, cast

import gymnasium
import numpy as np

from bench.errors import UserError, unknown_choice

if TYPE_CHECKING:
    from gymnasium.envs.mujoco.mujoco_env import MujocoEnv

FAMILIES: tuple[str, ...] = ("cheetah_dir", "cheetah_vel", "ant_dir")
EPISODE_STEPS = 200  # Prompt-DT's max_ep_len for all three families
NUM_TASKS: dict[str, int] = {"cheetah_dir": 2, "cheetah_vel": 40, "ant_dir": 50}
OBSERVATION_DIM: dict[str, int] = {"cheetah_dir": 20, "cheetah_vel": 20, "ant_dir": 27}
ACTION_DIM: dict[str, int] = {"cheetah_dir": 6, "cheetah_vel": 6, "ant_dir": 8}

# Reward coefficients, as Prompt-DT's envs use them (not gymnasium's defaults: HalfCheetah-v5
# charges 0.1 |a|^2 and its Ant gives no survive reward on the step that ends the episode).
CHEETAH_CTRL_WEIGHT = 0.05
ANT_CTRL_WEIGHT = 0.5
ANT_CONTACT_WEIGHT = 5e-4
ANT_CONTACT_CLIP = 1.0
ANT_SURVIVE_REWARD = 1.0

# The physics settings that make gymnasium v5 match the old gym v2 envs; passed explicitly so a
# change of gymnasium's defaults cannot move them silently (dt = 0.01 s timestep x 5 = 0.05 s).
_COMMON_KWARGS: dict[str, Any] = {"frame_skip": 5, "reset_noise_scale": 0.1}
_ANT_KWARGS: dict[str, Any] = {
    "terminate_when_unhealthy": True,  # Prompt-DT's Ant is done when the torso leaves [0.2, 1]
    "healthy_z_range": (0.2, 1.0),
    "include_cfrc_ext_in_observation": False,  # Prompt-DT observes qpos[2:] and qvel only
}

# Mixed into the seed so ant_dir's goal stream never coincides with another seeded stream.
_ANT_DIR_STREAM = 0xA17D


# The task parameter's name in Prompt-DT's config pickles and in a store's manifest entries.
PARAMETER_NAMES = {"cheetah_dir": "direction", "cheetah_vel": "velocity", "ant_dir": "goal"}


def _check_family(family: str) -> None:
    if family not in FAMILIES:
        raise unknown_choice("task family", family, FAMILIES)


def task_name(family: str, index: int) -> str:
    """`"cheetah_vel-7"` for (`"cheetah_vel"`, 7): Prompt-DT's naming of a task."""
    _check_family(family)
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < NUM_TASKS[family]:
        raise UserError(
            f"task index {index!r} out of range for {family}: 0..{NUM_TASKS[family] - 1}"
        )
    return f"{family}-{index}"


def parse_task(name: str) -> tuple[str, int]:
    """(`family`, `index`) of a task name such as `"ant_dir-12"`; a UserError for any other."""
    family, dash, index = str(name).rpartition("-")
    if not dash or family not in FAMILIES:
        raise UserError(
            f"unknown task {name!r}; expected <family>-<index> with family one of: "
            + ", ".join(FAMILIES)
        )
    # Only the canonical spelling ("-7", not "-07" or "- 7") names a task, so one task has one name.
    if not index.isdigit() or str(int(index)) != index:
        raise UserError(f"bad task index in {name!r}: expected a non-negative integer")
    task_name(family, int(index))  # range check, same message as task_name
    return family, int(index)


@functools.lru_cache(maxsize=32)
def task_parameters(family: str, seed: int = 0) -> tuple[float, ...]:
    """The task parameter of every index of `family`, identical for every method.

    cheetah_dir and cheetah_vel are fixed lists in Prompt-DT (index 0 forward, 1 backward; a grid
    of 40 velocities from 0.075 to 3.0, which its config pickles confirm), so `seed` does not
    change them. ant_dir's goals are uniform on [0, 2 pi) as in Prompt-DT, drawn from
    `default_rng([seed, _ANT_DIR_STREAM])` (Prompt-DT drew them unseeded and kept the draw).
    """
    _check_family(family)
    if family == "cheetah_dir":
        return (1.0, -1.0)
    if family == "cheetah_vel":
        return tuple(float(v) for v in np.linspace(0.075, 3.0, NUM_TASKS[family]))
    rng = np.random.default_rng([seed, _ANT_DIR_STREAM])
    return tuple(float(g) for g in rng.uniform(0.0, 2.0 * math.pi, size=NUM_TASKS[family]))


class TaskReward(gymnasium.Wrapper):
    """Prompt-DT's observation and task reward on top of a gymnasium v5 HalfCheetah or Ant.

    The inner env's own reward is discarded, and so are its `reward_*` info keys (they hold
    gymnasium's terms, not ours); its position / velocity keys stay. `info` carries
    `forward_reward`, `ctrl_cost`, `contact_cost`, `survive_reward` (costs are positive:
    reward = forward_reward - ctrl_cost - contact_cost + survive_reward) and `task_parameter`.
    """

    def __init__(self, env: gymnasium.Env, family: str, parameter: float) -> None:
        super().__init__(env)
        self.family = family
        self.parameter = float(parameter)
        self.observation_space = gymnasium.spaces.Box(
            -np.inf, np.inf, shape=(OBSERVATION_DIM[family],), dtype=np.float64
        )

    def _mujoco_data(self) -> Any:
        """The inner env's MuJoCo state (gymnasium types `unwrapped` as a plain Env)."""
        return cast("MujocoEnv", self.env.unwrapped).data

    def _observation(self) -> np.ndarray:
        data = self._mujoco_data()
        if self.family == "ant_dir":
            return np.concatenate([data.qpos[2:], data.qvel])
        # HalfCheetah: Prompt-DT appends the torso's position (x included) to gym's 17 numbers.
        return np.concatenate([data.qpos[1:], data.qvel, data.body("torso").xpos])

    def reset(self, **kwargs: Any) -> tuple[np.ndarray, dict[str, Any]]:
        _, info = self.env.reset(**kwargs)
        return self._observation(), {**info, "task_parameter": self.parameter}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        _, _, terminated, truncated, inner = self.env.step(action)
        info = {k: v for k, v in inner.items() if not k.startswith("reward_")}
        # v5 measures velocity as Prompt-DT does: the change of qpos[0] (HalfCheetah) or of the
        # torso's xy position (Ant) over one step, divided by dt.
        velocity = info["x_velocity"]
        squared_action = float(np.sum(np.square(action)))
        if self.family == "ant_dir":
            direction = (math.cos(self.parameter), math.sin(self.parameter))
            forward = direction[0] * velocity + direction[1] * info["y_velocity"]
            forces = np.clip(self._mujoco_data().cfrc_ext, -ANT_CONTACT_CLIP, ANT_CONTACT_CLIP)
            terms = {
                "forward_reward": forward,
                "ctrl_cost": ANT_CTRL_WEIGHT * squared_action,
                "contact_cost": ANT_CONTACT_WEIGHT * float(np.sum(np.square(forces))),
                # Prompt-DT pays it on every step, the terminating one included.
                "survive_reward": ANT_SURVIVE_REWARD,
            }
        else:
            if self.family == "cheetah_dir":
                forward = self.parameter * velocity
            else:
                forward = -abs(velocity - self.parameter)
            terms = {
                "forward_reward": forward,
                "ctrl_cost": CHEETAH_CTRL_WEIGHT * squared_action,
                "contact_cost": 0.0,
                "survive_reward": 0.0,
            }
        terms = {k: float(v) for k, v in terms.items()}
        reward = (
            terms["forward_reward"]
            - terms["ctrl_cost"]
            - terms["contact_cost"]
            + terms["survive_reward"]
        )
        info.update(terms, task_parameter=self.parameter)
        return self._observation(), reward, terminated, truncated, info


def make_env(task: str, parameter: float | None = None, seed: int = 0) -> gymnasium.Env:
    """The env of `task` (e.g. `"cheetah_vel-7"`), truncating at EPISODE_STEPS.

    `parameter` overrides the task's parameter (e.g. a goal stored with imported data); by
    default it is `task_parameters(family, seed)[index]`. `seed` only chooses the parameters:
    seed the episodes with `env.reset(seed=...)`.
    """
    family, index = parse_task(task)
    if parameter is None:
        parameter = task_parameters(family, seed)[index]
    if family == "ant_dir":
        inner = gymnasium.make(
            "Ant-v5", max_episode_steps=EPISODE_STEPS, **_COMMON_KWARGS, **_ANT_KWARGS
        )
    else:
        inner = gymnasium.make("HalfCheetah-v5", max_episode_steps=EPISODE_STEPS, **_COMMON_KWARGS)
    return TaskReward(inner, family, parameter)
