"""`bench analyze conditioning <run_dir>`: what a trained Decision Transformer's actions depend on.

A DT is told what to do by its conditioning: the return-to-go it is asked for, and its task:
a prompt from the task (Prompt-DT, HarmoDT, M3DT), a task embedding (MTDT), a mask (HarmoDT).
Whether the trained network listens is measured, not assumed, from the run's checkpoint, on its
own training data, dropout off:

- `prompt effect`: mean |action with the task's evaluation prompt - action with the next task's
  prompt| over a task's training windows (HarmoDT keeps the task's own mask: only the prompt
  changes). Near 0: the prompt does not steer the policy.
- `task effect`: the same with everything that names the task swapped for the next task's:
  the prompt and the task id (MTDT's task embedding, HarmoDT's mask; M3DT's expert in its
  stage 2, after which the router serves every task and only the prompt names it). How much
  the policy is told the task at all, beyond what the states show; comparable across methods.
- `return effect`: the same between the evaluation's target return and a return-to-go of 0.
- `first steps`: an evaluation starts from a context of 1, 2, ... steps, left-padded. Training
  windows start anywhere and pad only at an episode's end (as the official code's `get_batch`),
  so those contexts are never trained on. The mean |action| predicted there (asked for the
  target return) is set beside the data's, on each task's latest (most expert) episodes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import yaml
from tabulate import tabulate

from bench import results
from bench.config import as_override, compose_run
from bench.data.locations import dataset_path
from bench.data.samplers import Segment, TaskData, episode_openings, sample_segments
from bench.data.store import MANIFEST_NAME, DatasetStore, read_manifest
from bench.errors import UserError
from bench.registry import build_for_run, earlier_values, get_method
from bench.run_claim import config_differences
from bench.settings import load_settings

WINDOWS = 128  # training windows per task
LATEST_EPISODES = 20  # per task, for the first-steps contexts
FIRST_STEPS = (1, 5, 20)


def analyze_conditioning(run_dir: Path, overrides: Sequence[str] = ()) -> str:
    """The table of one run's conditioning measures, per task and their mean."""
    method = trained_method(run_dir, overrides)
    method.network.eval()
    rng = np.random.default_rng(0)
    tasks = method.data.task_data
    rows = {}
    with torch.no_grad(), method.autocast():
        for index, task in enumerate(tasks):
            rows[task.task] = task_measures(method, task, tasks[(index + 1) % len(tasks)], rng)
    frame = pd.DataFrame.from_dict(rows, orient="index")
    frame.loc["mean"] = frame.mean()
    title = f"conditioning of {run_dir} (its checkpoint, its training data, dropout off)"
    return title + "\n" + tabulate(frame, headers="keys", floatfmt=".4f", missingval="—")


def task_measures(
    method: Any, task: TaskData, other: TaskData, rng: np.random.Generator
) -> dict[str, float]:
    config = method.config
    windows = sample_segments(
        task, WINDOWS, config.context_length, rng, config.return_scale, config.max_timestep
    ).to(method.device)

    own_prompt, other_prompt = method.evaluation_prompt(task), method.evaluation_prompt(other)

    def act(
        segment: Segment, prompt: Segment | None = own_prompt, task_id: int = task.task_id
    ) -> torch.Tensor:
        if prompt is not None:
            prompt = prompt.to(method.device).expand(len(segment.mask))
        # The task id travels twice: as predict's argument and in the segment (MTDT's embedding).
        segment = dataclasses.replace(segment, task_ids=torch.full_like(segment.task_ids, task_id))
        return method.predict(segment, prompt, task_id).float()

    own = act(windows)
    valid = windows.mask
    # The methods' own loss (methods/dt.py), written here: bench/ reaches methods only through
    # the registry (tests/bench/test_architecture.py).
    error = torch.nn.functional.mse_loss(own[valid], windows.actions[valid])
    measures = {"action MSE": float(error)}
    if own_prompt is not None:
        measures["prompt effect"] = _mean_change(own, act(windows, other_prompt), valid)
    told_other = act(windows, other_prompt, other.task_id)
    measures["task effect"] = _mean_change(own, told_other, valid)
    target = config.target_return / config.return_scale
    returns = windows.returns_to_go
    asked = dataclasses.replace(windows, returns_to_go=torch.full_like(returns, target))
    nothing = dataclasses.replace(windows, returns_to_go=torch.zeros_like(returns))
    measures["return effect"] = _mean_change(act(asked), act(nothing), valid)
    for steps in FIRST_STEPS:
        first = episode_openings(task, LATEST_EPISODES, steps, config.context_length,
                                 config.return_scale, config.max_timestep)  # fmt: skip
        first = first.to(method.device)
        predicted = act(_asking_for(first, target))[:, -1]
        measures[f"|a| first {steps}"] = float(predicted.abs().mean())
        measures[f"data |a| first {steps}"] = float(first.actions[:, -1].abs().mean())
    return measures


