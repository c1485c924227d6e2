"""MTBC: d3rlpy's behaviour cloning with a scaled-up, task-id conditioned actor.

HarmoDT (Appendix D, after MTDiff) describes MTBC as "Behavior cloning extended to multi-task
offline policy learning via network scaling and a task-ID conditioned actor". Here: d3rlpy's BC
learner on [normalised state, one-hot task id], with an MLP widened to about the parameter
budget the paper's Table 1 lists for it (1.74M) on MT50. See docs/baselines.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from bench.errors import UserError
from bench.registry import register
from methods.d3rlpy_glue import D3rlpyMethod, d3rlpy


@dataclass(frozen=True)
class MTBCConfig:
    """Every value and its source is in configs/method/mtbc.yaml."""

    hidden_units: tuple[int, ...] = (1024, 1024, 512)
    batch_size: int = 256
    learning_rate: float = 3e-4
    policy_type: Literal["deterministic", "stochastic"] = "deterministic"

    def __post_init__(self) -> None:
        if self.policy_type not in ("deterministic", "stochastic"):
            raise UserError(
                f"unknown policy_type {self.policy_type!r} for method 'mtbc'; "
                "choose one of: deterministic, stochastic"
            )


@register("mtbc", config=MTBCConfig)
class MTBC(D3rlpyMethod):
    """Multi-task BC on all tasks' transitions at once."""

    config: MTBCConfig

    def make_learner(self, device: str) -> d3rlpy.algos.BC:
        return d3rlpy.algos.BCConfig(
            batch_size=self.config.batch_size,
            learning_rate=self.config.learning_rate,
            policy_type=self.config.policy_type,
            encoder_factory=d3rlpy.models.VectorEncoderFactory(
                hidden_units=list(self.config.hidden_units)
            ),
        ).create(device=device)
