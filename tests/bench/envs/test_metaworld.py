"""Meta-World envs made from a once-compiled model behave exactly as freshly compiled ones."""

import numpy as np
import pytest
from metaworld.env_dict import ALL_V3_ENVIRONMENTS

from bench.envs import metaworld


def _trajectory(env, goal, task: str, steps: int = 150) -> np.ndarray:
    """Observations, rewards and success of a noisy expert; the noise is seeded identically."""
    policy = metaworld.scripted_policy(task)
    rng = np.random.default_rng(1)
    env.set_task(goal)
    observation, _ = env.reset()
    rows = []
    for _ in range(steps):
        action = np.clip(policy.get_action(observation) + rng.normal(0, 0.3, 4), -1, 1)
        observation, reward, _, _, info = env.step(action)
        rows.append(np.concatenate([observation, [reward, info["success"]]]))
    return np.stack(rows)


# lever-pull moves a body in its model at every reset; pick-place is contact-heavy.
@pytest.mark.parametrize("task", ["lever-pull-v3", "pick-place-v3", "door-open-v3"])
def test_an_env_on_a_copied_model_matches_a_fresh_compile_bit_for_bit(task):
    pool = metaworld.goal_pool(task, 0)
    fresh = ALL_V3_ENVIRONMENTS[task]()
    expected = _trajectory(fresh, pool[3], task)

    # The template is copied for every env: one that ran on another goal changes nothing.
    earlier = metaworld.make_env(task, pool[0])
    _trajectory(earlier, pool[0], task)
    copies_before = metaworld._compiled_model.cache_info().hits
    env = metaworld.make_env(task, pool[3])

    assert metaworld._compiled_model.cache_info().hits == copies_before + 1  # copied, not compiled

    np.testing.assert_array_equal(_trajectory(env, pool[3], task), expected)
    assert env.model is not earlier.model
    template = metaworld._compiled_model(env.fullpath)
    assert not np.shares_memory(env.model.body_pos, template.body_pos)  # a copy, not a view
    assert isinstance(env, ALL_V3_ENVIRONMENTS[task])
    assert env.task_name == fresh.task_name


def test_touching_object_answers_as_meta_worlds_own_at_every_step():
    task = "pick-place-v3"  # its reward asks whether the pads grip the object, every step
    goal = metaworld.goal_pool(task, 0)[1]
    env = metaworld.make_env(task, goal)
    policy, rng = metaworld.scripted_policy(task), np.random.default_rng(0)
    observation, _ = env.reset()
    object_id, answers = env._get_id_main_object(), []
    for _ in range(150):
        action = np.clip(policy.get_action(observation) + rng.normal(0, 0.1, 4), -1, 1)
        observation, *_ = env.step(action)
        own = ALL_V3_ENVIRONMENTS[task].touching_object(env, object_id)  # Meta-World's loop
        ours = env.touching_object(object_id)
        assert ours == own and type(ours) is type(own)
        answers.append(bool(ours))
    assert any(answers) and not all(answers)  # the expert grips the object, after a while
