"""MTIQL is d3rlpy's IQL with one critic head per task, fed batches built by the harness."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.data.samplers import OfflineData, Transitions
from bench.errors import UserError
from bench.process_state import capture_rng_state, restore_rng_state, seed_everything
from bench.suites import Suite
from methods.d3rlpy_glue import TaskInputs, d3rlpy, return_range_reward_scales, to_minibatch
from methods.mtiql import TaskHeadEncoder, TaskHeadEncoderWithAction, TaskHeads

SMALL = {
    "hidden_units": [64, 64],
    "batch_size": 64,
    "actor_learning_rate": 1e-3,
    "critic_learning_rate": 1e-3,
}


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def build(build_smoke):
    return functools.partial(build_smoke, "mtiql")


@pytest.fixture(scope="module")
def tiny(tiny_suite, tiny_store) -> tuple[Suite, OfflineData]:
    return tiny_suite, OfflineData(tiny_store, tiny_suite.tasks)


@pytest.fixture(scope="module")
def opposite_rewards(tmp_path_factory, write_store) -> tuple[Suite, OfflineData]:
    """Two tasks over the same states and random actions: one rewards a[0], the other -a[0].

    A few states recur, each with many actions, so the best action of a state is learnable.
    """
    root: Path = tmp_path_factory.mktemp("bandit") / "store"
    rng = np.random.default_rng(0)
    episodes, length = 8, 50
    states = rng.normal(size=(4, 39)).astype(np.float32)[rng.integers(0, 4, episodes * length)]
    actions = rng.uniform(-1, 1, size=(episodes * length, 4)).astype(np.float32)
    tasks = {
        task: (states, actions, sign * actions[:, 0])
        for task, sign in (("up", 1.0), ("down", -1.0))
    }
    store = write_store(root, tasks, length)
    suite = Suite("bandit", ("up", "down"))
    return suite, OfflineData(store, suite.tasks, prompt_episodes=0)


def _heads(module: torch.nn.Module) -> TaskHeads:
    return next(m for m in module.modules() if isinstance(m, TaskHeads))


def test_learners_are_d3rlpys_iql_with_task_head_critics(tiny, build):
    method = build(*tiny)
    modules = method.learner.impl.modules
    assert isinstance(method.learner, d3rlpy.algos.IQL)
    assert method.learner.impl.observation_shape == (39 + 2,)
    assert len(modules.q_funcs) == len(modules.targ_q_funcs) == 2
    for q_func in [*modules.q_funcs, *modules.targ_q_funcs]:
        assert isinstance(q_func.encoder, TaskHeadEncoderWithAction)
    assert isinstance(modules.value_func._encoder, TaskHeadEncoder)
    # The actor is conditioned by its input only: d3rlpy's plain MLP over [state, one-hot].
    assert isinstance(modules.policy._encoder, d3rlpy.models.torch.VectorEncoder)


def test_critic_heads_differ_by_task_and_only_the_selected_head_learns(tiny, build):
    method = build(*tiny)
    modules = method.learner.impl.modules
    state = torch.randn(6, 39)
    actions = torch.rand(6, 4) * 2 - 1
    task0 = torch.cat([state, torch.tensor([[1.0, 0.0]]).expand(6, 2)], dim=1)
    task1 = torch.cat([state, torch.tensor([[0.0, 1.0]]).expand(6, 2)], dim=1)
    for name, value in (
        ("q", lambda x: modules.q_funcs[0](x, actions).q_value),
        ("v", modules.value_func),
    ):
        network = modules.q_funcs[0] if name == "q" else modules.value_func
        assert not torch.allclose(value(task0), value(task1)), name
        network.zero_grad()
        value(task0).sum().backward()
        heads = _heads(network).linear
        assert heads.weight.grad[0].abs().sum() > 0, name
        assert torch.all(heads.weight.grad[1] == 0) and heads.bias.grad[1] == 0, name
        trunk_grads = [p.grad for n, p in network.named_parameters() if "trunk" in n]
        assert all(g is not None and g.abs().sum() > 0 for g in trunk_grads), name


def test_timeouts_are_bootstrapped_and_terminals_are_not(tiny):
    _, data = tiny
    inputs = TaskInputs.from_data(data, reward_scale=np.array([2.0, 0.5], np.float32))
    rng = np.random.default_rng(0)
    batch = Transitions(
        observations=rng.normal(size=(3, 39)),
        actions=rng.uniform(-1, 1, size=(3, 4)).astype(np.float32),
        rewards=np.array([1.0, 1.0, 1.0], np.float32),
        next_observations=rng.normal(size=(3, 39)),
        terminals=np.array([False, True, False]),
        timeouts=np.array([True, False, False]),
        task_ids=np.array([0, 1, 1]),
    )
    minibatch = to_minibatch(batch, inputs)
    np.testing.assert_array_equal(minibatch.terminals, [[0.0], [1.0], [0.0]])
    np.testing.assert_array_equal(minibatch.rewards, [[2.0], [0.5], [0.5]])
    np.testing.assert_array_equal(minibatch.intervals, np.ones((3, 1)))
    np.testing.assert_array_equal(
        minibatch.next_observations, inputs.encode(batch.next_observations, batch.task_ids)
    )
    assert minibatch.observations.shape == (3, 39 + 2)


def test_rewards_are_scaled_per_task_to_a_return_range_of_1000(tiny, build):
    """The IQL paper's r * 1000 / (R_max - R_min), over each task's training episodes."""
    _, data = tiny
    scales = return_range_reward_scales(data, 1000.0)
    for task, scale in zip(data.task_data, scales, strict=True):
        rewards = np.asarray(task.arrays.rewards, dtype=np.float64)
        returns = [
            rewards[s:e].sum() for s, e in zip(task.train_starts, task.train_ends, strict=True)
        ]
        assert scale == pytest.approx(1000.0 / (max(returns) - min(returns)), rel=1e-4)
    method = build(*tiny)
    np.testing.assert_array_equal(method.inputs.reward_scale, scales)
    unscaled = build(*tiny, reward_scaling="none")
    np.testing.assert_array_equal(unscaled.inputs.reward_scale, [1.0, 1.0])


def test_each_task_learns_its_own_values_and_policy(opposite_rewards, build):
    """Same states and actions, opposite rewards: Q, advantage and actor must follow the task."""
    _, data = opposite_rewards
    # gamma 0: Q = r; tau 0.05: the target critics that weight the actor catch up in 300 steps.
    method = build(*opposite_rewards, gamma=0.0, tau=0.05, reward_scaling="none", **SMALL)
    q_losses = [method.train_step(step)["q_loss"] for step in range(300)]
    assert np.mean(q_losses[-20:]) < 0.2 * np.mean(q_losses[:20])
    states = data.task_data[0].arrays.observations[:16]
    push = np.tile([1.0, 0.0, 0.0, 0.0], (16, 1)).astype(np.float32)
    for task_id, sign in ((0, 1.0), (1, -1.0)):
        encoded = method.inputs.encode(states, np.full(16, task_id))
        gain = method.learner.predict_value(encoded, push) - method.learner.predict_value(
            encoded, -push
        )
        assert np.all(sign * gain > 0.5), (task_id, gain)
        policy = method.policy(task_id)
        policy.reset(16)
        # Advantage-weighted regression with beta 3 on uniform a[0]: a mean of about +-0.67.
        assert np.all(sign * policy.act(states, None)[:, 0] > 0.2)


def test_resume_restores_every_network_optimizer_and_schedule_bit_for_bit(tiny, build):
    # As the runner does: global generators seeded before the build, checkpointed beside it.
    seed_everything(0)
    straight = build(*tiny)
    for step in range(4):
        straight.train_step(step)
    seed_everything(0)
    first = build(*tiny)
    for step in range(2):
        first.train_step(step)
    state, rng_state = first.state_dict(), capture_rng_state()
    seed_everything(1)
    resumed = build(*tiny, seed=7)
    resumed.load_state_dict(state)
    restore_rng_state(rng_state)
    for step in range(2, 4):
        resumed.train_step(step)
    expected, got = straight.state_dict(), resumed.state_dict()
    assert got["grad_step"] == expected["grad_step"] == 4
    for part in expected["learner"]:
        _assert_same(expected["learner"][part], got["learner"][part], part)


def _assert_same(expected, got, where: str) -> None:
    if isinstance(expected, torch.Tensor):
        assert torch.equal(expected, got), where
    elif isinstance(expected, dict):
        assert expected.keys() == got.keys(), where
        for key in expected:
            _assert_same(expected[key], got[key], f"{where}.{key}")
    elif isinstance(expected, list):
        for i, (a, b) in enumerate(zip(expected, got, strict=True)):
            _assert_same(a, b, f"{where}[{i}]")
    else:
        assert expected == got, where


def test_actor_learning_rate_decays_on_a_cosine_over_the_run_and_the_critics_does_not(tiny, build):
    method = build(*tiny, actor_lr_cosine_steps=4)
    modules = method.learner.impl.modules
    for step in range(2):
        method.train_step(step)
    assert modules.actor_optim.optim.param_groups[0]["lr"] == pytest.approx(3e-4 / 2)
    assert modules.critic_optim.optim.param_groups[0]["lr"] == 3e-4


def test_unknown_reward_scaling_is_a_user_error():
    """Checked once, from the field's Literal (bench.registry.check_field), as it is typed."""
    from bench.config import compose_run

    with pytest.raises(UserError, match=r"reward_scaling 'zscore'.*none, return_range"):
        compose_run(["method=mtiql", "method.reward_scaling=zscore"])
