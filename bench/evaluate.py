"""The evaluator: per task, n episodes stepped in lockstep, one batched policy call per step.

Protocol (recorded in every result): Meta-World v3 with random goals (MT50-rand); each
episode gets its own goal from the task's goal pool `MT1(task, seed=goal_pool_seed)`, chosen
by a generator seeded from the run seed, so an evaluation is reproducible; 500 steps;
success = `info["success"]` at any step; the score is the mean success rate over tasks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from bench.envs.metaworld import MAX_EPISODE_STEPS, goal_pool, make_env
from bench.policy import Policy
from bench.suites import HARMODT_MT50_ORDER, Suite


@dataclass(frozen=True)
class EvalProtocol:
    episodes: int
    goal_pool_seed: int
    goal_selection_seed: int
    max_steps: int = MAX_EPISODE_STEPS

    def goal_indices(self, task: str) -> list[int]:
        """Distinct goals while the pool lasts; the same list for every method given the seed."""
        pool_size = len(goal_pool(task, self.goal_pool_seed))
        stable_id = HARMODT_MT50_ORDER.index(task.removesuffix("-v3"))
        rng = np.random.default_rng([self.goal_selection_seed, stable_id])
        replace = self.episodes > pool_size
        return [int(i) for i in rng.choice(pool_size, size=self.episodes, replace=replace)]

    def describe(self) -> dict[str, object]:
        return {
            "episodes_per_task": self.episodes,
            "max_episode_steps": self.max_steps,
            "success": "info['success'] at any step of the episode",
            "goals": "random goal per episode (MT50-rand)",
            "goal_pool_seed": self.goal_pool_seed,
            "goal_selection_seed": self.goal_selection_seed,
        }


def run_episodes(
    task: str,
    policy: Policy,
    protocol: EvalProtocol,
    on_step: Callable[[], None] | None = None,
) -> dict[str, object]:
    """Roll `protocol.episodes` episodes of one task in lockstep; per-episode success and return."""
    goals = protocol.goal_indices(task)
    pool = goal_pool(task, protocol.goal_pool_seed)
    envs = []
    returns = np.zeros(len(goals))
    success = np.zeros(len(goals), dtype=bool)
    try:  # the environments are closed whatever happens, a policy's exception included
        envs.extend(make_env(task, pool[g]) for g in goals)
        observations = np.stack([env.reset()[0] for env in envs])
        policy.reset(len(envs))
        rewards: np.ndarray | None = None
        for _ in range(protocol.max_steps):
            actions = policy.act(observations, rewards)
            steps = [env.step(action) for env, action in zip(envs, actions, strict=True)]
            observations = np.stack([s[0] for s in steps])
            rewards = np.array([s[1] for s in steps], dtype=np.float64)
            success |= np.array([s[4]["success"] > 0 for s in steps])
            returns += rewards
            if on_step is not None:
                on_step()
    finally:
        for env in envs:
            env.close()
    return {
        "success_rate": float(success.mean()),
        "mean_return": float(returns.mean()),
        "episode_success": success.astype(int).tolist(),
        "goal_indices": goals,
    }


def evaluate(
    suite: Suite,
    make_policy: Callable[[int], Policy],
    protocol: EvalProtocol,
    progress: bool = True,
) -> dict[str, object]:
    """Per-task success rate and mean return for every task of the suite, and their means."""
    per_task: dict[str, dict[str, object]] = {}
    total = suite.num_tasks * protocol.max_steps
    with tqdm(total=total, desc="evaluate", unit="step", disable=not progress) as bar:
        for task_id, task in enumerate(suite.tasks):
            bar.set_postfix_str(task)
            per_task[task] = run_episodes(task, make_policy(task_id), protocol, bar.update)
    return {
        "success_rate": float(np.mean([r["success_rate"] for r in per_task.values()])),
        "mean_return": float(np.mean([r["mean_return"] for r in per_task.values()])),
        "per_task": per_task,
        "protocol": protocol.describe(),
    }
