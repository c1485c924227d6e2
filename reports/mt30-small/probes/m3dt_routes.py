"""M3DT's three stages at one checkpoint: how well each fits the training data.

M3DT freezes what a stage trained before the next starts: after stage 3 the backbone is stage 1's
and the experts are stage 2's. So one final checkpoint holds all three models: the backbone
alone (the network evaluated at the end of stage 1), the backbone with each task's group expert
(the network evaluated at the end of stage 2) and the backbone with the router weighing every
expert (the final one). Their success is already in the run's evaluations; this sets beside it
the action MSE on each task's training windows and the task effect (bench analyze
conditioning's measures, dropout off), each model routed as its stage routes.

    PYTHONPATH=. python reports/mt30-small/probes/m3dt_routes.py <m3dt run_dir> <data_root>
"""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd
import torch
from sweep_run import sweep_run  # beside this script (its docstring)

from bench.conditioning import task_measures

STAGES = {1: "backbone alone (stage 1)", 2: "+ group expert (stage 2)", 3: "+ router (stage 3)"}


def main(run_dir: str, data_root: str) -> None:
    _, method, _ = sweep_run(run_dir, data_root, episodes=1)
    assert method.stage == 3, f"{run_dir}: its checkpoint is in stage {method.stage}, not 3"
    method.network.eval()
    tasks = method.data.task_data
    rows = {}
    with torch.no_grad():
        for stage, name in STAGES.items():
            method.stage = stage  # route_for: the backbone, the task's group's expert, the router
            rng = np.random.default_rng(0)  # the same windows for every stage
            measures = [
                task_measures(method, task, tasks[(index + 1) % len(tasks)], rng)
                for index, task in enumerate(tasks)
            ]
            frame = pd.DataFrame(measures)
            rows[name] = {"action MSE": frame["action MSE"].mean(),
                          "task effect": frame["task effect"].mean()}  # fmt: skip
            print(f"{name}: {rows[name]}", flush=True)
    method.stage = 3
    print(pd.DataFrame.from_dict(rows, orient="index").to_markdown(floatfmt=".4f"))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
