"""MTBC is d3rlpy's BC on task-normalised, one-hot task-conditioned inputs."""

from __future__ import annotations

import functools
import itertools
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.data.samplers import OfflineData
from bench.errors import UserError
from bench.process_state import seed_everything
from bench.suites import Suite
from methods.d3rlpy_glue import TaskInputs, d3rlpy
from methods.mtbc import MTBCConfig

SMALL = {"hidden_units": [64, 64], "batch_size": 64, "learning_rate": 1e-3}


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def build(build_smoke):
    return functools.partial(build_smoke, "mtbc")


@pytest.fixture(scope="module")
def opposite_tasks(tmp_path_factory, write_store) -> tuple[Suite, OfflineData]:
    """Two tasks over the same states whose experts act in opposite directions."""
    root: Path = tmp_path_factory.mktemp("opposite") / "store"
    rng = np.random.default_rng(0)
    episodes, length = 8, 50
    states = rng.normal(size=(episodes * length, 39)).astype(np.float32)
    zeros = np.zeros(episodes * length)
    tasks = {
        task: (states, sign * np.tanh(states[:, :4]), zeros)
        for task, sign in (("left", -1.0), ("right", 1.0))
    }
    store = write_store(root, tasks, length)
    suite = Suite("opposite", ("left", "right"))
    return suite, OfflineData(store, suite.tasks, prompt_episodes=0)


def test_learner_is_d3rlpys_bc_on_state_plus_task_one_hot(tiny_suite, tiny_store, build):
    data = OfflineData(tiny_store, tiny_suite.tasks)
    method = build(tiny_suite, data)
    assert isinstance(method.learner, d3rlpy.algos.BC)
    assert method.learner.impl.observation_shape == (39 + 2,)
    assert method.learner.impl.action_size == 4


def test_network_is_scaled_as_configured(tiny_suite, tiny_store, build):
    """The default MLP is [1024, 1024, 512] over 39 + num_tasks inputs, then a 4-action layer."""
    data = OfflineData(tiny_store, tiny_suite.tasks)
    method = build(tiny_suite, data)
    widths = [39 + 2, *MTBCConfig().hidden_units, 4]
    expected = sum(a * b + b for a, b in itertools.pairwise(widths))
    assert method.num_parameters() == expected


def test_networks_depend_on_the_seed_only(tiny_suite, tiny_store, build):
    """d3rlpy initialises from torch's global RNG: the method seeds a fork of it."""
    data = OfflineData(tiny_store, tiny_suite.tasks)
    weights = {}
    for seed, global_seed in ((3, 1), (3, 2), (4, 1)):
        seed_everything(global_seed)
        weights[seed, global_seed] = build(tiny_suite, data, seed, **SMALL).state_dict()["learner"]
    same, other = weights[3, 1]["imitator"], weights[3, 2]["imitator"]
    assert all(torch.equal(same[key], other[key]) for key in same)
    different = weights[4, 1]["imitator"]
    assert not any(torch.equal(same[key], different[key]) for key in same if "weight" in key)


def test_inputs_are_normalised_with_each_tasks_statistics(tiny_suite, tiny_store):
    data = OfflineData(tiny_store, tiny_suite.tasks)
    inputs = TaskInputs.from_data(data)
    observations = np.random.default_rng(0).normal(size=(3, 39))
    for task in data.task_data:
        encoded = inputs.encode(observations, np.full(3, task.task_id))
        expected = (observations - task.state_mean) / task.state_std
        np.testing.assert_allclose(encoded[:, :39], expected, rtol=1e-5)
        np.testing.assert_array_equal(encoded[:, 39:], np.eye(2)[[task.task_id] * 3])
        assert encoded.dtype == np.float32


def test_policy_acts_for_all_episodes_in_one_forward(tiny_suite, tiny_store, build):
    data = OfflineData(tiny_store, tiny_suite.tasks)
    method = build(tiny_suite, data)
    calls = []
    predict = method.learner.predict
    method.learner.predict = lambda x: calls.append(x.shape) or predict(x)
    policy = method.policy(1)
    policy.reset(5)
    observations = np.random.default_rng(0).normal(size=(5, 39))
    actions = policy.act(observations, None)
    assert calls == [(5, 39 + 2)]
    expected = predict(method.inputs.encode(observations, np.ones(5, dtype=int)))
    np.testing.assert_array_equal(actions, expected)


def test_learns_opposite_actions_for_the_same_states(opposite_tasks, build):
    """Below the best task-blind error (predicting 0): only the one-hot tells the tasks apart."""
    suite, data = opposite_tasks
    method = build(suite, data, **SMALL)
    losses = [method.train_step(step)["loss"] for step in range(300)]
    task_blind_error = float(np.mean(np.tanh(data.task_data[0].arrays.observations[:, :4]) ** 2))
    assert np.mean(losses[-20:]) < 0.25 * task_blind_error
    observations = data.task_data[0].arrays.observations[:8]
    actions = {}
    for task_id in (0, 1):
        policy = method.policy(task_id)
        policy.reset(8)
        actions[task_id] = policy.act(observations, None)
    assert np.corrcoef(actions[0].ravel(), actions[1].ravel())[0, 1] < -0.8


def test_importing_the_methods_leaves_torch_globals_and_stderr_alone():
    """With CUDA, `import d3rlpy` alone turns on TF32 matmuls and compiled autograd for everyone."""
    code = (
        "import torch; torch.cuda.is_available = lambda: True; import methods; "
        "print(torch.get_float32_matmul_precision(), torch._dynamo.config.compiled_autograd)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["highest", "False"]
    assert "Gym has been unmaintained" not in done.stderr


def test_unknown_policy_type_is_a_user_error():
    """Checked once, from the field's Literal (bench.registry.check_field), as it is typed."""
    from bench.config import compose_run

    with pytest.raises(UserError, match=r"policy_type 'gaussian'.*deterministic, stochastic"):
        compose_run(["method=mtbc", "method.policy_type=gaussian"])
