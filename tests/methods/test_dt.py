"""The DT backbone starts from minGPT's initialisation, drawn from the method's own seed; the
averaged harmony score (Def. 3.2) is logged beside its chance level."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from bench.data.samplers import OfflineData
from bench.process_state import capture_rng_state, restore_rng_state, seed_everything
from methods.dt import INIT_STD, init_weights
from methods.dt_acting import Actor
from methods.harmony import average_harmony, harmony_chance

# Every DT method, and with MTDT's task embedding so that conditioner is covered too.
DT_BUILDS = [
    ("mtdt", {"conditioning": "task_id"}),
    ("prompt_dt", {}),
    ("harmodt_f", {}),
]
# Wide enough that the smallest weight (the return-to-go Linear(1, d)) has d samples.
WIDE = {"embed_dim": 128, "n_head": 2}


@pytest.fixture
def build(build_smoke, tiny_suite, tiny_store):
    data = OfflineData(tiny_store, tiny_suite.tasks, fraction=1.0, prompt_episodes=2)

    def build_dt(name: str, seed: int = 0, **values):
        return build_smoke(name, tiny_suite, data, seed, **values)

    return build_dt


@pytest.mark.parametrize(("name", "values"), DT_BUILDS)
def test_default_init_is_mingpt(build, name, values):
    """N(0, 0.02) weights (5 standard errors of tolerance), zero biases, LayerNorms (1, 0)."""
    network = build(name, **values, **WIDE).network
    checked = set()
    for module in network.modules():
        if isinstance(module, (nn.Linear, nn.Embedding)):
            weight = module.weight.detach().double()
            n = weight.numel()
            assert abs(weight.std().item() / INIT_STD - 1) < 5 / math.sqrt(2 * n), module
            assert abs(weight.mean().item()) < 5 * INIT_STD / math.sqrt(n), module
            checked.add(id(module.weight))
        if isinstance(module, nn.Linear):
            assert torch.all(module.bias == 0), module
            checked.add(id(module.bias))
        if isinstance(module, nn.LayerNorm):
            assert torch.all(module.weight == 1) and torch.all(module.bias == 0), module
            checked |= {id(module.weight), id(module.bias)}
    assert checked == {id(p) for p in network.parameters()}  # nothing left out


@pytest.mark.parametrize(("name", "values"), DT_BUILDS)
def test_weights_depend_on_the_seed_only_and_building_leaves_the_global_rng_alone(
    build, name, values
):
    seed_everything(1)
    before = torch.get_rng_state()
    first = build(name, seed=3, **values).network.state_dict()
    assert torch.equal(torch.get_rng_state(), before)
    seed_everything(2)  # another global state: the same weights
    again = build(name, seed=3, **values).network.state_dict()
    other = build(name, seed=4, **values).network.state_dict()
    assert all(torch.equal(first[key], again[key]) for key in first)
    weights = [key for key in first if key.endswith("weight") and first[key].std() > 0]
    assert not any(torch.equal(first[key], other[key]) for key in weights)


def test_harmodt_starts_from_prompt_dts_network(build):
    prompt_dt = build("prompt_dt", seed=5).network.state_dict()
    harmodt = build("harmodt_m", seed=5).network.state_dict()
    assert prompt_dt.keys() == harmodt.keys()
    assert all(torch.equal(prompt_dt[key], harmodt[key]) for key in prompt_dt)


def test_init_weights_refuses_a_module_it_does_not_know():
    with pytest.raises(TypeError, match="Conv1d"):
        init_weights(nn.Sequential(nn.Linear(2, 2), nn.Conv1d(2, 2, 1)), torch.Generator())


@pytest.mark.parametrize(
    ("size", "reported"), [("l1h2", 0.48), ("l3h4", 0.87), ("l6h8", 1.47), ("l9h16", 2.06)]
)
def test_table3_sizes_have_the_papers_parameter_counts(size, reported):
    """Table 3's counts are those of this backbone at 128 dims (docs/fidelity.md), on MT50's
    39-dim states and 4-dim actions with the paper's 1000 timesteps."""
    from bench.config import compose_run
    from bench.registry import get_method, make_config
    from methods.dt import DecisionTransformerNet
    from methods.prompt_dt import PromptConditioner

    method = compose_run(["method=harmodt_f", "scale=paper", f"size={size}"]).config["method"]
    config = make_config(get_method("harmodt_f"), {k: v for k, v in method.items() if k != "name"})
    network = DecisionTransformerNet(39, 4, config, PromptConditioner(39, 4, config))
    millions = sum(p.numel() for p in network.parameters()) / 1e6
    assert abs(millions - reported) < 0.015, millions


