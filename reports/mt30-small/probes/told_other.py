"""Does a DT act on what it is told the task is? (reports/mt30-small-notes.md, session 30)

For each MT30 task, 10 episodes (the run's seed's goals, as probes/opening.py) of a run's
checkpoint told the *next* task: its prompt, its task id (MTDT's embedding, HarmoDT's mask),
with the true task's state normalisation. A policy that barely listens to its task signal
keeps its success; one that acts on it loses it. The success when told the true task is
opening.py's "alone" column (the same protocol, so the same episodes).

    PYTHONPATH=. python reports/mt30-small/probes/told_other.py <run_dir> <data_root>
"""

from __future__ import annotations

import sys

import numpy as np
from sweep_run import sweep_run  # beside this script (its docstring)

from bench.evaluate import run_episodes
from methods.dt import DecisionTransformerMethod

EPISODES = 10


class ToldOther:
    """The method's policy for `task_id`, but told `other_id` in everything that names a task."""

    def __init__(self, method: DecisionTransformerMethod, task_id: int, other_id: int) -> None:
        self.policy, self.method, self.other_id = method.policy(task_id), method, other_id
        prompt = method.evaluation_prompt(method.data.task(other_id))
        self.other_prompt = None if prompt is None else prompt.to(method.device)

    def reset(self, num_episodes: int) -> None:
        # DTPolicy.reset builds what names the task (acting network: the mask or route;
        # embedding id; prompt batch) beside the true task's state statistics: replace the first.
        self.policy.reset(num_episodes)
        self.policy.acting = self.method.acting_network(self.other_id)
        self.policy.embedding_task_id = self.other_id
        if self.other_prompt is not None:
            self.policy.prompt_batch = self.other_prompt.expand(num_episodes)

    def act(self, observations: np.ndarray, rewards: np.ndarray | None) -> np.ndarray:
        return self.policy.act(observations, rewards)


def main(run_dir: str, data_root: str) -> None:
    settings, method, protocol = sweep_run(run_dir, data_root, EPISODES)
    tasks = settings.suite.tasks
    told = []
    for task_id, task in enumerate(tasks):
        other = (task_id + 1) % len(tasks)
        told.append(run_episodes(task, ToldOther(method, task_id, other), protocol)["success_rate"])
        print(f"{task:28s} told {tasks[other]:28s} {told[-1]:.1f}", flush=True)
    mean = 100 * np.mean(told)
    print(f"{run_dir}: mean success told the next task: {mean:.1f} %")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
