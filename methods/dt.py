"""The causal transformer backbone shared by MTDT, Prompt-DT and HarmoDT.

A GPT-2 style stack (pre-LayerNorm blocks, MLP of 4x width, final LayerNorm, no positional
embedding: the timestep embedding is added to every token instead), fed with interleaved
(return-to-go, state, action) tokens and predicting each action from its state token.
A variant differs only in how it conditions the stack (`make_conditioner` and the prompts it
hands over); everything else, including training and the evaluation policy, lives here once.

Initialisation is GPT-2's N(0, 0.02), as in minGPT (the paper's App. B builds on it) and the
official code's blocks: `init_weights`, drawn from a generator of the method's own, so building
a method never touches torch's global RNG (the runner owns that: bench/process_state.py).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bench.data.samplers import OfflineData, Segment, TaskData, sample_segments
from bench.errors import check_all
from bench.registry import MethodConfig, follows
from bench.suites import Suite
from methods.harmony import average_harmony, harmony_chance

if TYPE_CHECKING:
    from methods.dt_policy import DTPolicy


@dataclass(frozen=True)
class DTConfig(MethodConfig):
    """Defaults are the paper's Table 6, and the official code where Table 6 is silent."""

    preset_section: ClassVar[str | None] = "dt"  # the presets' `dt:` sets these for every DT method
    precisions: ClassVar[tuple[str, ...]] = ("fp32", "bf16")

    n_layer: int = 6
    n_head: int = 8
    embed_dim: int = 256
    context_length: int = 20  # K
    dropout: float = 0.1
    activation: Literal["relu", "gelu"] = "relu"
    batch_size: int = 8
    learning_rate: float = 1e-4
    weight_decay: float = 1e-4  # official code
    warmup_steps: int = 10_000  # official code: linear warm-up
    grad_clip: float = 0.25  # official code
    max_timestep: int = 1000  # official main.py: max_ep_len=1000 for the timestep embedding
    # The suite's (configs/tasks/): the official code's 4500 and 1000 on every Meta-World task.
    target_return: float = follows("tasks.target_return", 4500.0)
    return_scale: float = follows("tasks.return_scale", 1000.0)
    prompt_length: int = 5  # official code: --prompt-length 5
    # >0: log the averaged harmony score (paper Def. 3.2) every N steps
    harmony_every: int = follows("analysis.harmony_every", 0)
    # bf16: the network's matrix products under autocast (fp32 master weights, optimizer and
    # loss); fp32 is what results are reported in (docs/performance.md).
    precision: Literal["fp32", "bf16"] = follows("precision", "fp32")

    def __post_init__(self) -> None:
        """Ranges and relations, checked before a run makes anything (one line, all found)."""
        problems = {
            f"n_head={self.n_head} must divide embed_dim={self.embed_dim}": self.n_head < 1
            or self.embed_dim % self.n_head != 0,
            "n_layer must be >= 1": self.n_layer < 1,
            "context_length must be >= 1": self.context_length < 1,
            "batch_size must be >= 1": self.batch_size < 1,
            "learning_rate must be > 0": not self.learning_rate > 0,
            "dropout must be in [0, 1)": not 0.0 <= self.dropout < 1.0,
            "weight_decay must be >= 0": self.weight_decay < 0,
            "warmup_steps must be >= 0": self.warmup_steps < 0,
            "grad_clip must be > 0": not self.grad_clip > 0,
            "max_timestep must be >= 1": self.max_timestep < 1,
            "return_scale must be > 0": not self.return_scale > 0,
            "prompt_length must be >= 1": self.prompt_length < 1,
            "harmony_every must be >= 0": self.harmony_every < 0,
        }
        check_all("method", problems, self)


@dataclass(frozen=True)
class Conditioning:
    """What a variant adds to the token stream: prefix tokens and/or an offset on state tokens."""

    prefix: Tensor | None = None  # (B, P, d)
    prefix_mask: Tensor | None = None  # (B, P) bool
    state_offset: Tensor | None = None  # (B, d)