def test_bf16_training_follows_fp32_within_a_stated_tolerance(build):
    """precision=bf16 rounds the matrix products only (fp32 master weights, optimizer, loss):
    on the same batches, without dropout, every loss of a short run stays within 2% of fp32's
    and the trained networks' actions within 0.02 (actions lie in [-1, 1])."""
    runs = {}
    for precision in ("fp32", "bf16"):
        seed_everything(0)
        method = build("prompt_dt", precision=precision, dropout=0.0)
        losses = [method.train_step(step)["loss"] for step in range(30)]
        task = method.data.task_data[0]
        segment, prompt = method.sample_batch(task, np.random.default_rng(1))
        method.network.eval()
        with torch.no_grad(), method.autocast():
            actions = method.predict(segment, prompt, task.task_id).float()
        runs[precision] = (losses, actions)
    (fp32_losses, fp32_actions), (bf16_losses, bf16_actions) = runs["fp32"], runs["bf16"]
    assert fp32_losses != bf16_losses  # bf16 did run: the rounding differs
    assert bf16_losses == pytest.approx(fp32_losses, rel=0.02)
    assert (bf16_actions - fp32_actions).abs().max() < 0.02


@pytest.mark.parametrize(("name", "values"), DT_BUILDS)
def test_acting_computes_the_last_action_of_the_full_forward(build, name, values):
    """Acting caches the prompt's keys and values, drops the trailing action token and runs the
    last block for the last state token only (HarmoDT: at its masked weights, made once): the
    action is the full forward's up to float rounding."""
    seed_everything(0)
    method = build(name, **values)
    for step in range(3):
        method.train_step(step)
    task = method.data.task_data[1]
    segment, prompt = method.sample_batch(task, np.random.default_rng(0))
    method.network.eval()
    with torch.no_grad():
        full = method.predict(segment, prompt, task.task_id)[:, -1]
        acting = method.acting_network(task.task_id)(segment, prompt)[:, -1]
    assert acting.shape == full.shape
    assert torch.allclose(acting, full, rtol=0, atol=1e-6)
    method.network.train()
    with pytest.raises(ValueError, match="acting leaves dropout out"):
        Actor(method.network)(segment, prompt)


# Def. 3.2's chance level --------------------------------------------------------------------

WEIGHTS = 50_000  # enough that one draw's error is ~0.002, small enough for a quick test


def _gaussian(tasks: int, seed: int) -> torch.Tensor:
    return torch.randn(tasks, WEIGHTS, generator=torch.Generator().manual_seed(seed))


def _excess(gradients: torch.Tensor) -> tuple[float, float, float]:
    """Def. 3.2, its chance level and the difference."""
    value, chance = average_harmony(gradients), harmony_chance(gradients, np.random.default_rng(0))
    return value, chance, value - chance


@pytest.mark.parametrize("tasks", [5, 30, 50])
def test_independent_gradients_score_at_their_chance_level(tasks):
    """Unrelated tasks: Def. 3.2 is well above 0, because each task is part of the mean it is
    compared with ((2/pi) arcsin(1/sqrt(tasks)) for Gaussian gradients), and the chance level
    is that same value, so the excess is 0."""
    value, chance, excess = _excess(_gaussian(tasks, seed=tasks))
    expected = 2 / math.pi * math.asin(1 / math.sqrt(tasks))  # 0.295, 0.117, 0.090
    assert value == pytest.approx(expected, abs=0.01) and value > 0.08
    assert chance == pytest.approx(expected, abs=0.01)
    assert abs(excess) < 0.01