def _asking_for(opening: Segment, target: float) -> Segment:
    """The opening's returns-to-go as an evaluation's: the target, less what was earned since
    the episode's first step (padding keeps its 0)."""
    returns = opening.returns_to_go  # (B, L, 1), left-padded: the first valid step is at
    first = returns.gather(1, (~opening.mask).sum(1).view(-1, 1, 1))  # the padding's length
    asked = torch.where(opening.mask[..., None], target - (first - returns), 0.0)
    return dataclasses.replace(opening, returns_to_go=asked)


def _mean_change(a: torch.Tensor, b: torch.Tensor, valid: torch.Tensor) -> float:
    return float((a - b)[valid].abs().mean())


def trained_method(run_dir: Path, overrides: Sequence[str] = ()) -> Any:
    """The run's DT method at its checkpoint, rebuilt from its saved overrides (plus
    `overrides`), on the run's store as it is: one that is not there is an error, never made."""
    config_path, checkpoint = run_dir / results.CONFIG, run_dir / results.CHECKPOINT
    if not config_path.exists():
        raise UserError(f"{run_dir} has no {results.CONFIG}: is it a run directory?")
    saved = yaml.safe_load(config_path.read_text()) or {}
    # The saved overrides (then the user's) on today's defaults must give the run's config back:
    # a default that changed since (a context length, a dropout) would load the weights into
    # another network, unless the user passes the old value. Options added since the run was
    # made are set to what it ran with (`added_later`). Composed, not checked: the store may
    # have moved (the user's `data.root=` says where).
    earlier = earlier_values(saved.get("config") or {})
    made_with = [*saved.get("overrides", []), *(as_override(k, v) for k, v in earlier.items())]
    made_with += overrides
    differences = config_differences(config_path, compose_run(made_with).config)
    if differences:
        raise UserError(
            f"{run_dir} was made with a config its saved overrides no longer give: "
            f"{differences}; pass the old values as overrides"
        )
    settings = load_settings(made_with)
    name = settings.method_name
    if not hasattr(get_method(name).cls, "evaluation_prompt"):
        raise UserError(
            f"{run_dir} is a {name} run: conditioning measures a Decision Transformer "
            "(mtdt, prompt_dt, harmodt_*, m3dt)"
        )
    if not checkpoint.exists():
        raise UserError(
            f"{run_dir} has no {results.CHECKPOINT}: conditioning needs the trained weights "
            "(committed report runs keep their records only)"
        )
    data = settings.data
    store_path = dataset_path(data.section(), settings.suite)
    tasks = settings.suite.data_tasks
    stored = read_manifest(store_path)["tasks"] if (store_path / MANIFEST_NAME).exists() else {}
    if any(task not in stored for task in tasks):
        raise UserError(
            f"{store_path} does not hold this run's data; pass where it is: data.root=<folder> "
            "(or data.path=<store>)"
        )
    _, method = build_for_run(settings, DatasetStore(store_path))
    method.load_state_dict(results.load_checkpoint(checkpoint)["method"])
    return method
