"""The policy protocol the evaluator and the data generator drive.

A policy acts for n parallel episodes of one task at once: `reset(n)` starts n episodes and
`act` maps a batch of observations (and the rewards the previous actions earned) to a batch of
actions. Learned methods and Meta-World's scripted experts implement the same two calls.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np


class Policy(Protocol):
    def reset(self, num_episodes: int) -> None:
        """Forget all history and start `num_episodes` new episodes."""

    def act(self, observations: np.ndarray, rewards: np.ndarray | None) -> np.ndarray:
        """Actions (n, act_dim) for observations (n, obs_dim).

        `rewards` (n,) are the rewards of the previous step, or None on an episode's first step.
        """
