"""Prompt-DT: the shared DT backbone conditioned on a short trajectory prompt of the task."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from torch import nn

from bench.data.samplers import Segment, TaskData, prompt_segments, sample_prompts
from bench.registry import register
from methods.dt import Conditioning, DecisionTransformerMethod, DTConfig, TrajectoryEmbedding


@dataclass(frozen=True)
class PromptDTConfig(DTConfig):
    acts_on_unseen_tasks: ClassVar[bool] = True  # prompted by the unseen task's own data
    reads_prompts: ClassVar[bool] = True


class PromptConditioner(nn.Module):
    """Embeds the prompt with its own embeddings into 3 tokens per step, prepended to the input."""

    def __init__(self, obs_dim: int, act_dim: int, config: DTConfig) -> None:
        super().__init__()
        self.embed = TrajectoryEmbedding(obs_dim, act_dim, config)

    def forward(self, segment: Segment, prompt: Segment | None) -> Conditioning:
        if prompt is None:
            raise ValueError("Prompt-DT needs a prompt for every batch")
        tokens, mask = self.embed(prompt)
        return Conditioning(prefix=tokens, prefix_mask=mask)


@register("prompt_dt", config=PromptDTConfig)
class PromptDT(DecisionTransformerMethod):
    """Prompts come only from each task's reserved prompt episodes, never its training ones."""

    @property
    def unseen_task_rule(self) -> str:
        return "a prompt from the unseen task's own data (its best prompt episode)"

    def make_conditioner(self) -> nn.Module | None:
        return PromptConditioner(self.data.obs_dim, self.data.act_dim, self.config)

    def training_prompt(
        self, task: TaskData, batch_size: int, rng: np.random.Generator
    ) -> Segment | None:
        return sample_prompts(
            task,
            batch_size,
            self.config.prompt_length,
            rng,
            self.config.return_scale,
            self.config.max_timestep,
        )

    def evaluation_prompt(self, task: TaskData) -> Segment | None:
        # The reference evaluation uses the highest-return prompt episode.
        return prompt_segments(
            task,
            np.array([task.best_prompt]),
            self.config.prompt_length,
            self.config.return_scale,
            self.config.max_timestep,
        )
