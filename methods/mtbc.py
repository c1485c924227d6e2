"""MTBC: d3rlpy's behaviour cloning with a scaled-up, task-id conditioned actor.

HarmoDT (Appendix D, after MTDiff) describes MTBC as "Behavior cloning extended to multi-task
offline policy learning via network scaling and a task-ID conditioned actor". Here: d3rlpy's BC
learner on [normalised state, one-hot task id], with an MLP widened to about the parameter
budget the paper's Table 1 lists for it (1.74M) on MT50. See docs/baselines.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from bench.registry import MethodConfig, register
from methods.d3rlpy_glue import D3rlpyMethod, d3rlpy


@dataclass(frozen=True)
class MTBCConfig(MethodConfig):
    """The same values at every scale preset; the step budget is the preset's train.steps."""

    # "network scaling" (HarmoDT App. D, after MTDiff): an MLP wider and deeper than d3rlpy's
    # default [256, 256], ~1.67M parameters on MT50 (input 39 + 50), close to the 1.74M the
    # paper's Table 1 lists for MTBC.
    hidden_units: tuple[int, ...] = (1024, 1024, 512)
    # IQL paper / d3rlpy IQLConfig actor values (the paper: an actor "similar to MTIQL");
    # d3rlpy's own BCConfig defaults are batch 100, lr 1e-3.
    batch_size: int = 256
    learning_rate: float = 3e-4
    # d3rlpy BCConfig default: tanh(MLP) trained on the mean squared action error, like the DT
    # methods' loss. "stochastic" = Gaussian negative log-likelihood.
    policy_type: Literal["deterministic", "stochastic"] = "deterministic"


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
