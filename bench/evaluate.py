"""The evaluator: per task, n episodes stepped in lockstep, one batched policy call per step.

Protocols (recorded in every result):
- Meta-World v3 with random goals (MT50-rand): each episode gets its own goal from the task's
  goal pool `MT1(task, seed=goal_pool_seed)`, chosen by a generator seeded from the run seed, so
  an evaluation is reproducible; 500 steps; success = `info["success"]` at any step; the score
  is the mean success rate over tasks.
- The meta-RL families (cheetah_dir, cheetah_vel, ant_dir): each episode starts from a reset
  seeded from the run seed and the task; 200 steps (or until the env terminates); the score is
  the mean episode return on each of the suite's test tasks. There is no success rule.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypedDict, cast

import numpy as np
from tqdm import tqdm

from bench.envs import metaworld
from bench.policy import Policy
from bench.suites import HARMODT_MT50_ORDER, METAWORLD, Benchmark, Suite


@dataclass(frozen=True)
class EvalProtocol:
    episodes: int
    goal_pool_seed: int
    goal_selection_seed: int
    max_steps: int = metaworld.MAX_EPISODE_STEPS
    benchmark: Benchmark = METAWORLD
    # Meta-RL: each task's parameter as its data was made with (an imported Prompt-DT store's
    # ant_dir goals are not our seeded ones); a task not listed gets the seeded default.
    task_parameters: Mapping[str, float] = field(default_factory=dict)

    def goal_indices(self, task: str) -> list[int]:
        """Distinct goals while the pool lasts; the same list for every method given the seed."""
        pool_size = len(metaworld.goal_pool(task, self.goal_pool_seed))
        stable_id = HARMODT_MT50_ORDER.index(task.removesuffix("-v3"))
        rng = np.random.default_rng([self.goal_selection_seed, stable_id])
        replace = self.episodes > pool_size
        return [int(i) for i in rng.choice(pool_size, size=self.episodes, replace=replace)]

    def reset_seeds(self, task: str) -> list[int]:
        """Meta-RL episodes' reset seeds: the same list for every method given the run seed."""
        from bench.envs.mujoco_meta import parse_task

        _, index = parse_task(task)
        rng = np.random.default_rng([self.goal_selection_seed, index])
        return [int(s) for s in rng.integers(0, 2**31 - 1, size=self.episodes)]

    def describe(self) -> dict[str, object]:
        return self.benchmark.describe(self)


class Scores(TypedDict):
    """What `evaluate` returns: the means over the evaluated tasks, and each task's scores."""

    success_rate: float | None  # None where the benchmark has no success rule
    mean_return: float
    per_task: dict[str, dict[str, object]]  # run_episodes' scores, and a meta-RL task's split
    protocol: dict[str, object]


def stored_task_parameters(manifest: Mapping[str, Any], tasks: Sequence[str]) -> dict[str, float]:
    """The meta-RL task parameters a store's manifest records (generated or imported data)."""
    from bench.envs.mujoco_meta import PARAMETER_NAMES, parse_task

    parameters = {}
    for task in tasks:
        recorded = manifest["tasks"].get(task, {}).get("task_parameters") or {}
        name = PARAMETER_NAMES[parse_task(task)[0]]
        if name in recorded:
            parameters[task] = float(recorded[name])
    return parameters


def run_episodes(
    task: str,
    policy: Policy,
    protocol: EvalProtocol,
    on_step: Callable[[], None] | None = None,
) -> dict[str, object]:
    """Roll `protocol.episodes` episodes of one task in lockstep; per-episode success and return.

    An episode that terminates early (a meta-RL Ant that falls) keeps its last observation in
    the policy's batch, but is not stepped again and earns nothing more.
    """
    envs: list[Any] = []
    try:  # the environments are closed whatever happens, a policy's exception included
        observations = np.stack(protocol.benchmark.make_envs(task, protocol, envs))
        returns = np.zeros(len(envs))
        success = np.zeros(len(envs), dtype=bool)
        running = np.ones(len(envs), dtype=bool)
        policy.reset(len(envs))
        rewards: np.ndarray | None = None
        for _ in range(protocol.max_steps):
            actions = policy.act(observations, rewards)
            rewards = np.zeros(len(envs))
            observations = observations.copy()  # a policy may keep the batch it was given
            for i in np.flatnonzero(running):
                observation, reward, terminated, truncated, info = envs[i].step(actions[i])
                observations[i], rewards[i] = observation, reward
                success[i] |= info.get("success", 0) > 0
                running[i] = not (terminated or truncated)
            returns += rewards
            if on_step is not None:
                on_step()
            if not running.any():
                break
    finally:
        for env in envs:
            env.close()
    scores: dict[str, object] = {"mean_return": float(returns.mean())}
    return scores | protocol.benchmark.episode_scores(task, protocol, returns, success)


def evaluate(
    suite: Suite,
    make_policy: Callable[[int], Policy],
    protocol: EvalProtocol,
    progress: bool = True,
) -> Scores:
    """Per-task scores for every task the suite is scored on, and their means; a meta-RL suite
    is scored on its test tasks, each result saying which split it is from."""
    per_task: dict[str, dict[str, object]] = {}
    tasks = suite.evaluation_tasks
    with tqdm(total=len(tasks) * protocol.max_steps, desc="evaluate", unit="step",
              disable=not progress) as bar:  # fmt: skip
        for task in tasks:
            bar.set_postfix_str(task)
            scores = run_episodes(task, make_policy(suite.task_id(task)), protocol, bar.update)
            if suite.test_tasks:
                scores["split"] = suite.split(task)
            per_task[task] = scores
    rates = [r["success_rate"] for r in per_task.values()]
    return {
        "success_rate": None if None in rates else float(np.mean(cast("list[float]", rates))),
        "mean_return": float(np.mean([r["mean_return"] for r in per_task.values()])),
        "per_task": per_task,
        "protocol": protocol.describe(),
    }
