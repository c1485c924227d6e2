"""M3DT's three stages at one checkpoint: how well each fits the training data.

M3DT freezes what a stage trained before the next starts: after stage 3 the backbone is stage 1's
and the experts are stage 2's. So one final checkpoint holds all three models: the backbone
alone (the network evaluated at the end of stage 1), the backbone with each task's group expert
(the network evaluated at the end of stage 2) and the backbone with the router weighing every
expert (the final one). Their success is already in the run's evaluations; this sets beside it
the action MSE on each task's training windows and the task effect (bench analyze
conditioning's measures, dropout off), each model routed as its stage routes; and how the
router weighs the experts on those windows (router_weights below).

    PYTHONPATH=. python reports/mt30-small/probes/m3dt_routes.py <m3dt run_dir> <data_root>
"""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd
import torch
from sweep_run import sweep_run  # beside this script (its docstring)

from bench.conditioning import WINDOWS, task_measures
from bench.data.samplers import sample_segments

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
    print(router_weights(method).to_markdown(floatfmt=".4f"))


def router_weights(method) -> pd.DataFrame:
    """Per block, over every task's training windows (its own prompt, the state tokens the
    router sees): the entropy of a token's expert weights over log(experts) (1: all alike),
    the largest weight, the weight on the task's own group's expert (uniform: 1/experts), and
    the tasks whose mean weights put that expert first."""
    captured: list = []
    hooks = [layer.router.register_forward_hook(lambda _m, _i, out: captured.append(out))
             for layer in method.moe_layers]  # fmt: skip
    rows: dict[int, list] = {block: [] for block in range(len(hooks))}
    config, rng = method.config, np.random.default_rng(0)
    with torch.no_grad():
        for task in method.data.task_data:
            windows = sample_segments(task, WINDOWS, config.context_length, rng,
                                      config.return_scale, config.max_timestep)  # fmt: skip
            prompt = method.evaluation_prompt(task)
            prompt = None if prompt is None else prompt.expand(len(windows.mask))
            captured.clear()
            method.predict(windows, prompt, task.task_id)
            own = next(e for e, group in enumerate(method.groups) if task.task_id in group)
            for block, weights in enumerate(captured):
                weights = weights.reshape(-1, weights.shape[-1]).double()
                entropy = -(weights * weights.clamp_min(1e-12).log()).sum(-1)
                mean = weights.mean(0)
                rows[block].append({
                    "entropy / log E": float(entropy.mean() / np.log(weights.shape[-1])),
                    "largest weight": float(weights.max(-1).values.mean()),
                    "own group's expert": float(mean[own]),
                    "own expert first": float(int(mean.argmax()) == own),
                })  # fmt: skip
    for hook in hooks:
        hook.remove()
    frame = pd.DataFrame({f"block {b}": pd.DataFrame(r).mean() for b, r in rows.items()}).T
    frame.columns.name = f"router over {len(method.groups)} experts, {len(rows[0])} tasks"
    return frame


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
