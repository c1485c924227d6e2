"""M3DT (ICML 2025, arXiv 2505.24378): Prompt-DT with mixture-of-experts feed-forward layers,
trained in three stages inside one run.

1. Backbone (`backbone_steps`): Prompt-DT exactly, one task per step round-robin.
2. Experts (`expert_steps`): tasks are grouped into `num_experts` groups (by their gradient
   conflicts at the end of stage 1, or at random as the ablation); every block gains one
   expert per group, an MLP beside the frozen one. With the backbone frozen, each step trains
   every expert on the next task of its own group, as the official code's one process per
   expert does in parallel (each expert its own clipped gradient; AdamW is per weight, so one
   optimizer over all experts equals one per expert).
3. Router (the remaining steps): backbone and experts frozen, a per-block token-level router
   weighs all experts' outputs; one task per step round-robin.
The stage is a function of the global step and each stage starts with a fresh AdamW and
warm-up, as the official stage scripts do; a checkpoint at any step (a boundary included)
resumes to the identical run. Paper vs official code, and what we do: docs/m3dt.md.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, cast

import numpy as np
import torch
from torch import Tensor, nn

from bench.data.samplers import OfflineData, Segment
from bench.errors import check_all
from bench.registry import TrainingStage, added_later, follows, register
from bench.suites import Suite
from methods.dt import blocks_of, init_weights, state_token_rows
from methods.m3dt_moe import (
    BACKBONE,
    ROUTER,
    GroupingRule,
    MixtureFeedForward,
    RouterInit,
    gradient_groups,
    random_groups,
    torch_default_init,
)
from methods.prompt_dt import PromptDT, PromptDTConfig

STAGE_NAMES = {1: "backbone", 2: "experts", 3: "router"}


@dataclass(frozen=True)
class M3DTConfig(PromptDTConfig):
    """Defaults from the official scripts (stage1_backbone_train.py, stage2_*.py,
    stage3_router_train.py); docs/m3dt.md says where each comes from."""

    preset_section: ClassVar[str | None] = "m3dt"
    speed_fields: ClassVar[tuple[str, ...]] = ("num_experts",)  # an expert step trains each

    num_experts: int = 16  # official --group_num / --expert_num default (MT160 README: 48)
    grouping: GroupingRule = "gradient"  # gradient | random (the paper's ablation)
    # official: the code's Router keeps torch's nn.Linear init (U(+-1/sqrt(fan_in)), weights
    # and biases), drawn as stage 3 starts; normal: N(0, 0.02) and zero biases, the project's
    # init_weights, drawn with the experts (the MT30 sweep's M3DT runs, made at 052a0fb).
    router_init: RouterInit = added_later("official", earlier="normal")
    # Stage lengths in steps. None: the official 400k : 200k : 400k split of the run
    # (40% backbone, 20% experts, the rest router); the router stage is what is left.
    backbone_steps: int | None = None
    expert_steps: int | None = None
    grouping_batches: int = 10  # batches per task behind its grouping gradient (official: 10)
    kmeans_restarts: int = 40  # official run_kmeans_multiple_times(num_runs=40)
    kmeans_repeats: int = 40  # official: 40 clusterings, the most balanced one kept
    # The stages split the steps the run trains: never set apart from train.steps.
    total_steps: int = follows("train.steps", 1_000_000, settable=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        stages = self.training_stages(self.total_steps)
        # One message with the lengths as resolved: a user who set neither length (train.steps
        # too short for three stages) sees where each came from.
        origin = {
            "backbone": "method.backbone_steps" if self.backbone_steps is not None else "40 %",
            "experts": "method.expert_steps" if self.expert_steps is not None else "20 %",
            "router": "the rest",
        }
        split = ", ".join(f"{s.name} {s.steps} ({origin[s.name]})" for s in stages)
        problems = {
            "num_experts must be >= 1": self.num_experts < 1,
            "method.backbone_steps, method.expert_steps and train.steps must give each of "
            f"M3DT's three stages at least one step: train.steps={self.total_steps} gives "
            f"{split}": min(stage.steps for stage in stages) < 1,
            "grouping_batches must be >= 1": self.grouping_batches < 1,
            "kmeans_restarts and kmeans_repeats must be >= 1": min(
                self.kmeans_restarts, self.kmeans_repeats
            )
            < 1,
            "harmony_every is not supported by m3dt (its backbone freezes)": self.harmony_every > 0,
        }
        check_all("method", problems, self)

    def training_stages(self, total_steps: int) -> tuple[TrainingStage, ...]:
        # An expert step trains every expert, a router step runs them all: ~7x and ~1.6x a
        # backbone step at scale=small on MT30 (docs/m3dt.md), so each stage is timed apart.
        backbone, experts = self.stage_lengths()
        router = total_steps - backbone - experts
        lengths = (backbone, experts, router)
        starts = (0, backbone, backbone + experts)
        return tuple(
            TrainingStage(STAGE_NAMES[number], start, length)
            for number, start, length in zip((1, 2, 3), starts, lengths, strict=True)
        )

    def experts_trained(self, num_tasks: int) -> int:
        """At most one expert per task (docs/m3dt.md): the experts a run on `num_tasks` has."""
        return min(self.num_experts, num_tasks)

    def run_notes(self, suite: Suite) -> list[str]:
        trained = self.experts_trained(suite.num_tasks)
        if trained == self.num_experts:
            return []
        return [
            f"method.num_experts={self.num_experts} is more than the {trained} training tasks of "
            f"{suite.name}: the run trains {trained} experts, one per task (any num_experts >= "
            f"{trained} gives the same run; docs/m3dt.md)"
        ]

    def tasks_per_step(self, num_tasks: int) -> int:
        return self.experts_trained(num_tasks)  # an expert step: one batch per expert's group

    def stage_lengths(self) -> tuple[int, int]:
        """(backbone steps, expert steps); the router stage has the rest of total_steps."""
        backbone = self.backbone_steps
        if backbone is None:
            backbone = round(0.4 * self.total_steps)
        experts = self.expert_steps
        if experts is None:
            experts = round(0.2 * self.total_steps)
        return backbone, experts


def _generator(seed: int, stream: int) -> torch.Generator:
    derived = np.random.SeedSequence([seed, stream]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(derived[0]) << 32 | int(derived[1]))


@register("m3dt", config=M3DTConfig)
class M3DT(PromptDT):
    """Stage 1 is Prompt-DT's training to the bit; experts and routers sit beside it unused."""

    config: M3DTConfig

    def __init__(
        self, config: M3DTConfig, suite: Suite, data: OfflineData, seed: int, device: torch.device
    ) -> None:
        # At most one expert per task: with fewer tasks (mt5 at the paper preset's 16, or the
        # plan's one-task timing build) each task is its own group; the events say so.
        self.num_experts = config.experts_trained(data.num_tasks)
        super().__init__(config, suite, data, seed, device)
        _, experts, router = config.training_stages(config.total_steps)
        self.expert_start, self.router_start = experts.first_step, router.first_step
        # (Streams, beside methods/dt.py's: 6 expert and router init, 7 grouping batches,
        # 8 grouping draws, 9 stage 3's router init.)
        self.group_rng = np.random.Generator(np.random.PCG64([seed, 7]))
        self.group_generator = _generator(seed, 8)
        self.router_generator = _generator(seed, 9)  # router_init=official, at stage 3's start
        self.stage = 0  # 0 until the first step; then 1, 2, 3
        self.groups: list[list[int]] = []

    # The network -----------------------------------------------------------------------------

    def build_network(self, seed: int) -> Any:
        """Prompt-DT's network, weight for weight, with each block's MLP wrapped in a
        `MixtureFeedForward` whose experts and router come from a generator of their own."""
        network = super().build_network(seed)
        generator = _generator(seed, 6)
        for block in blocks_of(network):
            with torch.device("meta"):
                layer = MixtureFeedForward(nn.Identity(), self.config, self.num_experts)
            layer = layer.to_empty(device="cpu")
            init_weights(layer, generator)
            layer = layer.to(self.device)
            layer.shared = block.mlp
            block.mlp = layer
        return network

    @property
    def moe_layers(self) -> list[MixtureFeedForward]:
        # Every block's MLP is a MixtureFeedForward since `build_network`.
        return [cast(MixtureFeedForward, block.mlp) for block in blocks_of(self.network)]

    def parameters_of(self, part: str) -> list[nn.Parameter]:
        """`backbone` (Prompt-DT's weights), `experts` or `router` (of every block)."""
        layers = self.moe_layers
        if part == "experts":
            return [p for layer in layers for p in layer.experts.parameters()]
        if part == "router":
            return [p for layer in layers for p in layer.router.parameters()]
        added = {id(p) for layer in layers for p in layer.experts.parameters()}
        added |= {id(p) for layer in layers for p in layer.router.parameters()}
        return [p for p in self.network.parameters() if id(p) not in added]

    def set_route(self, route: int) -> None:
        for layer in self.moe_layers:
            layer.route = route

    def route_for(self, task_id: int) -> int:
        """Backbone only before stage 2 (and for a task in no group), the task's group's
        expert in stage 2, the router in stage 3."""
        if self.stage == 3:
            return ROUTER
        if self.stage == 2:
            for expert, group in enumerate(self.groups):
                if task_id in group:
                    return expert
        return BACKBONE

    def predict(self, segment: Segment, prompt: Segment | None, task_id: int) -> Tensor:
        self.set_route(self.route_for(task_id))
        # Only the rows the action head reads need the last block's mixture.
        last = self.moe_layers[-1]
        last.read_rows = state_token_rows(segment)
        try:
            return super().predict(segment, prompt, task_id)
        finally:
            last.read_rows = None  # the acting path runs the layer on the one row it needs

    def acting_network(self, task_id: int) -> Callable[[Segment, Segment | None], Tensor]:
        actor, route = super().acting_network(task_id), self.route_for(task_id)

        def act(segment: Segment, prompt: Segment | None) -> Tensor:
            self.set_route(route)  # episodes of several tasks may interleave
            return actor(segment, prompt)

        return act

    @property
    def unseen_task_rule(self) -> str:
        return (
            "a prompt from the unseen task's own data (its best prompt episode); after stage 3 "
            "the router weighs the experts, before it the backbone acts alone"
        )

    # Stages --------------------------------------------------------------------------------

    def stage_at(self, step: int) -> int:
        if step < self.expert_start:
            return 1
        return 2 if step < self.router_start else 3

    def train_step(self, step: int) -> dict[str, float]:
        stage = self.stage_at(step)
        if stage != self.stage:
            self.enter_stage(stage, step)
        if stage == 1:
            logs = super().train_step(step)
        elif stage == 2:
            logs = self.expert_step(step - self.expert_start)
        else:  # the official stage-3 loop restarts its round-robin at the first task
            logs = super().train_step(step - self.router_start)
        return {**logs, "stage": float(stage)}

    def enter_stage(self, stage: int, step: int) -> None:
        # `first_step`: the stage's first step (0-based, = steps done before it). The event's
        # `step` is left to the runner (steps done after this step), so a resume from a
        # checkpoint at the boundary drops the event with the steps after the checkpoint and
        # logs it once, when it enters the stage again.
        event: dict[str, Any] = {
            "event": "stage_start",
            "first_step": step,
            "stage": stage,
            "name": STAGE_NAMES[stage],
            "num_experts": self.num_experts,
        }
        if self.num_experts < self.config.num_experts:
            event["num_experts_requested"] = self.config.num_experts
        if stage == 2 and not self.groups:
            self.groups = self.group_tasks()
        if stage >= 2:
            names = [[self.data.task_data[t].task for t in group] for group in self.groups]
            event.update(grouping=self.config.grouping, groups=names, group_ids=self.groups)
        if stage == 3:
            event["router_init"] = self.config.router_init
            if self.config.router_init == "official":
                # The official stage-3 script builds its routers fresh; the draws of
                # `build_network` stay, so that stages 1 and 2 are router_init=normal's to the bit.
                for layer in self.moe_layers:
                    torch_default_init(layer.router, self.router_generator)
        self.configure_stage(stage)
        trainable = sum(p.numel() for p in self.network.parameters() if p.requires_grad)
        event["trainable_parameters"] = trainable
        self.events.append(event)

    def configure_stage(self, stage: int) -> None:
        """What trains in `stage` (requires_grad) and a fresh optimizer and warm-up for it."""
        part = {1: "backbone", 2: "experts", 3: "router"}[stage]
        trainable = {id(p) for p in self.parameters_of(part)}
        for param in self.network.parameters():
            param.requires_grad_(id(param) in trainable)
            param.grad = None  # the last stage's gradients go with its optimizer
        if stage > 1 or self.stage > 1:  # stage 1 keeps the optimizer Prompt-DT builds
            self.optimizer, self.scheduler = self.make_optimizer(self.parameters_of(part))
        self.stage = stage

    def expert_step(self, local_step: int) -> dict[str, float]:
        """Every expert one step on the next task of its group (its own clipped gradient)."""
        self.network.train()
        self.optimizer.zero_grad(set_to_none=True)
        losses, norms = [], []
        for expert, group in enumerate(self.groups):
            task = self.data.task_data[group[local_step % len(group)]]
            with self.phase("sampling"):
                segment, prompt = self.sample_batch(task, self.rng)
            with self.phase("forward"):
                loss = self.action_loss(segment, prompt, task.task_id)
            with self.phase("backward"):
                loss.backward()
            with self.phase("optimizer"):
                layers = self.moe_layers
                weights = [p for layer in layers for p in layer.experts[expert].parameters()]
                norms.append(float(nn.utils.clip_grad_norm_(weights, self.config.grad_clip)))
            losses.append(float(loss.detach()))
        with self.phase("optimizer"):
            self.optimizer.step()
            self.scheduler.step()
        return {
            "loss": float(np.mean(losses)),
            "grad_norm": float(np.mean(norms)),
            "learning_rate": float(self.scheduler.get_last_lr()[0]),
        }

    # Grouping ------------------------------------------------------------------------------

    def group_tasks(self) -> list[list[int]]:
        if self.config.grouping == "random":
            return random_groups(self.data.num_tasks, self.num_experts, self.group_generator)
        return gradient_groups(
            self.task_gradients(),
            self.num_experts,
            self.group_generator,
            restarts=self.config.kmeans_restarts,
            repeats=self.config.kmeans_repeats,
        )

    def task_gradients(self) -> Tensor:
        """(tasks, backbone weights): per task the mean of `grouping_batches` backbone
        gradients, each clipped to `grad_clip` as the official update_gradient does, in train
        mode (dropout on) at the weights stage 1 ended with."""
        self.set_route(BACKBONE)
        self.network.train()
        weights = self.parameters_of("backbone")
        size = sum(w.numel() for w in weights)
        gradients = torch.zeros(self.data.num_tasks, size, device=self.device)
        for task in self.data.task_data:
            for _ in range(self.config.grouping_batches):
                segment, prompt = self.sample_batch(task, self.group_rng)
                loss = self.action_loss(segment, prompt, task.task_id)
                grads = torch.autograd.grad(loss, weights, allow_unused=True)
                vector = torch.cat(
                    [
                        (torch.zeros_like(w) if g is None else g).reshape(-1)
                        for w, g in zip(weights, grads, strict=True)
                    ]
                )
                scale = (self.config.grad_clip / (vector.norm() + 1e-6)).clamp(max=1.0)
                gradients[task.task_id] += vector * scale
        return (gradients / self.config.grouping_batches).cpu()

    # Resume --------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "m3dt_stage": self.stage,
            "m3dt_groups": [list(group) for group in self.groups],
            "group_rng": self.group_rng.bit_generator.state,
            "group_generator": self.group_generator.get_state(),
            "router_generator": self.router_generator.get_state(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.groups = [list(group) for group in state["m3dt_groups"]]
        stage = int(state["m3dt_stage"])
        if stage >= 1:
            self.configure_stage(stage)  # the stage's optimizer, before its state is loaded
        super().load_state_dict(state)
        self.group_rng.bit_generator.state = state["group_rng"]
        self.group_generator.set_state(state["group_generator"])
        if "router_generator" in state:  # checkpoints before router_init have not drawn from it
            self.router_generator.set_state(state["router_generator"])
