"""M3DT: the three stages in one run, what trains in each, the task grouping, and resume."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch

from bench.cli import main
from bench.data.samplers import OfflineData
from bench.errors import UserError
from bench.process_state import capture_rng_state, restore_rng_state, seed_everything
from bench.settings import load_settings
from methods.dt import action_error
from methods.m3dt import M3DTConfig
from methods.m3dt_moe import ROUTER, gradient_groups, random_groups

STAGES = {"total_steps": 8, "backbone_steps": 3, "expert_steps": 2}  # 3 + 2 + 3 steps
FAST_GROUPING = {"grouping_batches": 2, "kmeans_restarts": 4, "kmeans_repeats": 4}


@pytest.fixture
def build(build_smoke, tiny_suite, tiny_store):
    data = OfflineData(tiny_store, tiny_suite.tasks, fraction=1.0, prompt_episodes=2)

    def build_m3dt(seed: int = 0, **values):
        return build_smoke("m3dt", tiny_suite, data, seed, **{**STAGES, **FAST_GROUPING, **values})

    return build_m3dt


def grads_of(parameters) -> list[torch.Tensor | None]:
    return [p.grad for p in parameters]


def test_a_run_goes_through_the_three_stages_and_logs_each_start(build):
    method = build()
    logs = [method.train_step(step) for step in range(8)]
    assert [log["stage"] for log in logs] == [1, 1, 1, 2, 2, 3, 3, 3]
    assert all(np.isfinite(v) for log in logs for v in log.values())
    starts = [e for e in method.pop_events() if e["event"] == "stage_start"]
    assert [(e["stage"], e["first_step"], e["name"]) for e in starts] == [
        (1, 0, "backbone"),
        (2, 3, "experts"),
        (3, 5, "router"),
    ]
    groups = starts[1]["group_ids"]
    assert sorted(t for group in groups for t in group) == [0, 1] and all(groups)
    assert starts[1]["groups"] == [[method.data.task_data[t].task for t in g] for g in groups]
    assert starts[2]["groups"] == starts[1]["groups"]
    policy = method.policy(1)  # acts through the router
    policy.reset(2)
    action = policy.act(np.zeros((2, 39)), None)
    assert action.shape == (2, 4) and np.all(np.abs(action) <= 1.0)


def test_stage_one_is_prompt_dt_to_the_bit(build, build_smoke, tiny_suite, tiny_store):
    data = OfflineData(tiny_store, tiny_suite.tasks, fraction=1.0, prompt_episodes=2)
    seed_everything(0)
    prompt_dt = build_smoke("prompt_dt", tiny_suite, data, 0)
    expected = [prompt_dt.train_step(step)["loss"] for step in range(3)]
    seed_everything(0)
    m3dt = build()
    assert [m3dt.train_step(step)["loss"] for step in range(3)] == expected


def test_stage_two_gives_gradients_to_the_groups_expert_only(build):
    method = build()
    for step in range(4):  # into stage 2
        method.train_step(step)
    for expert, group in enumerate(method.groups):
        task = method.data.task_data[group[0]]
        method.optimizer.zero_grad(set_to_none=True)
        segment, prompt = method.sample_batch(task, np.random.default_rng(0))
        method.action_loss(segment, prompt, task.task_id).backward()
        assert all(g is None for g in grads_of(method.parameters_of("backbone")))
        assert all(g is None for g in grads_of(method.parameters_of("router")))
        for layer in method.moe_layers:
            for index, other in enumerate(layer.experts):
                grads = grads_of(other.parameters())
                if index == expert:
                    assert all(g is not None and g.abs().sum() > 0 for g in grads)
                else:
                    assert all(g is None for g in grads)
    backbone = [p.detach().clone() for p in method.parameters_of("backbone")]
    router = [p.detach().clone() for p in method.parameters_of("router")]
    experts = [[e[0].weight.detach().clone() for e in layer.experts] for layer in method.moe_layers]
    method.train_step(4)  # a full stage-2 step moves every expert and nothing else
    assert all(
        torch.equal(a, b) for a, b in zip(backbone, method.parameters_of("backbone"), strict=True)
    )
    assert all(
        torch.equal(a, b) for a, b in zip(router, method.parameters_of("router"), strict=True)
    )
    for layer, before in zip(method.moe_layers, experts, strict=True):
        assert all(
            not torch.equal(e[0].weight, w) for e, w in zip(layer.experts, before, strict=True)
        )


def test_stage_three_gives_gradients_to_the_router_only(build):
    method = build()
    for step in range(6):  # into stage 3
        method.train_step(step)
    task = method.data.task_data[0]
    method.optimizer.zero_grad(set_to_none=True)
    assert method.route_for(task.task_id) == ROUTER
    segment, prompt = method.sample_batch(task, np.random.default_rng(0))
    method.action_loss(segment, prompt, task.task_id).backward()
    assert all(g is None for g in grads_of(method.parameters_of("backbone")))
    assert all(g is None for g in grads_of(method.parameters_of("experts")))
    assert all(g is not None for g in grads_of(method.parameters_of("router")))
    frozen = [p.detach().clone() for p in method.parameters_of("backbone")]
    frozen += [p.detach().clone() for p in method.parameters_of("experts")]
    router = [p.detach().clone() for p in method.parameters_of("router")]
    method.train_step(6)
    now = method.parameters_of("backbone") + method.parameters_of("experts")
    assert all(torch.equal(a, b) for a, b in zip(frozen, now, strict=True))
    assert any(
        not torch.equal(a, b) for a, b in zip(router, method.parameters_of("router"), strict=True)
    )


@pytest.mark.parametrize("steps", [4, 6])  # in stage 2 (an expert), in stage 3 (the router)
def test_the_last_blocks_mixture_on_the_rows_the_head_reads_keeps_loss_and_gradients(build, steps):
    method = build()
    for step in range(steps):
        method.train_step(step)
    method.network.eval()  # dropout off: the two forwards draw nothing at random
    task = method.data.task_data[method.groups[0][0]]
    segment, prompt = method.sample_batch(task, np.random.default_rng(0))
    trained = [p for p in method.network.parameters() if p.requires_grad]

    def loss_and_gradients(every_row: bool) -> tuple[torch.Tensor, list[torch.Tensor | None]]:
        method.optimizer.zero_grad(set_to_none=True)
        if every_row:  # the network's own forward: no read_rows, the mixture on every token
            method.set_route(method.route_for(task.task_id))
            loss = action_error(method.network(segment, prompt), segment)
        else:
            loss = method.action_loss(segment, prompt, task.task_id)
        loss.backward()
        return loss.detach(), [None if p.grad is None else p.grad.clone() for p in trained]

    loss, gradients = loss_and_gradients(every_row=False)
    full_loss, full_gradients = loss_and_gradients(every_row=True)
    assert torch.allclose(loss, full_loss, rtol=1e-6, atol=1e-7)
    assert any(g is not None for g in gradients)  # stage 2: the group's expert's only
    for a, b in zip(gradients, full_gradients, strict=True):
        assert (a is None) == (b is None)
        assert a is None or b is None or torch.allclose(a, b, rtol=1e-5, atol=1e-7)
    assert all(layer.read_rows is None for layer in method.moe_layers)  # reset after predict


@pytest.mark.parametrize("saved_after", [3, 4, 5])  # at the stage-2 boundary, in it, at stage 3's
def test_state_dict_resumes_any_stage_bit_for_bit(build, saved_after):
    seed_everything(0)
    straight = build()
    expected = [straight.train_step(step)["loss"] for step in range(8)]

    seed_everything(0)
    first = build()
    for step in range(saved_after):
        first.train_step(step)
    state, rng_state = first.state_dict(), capture_rng_state()
    seed_everything(12345)
    resumed = build(seed=99)
    resumed.load_state_dict(state)
    restore_rng_state(rng_state)
    losses = [resumed.train_step(step)["loss"] for step in range(saved_after, 8)]
    assert losses == expected[saved_after:]
    assert resumed.groups == straight.groups
    for name, value in straight.network.state_dict().items():
        assert torch.equal(value, resumed.network.state_dict()[name]), name


def test_the_official_router_init_is_torch_s_drawn_at_stage_three_and_leaves_stages_one_two(build):
    losses, routers = {}, {}
    for router_init in ("normal", "official"):
        seed_everything(0)
        method = build(router_init=router_init)
        losses[router_init] = [method.train_step(step)["loss"] for step in range(5)]
        method.enter_stage(3, 5)  # the routers as stage 3 starts, before its first step
        routers[router_init] = [m for layer in method.moe_layers for m in layer.router
                                if isinstance(m, torch.nn.Linear)]  # fmt: skip
        start = [e for e in method.pop_events() if e["event"] == "stage_start"][-1]
        assert start["router_init"] == router_init
    assert losses["normal"] == losses["official"]  # stages 1 and 2, to the bit
    assert build().config.router_init == "official"  # the default
    for linear in routers["normal"]:
        assert not linear.bias.any() and abs(linear.weight.std().item() - 0.02) < 0.002
    for linear in routers["official"]:
        bound = linear.in_features**-0.5  # U(-bound, bound): std bound / sqrt(3)
        assert 0.9 * bound < linear.weight.abs().max() <= bound
        assert abs(linear.weight.std().item() - bound / 3**0.5) < 0.2 * bound
        assert linear.bias.abs().max() <= bound and linear.bias.all()


def test_random_grouping_is_the_ablation(build):
    method = build(grouping="random")
    for step in range(4):
        method.train_step(step)
    assert sorted(len(g) for g in method.groups) == [1, 1]


def test_gradient_groups_put_tasks_with_aligned_gradients_together():
    aligned = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9], [0.05, 1.0]])
    groups = gradient_groups(aligned, 2, torch.Generator().manual_seed(0), restarts=5, repeats=5)
    assert sorted(map(sorted, groups)) == [[0, 1], [2, 3, 4]]


def test_random_groups_split_a_shuffle_into_balanced_contiguous_groups():
    groups = random_groups(7, 3, torch.Generator().manual_seed(0))
    assert [len(g) for g in groups] == [3, 2, 2]
    assert sorted(t for g in groups for t in g) == list(range(7))


def test_more_experts_than_tasks_gives_each_task_its_own_and_says_so(build):
    method = build(num_experts=3)  # the tiny suite has 2 tasks
    assert [len(layer.experts) for layer in method.moe_layers] == [2]
    for step in range(4):
        method.train_step(step)
    start = [e for e in method.pop_events() if e["event"] == "stage_start"][1]
    assert start["num_experts"] == 2 and start["num_experts_requested"] == 3
    assert sorted(start["group_ids"]) == [[0], [1]]


def test_stage_lengths_must_leave_the_router_steps(build):
    with pytest.raises(UserError, match="M3DT's three stages at least one step") as error:
        build(backbone_steps=5, expert_steps=3)
    named = "backbone 5 (method.backbone_steps), experts 3 (method.expert_steps), router 0"
    assert named in str(error.value)


def test_a_run_too_short_for_three_stages_says_how_it_split():
    with pytest.raises(UserError) as error:
        M3DTConfig(total_steps=2)
    assert str(error.value) == (
        "method.backbone_steps, method.expert_steps and train.steps must give each of M3DT's "
        "three stages at least one step: train.steps=2 gives backbone 1 (40 %), experts 0 (20 %), "
        "router 1 (the rest)"
    )


def test_a_run_killed_with_sigkill_in_stage_two_resumes_to_the_uninterrupted_result(
    smoke_data_root, tmp_path, kill_at_first_checkpoint, capsys
):
    # Stage 2 spans steps 20..60: the first checkpoint (step 20) is its boundary, where a
    # stage_start logged after the checkpoint must not be kept and logged again; the next
    # checkpoint (40) is inside it.
    def args(root):
        return [
            "run",
            "method=m3dt",
            "tasks=mt5",
            "scale=smoke",
            f"data.root={smoke_data_root}",
            f"run.root={root}",
            "progress=false",
            "train.steps=80",
            "train.checkpoint_every=20",
            "train.log_every=10",
            "method.backbone_steps=20",
            "method.expert_steps=40",
        ]

    straight, killed = tmp_path / "straight", tmp_path / "killed"
    assert main(args(straight)) == 0
    # scale=smoke asks for more experts than MT5 has tasks: the run says what it trains.
    assert (
        "note: method.num_experts=16 is more than the 5 training tasks of mt5: the run trains 5 "
        "experts, one per task (any num_experts >= 5 gives the same run; docs/m3dt.md)"
    ) in capsys.readouterr().out.splitlines()
    run_dir = load_settings(args(killed)[1:]).run_dir
    command = [sys.executable, "-m", "bench.cli", *args(killed)]
    kill_at_first_checkpoint(command, run_dir)

    assert main(args(killed)) == 0
    events = [json.loads(line) for line in (run_dir / "metrics.jsonl").open()]
    resumed_at = [e["step"] for e in events if e["event"] == "resume"]
    assert len(resumed_at) == 1 and resumed_at[0] in (20, 40)  # inside stage 2
    stages = [
        (e["stage"], e["first_step"], e["step"]) for e in events if e["event"] == "stage_start"
    ]
    assert stages == [(1, 0, 1), (2, 20, 21), (3, 60, 61)]  # each once, after its first step
    straight_dir = straight / run_dir.relative_to(killed)
    expected = [json.loads(line) for line in (straight_dir / "metrics.jsonl").open()]

    def losses(log):
        return [(e["step"], e["loss"]) for e in log if e["event"] == "train"]

    assert losses(events) == losses(expected)
    result = json.loads((run_dir / "result.json").read_text())["per_task"]
    assert result == json.loads((straight_dir / "result.json").read_text())["per_task"]
