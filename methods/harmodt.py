"""HarmoDT (ICML 2024): Prompt-DT in which every task trains and acts through its own mask.

Algorithm 1: the weight matrices of the transformer blocks get one boolean mask per task, ERK
initialised at sparsity S (App. C). Task i's step takes its loss at theta * M_i, so the gradient
reaching theta is grad L(theta * M_i) * M_i (Eq. 11), and only its active weights move. Every
t_m steps Algorithm 2 swaps alpha_t weights per task (Eq. 8-10, 12): HarmoDT-M and -F differ in
the importance term, HarmoDT-R keeps its random masks. Where the paper is silent, and which
tensors are masked and why: docs/harmodt.md.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from torch import Tensor
from torch.func import functional_call

from bench.data.samplers import OfflineData, Segment
from bench.errors import UserError, check_all
from bench.registry import follows, register
from bench.suites import Suite
from methods.dt import action_error
from methods.dt_acting import Actor
from methods.harmodt_masks import (
    TABLE6_MASK_UPDATES,
    GradientForm,
    ScoreForm,
    VoteRule,
    cosine_alpha,
    erk_mask,
    masks_from_state,
    matching_eta_max,
    mean_pairwise_iou,
    pack_masks,
    schedule_swaps,
    table6_swapped_fraction,
    unpack_masks,
    update_masks,
    update_steps,
    vote_mask,
)
from methods.prompt_dt import PromptDT, PromptDTConfig


@dataclass(frozen=True)
class HarmoDTConfig(PromptDTConfig):
    """Defaults are the paper's Table 6 (and the official code's --mask_batches of one batch)."""

    preset_section: ClassVar[str | None] = "harmodt"
    variant: Literal["random", "magnitude", "fisher"] = "fisher"  # HarmoDT-R / -M / -F
    sparsity: float = 0.2  # S: fraction of each task's maskable weights that is inactive
    # t_m. None: `mask_updates` updates spread evenly over the run, Table 6's 200 (t_m = 5000
    # of 1e6 steps) at any train.steps.
    mask_interval: int | None = None
    mask_updates: int = TABLE6_MASK_UPDATES
    eta_min: float = 0
    # None: Table 6's 100, scaled to this network's maskable weights so that a task swaps the
    # same fraction of them over the run (`matching_eta_max`; 100 at the paper's size).
    eta_max: float | None = None
    balance: float = 10.0  # lambda in Eq. 8
    # Eq. 8 as printed (A + lambda I, Fisher of log L) or as the official code (lambda A + I,
    # Fisher of L); Eq. 13 with the paper's `>` or the official `>=` (docs/harmodt.md).
    score_form: ScoreForm = "paper"
    vote_threshold: int = 25  # Eq. 13
    vote_rule: VoteRule = "paper"
    mask_batches: int = 1  # batches per task behind each mask-update gradient
    # Alg. 2's gradients: both of Eq. 4 and Eq. 10 (paper), or the official update_gradient's
    # one masked gradient, clipped, in both roles (half the passes; docs/harmodt.md).
    update_gradients: GradientForm = "paper"
    total_steps: int = follows("train.steps", 1_000_000)  # E in Eq. 12

    def __post_init__(self) -> None:
        super().__post_init__()
        interval, eta_max = self.mask_interval, self.eta_max
        problems = {
            "sparsity must be in [0, 1)": not 0.0 <= self.sparsity < 1.0,
            "mask_interval must be null (spread mask_updates over the run) or an integer >= 1": (
                interval is not None
                and (isinstance(interval, bool) or not isinstance(interval, int) or interval < 1)
            ),
            "mask_updates must be >= 1": self.mask_updates < 1,
            "eta_min must be >= 0 and <= eta_max (null: Table 6's, scaled)": not 0
            <= self.eta_min
            <= (self.eta_min if eta_max is None else eta_max),
            "mask_batches must be >= 1": self.mask_batches < 1,
            "total_steps must be >= 1": self.total_steps < 1,
        }
        check_all("method", problems, self)

    def check_suite(self, suite: Suite) -> None:
        """Eq. 13 keeps a weight where more than `vote_threshold` training masks have it
        ("paper"), or at least that many ("official"): at or above the task count the unseen
        tasks' vote mask would be empty."""
        if not suite.unseen_tasks:
            return
        most = suite.num_tasks - 1 if self.vote_rule == "paper" else suite.num_tasks
        if not 0 <= self.vote_threshold <= most:
            raise UserError(
                f"method.vote_threshold={self.vote_threshold} leaves the unseen-task mask of "
                f"{suite.name} empty ({suite.num_tasks} training tasks, vote_rule="
                f"{self.vote_rule}); choose 0 to {most}"
            )