class CausalSelfAttention(nn.Module):
    def __init__(self, config: DTConfig) -> None:
        super().__init__()
        self.n_head = config.n_head
        self.qkv = nn.Linear(config.embed_dim, 3 * config.embed_dim)
        self.proj = nn.Linear(config.embed_dim, config.embed_dim)
        self.attn_dropout = config.dropout
        self.resid_dropout = nn.Dropout(config.dropout)

    def forward(self, x: Tensor, attn_mask: Tensor) -> Tensor:
        batch, length, width = x.shape
        q, k, v = self.qkv(x).view(batch, length, 3, self.n_head, -1).permute(2, 0, 3, 1, 4)
        dropout = self.attn_dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=dropout)
        return self.resid_dropout(self.proj(y.transpose(1, 2).reshape(batch, length, width)))


class Block(nn.Module):
    def __init__(self, config: DTConfig) -> None:
        super().__init__()
        activation = {"relu": nn.ReLU, "gelu": nn.GELU}[config.activation]
        self.ln_1 = nn.LayerNorm(config.embed_dim)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.embed_dim)
        # Any module of the same shape in and out: M3DT swaps in its mixture of experts.
        self.mlp: nn.Module = nn.Sequential(
            nn.Linear(config.embed_dim, 4 * config.embed_dim),
            activation(),
            nn.Linear(4 * config.embed_dim, config.embed_dim),
            nn.Dropout(config.dropout),
        )

    def forward(self, x: Tensor, attn_mask: Tensor) -> Tensor:
        x = x + self.attn(self.ln_1(x), attn_mask)
        return x + self.mlp(self.ln_2(x))


class CausalTransformer(nn.Module):
    """The stack HarmoDT masks: `blocks` hold every maskable weight."""

    def __init__(self, config: DTConfig) -> None:
        super().__init__()
        self.dropout = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.embed_dim)

    def forward(self, tokens: Tensor, key_mask: Tensor) -> Tensor:
        length = tokens.shape[1]
        causal = torch.ones(length, length, dtype=torch.bool, device=tokens.device).tril()
        # A padded query sees only itself, so no attention row is empty (empty rows give NaN).
        eye = torch.eye(length, dtype=torch.bool, device=tokens.device)
        attn_mask = (causal & key_mask[:, None, None, :]) | eye
        x = self.dropout(tokens)
        for block in self.blocks:
            x = block(x, attn_mask)
        return self.ln_f(x)


def blocks_of(network: DecisionTransformerNet) -> list[Block]:
    """The network's transformer blocks, in order, as what they are (`nn.ModuleList` is
    typed to hold any module)."""
    return cast(list[Block], list(network.transformer.blocks))


