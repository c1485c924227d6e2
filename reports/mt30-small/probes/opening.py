"""Does a trained opening rescue a DT's evaluation? (reports/mt30-small-notes.md, session 29)

For each MT30 task, 10 episodes (the run's seed's goals) of a run's checkpoint acting alone, and
with Meta-World's scripted expert taking its first N actions (written into the DT's context as
its own); and, as the control, the expert's first N actions followed by standing still.

    PYTHONPATH=. python reports/mt30-small/probes/opening.py <run_dir> <data_root>
"""

from __future__ import annotations

import sys

import numpy as np
import torch
from sweep_run import sweep_run  # beside this script (its docstring)

from bench.envs.metaworld import scripted_policy
from bench.evaluate import run_episodes

OPENING_STEPS = 20
EPISODES = 10


class ExpertOpening:
    """The expert's first `steps` actions, then `policy`'s (None: standing still)."""

    def __init__(self, task: str, policy, steps: int) -> None:
        self.expert, self.policy, self.steps = scripted_policy(task), policy, steps

    def reset(self, num_episodes: int) -> None:
        self.step = 0
        if self.policy is not None:
            self.policy.reset(num_episodes)

    def act(self, observations: np.ndarray, rewards: np.ndarray | None) -> np.ndarray:
        own = None if self.policy is None else self.policy.act(observations, rewards)
        if self.step < self.steps:
            actions = [np.clip(self.expert.get_action(o), -1, 1) for o in observations]
            action = np.stack(actions).astype(np.float32)
            if self.policy is not None:  # the DT's context holds the action taken
                self.policy.actions[:, -1] = torch.from_numpy(action)
        else:
            action = np.zeros((len(observations), 4), np.float32) if own is None else own
        self.step += 1
        return action


def main(run_dir: str, data_root: str) -> None:
    settings, method, protocol = sweep_run(run_dir, data_root, EPISODES)
    rows = []
    for task_id, task in enumerate(settings.suite.tasks):
        alone = run_episodes(task, method.policy(task_id), protocol)["success_rate"]
        opened = ExpertOpening(task, method.policy(task_id), OPENING_STEPS)
        with_opening = run_episodes(task, opened, protocol)["success_rate"]
        control = run_episodes(task, ExpertOpening(task, None, OPENING_STEPS), protocol)
        rows.append((alone, with_opening, control["success_rate"]))
        print(f"{task:28s} alone {alone:.1f}  expert opening {with_opening:.1f}  "
              f"opening then still {control['success_rate']:.1f}", flush=True)  # fmt: skip
    alone, opened_mean, control_mean = (100 * np.mean(column) for column in zip(*rows, strict=True))
    print(f"{run_dir}: mean success: alone {alone:.1f} %, with the expert's first "
          f"{OPENING_STEPS} actions {opened_mean:.1f} %, those actions then still "
          f"{control_mean:.1f} %")  # fmt: skip


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
