"""HarmoDT: ERK masks, Eq. 12, Alg. 2's mask update, Eq. 8's two score forms, Eq. 11's masked
step, Eq. 13's two vote rules, the harmony diagnostic, resume, and a smoke run end to end."""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest
import torch

from bench.cli import main
from bench.config import compose_run
from bench.data.samplers import OfflineData
from bench.errors import UserError
from bench.process_state import capture_rng_state, restore_rng_state, seed_everything
from bench.registry import build_method, get_method, make_config
from bench.suites import META_RL, Suite
from methods.dt import action_error
from methods.harmodt_masks import (
    TABLE6_MASK_UPDATES,
    TABLE6_MASKABLE_WEIGHTS,
    cosine_alpha,
    erk_densities,
    erk_mask,
    harmony_scores,
    importance,
    matching_eta_max,
    mean_pairwise_iou,
    pack_masks,
    schedule_swaps,
    table6_swapped_fraction,
    top_k_indices,
    unpack_masks,
    update_masks,
    update_steps,
    update_task_mask,
    vote_mask,
)
from methods.harmony import average_harmony


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ERK (Appendix C) -----------------------------------------------------------------------------


def test_erk_densities_follow_appendix_c_and_keep_one_minus_s():
    # One transformer block at the paper's width, plus a tiny layer.
    shapes = [(8, 8), (768, 256), (256, 256), (1024, 256), (256, 1024)]
    densities = erk_densities(shapes, density=0.8)
    sizes = [math.prod(s) for s in shapes]
    raw = [(a + b) / (a * b) for a, b in shapes]  # App. C: (n_in + n_out) / (n_in * n_out)
    # Layers that would need a density above 1 are dense: the tiny one and the 256x256 one.
    assert densities[0] == densities[2] == 1.0
    sparse = [1, 3, 4]
    eps = [densities[i] / raw[i] for i in sparse]
    assert eps == pytest.approx([eps[0]] * len(sparse))
    assert all(0 < densities[i] < 1 for i in sparse)
    total = sum(d * n for d, n in zip(densities, sizes, strict=True))
    assert total == pytest.approx(0.8 * sum(sizes))


def test_erk_mask_has_exact_global_density_and_per_layer_erk_counts():
    shapes = [(96, 32), (32, 32), (128, 32), (32, 128)]
    sizes = [math.prod(s) for s in shapes]
    mask = erk_mask(shapes, sparsity=0.2, generator=seeded(0))
    assert mask.dtype == torch.bool and mask.numel() == sum(sizes)
    assert int(mask.sum()) == round(0.8 * sum(sizes))
    for part, density, size in zip(
        mask.split(sizes), erk_densities(shapes, 0.8), sizes, strict=True
    ):
        assert abs(int(part.sum()) - density * size) < 1
    assert torch.equal(mask, erk_mask(shapes, 0.2, seeded(0)))
    assert not torch.equal(mask, erk_mask(shapes, 0.2, seeded(1)))