class TrajectoryEmbedding(nn.Module):
    """(return-to-go, state, action) of each step -> three tokens, plus the timestep embedding."""

    def __init__(self, obs_dim: int, act_dim: int, config: DTConfig) -> None:
        super().__init__()
        width = config.embed_dim
        self.timestep = nn.Embedding(config.max_timestep, width)
        self.return_to_go = nn.Linear(1, width)
        self.state = nn.Linear(obs_dim, width)
        self.action = nn.Linear(act_dim, width)

    def forward(
        self, segment: Segment, state_offset: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        time = self.timestep(segment.timesteps)
        states = self.state(segment.states) + time
        if state_offset is not None:
            states = states + state_offset[:, None, :]
        returns = self.return_to_go(segment.returns_to_go) + time
        actions = self.action(segment.actions) + time
        tokens = torch.stack((returns, states, actions), dim=2)
        batch, length = segment.mask.shape
        mask = segment.mask[:, :, None].expand(batch, length, 3)
        return tokens.reshape(batch, 3 * length, -1), mask.reshape(batch, 3 * length)


class DecisionTransformerNet(nn.Module):
    def __init__(
        self, obs_dim: int, act_dim: int, config: DTConfig, conditioner: nn.Module | None
    ) -> None:
        super().__init__()
        self.embed = TrajectoryEmbedding(obs_dim, act_dim, config)
        self.embed_ln = nn.LayerNorm(config.embed_dim)
        self.conditioner = conditioner
        self.transformer = CausalTransformer(config)
        self.predict_action = nn.Sequential(nn.Linear(config.embed_dim, act_dim), nn.Tanh())

    def forward(self, segment: Segment, prompt: Segment | None = None) -> Tensor:
        """Predicted actions (B, L, act_dim) for every step of `segment` (acting computes the
        last one only: methods/dt_acting.py)."""
        conditioning = (
            self.conditioner(segment, prompt) if self.conditioner is not None else Conditioning()
        )
        tokens, key_mask = self.embed(segment, conditioning.state_offset)
        tokens = self.embed_ln(tokens)
        if conditioning.prefix is not None:
            # As in the reference Prompt-DT, prompt tokens skip the embedding LayerNorm.
            tokens = torch.cat((conditioning.prefix, tokens), dim=1)
            assert conditioning.prefix_mask is not None  # a prefix always comes with its mask
            key_mask = torch.cat((conditioning.prefix_mask, key_mask), dim=1)
        hidden = self.transformer(tokens, key_mask)
        return self.predict_action(hidden[:, state_token_rows(segment)])


def state_token_rows(segment: Segment) -> slice:
    """The token rows the action head reads: each step's state token, the second of its three
    (return, state, action) in the segment's 3L tokens, which come last (after any prompt)."""
    return slice(-3 * segment.mask.shape[1] + 1, None, 3)


INIT_STD = 0.02  # minGPT / GPT-2: every linear and embedding weight ~ N(0, 0.02)


def init_weights(module: nn.Module, generator: torch.Generator) -> None:
    """GPT-2 / minGPT initialisation of every parameter of `module`, in `modules()` order.

    Linear and Embedding weights ~ N(0, INIT_STD), Linear biases 0, LayerNorm weight 1 and bias
    0; without the 1/sqrt(2 n_layer) rescaling of the residual projections that GPT-2 and
    current minGPT add, so every maskable weight starts with one spread (docs/fidelity.md).
    A module type with parameters of its own that is not listed here is a bug: it would keep
    whatever it was built with.
    """
    for part in module.modules():
        if isinstance(part, nn.Linear):
            nn.init.normal_(part.weight, 0.0, INIT_STD, generator=generator)
            if part.bias is not None:
                nn.init.zeros_(part.bias)
        elif isinstance(part, nn.Embedding):
            nn.init.normal_(part.weight, 0.0, INIT_STD, generator=generator)
        elif isinstance(part, nn.LayerNorm):
            if part.weight is not None:
                nn.init.ones_(part.weight)
            if part.bias is not None:
                nn.init.zeros_(part.bias)
        elif any(True for _ in part.parameters(recurse=False)):
            raise TypeError(f"init_weights does not know how to initialise {type(part).__name__}")


def init_generator(seed: int) -> torch.Generator:
    """The network's initialisation stream: its own, derived from the seed, so it shares no
    draws with the other generators seeded from the same number (e.g. HarmoDT's masks)."""
    derived = np.random.SeedSequence([seed, 3]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(derived[0]) << 32 | int(derived[1]))


class DecisionTransformerMethod:
    """Training and acting for every DT variant; subclasses choose the conditioning."""

    def __init__(
        self, config: DTConfig, suite: Suite, data: OfflineData, seed: int, device: torch.device
    ) -> None:
        self.config = config
        self.suite = suite
        self.data = data
        self.device = device
        self.rng = np.random.Generator(np.random.PCG64(seed))
        # Diagnostics draw their batches from their own stream, so turning them on never
        # changes the training batches.
        self.diagnostic_rng = np.random.Generator(np.random.PCG64([seed, 1]))
        # The chance levels of harmony scores draw their coins from a stream of their own, so
        # they leave the diagnostic batches, and with them the scores, as they were.
        # (Streams: 1 diagnostics, 2 HarmoDT's mask batches, 3 init, 4 its mask dropout.)
        self.chance_rng = np.random.Generator(np.random.PCG64([seed, 5]))
        self.events: list[dict[str, Any]] = []
        # `bench perf` swaps in a clock that times each named phase of a step; by default a
        # phase is a no-op context.
        self.phase: Callable[[str], AbstractContextManager[Any]] = contextlib.nullcontext
        self.network = self.build_network(seed)
        self.optimizer, self.scheduler = self.make_optimizer(list(self.network.parameters()))

    def make_optimizer(
        self, parameters: list[nn.Parameter]
    ) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
        """AdamW over `parameters` with the config's linear warm-up (the official code's)."""
        # The fused kernel is the same AdamW update, ~4x faster on CPU than the per-tensor loop
        # (26 -> 6 ms per step at paper size, measured on this project's 2-core machine).
        optimizer = torch.optim.AdamW(
            parameters,
            lr=self.config.learning_rate,
            weight_decay=self.config.weight_decay,
            fused=True,
        )
        warmup = max(self.config.warmup_steps, 1)
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: min((step + 1) / warmup, 1.0)
        )
        return optimizer, scheduler

    def build_network(self, seed: int) -> DecisionTransformerNet:
        """The network with `init_weights` from its seed, the same on every device.

        Built on the meta device, so PyTorch's own initialisation (which draws from the global
        RNG) never runs; the weights are drawn on the CPU and then moved to `self.device`.
        """
        with torch.device("meta"):
            network = DecisionTransformerNet(
                self.data.obs_dim, self.data.act_dim, self.config, self.make_conditioner()
            )
        network = network.to_empty(device="cpu")
        init_weights(network, init_generator(seed))
        return network.to(self.device)

    # What a variant overrides -------------------------------------------------------------

    def make_conditioner(self) -> nn.Module | None:
        """Called on the meta device (`build_network`): parameters only, which `init_weights`
        fills; a buffer would be left uninitialised."""
        return None

    def training_prompt(
        self, task: TaskData, batch_size: int, rng: np.random.Generator
    ) -> Segment | None:
        return None

    def evaluation_prompt(self, task: TaskData) -> Segment | None:
        return None

    def predict(self, segment: Segment, prompt: Segment | None, task_id: int) -> Tensor:
        """Action predictions for one task's batch (HarmoDT applies the task's mask here)."""
        return self.network(segment, prompt)

    def acting_network(self, task_id: int) -> Callable[[Segment, Segment | None], Tensor]:
        """The network as it acts for `task_id` through one evaluation: the last step's action
        only, the prompt's keys and values computed once (methods/dt_acting.py)."""
        from methods.dt_acting import Actor

        return Actor(self.network)

    # The method contract ------------------------------------------------------------------

    def train_step(self, step: int) -> dict[str, float]:
        # One task per step, round-robin over the suite, as the official training loop does.
        task = self.data.task_data[step % self.data.num_tasks]
        with self.phase("sampling"):
            segment, prompt = self.sample_batch(task, self.rng)
        self.network.train()
        with self.phase("forward"):
            loss = self.action_loss(segment, prompt, task.task_id)
        with self.phase("backward"):
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
        with self.phase("optimizer"):
            parameters = self.network.parameters()
            grad_norm = nn.utils.clip_grad_norm_(parameters, self.config.grad_clip)
            self.optimizer_step(task.task_id)
            self.scheduler.step()
        every = self.config.harmony_every
        if every and (step + 1) % every == 0:
            harmony, chance = self.harmony()
            self.events.append(
                {"event": "harmony", "step": step + 1, "harmony": harmony, "harmony_chance": chance}
            )
        return {
            "loss": float(loss.detach()),
            "grad_norm": float(grad_norm),
            "learning_rate": float(self.scheduler.get_last_lr()[0]),
        }

    def optimizer_step(self, task_id: int) -> None:
        """Apply the gradients of one task's step (HarmoDT keeps the task's masked weights)."""
        self.optimizer.step()

    def pop_events(self) -> list[dict[str, Any]]:
        events, self.events = self.events, []
        return events

    def shared_weights(self) -> dict[str, nn.Parameter]:
        """The transformer blocks' weight matrices: what HarmoDT masks and Def. 3.2 scores."""
        return {
            name: param
            for name, param in self.network.named_parameters()
            if name.startswith("transformer.blocks.") and param.dim() == 2
        }

    def sample_batch(
        self, task: TaskData, rng: np.random.Generator
    ) -> tuple[Segment, Segment | None]:
        """One training batch of `task` (with its prompt, if the variant has one) drawn from `rng`.

        Training draws from `self.rng`; diagnostics pass their own stream, so turning them on
        never changes the training batches.
        """
        segment = self.sample_segment(task, rng)
        prompt = self.training_prompt(task, self.config.batch_size, rng)
        return segment, None if prompt is None else prompt.to(self.device)  # the CPU: no copy

    def harmony(self) -> tuple[float, float]:
        """Averaged harmony score of one batch per task at the current weights (dropout off),
        and its chance level (`scored_harmony`)."""
        was_training = self.network.training
        self.network.eval()
        weights = list(self.shared_weights().values())
        size = sum(weight.numel() for weight in weights)
        gradients = torch.empty(self.data.num_tasks, size, device=self.device)
        for task in self.data.task_data:
            segment, prompt = self.sample_batch(task, self.diagnostic_rng)
            loss = self.action_loss(segment, prompt, task.task_id)
            grads = torch.autograd.grad(loss, weights)
            torch.cat([g.reshape(-1) for g in grads], out=gradients[task.task_id])
        self.network.train(was_training)
        return self.scored_harmony(gradients)

    def scored_harmony(self, task_gradients: Tensor) -> tuple[float, float]:
        """Def. 3.2 of (tasks, weights) gradients and its chance level, whose coins come from
        the method's own `chance_rng`: a score means agreement only as far as it exceeds it."""
        return average_harmony(task_gradients), harmony_chance(task_gradients, self.chance_rng)

    def harmony_fields(self, task_gradients: Mapping[str, Tensor]) -> dict[str, dict[str, float]]:
        """An event's `harmony` and `harmony_chance` entries: per named (tasks, weights)
        gradient set, its `scored_harmony`."""
        scores = {name: self.scored_harmony(grads) for name, grads in task_gradients.items()}
        return {
            "harmony": {name: value for name, (value, _) in scores.items()},
            "harmony_chance": {name: chance for name, (_, chance) in scores.items()},
        }

    def sample_segment(self, task: TaskData, rng: np.random.Generator) -> Segment:
        segment = sample_segments(
            task,
            self.config.batch_size,
            self.config.context_length,
            rng,
            self.config.return_scale,
            self.config.max_timestep,
        )
        return segment.to(self.device)

    def action_loss(self, segment: Segment, prompt: Segment | None, task_id: int) -> Tensor:
        """Mean squared action error over the non-padded steps (the reference loss), in fp32."""
        with self.autocast():
            predicted = self.predict(segment, prompt, task_id)
        return action_error(predicted, segment)

    def autocast(self) -> AbstractContextManager[Any]:
        """The network's forward at `precision` (bf16: matrix products in bf16, autocast's
        fp32 list, e.g. layer norm and softmax, stays fp32)."""
        return torch.autocast(
            self.device.type, dtype=torch.bfloat16, enabled=self.config.precision == "bf16"
        )

    def policy(self, task_id: int) -> DTPolicy:
        from methods.dt_policy import DTPolicy  # the policy module needs this one's classes

        task = self.data.task(task_id)  # an unseen test task too: its prompt and statistics
        prompt = self.evaluation_prompt(task)
        return DTPolicy(self, task, None if prompt is None else prompt.to(self.device))

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.network.parameters())

    def state_dict(self) -> dict[str, Any]:
        return {
            "network": self.network.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "numpy_rng": self.rng.bit_generator.state,
            "diagnostic_rng": self.diagnostic_rng.bit_generator.state,
            "chance_rng": self.chance_rng.bit_generator.state,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.network.load_state_dict(state["network"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.rng.bit_generator.state = state["numpy_rng"]
        self.diagnostic_rng.bit_generator.state = state["diagnostic_rng"]
        if "chance_rng" in state:  # absent from checkpoints written before it existed
            self.chance_rng.bit_generator.state = state["chance_rng"]


def action_error(predicted: Tensor, segment: Segment) -> Tensor:
    """Mean squared error of predicted actions over the segment's non-padded steps, in fp32."""
    return F.mse_loss(predicted[segment.mask].float(), segment.actions[segment.mask])