@pytest.mark.parametrize("tasks", [5, 50])
def test_masks_raise_the_chance_level_with_the_score(tasks):
    """Zeroed (masked) entries alone raise Def. 3.2 (a weight few tasks update agrees with the
    mean made of them); the chance level rises with it, so the excess stays 0."""
    gradients = _gaussian(tasks, seed=1)
    coins = torch.rand(tasks, WEIGHTS, generator=torch.Generator().manual_seed(2))
    chances = []
    for sparsity in (0.1, 0.3, 0.5):
        value, chance, excess = _excess(gradients * (coins >= sparsity))
        assert abs(excess) < 0.01, (sparsity, value, chance)
        chances.append(chance)
    assert chances == sorted(chances) and chances[-1] - chances[0] > 0.02


@pytest.mark.parametrize("tasks", [5, 30, 50])
def test_a_shared_direction_is_harmony_above_chance(tasks):
    shared = _gaussian(1, seed=100)
    _, _, excess = _excess(0.5 * shared + _gaussian(tasks, seed=tasks))
    assert excess > 0.08


def test_chance_draws_come_from_the_generator_given_and_nowhere_else():
    gradients = _gaussian(5, seed=3)
    torch_state, numpy_state = torch.get_rng_state(), np.random.get_state()
    first = harmony_chance(gradients, np.random.default_rng(7))
    assert harmony_chance(gradients, np.random.default_rng(7)) == first
    assert harmony_chance(gradients, np.random.default_rng(8)) != first
    averaged = harmony_chance(gradients, np.random.default_rng(7), draws=4)
    assert averaged == pytest.approx(first, abs=0.01) and averaged != first
    assert torch.equal(torch.get_rng_state(), torch_state)
    numpy_now = np.random.get_state()
    assert all(np.array_equal(a, b) for a, b in zip(numpy_now, numpy_state, strict=True))
    with pytest.raises(ValueError, match="draws must be >= 1"):
        harmony_chance(gradients, np.random.default_rng(7), draws=0)


def test_harmony_events_carry_their_chance_level_and_resume_bit_for_bit(build):
    """HarmoDT-R logs both kinds of harmony event, each with its chance level beside the value;
    resumed from a checkpoint, a run logs what it would have logged without stopping."""
    values = {"harmony_every": 1, "mask_interval": 2}
    seed_everything(0)
    straight = build("harmodt_r", **values)
    losses = [straight.train_step(step)["loss"] for step in range(4)]
    events = straight.pop_events()

    seed_everything(0)
    first = build("harmodt_r", **values)
    for step in range(2):
        first.train_step(step)
    logged, state, rng_state = first.pop_events(), first.state_dict(), capture_rng_state()
    seed_everything(123)  # the generators must come from the checkpoint, not from here
    resumed = build("harmodt_r", seed=7, **values)
    resumed.load_state_dict(state)
    restore_rng_state(rng_state)
    assert [resumed.train_step(step)["loss"] for step in range(2, 4)] == losses[2:]
    assert logged + resumed.pop_events() == events

    diagnostics = [e for e in events if e["event"] == "harmony"]
    updates = [e for e in events if e["event"] == "mask_update"]
    assert [e["step"] for e in diagnostics] == [1, 2, 3, 4]
    assert [e["step"] for e in updates] == [2, 4]
    assert all(-1 <= e["harmony_chance"] <= 1 for e in diagnostics)
    for event in updates:
        assert set(event["harmony_chance"]) == set(event["harmony"]) == {"masked", "unmasked"}
        assert all(-1 <= chance <= 1 for chance in event["harmony_chance"].values())
