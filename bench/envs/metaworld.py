"""Meta-World v3 with random goals (MT50-rand).

Every episode runs on its own goal drawn from the task's goal pool. Pools come from
`metaworld.MT1(task, seed=...)`: Meta-World ignores `reset(seed=...)`, so goals are the only
randomness and seeding the pool is what makes an evaluation reproducible
(shared/notes/metaworld-v3.md, pitfalls 2 and 6).

The stack, from inside out: the raw v3 environment (its class from `ALL_V3_ENVIRONMENTS`, on a
copy of the task's once-compiled MuJoCo model), `set_task(goal)`, and its own 500-step
truncation. Nothing else wraps it: success is read from `info["success"]`.
"""

from __future__ import annotations

import copy
import functools
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from metaworld.policies.policy import Policy

MAX_EPISODE_STEPS = 500
OBSERVATION_DIM = 39
ACTION_DIM = 4

# The scripted policies warn about their own constants on every call; it is harmless noise.
warnings.filterwarnings("ignore", message="Constant\\(s\\) may be too high")
warnings.filterwarnings("ignore", category=UserWarning, module="gymnasium")


@functools.lru_cache(maxsize=64)
def goal_pool(task: str, seed: int) -> tuple[Any, ...]:
    """The task's seeded pool of goals (Meta-World `Task` objects; 50 per task)."""
    import metaworld

    return tuple(metaworld.MT1(task, seed=seed).train_tasks)


# One model (~21 MB) is kept: an evaluation makes all of a task's envs before the next task's,
# so a larger cache would only hold memory (~630 MB for MT30) to save ~5 s per evaluation.
@functools.lru_cache(maxsize=1)
def _compiled_model(path: str) -> Any:
    """The task's model, compiled once for its envs made in a row; never simulated, only copied."""
    import mujoco

    return mujoco.MjModel.from_xml_path(path)


def _initialize_from_compiled(self: Any) -> tuple[Any, Any]:
    """gymnasium's `MujocoEnv._initialize_simulation` as 1.4 (installed here) writes it, on a copy
    of the once-compiled model; its offwidth/offheight lines only size the offscreen render
    buffer, which evaluation never uses.

    Each env gets its own copy because Meta-World edits its model (`eq_data` at init, `body_pos`
    at reset in lever-pull). A copy is bit-identical to a fresh compile: all 50 MT50 tasks gave
    the same 500-step trajectories (checked once, docs/performance.md "Bit-identity"); three
    tasks are checked by tests/bench/envs/test_metaworld.py.
    """
    import mujoco

    model = copy.copy(_compiled_model(self.fullpath))
    model.vis.global_.offwidth = max(model.vis.global_.offwidth, self.width)
    model.vis.global_.offheight = max(model.vis.global_.offheight, self.height)
    return model, mujoco.MjData(model)


def _touching_object(self: Any, object_geom_id: int) -> Any:
    """Meta-World's `touching_object` with the contacts read as arrays: its loops build a Python
    object per contact, twice a step, a quarter of a push-v3 step. The same contacts in the same
    order, their forces summed the same way (Python's `sum` from 0), so the same answer."""
    contacts, forces = self.data.contact, self.data.efc_force
    geom1, geom2 = contacts.geom1, contacts.geom2
    with_object = (geom1 == object_geom_id) | (geom2 == object_geom_id)

    def pad_force(pad: str) -> float:
        pad_id = self.data.geom(pad).id
        touching = with_object & ((geom1 == pad_id) | (geom2 == pad_id))
        return sum(forces[address] for address in contacts.efc_address[touching])

    left, right = pad_force("leftpad_geom"), pad_force("rightpad_geom")
    return 0 < left and 0 < right  # numpy's bool, as Meta-World's own returns


@functools.lru_cache(maxsize=64)
def _env_class(task: str) -> type:
    """The task's v3 class, making its MuJoCo model by copy instead of compiling its XML.

    Compiling is 175 of the ~190 ms it takes to make an env, and an evaluation makes one env
    per episode: 50 per task, so about 6 min per MT30 evaluation. A copy takes ~14 ms. The
    subclass keeps the class's name, which Meta-World reads as `task_name`. Made at run time, it
    cannot be pickled by reference: nothing here pickles an env (data workers get task names).
    It also reads the gripper's contacts without a Python object per contact (`_touching_object`).
    """
    from metaworld.env_dict import ALL_V3_ENVIRONMENTS

    base = ALL_V3_ENVIRONMENTS[task]
    namespace = {
        "_initialize_simulation": _initialize_from_compiled,
        "touching_object": _touching_object,
        "__module__": base.__module__,
    }
    return type(base.__name__, (base,), namespace)


def make_env(task: str, goal: Any) -> Any:
    """A raw Meta-World v3 env for `task` set to `goal` (call `reset()` before stepping)."""
    env = _env_class(task)()
    # MT1 goals are marked goal-observable, so set_task also rebuilds the observation space
    # with the goal's bounds (setting the flag by hand would skip that and clip the goal to 0).
    env.set_task(goal)
    return env


def sample_goals(task: str, num_episodes: int, pool_seed: int, rng: np.random.Generator) -> list:
    """`num_episodes` goals from the task's pool: distinct while the pool lasts."""
    pool = goal_pool(task, pool_seed)
    replace = num_episodes > len(pool)
    indices = rng.choice(len(pool), size=num_episodes, replace=replace)
    return [pool[i] for i in indices]


def scripted_policy(task: str) -> Policy:
    """A new instance of Meta-World's scripted policy for `task`."""
    from metaworld.policies import ENV_POLICY_MAP

    # The map's values are concrete classes, typed as their abstract base, which mypy refuses
    # to instantiate; as factories they are fine.
    make: Callable[[], Policy] = ENV_POLICY_MAP[task]
    return make()


class ScriptedExpert:
    """Meta-World's scripted expert for one task, with optional exploration noise.

    With probability `random_prob` an action is uniform in [-1, 1]^4, otherwise it is the expert's
    action plus N(0, noise_std^2), clipped to [-1, 1] (clipping leaves expert trajectories
    unchanged: the env clips them itself).
    """

    def __init__(
        self,
        task: str,
        rng: np.random.Generator | None = None,
        random_prob: float = 0.0,
        noise_std: float = 0.0,
    ) -> None:
        self.expert = scripted_policy(task)
        self.rng = rng if rng is not None else np.random.default_rng(0)
        self.random_prob = random_prob
        self.noise_std = noise_std

    def reset(self, num_episodes: int) -> None:
        """The experts are stateless."""

    def act(self, observations: np.ndarray, rewards: np.ndarray | None) -> np.ndarray:
        # float64 once noise is added; float32 again at the end
        actions: np.ndarray = np.stack([self.expert.get_action(obs) for obs in observations])
        if self.noise_std > 0:
            actions = actions + self.noise_std * self.rng.standard_normal(actions.shape)
        if self.random_prob > 0:
            random_rows = self.rng.random(len(actions)) < self.random_prob
            uniform = self.rng.uniform(-1.0, 1.0, size=actions.shape)
            actions = np.where(random_rows[:, None], uniform, actions)
        return np.clip(actions, -1.0, 1.0).astype(np.float32)
