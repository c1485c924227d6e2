"""`bench perf eval`: the real evaluator on real Meta-World tasks, policy and simulator apart.

The method is untrained (built on synthetic data): speed does not depend on what it learned,
only on its shapes. The episodes are cut at `max_steps`, since a step's cost hardly depends
on the step index once the context is full (it is from step K on).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from bench.evaluate import EvalProtocol, run_episodes
from bench.perf.load import LoadMeter
from bench.perf.ops import cpu_profiler, top_ops
from bench.policy import Policy


class TimedPolicy:
    """A policy whose `act` calls are timed: the rest of an evaluation is the simulator's."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.seconds = 0.0
        self.made = time.perf_counter()
        self.setup_seconds = 0.0  # environments made and reset, before the first step

    def reset(self, num_episodes: int) -> None:
        self.setup_seconds = time.perf_counter() - self.made
        self.policy.reset(num_episodes)

    def act(self, observations: np.ndarray, rewards: np.ndarray | None) -> np.ndarray:
        start = time.perf_counter()
        actions = self.policy.act(observations, rewards)
        self.seconds += time.perf_counter() - start
        return actions


class ProfiledPolicy(TimedPolicy):
    """Profiles `calls` act calls op by op, from the first whose context is full (`skip`)."""

    def __init__(self, policy: Policy, skip: int, calls: int) -> None:
        super().__init__(policy)
        self.skip, self.calls, self.made_calls = skip, calls, 0
        self.profiler = cpu_profiler()

    def act(self, observations: np.ndarray, rewards: np.ndarray | None) -> np.ndarray:
        if self.made_calls == self.skip:
            self.profiler.start()
        actions = super().act(observations, rewards)
        self.made_calls += 1
        if self.made_calls == self.skip + self.calls:
            self.profiler.stop()
        return actions


def measure_eval(
    method: Any, tasks: Sequence[str], episodes: int, max_steps: int, op_calls: int = 0
) -> dict[str, Any]:
    """Env-steps/s of `episodes` lockstep episodes per task over `tasks`, split into the
    policy's time, the environments' making and reset, and the rest (the simulator's steps
    and the evaluator's bookkeeping); with `op_calls`, then that many policy calls of the
    first task, once its context is full, under torch's profiler."""
    protocol = EvalProtocol(
        episodes=episodes, goal_pool_seed=1000, goal_selection_seed=0, max_steps=max_steps
    )
    policy_seconds = setup_seconds = 0.0
    with LoadMeter() as load:
        start = time.perf_counter()
        for task_id, task in enumerate(tasks):
            policy = TimedPolicy(method.policy(task_id))
            run_episodes(task, policy, protocol)
            policy_seconds += policy.seconds
            setup_seconds += policy.setup_seconds
        seconds = time.perf_counter() - start
    env_steps = len(tasks) * episodes * max_steps
    ops = _op_profile(method, tasks[0], episodes, op_calls) if op_calls else None
    return {
        "tasks": list(tasks),
        "episodes_per_task": episodes,
        "steps_per_episode": max_steps,
        "env_steps": env_steps,
        "seconds": seconds,
        "env_steps_per_s": env_steps / (seconds - setup_seconds),
        "policy_ms_per_env_step": 1000 * policy_seconds / env_steps,
        "policy_env_steps_per_s": env_steps / policy_seconds,
        "simulator_ms_per_env_step": 1000 * (seconds - setup_seconds - policy_seconds) / env_steps,
        "setup_seconds_per_task": setup_seconds / len(tasks),
        "policy_ms_per_call": 1000 * policy_seconds / (len(tasks) * max_steps),
        "load": load.describe(),
        **({"op_profile": ops} if ops else {}),
    }


def _op_profile(method: Any, task: str, episodes: int, calls: int) -> dict[str, Any]:
    skip = method.config.context_length if hasattr(method.config, "context_length") else 0
    protocol = EvalProtocol(
        episodes=episodes, goal_pool_seed=1000, goal_selection_seed=0, max_steps=skip + calls
    )
    policy = ProfiledPolicy(method.policy(0), skip, calls)
    run_episodes(task, policy, protocol)
    return top_ops(policy.profiler, calls, "policy call")
