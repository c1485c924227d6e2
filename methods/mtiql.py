"""MTIQL: d3rlpy's IQL with one critic head per task and a task-id conditioned actor.

HarmoDT (Appendix D, after MTDiff) describes MTIQL as "IQL extended with multi-head critic
networks and a task-ID conditioned actor". Every network reads [normalised state, one-hot task
id]; the Q-functions and the value function share an MLP trunk across tasks and end in one
output head per task, the head chosen by the one-hot in the input. See docs/baselines.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import numpy as np
from torch import Tensor, nn

from bench.registry import MethodConfig, follows, register
from methods.d3rlpy_glue import D3rlpyMethod, d3rlpy, return_range_reward_scales

if TYPE_CHECKING:  # d3rlpy is imported through methods.d3rlpy_glue at run time
    from d3rlpy.models.torch import Encoder, EncoderWithAction
else:
    Encoder = d3rlpy.models.torch.Encoder
    EncoderWithAction = d3rlpy.models.torch.EncoderWithAction


@dataclass(frozen=True)
class MTIQLConfig(MethodConfig):
    """The same values at every scale preset; the step budget is the preset's train.steps.
    IQL = Kostrikov et al. 2022 (ICLR), official code github.com/ikostrikov/implicit_q_learning."""

    # IQL paper (all domains) and d3rlpy default encoders: 2 hidden layers of 256, ReLU, for the
    # actor, each Q-function and the value function. Critics add one output head per task.
    hidden_units: tuple[int, ...] = (256, 256)
    batch_size: int = 256  # IQL paper and d3rlpy IQLConfig default
    actor_learning_rate: float = 3e-4  # IQL paper and d3rlpy IQLConfig default
    critic_learning_rate: float = 3e-4  # IQL paper and d3rlpy IQLConfig default (Q and V)
    # IQL official code: the actor's learning rate follows a cosine decay over the training
    # steps (Learner opt_decay_schedule="cosine"); d3rlpy's reproduction script does the same.
    # 0: a constant actor learning rate.
    actor_lr_cosine_steps: int = follows("train.steps", 0)
    # IQL locomotion config: none; its Kitchen/Adroit config uses 0.1 (with weight_temp 0.5).
    actor_dropout: float = 0.0
    gamma: float = 0.99  # IQL paper and d3rlpy IQLConfig default
    tau: float = 0.005  # IQL paper and d3rlpy IQLConfig default (soft target update)
    n_critics: int = 2  # IQL paper (clipped double Q) and d3rlpy IQLConfig default
    expectile: float = 0.7  # IQL paper (locomotion and Kitchen/Adroit), d3rlpy default
    weight_temp: float = 3.0  # beta: IQL paper locomotion, d3rlpy default (Kitchen/Adroit: 0.5)
    max_weight: float = 100.0  # advantage weight clip: IQL official code and d3rlpy default
    # IQL official code for locomotion: rewards * 1000 / (max - min episode return) of the
    # dataset (d3rlpy: ReturnBasedRewardScaler(multiplier=1000)); here per task. none = raw.
    reward_scaling: Literal["return_range", "none"] = "return_range"
    return_range: float = 1000.0


class TaskHeads(nn.Module):
    """One linear output head per task over shared features; a row reads its own task's head.

    The one-hot multiplies the K head outputs, so a transition's loss reaches only its task's
    head (the trunk below is shared), and the selection stays defined for the non-one-hot probe
    input d3rlpy sizes its layers with. d3rlpy then appends its own `Linear(1, 1)` to every
    critic and value encoder (IQL's Q-function factory cannot be swapped), so a task's value is
    w * head_task(features) + b with one scalar pair (w, b) shared by all tasks.
    """

    def __init__(self, width: int, num_tasks: int) -> None:
        super().__init__()
        self.linear = nn.Linear(width, num_tasks)

    def forward(self, features: Tensor, task_one_hot: Tensor) -> Tensor:
        return (self.linear(features) * task_one_hot).sum(dim=1, keepdim=True)


class TaskHeadEncoder(Encoder):
    def __init__(self, trunk: Encoder, width: int, num_tasks: int) -> None:
        super().__init__()
        self.trunk = trunk
        self.heads = TaskHeads(width, num_tasks)
        self.num_tasks = num_tasks

    def forward(self, x: Tensor) -> Tensor:
        return self.heads(self.trunk(x), x[:, -self.num_tasks :])  # the one-hot ends the input


class TaskHeadEncoderWithAction(EncoderWithAction):
    def __init__(self, trunk: EncoderWithAction, width: int, num_tasks: int) -> None:
        super().__init__()
        self.trunk = trunk
        self.heads = TaskHeads(width, num_tasks)
        self.num_tasks = num_tasks

    def forward(self, x: Tensor, action: Tensor) -> Tensor:
        return self.heads(self.trunk(x, action), x[:, -self.num_tasks :])


@dataclass()
class TaskHeadEncoderFactory(d3rlpy.models.EncoderFactory):
    """d3rlpy's MLP trunk over the whole input (one-hot included), then one head per task."""

    num_tasks: int = 1
    hidden_units: list[int] = field(default_factory=lambda: [256, 256])

    def create(self, observation_shape: tuple[int, ...]) -> TaskHeadEncoder:
        trunk = self._mlp().create(observation_shape)
        return TaskHeadEncoder(trunk, self.hidden_units[-1], self.num_tasks)

    def create_with_action(
        self, observation_shape: tuple[int, ...], action_size: int, discrete_action: bool = False
    ) -> TaskHeadEncoderWithAction:
        trunk = self._mlp().create_with_action(observation_shape, action_size, discrete_action)
        return TaskHeadEncoderWithAction(trunk, self.hidden_units[-1], self.num_tasks)

    def _mlp(self) -> d3rlpy.models.VectorEncoderFactory:
        return d3rlpy.models.VectorEncoderFactory(hidden_units=self.hidden_units)

    @staticmethod
    def get_type() -> str:
        return "mtbench_task_heads"


@register("mtiql", config=MTIQLConfig)
class MTIQL(D3rlpyMethod):
    """Multi-task IQL on all tasks' transitions at once."""

    config: MTIQLConfig

    def make_learner(self, device: str) -> d3rlpy.algos.IQL:
        config = self.config
        hidden = list(config.hidden_units)
        heads = TaskHeadEncoderFactory(num_tasks=self.data.num_tasks, hidden_units=hidden)
        schedule = (
            d3rlpy.optimizers.CosineAnnealingLRFactory(T_max=config.actor_lr_cosine_steps)
            if config.actor_lr_cosine_steps > 0
            else None
        )
        return d3rlpy.algos.IQLConfig(
            batch_size=config.batch_size,
            actor_learning_rate=config.actor_learning_rate,
            critic_learning_rate=config.critic_learning_rate,
            actor_optim_factory=d3rlpy.optimizers.AdamFactory(lr_scheduler_factory=schedule),
            actor_encoder_factory=d3rlpy.models.VectorEncoderFactory(
                hidden_units=hidden, dropout_rate=config.actor_dropout or None
            ),
            critic_encoder_factory=heads,
            value_encoder_factory=heads,
            gamma=config.gamma,
            tau=config.tau,
            n_critics=config.n_critics,
            expectile=config.expectile,
            weight_temp=config.weight_temp,
            max_weight=config.max_weight,
        ).create(device=device)

    def reward_scales(self) -> np.ndarray | None:
        if self.config.reward_scaling == "none":
            return None
        return return_range_reward_scales(self.data, self.config.return_range)

    def metrics(self, losses: Mapping[str, float]) -> dict[str, float]:
        logged = {name: float(value) for name, value in losses.items()}
        # What the learner minimises, so a resumed run is checked on every network.
        return {"loss": logged["critic_loss"] + logged["actor_loss"], **logged}
