"""How a DT method acts: n parallel episodes of one task, with a rolling context of K steps."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from bench.data.samplers import Segment, TaskData

if TYPE_CHECKING:
    from methods.dt import DecisionTransformerMethod


class DTPolicy:
    """Acts for n parallel episodes of one task with a rolling context of the last K steps."""

    def __init__(self, method: DecisionTransformerMethod, task: TaskData, prompt: Segment | None):
        self.method = method
        self.task = task
        self.prompt = prompt
        self.config = method.config
        self.device = method.device
        self.state_mean = torch.from_numpy(task.state_mean).to(self.device)
        self.state_std = torch.from_numpy(task.state_std).to(self.device)

    def reset(self, num_episodes: int) -> None:
        self.num_episodes = num_episodes
        self.step_index = 0
        context = self.config.context_length
        obs_dim, act_dim = self.task.arrays.observations.shape[1], self.task.arrays.actions.shape[1]
        zeros = lambda *shape: torch.zeros(num_episodes, context, *shape, device=self.device)
        self.states, self.actions, self.returns_to_go = zeros(obs_dim), zeros(act_dim), zeros(1)
        self.timesteps = torch.zeros(num_episodes, context, dtype=torch.long, device=self.device)
        self.mask = torch.zeros(num_episodes, context, dtype=torch.bool, device=self.device)
        self.prompt_batch = None if self.prompt is None else self.prompt.expand(num_episodes)
        self.acting = self.method.acting_network(self.task.task_id)
        # What a task embedding reads: an unseen task has none of its own (OfflineData).
        self.embedding_task_id = self.method.data.nearest_training_task(self.task.task_id)

    def act(self, observations: np.ndarray, rewards: np.ndarray | None) -> np.ndarray:
        scale = self.config.return_scale
        if rewards is None:
            target = self.config.target_return / scale
            rtg = torch.full((self.num_episodes,), target, device=self.device)
        else:
            earned = torch.as_tensor(rewards, dtype=torch.float32, device=self.device) / scale
            rtg = self.returns_to_go[:, -1, 0] - earned
        obs = torch.as_tensor(observations, dtype=torch.float32, device=self.device)
        timestep = min(self.step_index, self.config.max_timestep - 1)
        self._push(
            state=(obs - self.state_mean) / self.state_std,
            return_to_go=rtg[:, None],
            timestep=timestep,
        )
        segment = Segment(
            states=self.states,
            actions=self.actions,
            returns_to_go=self.returns_to_go,
            timesteps=self.timesteps,
            mask=self.mask,
            task_ids=torch.full((self.num_episodes,), self.embedding_task_id, device=self.device),
        )
        self.method.network.eval()
        with torch.no_grad(), self.method.autocast():
            action = self.acting(segment, self.prompt_batch)[:, -1].float()
        self.actions[:, -1] = action
        self.step_index += 1
        return action.cpu().numpy()

    def _push(self, state: Tensor, return_to_go: Tensor, timestep: int) -> None:
        """Shift the context one step left and write the new step (action filled in later)."""
        for buffer in (self.states, self.actions, self.returns_to_go, self.timesteps, self.mask):
            buffer[:, :-1] = buffer[:, 1:].clone()
        self.states[:, -1] = state
        self.actions[:, -1] = 0.0
        self.returns_to_go[:, -1] = return_to_go
        self.timesteps[:, -1] = timestep
        self.mask[:, -1] = True