# Eq. 12 ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("eta_min", "eta_max"), [(0, 100), (3, 100)])
def test_alpha_follows_the_cosine_schedule_of_eq_12(eta_min, eta_max):
    total = 1_000_000
    assert cosine_alpha(0, total, eta_min, eta_max) == eta_min
    assert cosine_alpha(total // 4, total, eta_min, eta_max) == math.ceil((eta_min + eta_max) / 2)
    assert cosine_alpha(total // 2, total, eta_min, eta_max) == eta_max
    assert cosine_alpha(total, total, eta_min, eta_max) == eta_min


# Algorithm 2 ----------------------------------------------------------------------------------


@pytest.mark.parametrize("form", ["paper", "official"])
def test_mask_update_keeps_sparsity_and_swaps_exactly_alpha_weights(form):
    generator = seeded(0)
    shapes = [(20, 30), (40, 10)]
    masks = torch.stack([erk_mask(shapes, 0.2, generator) for _ in range(3)])
    masked_grads = torch.randn(masks.shape, generator=generator) * masks
    full_grads = torch.randn(masks.shape, generator=generator)
    weights = torch.randn(masks.shape[1], generator=generator)
    losses = torch.rand(3, generator=generator) + 0.1
    for kind in ("fisher", "magnitude"):
        new = update_masks(masks, masked_grads, full_grads, weights, 7, kind, 10.0, form, losses)
        for before, after in zip(masks, new, strict=True):
            assert int(after.sum()) == int(before.sum())
            assert int((before & ~after).sum()) == 7  # masked (Eq. 9)
            assert int((~before & after).sum()) == 7  # recovered (Eq. 10), all inactive before


@pytest.mark.parametrize("largest", [True, False])
def test_chunked_top_k_finds_the_same_entries_as_topk(largest):
    values = torch.randn(100_003, generator=seeded(0))
    values[::3] = math.inf if not largest else -math.inf  # excluded entries, as in Eq. 8
    expected = values.topk(50, largest=largest).indices
    found = top_k_indices(values, 50, largest=largest)
    assert sorted(found.tolist()) == sorted(expected.tolist())


@pytest.mark.parametrize("form", ["paper", "official"])
def test_a_weight_whose_task_gradients_conflict_is_masked_for_one_task(form):
    # Two tasks, six weights; weight 5 is inactive for both (so each has one to recover).
    masks = torch.tensor([[1, 1, 1, 1, 1, 0], [1, 1, 1, 1, 1, 0]], dtype=torch.bool)
    masked_grads = torch.tensor([[1.0, 0.5, 0.5, 0.5, 0.5, 0.0], [-3.0, 0.5, 0.5, 0.5, 0.5, 0.0]])
    # Mean gradient on weight 0 is -1: task 0 pulls against it, task 1 with it.
    full_grads = masked_grads.clone()
    weights = torch.ones(6)  # equal magnitudes: only the agreement ranks the weights
    new = update_masks(masks, masked_grads, full_grads, weights, 1, "magnitude", 10.0, form)
    assert not new[0, 0] and new[1, 0]
    assert new[0, 5] and new[1, 5]


VOTE_MASKS = torch.tensor(
    [[1, 1, 1, 0, 0], [1, 1, 0, 0, 1], [1, 1, 0, 1, 0], [1, 0, 0, 0, 0]], dtype=torch.bool
)  # active counts per weight: 4, 3, 1, 1, 1


def test_paper_vote_keeps_weights_active_in_more_than_threshold_tasks():
    assert vote_mask(VOTE_MASKS, 2, "paper").tolist() == [True, True, False, False, False]
    assert vote_mask(VOTE_MASKS, 3, "paper").tolist() == [True, False, False, False, False]
    assert vote_mask(VOTE_MASKS, 0, "paper").tolist() == [True] * 5


@pytest.mark.parametrize("threshold", [1, 3, 4])
def test_vote_rules_differ_exactly_on_weights_active_in_threshold_tasks(threshold):
    paper = vote_mask(VOTE_MASKS, threshold, "paper")
    official = vote_mask(VOTE_MASKS, threshold, "official")
    at_threshold = VOTE_MASKS.sum(dim=0) == threshold
    assert at_threshold.any()
    assert torch.equal(paper ^ official, at_threshold)
    assert not paper[at_threshold].any() and official[at_threshold].all()


# Eq. 8 and Def. 4.2: the paper's and the official code's harmony scores ------------------------

# One task, four weights; the last is masked. lambda = 10, masked loss L = 0.5.
G_BAR = torch.tensor([1.0, -2.0, 0.5, 3.0])  # masked gradient of the task (Eq. 4)
G_HAT = torch.tensor([0.5, 1.0, -1.0, 2.0])  # mean masked gradient
THETA = torch.tensor([-0.3, 0.2, 1.0, -4.0])
MASK = torch.tensor([True, True, True, False])
LOSS = torch.tensor(0.5)


def _scores(kind, form):
    importances = importance(kind, G_BAR, THETA, form, LOSS)
    return harmony_scores(G_BAR, G_HAT, importances, MASK, 10.0, form)


@pytest.mark.parametrize(
    ("kind", "form", "expected"),
    [
        # paper: A + lambda I, with I_M = |theta|, I_F = (grad log L)^2 = (g_bar / L)^2
        ("magnitude", "paper", [0.5 + 10 * 0.3, -2.0 + 10 * 0.2, -0.5 + 10 * 1.0]),
        ("fisher", "paper", [0.5 + 10 * 2.0**2, -2.0 + 10 * 4.0**2, -0.5 + 10 * 1.0**2]),
        # official: lambda A + I, with I_M = |theta|, I_F = g_bar^2
        ("magnitude", "official", [10 * 0.5 + 0.3, 10 * -2.0 + 0.2, 10 * -0.5 + 1.0]),
        ("fisher", "official", [10 * 0.5 + 1.0, 10 * -2.0 + 4.0, 10 * -0.5 + 0.25]),
    ],
)
def test_score_forms_compute_their_documented_formulas(kind, form, expected):
    scores = _scores(kind, form)
    assert scores[:3].tolist() == pytest.approx(expected, abs=1e-6)  # float32
    assert scores[3] == math.inf  # already masked


def test_paper_fisher_term_is_the_squared_gradient_of_log_loss():
    theta = torch.tensor([0.3, -1.2, 2.0], requires_grad=True)
    mask = torch.tensor([1.0, 1.0, 0.0])
    loss = ((theta * mask - torch.tensor([1.0, 0.5, -1.0])) ** 2).mean()
    (masked_grad,) = torch.autograd.grad(loss, theta, retain_graph=True)
    (log_grad,) = torch.autograd.grad(loss.log(), theta)
    found = importance("fisher", masked_grad * mask, theta.detach(), "paper", loss.detach())
    assert found.tolist() == pytest.approx((log_grad * mask).square().tolist())
    assert importance("fisher", masked_grad, theta, "official").tolist() == pytest.approx(
        masked_grad.square().tolist()
    )
    with pytest.raises(ValueError, match="masked loss"):
        importance("fisher", masked_grad, theta, "paper")


def test_the_score_form_decides_which_weight_is_masked():
    # Fisher: the paper's lambda (g_bar / L)^2 outweighs the agreement, the official lambda A
    # dominates: the paper masks weight 2 (score 9.5), the official code weight 1 (-16).
    masked = {}
    for form in ("paper", "official"):
        new = update_task_mask(MASK, G_BAR, G_BAR, G_HAT, THETA, 1, "fisher", 10.0, form, LOSS)
        masked[form] = (MASK & ~new).nonzero().flatten().tolist()
    assert masked == {"paper": [2], "official": [1]}


def test_overlap_and_packing_on_hand_made_masks():
    masks = torch.tensor([[1, 1, 0, 0], [1, 0, 1, 0], [1, 1, 0, 0]], dtype=torch.bool)
    # IoU: (0,1) 1/3, (0,2) 1, (1,2) 1/3.
    assert mean_pairwise_iou(masks) == pytest.approx((1 / 3 + 1 + 1 / 3) / 3)
    big = torch.rand(3, 1003, generator=seeded(0)) > 0.5
    assert torch.equal(unpack_masks(pack_masks(big), 1003), big)


def test_average_harmony_is_definition_3_2_over_defined_terms():
    # Mean gradient (-1, 1.5): task 0 disagrees on weight 0 and agrees on 1; task 1 agrees on both.
    assert average_harmony(torch.tensor([[1.0, 2.0], [-3.0, 1.0]])) == pytest.approx(0.5)
    # A zero (masked) entry has no direction and is left out.
    assert average_harmony(torch.tensor([[1.0, 0.0], [1.0, 2.0]])) == pytest.approx(1.0)


# The method -----------------------------------------------------------------------------------


def _build(name, suite, store, *overrides, seed=0):
    config = compose_run([f"method={name}", "scale=smoke", *overrides]).config
    values = {k: v for k, v in config["method"].items() if k != "name"}
    data = OfflineData(store, suite.tasks, fraction=1.0, prompt_episodes=2)
    return build_method(name, make_config(get_method(name), values), suite, data, seed)


def test_masks_start_by_erk_at_sparsity_s(tiny_suite, tiny_store):
    method = _build("harmodt_f", tiny_suite, tiny_store)
    size = method.masks.shape[1]
    assert method.masks.shape[0] == 2
    assert size == sum(w.numel() for w in method.shared_weights().values())
    assert (~method.masks).sum(dim=1).tolist() == [round(0.2 * size)] * 2
    assert not torch.equal(method.masks[0], method.masks[1])


def test_masked_weights_get_no_gradient_and_are_not_moved_by_adamw(tiny_suite, tiny_store):
    method = _build("harmodt_f", tiny_suite, tiny_store, "harmodt.mask_interval=1000")
    weights = list(method.weights.values())
    for step in range(2):  # tasks 0 and 1: masked weights of task 0 now carry momentum
        method.train_step(step)
    before = [w.detach().clone() for w in weights]
    moments = [method.optimizer.state[w]["exp_avg"].clone() for w in weights]
    method.train_step(2)  # task 0 again
    beta1 = method.optimizer.param_groups[0]["betas"][0]
    moved = carried = 0
    for weight, old, moment, active in zip(
        weights, before, moments, method.task_mask(0), strict=True
    ):
        inactive = ~active
        assert torch.all(weight.grad[inactive] == 0)
        assert torch.equal(weight.detach()[inactive], old[inactive])  # no decay, no momentum
        # Their moments see the zero gradient: they only decay.
        new_moment = method.optimizer.state[weight]["exp_avg"][inactive]
        assert torch.allclose(new_moment, beta1 * moment[inactive], rtol=1e-6, atol=0)
        moved += int((weight.detach()[active] != old[active]).sum())
        carried += int(moment[inactive].count_nonzero())
    assert moved > 0
    assert carried > 0  # the masked weights stayed put although their momentum was not zero


def test_mask_update_events_keep_sparsity_and_swap_alpha(tiny_suite, tiny_store):
    overrides = ("harmodt.mask_interval=2", "harmodt.mask_batches=2")
    method = _build("harmodt_m", tiny_suite, tiny_store, *overrides)
    inactive = (~method.masks).sum(dim=1).tolist()
    events = []
    for step in range(6):
        method.train_step(step)
        events += [e for e in method.pop_events() if e["event"] == "mask_update"]
    assert [e["step"] for e in events] == [2, 4, 6]
    for event in events:
        assert event["alpha"] == cosine_alpha(event["step"], 50, 0, 10) > 0
        assert event["inactive"] == inactive
        assert event["sparsity"] == [0.2, 0.2]
        assert event["changed"] == [2 * event["alpha"]] * 2
        assert -1 <= event["harmony"]["masked"] <= 1 and -1 <= event["harmony"]["unmasked"] <= 1
        assert 0 < event["overlap"] < 1
    assert (~method.masks).sum(dim=1).tolist() == inactive


def test_harmodt_r_never_changes_its_masks(tiny_suite, tiny_store):
    method = _build("harmodt_r", tiny_suite, tiny_store, "harmodt.mask_interval=2")
    initial = method.masks.clone()
    for step in range(6):
        method.train_step(step)
        for event in _mask_updates(method.pop_events()):
            assert event["alpha"] == 0 and event["changed"] == [0, 0]
            assert event["swapped_fraction"] == [0.0, 0.0]
    assert torch.equal(method.masks, initial)


def test_mask_updates_draw_dropout_from_their_own_stream(tiny_suite, tiny_store):
    # HarmoDT-R's updates change no mask, so with their own dropout stream the training
    # steps are the same whether or not updates run between them.
    losses = []
    for interval in (2, 1000):
        seed_everything(0)
        method = _build("harmodt_r", tiny_suite, tiny_store, f"harmodt.mask_interval={interval}")
        losses.append([method.train_step(step)["loss"] for step in range(6)])
        assert len(_mask_updates(method.pop_events())) == (3 if interval == 2 else 0)
    assert losses[0] == losses[1]


def test_mask_updates_log_the_cumulative_swapped_fraction(tiny_suite, tiny_store):
    method = _build("harmodt_f", tiny_suite, tiny_store, "harmodt.mask_interval=2")
    for step in range(6):
        method.train_step(step)
    events = method.pop_events()
    schedule, updates = events[0], _mask_updates(events)
    assert schedule["event"] == "mask_schedule" and len(updates) == 3
    assert schedule["updates"] == method.config.total_steps // 2  # over the whole run
    size, swapped = method.masks.shape[1], 0
    for event in updates:
        swapped += event["alpha"]  # each swap masks one weight and recovers another
        assert event["swapped_fraction"] == [round(swapped / size, 7)] * 2


@pytest.mark.parametrize(
    ("maskable", "steps"),
    [(4_718_592, 1_000_000), (589_824, 20_000), (196_608, 100_000), (196_608, 3_001),
     (589_824, 7_919), (1_179_648, 200)],
)  # fmt: skip
def test_the_default_schedule_keeps_table_6_updates_and_swapped_fraction(maskable, steps):
    updates = update_steps(steps, TABLE6_MASK_UPDATES, None)
    assert len(updates) == 200 and updates[-1] == steps and sorted(set(updates)) == updates
    eta_max = matching_eta_max(maskable, updates, steps, 0)
    fraction = schedule_swaps(updates, steps, 0, eta_max) / maskable
    assert fraction == pytest.approx(table6_swapped_fraction(), rel=0.2)
    if maskable == TABLE6_MASKABLE_WEIGHTS:
        assert eta_max == 100 and updates == list(range(5000, 1_000_001, 5000))  # Table 6


def test_fewer_steps_than_table_6_updates_update_after_every_step():
    assert update_steps(50, 200, None) == list(range(1, 51))
    assert update_steps(50, 200, 20) == [20, 40]  # an explicit t_m wins


@pytest.mark.parametrize("rule", ["paper", "official"])
def test_the_unseen_task_mask_follows_the_configured_vote_rule(tiny_suite, tiny_store, rule):
    overrides = ("harmodt.vote_threshold=1", f"harmodt.vote_rule={rule}")
    method = _build("harmodt_r", tiny_suite, tiny_store, *overrides)
    assert method.config.vote_rule == rule
    unseen = torch.cat([part.reshape(-1) for part in method.task_mask(len(method.masks))])
    votes = method.masks.sum(dim=0)
    expected = votes > 1 if rule == "paper" else votes >= 1  # 2 tasks: both vs. either
    assert torch.equal(unseen, expected)


def test_the_configured_score_form_reaches_the_mask_update(tiny_suite, tiny_store):
    masks = {}
    for form in ("paper", "official"):
        seed_everything(0)
        overrides = ("harmodt.mask_interval=2", f"harmodt.score_form={form}")
        method = _build("harmodt_f", tiny_suite, tiny_store, *overrides)
        assert method.config.score_form == form
        for step in range(2):
            method.train_step(step)
        masks[form] = method.masks
    # Same seed, same batches, same gradients: only Eq. 8's form differs.
    assert not torch.equal(masks["paper"], masks["official"])


def test_official_update_gradients_are_the_official_codes_clipped_masked_gradient(
    tiny_suite, tiny_store
):
    clip = 1e-3  # well below this batch's gradient norm, so the clip acts
    overrides = ("harmodt.update_gradients=official", f"dt.grad_clip={clip}")
    method = _build("harmodt_f", tiny_suite, tiny_store, *overrides)
    method.network.train()
    segment, prompt = method.sample_batch(method.data.task_data[1], np.random.default_rng(5))
    torch.manual_seed(1)  # the same dropout draws in both passes
    loss, gradients = method.clipped_masked_gradient(segment, prompt, task_id=1)

    # The official update_gradient: load theta * M into the model, backward, clip every
    # parameter's gradient to the norm, then zero the masked-out weights' gradients.
    network = copy.deepcopy(method.network)
    with torch.no_grad():
        for name, weight in method.masked_weights(1).items():
            network.get_parameter(name).copy_(weight)
    torch.manual_seed(1)
    official_loss = action_error(network(segment, prompt), segment)
    official_loss.backward()
    norm = torch.nn.utils.clip_grad_norm_(network.parameters(), clip)
    assert norm > 10 * clip
    pairs = zip(method.weights, method.task_mask(1), strict=True)
    expected = [network.get_parameter(name).grad * mask for name, mask in pairs]

    assert loss.item() == pytest.approx(official_loss.item(), rel=1e-6)
    for ours, theirs in zip(gradients, expected, strict=True):
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-9)


def test_official_update_gradients_take_one_gradient_in_both_roles(tiny_suite, tiny_store):
    overrides = ("harmodt.update_gradients=official", "harmodt.mask_interval=2")
    method = _build("harmodt_f", tiny_suite, tiny_store, *overrides)
    assert method.config.update_gradients == "official"
    masked, full, _ = method.task_gradients()
    assert full is masked
    for step in range(2):
        method.train_step(step)
    (event,) = _mask_updates(method.pop_events())
    assert set(event["harmony"]) == {"masked"}  # no unmasked gradient was taken


def test_an_unknown_score_form_or_vote_rule_is_a_user_error(tiny_suite, tiny_store):
    overrides = ("harmodt.score_form=printed", "harmodt.vote_rule=greater",
                 "harmodt.update_gradients=clipped")  # fmt: skip
    for override in overrides:
        with pytest.raises(UserError, match=r"choose one of: official, paper"):
            _build("harmodt_m", tiny_suite, tiny_store, override)


def test_resume_through_mask_updates_is_bit_for_bit(tiny_suite, tiny_store):
    # As the runner does: global generators seeded before the build, checkpointed beside it.
    seed_everything(0)
    straight = _build("harmodt_f", tiny_suite, tiny_store, "harmodt.mask_interval=2")
    losses = [straight.train_step(step)["loss"] for step in range(6)]
    events = straight.pop_events()

    seed_everything(0)
    first = _build("harmodt_f", tiny_suite, tiny_store, "harmodt.mask_interval=2")
    for step in range(3):
        first.train_step(step)
    resumed_events, state, rng_state = first.pop_events(), first.state_dict(), capture_rng_state()
    seed_everything(123)  # the global RNG must come from the checkpoint, not from here
    resumed = _build("harmodt_f", tiny_suite, tiny_store, "harmodt.mask_interval=2", seed=7)
    resumed.load_state_dict(state)
    restore_rng_state(rng_state)
    assert [resumed.train_step(step)["loss"] for step in range(3, 6)] == losses[3:]
    assert resumed_events + resumed.pop_events() == events
    assert torch.equal(resumed.masks, straight.masks)


def test_harmony_diagnostic_logs_without_changing_training(tiny_suite, tiny_store):
    seed_everything(0)  # dropout draws from the global RNG: the same state for both runs
    plain = _build("prompt_dt", tiny_suite, tiny_store)
    plain_logs = [plain.train_step(step) for step in range(4)]
    seed_everything(0)
    watched = _build("prompt_dt", tiny_suite, tiny_store, "analysis.harmony_every=2")
    assert [watched.train_step(step) for step in range(4)] == plain_logs
    events = watched.pop_events()
    assert [e["step"] for e in events] == [2, 4]
    assert all(e["event"] == "harmony" and -1 <= e["harmony"] <= 1 for e in events)
    assert plain.pop_events() == []


def test_smoke_run_logs_mask_updates_with_exact_sparsity(smoke_data_root, tmp_path):
    args = ["run", "method=harmodt_f", "tasks=mt5", "scale=smoke", "eval.episodes=1"]
    args += [f"data.root={smoke_data_root}", f"run.root={tmp_path}", "progress=false"]
    assert main(args) == 0
    # The run folder names the non-default values (bench/identity.py): found, not spelled out.
    [result] = (tmp_path / "mt5" / "near_optimal" / "harmodt_f").glob("**/seed0/result.json")
    run_dir = result.parent
    events = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    updates = [e for e in events if e["event"] == "mask_update"]
    assert len(updates) >= 2
    inactive = updates[0]["inactive"][0]
    for update in updates:
        assert update["sparsity"] == [0.2] * 5
        assert update["inactive"] == [inactive] * 5
        assert update["changed"] == [2 * update["alpha"]] * 5


def test_the_masked_step_equals_the_plain_copy_step_it_replaces(tiny_suite, tiny_store):
    """The step writes the pre-step weights into buffers made once; the plain way (a fresh
    copy of every weight around AdamW, as the official code's state_dict copy) gives the same
    bits."""
    runs = []
    for plain in (False, True):
        seed_everything(0)  # dropout draws from the global RNG: the same draws for both
        method = _build("harmodt_f", tiny_suite, tiny_store, "harmodt.mask_interval=1000")
        for step in range(4):
            if plain:
                _plain_masked_step(method, step)
            else:
                method.train_step(step)
        runs.append([p.detach().clone() for p in method.network.parameters()])
    assert all(torch.equal(a, b) for a, b in zip(*runs, strict=True))


def _plain_masked_step(method, step):
    task = method.data.task_data[step % method.data.num_tasks]
    segment, prompt = method.sample_batch(task, method.rng)
    method.network.train()
    loss = method.action_loss(segment, prompt, task.task_id)
    method.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(method.network.parameters(), method.config.grad_clip)
    weights = list(method.weights.values())
    with torch.no_grad():
        before = [weight.detach().clone() for weight in weights]
        method.optimizer.step()
        masks = method.task_mask(task.task_id)
        for weight, old, active in zip(weights, before, masks, strict=True):
            weight.copy_(torch.where(active, weight, old))
    method.scheduler.step()


def test_a_phase_clock_times_the_step_without_changing_it(tiny_suite, tiny_store):
    from bench.perf.phases import PhaseClock

    runs = []
    for clock in (None, PhaseClock()):
        seed_everything(0)
        method = _build("harmodt_f", tiny_suite, tiny_store, "harmodt.mask_interval=2")
        if clock is not None:
            method.phase = clock
        logs = [method.train_step(step) for step in range(4)]  # two mask updates
        runs.append((logs, method.pop_events(), method.masks.clone()))
    assert runs[0][0] == runs[1][0] and runs[0][1] == runs[1][1]
    assert torch.equal(runs[0][2], runs[1][2])
    assert {"sampling", "forward", "backward", "masking", "optimizer", "gradients",
            "mask generation", "statistics"} <= set(clock.seconds)  # fmt: skip


def _unseen_task_setup(tmp_path, write_store, name="harmodt_f", **values):
    """Three training tasks and one unseen test task on hand-made data (4 episodes each)."""
    rng = np.random.default_rng(0)
    tasks = ("t0", "t1", "t2", "t3")
    arrays = {
        t: (rng.normal(size=(40, 5)) + i, rng.uniform(-1, 1, (40, 2)), rng.random(40))
        for i, t in enumerate(tasks)
    }
    store = write_store(tmp_path / "store", arrays, episode_length=10)
    suite = Suite("unseen", tasks[:3], benchmark=META_RL, test_tasks=("t1", "t3"))
    data = OfflineData(store, suite.tasks, 1.0, 2, unseen_tasks=suite.unseen_tasks)
    config = compose_run([f"method={name}", "scale=smoke"]).config
    method_values = {k: v for k, v in config["method"].items() if k != "name"}
    config = make_config(get_method(name), {**method_values, **values})
    return suite, build_method(name, config, suite, data, 0)


def test_the_policy_on_an_unseen_task_acts_at_exactly_the_vote_mask(tmp_path, write_store):
    suite, method = _unseen_task_setup(tmp_path, write_store, vote_threshold=1)
    for step in range(45):  # two mask updates (smoke: every 20 steps): the masks differ
        method.train_step(step)
    assert not torch.equal(method.masks[0], method.masks[1])
    expected_mask = vote_mask(method.masks, 1, "paper")
    for task, mask in (("t1", method.masks[1]), ("t3", expected_mask)):  # seen, then unseen
        policy = method.policy(suite.task_id(task))
        policy.reset(3)
        acting = dict(policy.acting.network.named_parameters())
        flat = torch.cat([acting[name].detach().reshape(-1) for name in method.weights])
        weights = torch.cat([w.detach().reshape(-1) for w in method.weights.values()])
        assert torch.equal(flat, weights * mask)
        actions = policy.act(np.zeros((3, 5)), None)
        assert actions.shape == (3, 2) and np.isfinite(actions).all()
    # The unseen task is normalised by its own data (t3's observations are offset by 3).
    unseen = method.data.task(suite.task_id("t3"))
    assert unseen.task == "t3" and unseen.task_id == 3
    assert torch.equal(policy.state_mean, torch.from_numpy(unseen.state_mean))
    assert abs(float(policy.state_mean.mean()) - 3) < 0.5


def _mask_updates(events: list[dict]) -> list[dict]:
    return [event for event in events if event["event"] == "mask_update"]