# One method, three importance terms: each name pins its variant (`method.variant` of another
# is an error, not a silent switch).
@dataclass(frozen=True)
class HarmoDTRConfig(HarmoDTConfig):
    variant: Literal["random"] = "random"


@dataclass(frozen=True)
class HarmoDTMConfig(HarmoDTConfig):
    variant: Literal["magnitude"] = "magnitude"


@dataclass(frozen=True)
class HarmoDTFConfig(HarmoDTConfig):
    variant: Literal["fisher"] = "fisher"


class HarmoDT(PromptDT):
    """Masks live in one (tasks, weights) bool tensor in the order of `shared_weights()`."""

    config: HarmoDTConfig

    def __init__(
        self,
        config: HarmoDTConfig,
        suite: Suite,
        data: OfflineData,
        seed: int,
        device: torch.device,
    ) -> None:
        super().__init__(config, suite, data, seed, device)
        self.weights = self.shared_weights()
        self.shapes = [tuple(weight.shape) for weight in self.weights.values()]
        self.sizes = [weight.numel() for weight in self.weights.values()]
        self.weights_before_step = [torch.empty_like(w.detach()) for w in self.weights.values()]
        # Masks have their own generator: the network starts exactly as Prompt-DT's does.
        generator = torch.Generator().manual_seed(seed)
        self.masks = torch.stack(
            [erk_mask(self.shapes, config.sparsity, generator) for _ in range(data.num_tasks)]
        ).to(device)
        # Mask-update batches have their own stream: the training batches stay Prompt-DT's.
        self.mask_rng = np.random.Generator(np.random.PCG64([seed, 2]))
        # So has their dropout (they run in training mode, as the official update_gradient):
        # drawn from torch's global generator, it would shift every later training step's.
        derived = np.random.SeedSequence([seed, 4]).generate_state(1, dtype=np.uint64)[0]
        self.mask_dropout_state = (
            torch.Generator(device=device).manual_seed(int(derived)).get_state()
        )
        ordered = update_steps(config.total_steps, config.mask_updates, config.mask_interval)
        self.update_steps = frozenset(ordered)  # looked up after every training step
        maskable = sum(self.sizes)
        self.eta_max = (
            matching_eta_max(maskable, ordered, config.total_steps, config.eta_min)
            if config.eta_max is None
            else float(config.eta_max)
        )
        self.swapped = torch.zeros(data.num_tasks, dtype=torch.int64)  # per task, cumulative
        self.schedule_event = {
            "event": "mask_schedule",
            "step": 0,
            "updates": len(ordered),
            "mask_interval": config.mask_interval,
            "eta_min": config.eta_min,
            "eta_max": self.eta_max,
            "maskable_weights": maskable,
            # What the schedule will swap per task if every alpha_t fits (HarmoDT-R: nothing),
            # beside the fraction Table 6's run swaps.
            "planned_swapped_fraction": 0.0
            if config.variant == "random"
            else schedule_swaps(ordered, config.total_steps, config.eta_min, self.eta_max)
            / maskable,
            "table6_swapped_fraction": table6_swapped_fraction(),
        }

    @property
    def unseen_task_rule(self) -> str:
        sign = ">" if self.config.vote_rule == "paper" else ">="
        return (
            "a prompt from the unseen task's own data, at the vote mask of Eq. 13: a weight is "
            f"active where {sign} {self.config.vote_threshold} training-task masks have it"
        )

    # Masked weights ---------------------------------------------------------------------------

    def task_mask(self, task_id: int) -> list[Tensor]:
        """Task `task_id`'s mask as one bool tensor per weight (views, no copies); a task the
        method was not trained on gets the vote of the training tasks' masks (Eq. 13)."""
        flat = self.masks[task_id] if task_id < len(self.masks) else self.unseen_task_mask()
        parts = flat.split(self.sizes)
        return [part.view(shape) for part, shape in zip(parts, self.shapes, strict=True)]

    def predict(self, segment: Segment, prompt: Segment | None, task_id: int) -> Tensor:
        """The network at theta * M_task: autograd then hands theta the gradient times M_task."""
        with self.phase("masking"):
            masked = self.masked_weights(task_id)
        return functional_call(self.network, masked, (segment, prompt))

    def masked_weights(self, task_id: int) -> dict[str, Tensor]:
        """theta * M_task for every maskable weight, by parameter name."""
        masks = self.task_mask(task_id)
        pairs = zip(self.weights.items(), masks, strict=True)
        return {name: weight * mask for (name, weight), mask in pairs}

    def acting_network(self, task_id: int) -> Callable[[Segment, Segment | None], Tensor]:
        """Acts through a copy of the network at theta * M_task, made once per evaluation
        rather than multiplied at every step."""
        network = copy.deepcopy(self.network)
        with torch.no_grad():
            for name, weight in self.masked_weights(task_id).items():
                network.get_parameter(name).copy_(weight)
        return Actor(network.eval())

    def optimizer_step(self, task_id: int) -> None:
        # Eq. 11 moves only the task's active weights, but AdamW would still move the masked
        # ones (weight decay, momentum), so they are put back, as the official code does. Their
        # moments do see the zero gradient: Adam's running mean then estimates Eq. 11's
        # E_i[grad L_i * M_i], the average in which a task that masks a weight contributes 0.
        weights = [weight.detach() for weight in self.weights.values()]
        with torch.no_grad():
            with self.phase("masking"):
                # Into buffers made once: a fresh copy of every weight each step costs more
                # in allocation and page faults than the copy itself.
                for old, weight in zip(self.weights_before_step, weights, strict=True):
                    old.copy_(weight)
            self.optimizer.step()
            with self.phase("masking"):
                pairs = zip(weights, self.weights_before_step, self.task_mask(task_id), strict=True)
                for weight, old, active in pairs:
                    torch.where(active, weight, old, out=weight)

    # Algorithm 2 --------------------------------------------------------------------------------

    def train_step(self, step: int) -> dict[str, float]:
        if step == 0:
            self.events.append(dict(self.schedule_event))
        logs = super().train_step(step)
        if step + 1 in self.update_steps:
            self.events.append(self.update_masks(step + 1))
        return logs

    def update_masks(self, t: int) -> dict[str, Any]:
        """Alg. 2 at step t (HarmoDT-R only measures); returns the `mask_update` event."""
        config = self.config
        alpha = 0
        if config.variant != "random":
            alpha = cosine_alpha(t, config.total_steps, config.eta_min, self.eta_max)
        with self.phase("gradients"), self.mask_update_dropout():
            masked_grads, full_grads, masked_losses = self.task_gradients()
        before = self.masks
        with self.phase("mask generation"):
            if alpha > 0:
                assert config.variant != "random"  # HarmoDT-R's alpha stays 0
                theta = torch.cat([w.detach().reshape(-1) for w in self.weights.values()])
                self.masks = update_masks(
                    before,
                    masked_grads,
                    full_grads,
                    theta,
                    alpha,
                    config.variant,
                    config.balance,
                    config.score_form,
                    masked_losses,
                )
        with self.phase("statistics"):
            return self._mask_update_event(t, alpha, before, masked_grads, full_grads)

    @contextlib.contextmanager
    def mask_update_dropout(self) -> Iterator[None]:
        """Torch's global generator (dropout's) set to the mask updates' own stream for the
        duration, and put back: training draws the same dropout with or without updates."""
        generator = _default_generator(self.device)
        training_state = generator.get_state()
        generator.set_state(self.mask_dropout_state)
        try:
            yield
        finally:
            self.mask_dropout_state = generator.get_state()
            generator.set_state(training_state)

    def _mask_update_event(
        self, t: int, alpha: int, before: Tensor, masked_grads: Tensor, full_grads: Tensor
    ) -> dict[str, Any]:
        size = self.masks.shape[1]
        # Row by row: a 1-D count_nonzero is many times faster than a (tasks, weights) sum.
        active_counts = [int(row.count_nonzero()) for row in self.masks]
        pairs = zip(self.masks, before, strict=True)
        changed = [int((new ^ old).count_nonzero()) for new, old in pairs]
        self.swapped += torch.tensor(changed) // 2  # a swap masks one weight and recovers one
        return {
            "event": "mask_update",
            "step": t,
            "alpha": alpha,
            # The inactive count is fixed at round(S * weights): S itself up to 1 / weights.
            "sparsity": [round(1.0 - active / size, 4) for active in active_counts],
            "inactive": [size - active for active in active_counts],
            "changed": changed,
            "swapped_fraction": [round(int(n) / size, 7) for n in self.swapped],
            # `harmony` and its `harmony_chance`; with the official gradients there is no
            # unmasked one to score.
            **self.harmony_fields(
                {"masked": masked_grads}
                | ({"unmasked": full_grads} if self.config.update_gradients == "paper" else {})
            ),
            "overlap": mean_pairwise_iou(self.masks),
        }

    def task_gradients(self) -> tuple[Tensor, Tensor, Tensor]:
        """Per task, on the same `mask_batches` batches: the masked gradient grad L(theta * M_i)
        * M_i (Eq. 4) and the unmasked grad L(theta), each (tasks, weights), and the masked
        loss L(theta * M_i) (tasks,), the mean over the batches as the gradients are. In
        training mode (dropout on), as the official code's update_gradient.
        With `update_gradients=official` the one gradient is the official code's, clipped,
        and the same tensor is returned in both roles."""
        self.network.train()
        weights = list(self.weights.values())
        batches = self.config.mask_batches
        official = self.config.update_gradients == "official"
        shape = (len(self.masks), sum(self.sizes))
        masked = torch.empty(shape, device=self.device)
        full = masked if official else torch.empty(shape, device=self.device)
        losses = torch.zeros(len(self.masks), device=self.device)
        grads: Sequence[Tensor]
        for task in self.data.task_data:
            for batch in range(batches):
                segment, prompt = self.sample_batch(task, self.mask_rng)
                if official:
                    masked_loss, grads = self.clipped_masked_gradient(segment, prompt, task.task_id)
                    masked_loss, grads = masked_loss / batches, [g / batches for g in grads]
                else:
                    masked_loss = self.action_loss(segment, prompt, task.task_id) / batches
                    grads = torch.autograd.grad(masked_loss, weights)
                _store(masked[task.task_id], grads, accumulate=batch > 0)
                losses[task.task_id] += masked_loss.detach()
                if official:
                    continue
                with self.autocast():
                    predicted = self.network(segment, prompt)  # theta itself, no mask
                full_loss = action_error(predicted, segment)
                grads = torch.autograd.grad(full_loss / batches, weights)
                _store(full[task.task_id], grads, accumulate=batch > 0)
        return masked, full, losses

    def clipped_masked_gradient(
        self, segment: Segment, prompt: Segment | None, task_id: int
    ) -> tuple[Tensor, list[Tensor]]:
        """The official update_gradient: the loss at theta * M_task, its gradient clipped to
        norm `grad_clip` over every parameter (the masked-out weights' gradients, taken at
        their zeroed value, count in the norm), then masked. Returns the loss and, per
        maskable weight, the clipped masked gradient."""
        with self.phase("masking"):
            masked = self.masked_weights(task_id)
        with self.autocast():
            predicted = functional_call(self.network, masked, (segment, prompt))
        loss = action_error(predicted, segment)
        others = [p for n, p in self.network.named_parameters() if n not in masked]
        grads = torch.autograd.grad(loss, [*masked.values(), *others], allow_unused=True)
        norms = [torch.linalg.vector_norm(g) for g in grads if g is not None]
        total = torch.linalg.vector_norm(torch.stack(norms))
        scale = (self.config.grad_clip / (total + 1e-6)).clamp(max=1.0)  # as clip_grad_norm_
        pairs = zip(grads[: len(masked)], self.task_mask(task_id), strict=True)
        return loss, [gradient * mask * scale for gradient, mask in pairs]

    def unseen_task_mask(self) -> Tensor:
        """Eq. 13's mask for a task outside the training set (flat, in `shared_weights` order)."""
        return vote_mask(self.masks, self.config.vote_threshold, self.config.vote_rule)

    # Checkpoints --------------------------------------------------------------------------------

    @staticmethod
    def task_masks_from_state(state: Mapping[str, Any]) -> Tensor | None:
        """The task masks a state_dict of this class holds (bench.registry.task_masks)."""
        return masks_from_state(state)

    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "task_masks": pack_masks(self.masks),
            "task_mask_size": self.masks.shape[1],
            "mask_rng": self.mask_rng.bit_generator.state,
            "mask_dropout_state": self.mask_dropout_state,
            "swapped": self.swapped.clone(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        masks = unpack_masks(state["task_masks"], int(state["task_mask_size"]))
        if masks.shape != self.masks.shape:
            raise UserError(
                f"checkpoint holds masks of shape {tuple(masks.shape)}, this run needs "
                f"{tuple(self.masks.shape)}: it was written for another suite or network size"
            )
        self.masks = masks.to(self.device)
        self.mask_rng.bit_generator.state = state["mask_rng"]
        if "mask_dropout_state" not in state:
            raise UserError(
                "the checkpoint was written by an older mtbench (mask updates drew dropout from "
                "the training stream); run.restart=true starts the run over"
            )
        self.mask_dropout_state = state["mask_dropout_state"]
        self.swapped = state["swapped"].clone()


def _default_generator(device: torch.device) -> torch.Generator:
    """The global generator torch's dropout draws from on `device`."""
    if device.type == "cuda":
        return torch.cuda.default_generators[device.index or torch.cuda.current_device()]
    return torch.default_generator


def _store(row: Tensor, gradients: Sequence[Tensor], accumulate: bool) -> None:
    """Write (or add) the gradients, flattened, into one row of a (tasks, weights) tensor."""
    flat = [gradient.reshape(-1) for gradient in gradients]
    if accumulate:
        row.add_(torch.cat(flat))
    else:
        torch.cat(flat, out=row)


register("harmodt_r", config=HarmoDTRConfig)(HarmoDT)
register("harmodt_m", config=HarmoDTMConfig)(HarmoDT)
register("harmodt_f", config=HarmoDTFConfig)(HarmoDT)
