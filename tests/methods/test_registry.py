"""Every registered method builds, trains a few steps, acts, and resumes from its state_dict."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bench.config import group_choices
from bench.data.samplers import OfflineData
from bench.errors import UserError
from bench.process_state import capture_rng_state, restore_rng_state, seed_everything
from bench.registry import get_method, registered


@pytest.fixture
def build(build_smoke):
    def build_from_store(name: str, suite, store, seed: int = 0):
        data = OfflineData(store, suite.tasks, fraction=1.0, prompt_episodes=2)
        return build_smoke(name, suite, data, seed)

    return build_from_store


def test_every_registered_method_has_a_config_and_every_config_a_method():
    assert registered() == group_choices("method")


@pytest.mark.parametrize("name", registered())
def test_method_trains_and_acts(name, tiny_suite, tiny_store, build):
    method = build(name, tiny_suite, tiny_store)
    logs = [method.train_step(step) for step in range(3)]
    assert all(np.isfinite(v) for log in logs for v in log.values())
    assert method.num_parameters() > 0
    policy = method.policy(1)
    policy.reset(3)
    observations = np.zeros((3, 39))
    first = policy.act(observations, None)
    second = policy.act(observations, np.ones(3))
    assert first.shape == second.shape == (3, 4)
    assert np.all(np.abs(first) <= 1.0)


@pytest.mark.parametrize("name", registered())
def test_building_leaves_the_global_rng_alone(name, tiny_suite, tiny_store, build):
    """The runner owns the global generators (bench/process_state.py); a method only reads
    them while training (dropout), never while it is built."""
    seed_everything(7)
    before = capture_rng_state()
    build(name, tiny_suite, tiny_store)
    after = capture_rng_state()
    assert torch.equal(after["torch_cpu"], before["torch_cpu"])
    assert all(map(torch.equal, after["torch_cuda"], before["torch_cuda"]))
    assert torch.equal(after["numpy"]["key"], before["numpy"]["key"])
    assert after["numpy"]["pos"] == before["numpy"]["pos"]
    assert after["python"] == before["python"]


@pytest.mark.parametrize("name", registered())
def test_state_dict_resumes_bit_for_bit(name, tiny_suite, tiny_store, build):
    """Train 4 steps straight vs. 2 steps, save, load into a fresh method, 2 more steps.

    As the runner does: the global generators are seeded before a method is built, and a
    checkpoint holds their state beside the method's state_dict."""
    seed_everything(0)
    straight = build(name, tiny_suite, tiny_store)
    losses = [straight.train_step(step)["loss"] for step in range(4)]

    seed_everything(0)
    first_half = build(name, tiny_suite, tiny_store)
    for step in range(2):
        first_half.train_step(step)
    state, rng_state = first_half.state_dict(), capture_rng_state()
    seed_everything(12345)  # the global RNG must come from the checkpoint, not from here
    resumed = build(name, tiny_suite, tiny_store, seed=99)
    resumed.load_state_dict(state)
    restore_rng_state(rng_state)
    resumed_losses = [resumed.train_step(step)["loss"] for step in range(2, 4)]
    assert resumed_losses == losses[2:]


def test_unknown_method_lists_the_registered_ones():
    with pytest.raises(UserError, match=r"unknown method 'nope'; choose one of: .*mtdt.*prompt_dt"):
        get_method("nope")
