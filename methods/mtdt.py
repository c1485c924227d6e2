"""MTDT: the shared DT backbone with a task-id embedding (paper) or no task input (official)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from torch import nn

from bench.data.samplers import Segment
from bench.registry import register
from methods.dt import Conditioning, DecisionTransformerMethod, DTConfig


@dataclass(frozen=True)
class MTDTConfig(DTConfig):
    acts_on_unseen_tasks: ClassVar[bool] = True  # as the nearest training task (unseen_task_rule)
    # "task_id" (the default) is the paper's Appendix D (iv): a task embedding z joined to each
    # state, i.e. W[s; onehot(task)] = W_s s + z_task, added to the state tokens. "none" is the
    # official code's MTDT: Prompt-DT's network run with no prompt (docs/fidelity.md).
    conditioning: Literal["none", "task_id"] = "task_id"


class TaskIdConditioner(nn.Module):
    def __init__(self, num_tasks: int, width: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(num_tasks, width)

    def forward(self, segment: Segment, prompt: Segment | None) -> Conditioning:
        return Conditioning(state_offset=self.embedding(segment.task_ids))


@register("mtdt", config=MTDTConfig)
class MTDT(DecisionTransformerMethod):
    """Multi-task DT on all tasks' data at once."""

    config: MTDTConfig

    @property
    def unseen_task_rule(self) -> str:
        if self.config.conditioning == "none":
            return "no task input (conditioning=none): one policy for every task"
        return (
            "the task embedding of the nearest training task by prompt "
            "(bench.data.samplers.OfflineData.nearest_training_task)"
        )

    def make_conditioner(self) -> nn.Module | None:
        if self.config.conditioning == "none":
            return None
        return TaskIdConditioner(self.data.num_tasks, self.config.embed_dim)
