"""d3rlpy learners driven by the harness: what MTBC and MTIQL share.

The harness owns the loop, the data and the evaluation; d3rlpy owns only the learner: its
networks, losses and optimizers, built with `create_impl` from shapes (never `fit`) and
stepped with `update` on batches made here from the shared transition sampler.

Every learner sees the same input: the task's state normalised with that task's statistics
(the ones the DT methods use), followed by a one-hot of the task id, so d3rlpy's observation is
39 + num_tasks wide and every network it builds is task-conditioned.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from bench.data.samplers import OfflineData, Transitions, sample_transitions
from bench.errors import UserError
from bench.suites import Suite


def _import_d3rlpy() -> ModuleType:
    """d3rlpy without its side effects on the rest of the process.

    With CUDA present, importing d3rlpy switches torch to TF32 matmuls and compiled autograd for
    the whole process (every method, not only these): both are put back. Its `gym` dependency
    prints an "unmaintained" banner although nothing here uses gym: swallowed.
    """
    matmul_precision = torch.get_float32_matmul_precision()
    cuda = torch.cuda.is_available()
    compiled_autograd = torch._dynamo.config.compiled_autograd if cuda else None
    with contextlib.redirect_stderr(io.StringIO()):
        import d3rlpy
    torch.set_float32_matmul_precision(matmul_precision)
    if cuda:
        assert compiled_autograd is not None  # read above whenever CUDA is present
        torch._dynamo.config.compiled_autograd = compiled_autograd
    return d3rlpy


if TYPE_CHECKING:
    # For mypy only (d3rlpy ships no type information: all Any to it). At run time d3rlpy is
    # imported by `_import_d3rlpy`, which undoes its side effects on the process.
    import d3rlpy
    from d3rlpy.algos import QLearningAlgoBase
    from d3rlpy.dataset import TransitionMiniBatch
else:
    d3rlpy = _import_d3rlpy()
    QLearningAlgoBase = d3rlpy.algos.QLearningAlgoBase
    TransitionMiniBatch = d3rlpy.dataset.TransitionMiniBatch


@dataclass(frozen=True)
class TaskInputs:
    """Per-task state statistics and reward scales, indexed by task id."""

    state_mean: np.ndarray  # (num_tasks, obs_dim)
    state_std: np.ndarray  # (num_tasks, obs_dim)
    reward_scale: np.ndarray  # (num_tasks,)

    @classmethod
    def from_data(cls, data: OfflineData, reward_scale: np.ndarray | None = None) -> TaskInputs:
        tasks = data.task_data
        return cls(
            state_mean=np.stack([t.state_mean for t in tasks]),
            state_std=np.stack([t.state_std for t in tasks]),
            reward_scale=(
                np.ones(len(tasks), np.float32) if reward_scale is None else reward_scale
            ),
        )

    @property
    def num_tasks(self) -> int:
        return len(self.reward_scale)

    def encode(self, observations: np.ndarray, task_ids: np.ndarray) -> np.ndarray:
        """[ (obs - mean_task) / std_task , one_hot(task) ] as float32, one row per observation."""
        states = (observations - self.state_mean[task_ids]) / self.state_std[task_ids]
        one_hot = np.eye(self.num_tasks, dtype=np.float32)[task_ids]
        return np.concatenate([states.astype(np.float32), one_hot], axis=1)


def return_range_reward_scales(data: OfflineData, return_range: float) -> np.ndarray:
    """Per task, the factor that makes (best - worst) training-episode return `return_range`.

    The IQL paper's reward normalisation (r * 1000 / (R_max - R_min) over a dataset's episodes,
    train_offline.py of the official code; d3rlpy's ReturnBasedRewardScaler), applied to each
    task's dataset on its own. A task whose episodes all earn the same return keeps its rewards.
    """
    scales = []
    for task in data.task_data:
        returns = task.returns_to_go[task.train_starts]
        spread = float(returns.max() - returns.min())
        scales.append(return_range / spread if spread > 1e-6 else 1.0)
    return np.asarray(scales, dtype=np.float32)


def to_minibatch(batch: Transitions, inputs: TaskInputs) -> TransitionMiniBatch:
    """d3rlpy's batch from the sampler's: normalised task-conditioned inputs, scaled rewards.

    Only true terminals stop bootstrapping: a time-limit truncation (timeout) is not the end of
    the task, so its target keeps gamma * V(s'). The sampler never draws an episode's last step,
    so every next observation is real, and a terminal on that last step (ant_dir's data) is
    never seen (bench.data.samplers.sample_transitions).
    """
    size = len(batch.actions)
    column = lambda values: np.asarray(values, dtype=np.float32).reshape(size, 1)
    actions = np.asarray(batch.actions, dtype=np.float32)
    return TransitionMiniBatch(
        observations=inputs.encode(batch.observations, batch.task_ids),
        actions=actions,
        rewards=column(batch.rewards * inputs.reward_scale[batch.task_ids]),
        next_observations=inputs.encode(batch.next_observations, batch.task_ids),
        next_actions=actions,  # read by SARSA-style learners only, never by BC or IQL
        terminals=column(batch.terminals),
        intervals=np.ones((size, 1), dtype=np.float32),  # one step: discount gamma**1
        transitions=[],  # only returns-to-go learners read it
    )


class D3rlpyMethod:
    """The method contract around one d3rlpy learner; a subclass says which learner to build."""

    def __init__(
        self, config: Any, suite: Suite, data: OfflineData, seed: int, device: torch.device
    ) -> None:
        self.config = config
        self.suite = suite
        self.data = data
        self.device = device
        self.rng = np.random.Generator(np.random.PCG64(seed))
        self.inputs = TaskInputs.from_data(data, self.reward_scales())
        # d3rlpy builds and initialises its networks from torch's global RNG and takes no
        # generator: it gets a forked global state seeded from our seed, so the networks
        # depend on the seed alone and the runner's global state (dropout masks later on,
        # bench/process_state.py) is left exactly as it was.
        with _seeded_global_torch_rng(seed):
            self.learner = self.make_learner(_d3rlpy_device(device))
            self.learner.create_impl((data.obs_dim + data.num_tasks,), data.act_dim)

    # What a method overrides --------------------------------------------------------------

    def make_learner(self, device: str) -> QLearningAlgoBase:
        raise NotImplementedError

    def reward_scales(self) -> np.ndarray | None:
        return None

    def metrics(self, losses: Mapping[str, float]) -> dict[str, float]:
        """The learner's losses as logged; `loss` must be among them."""
        return {name: float(value) for name, value in losses.items()}

    # The method contract ------------------------------------------------------------------

    def train_step(self, step: int) -> dict[str, float]:
        batch = sample_transitions(self.data, self.config.batch_size, self.rng)
        return self.metrics(self.learner.update(to_minibatch(batch, self.inputs)))

    def pop_events(self) -> list[dict[str, Any]]:
        return []

    def policy(self, task_id: int) -> TaskConditionedPolicy:
        return TaskConditionedPolicy(self.learner, self.inputs, task_id)

    def num_parameters(self) -> int:
        """Learned parameters; target networks are copies, not counted."""
        return sum(
            p.numel()
            for name, module in self._checkpointed().items()
            if isinstance(module, torch.nn.Module) and not name.startswith("targ_")
            for p in module.parameters()
        )

    def state_dict(self) -> dict[str, Any]:
        # Every network and optimizer (LR scheduler included) d3rlpy itself would checkpoint.
        return {
            "learner": {name: part.state_dict() for name, part in self._checkpointed().items()},
            "grad_step": self.learner.grad_step,
            "numpy_rng": self.rng.bit_generator.state,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        parts = self._checkpointed()
        if set(parts) != set(state["learner"]):
            raise UserError(
                f"checkpoint holds learner parts {sorted(state['learner'])}, "
                f"this method has {sorted(parts)}"
            )
        for name, part in parts.items():
            part.load_state_dict(state["learner"][name])
        self.learner.set_grad_step(int(state["grad_step"]))
        self.rng.bit_generator.state = state["numpy_rng"]

    def _checkpointed(self) -> dict[str, Any]:
        impl = self.learner.impl
        assert impl is not None
        return impl.modules.create_checkpointer(impl.device).modules


@contextlib.contextmanager
def _seeded_global_torch_rng(seed: int) -> Iterator[None]:
    """Torch's global generators (CPU and every CUDA device) seeded with `seed` inside the
    block, and put back as they were on leaving it."""
    cuda_devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=cuda_devices):
        torch.manual_seed(seed)
        yield


def _d3rlpy_device(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda:{device.index or 0}"
    return str(device)


class TaskConditionedPolicy:
    """Acts for n parallel episodes of one task: one deterministic forward (tanh of the mean)."""

    def __init__(self, learner: QLearningAlgoBase, inputs: TaskInputs, task_id: int) -> None:
        self.learner = learner
        self.inputs = inputs
        self.task_id = task_id

    def reset(self, num_episodes: int) -> None:
        self.task_ids = np.full(num_episodes, self.task_id)

    def act(self, observations: np.ndarray, rewards: np.ndarray | None) -> np.ndarray:
        # Markovian: the rewards are not needed.
        return self.learner.predict(self.inputs.encode(observations, self.task_ids))


__all__ = [
    "D3rlpyMethod",
    "TaskConditionedPolicy",
    "TaskInputs",
    "d3rlpy",
    "return_range_reward_scales",
    "to_minibatch",
]
