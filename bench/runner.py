"""One run = (method, suite, data, seed): train, checkpoint, resume, evaluate the final model.

A run whose result.json exists is done and is skipped; a run with a checkpoint resumes from it
bit-for-bit (model, optimizer, scheduler, RNG states and step all live in the checkpoint), so a
run killed at any moment and relaunched reports exactly what an uninterrupted run reports.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import yaml
from tqdm import tqdm

from bench import results
from bench.atomic import write_json
from bench.data.prepare import check_dataset, open_dataset
from bench.data.samplers import OfflineData
from bench.errors import UserError
from bench.evaluate import EvalProtocol, evaluate
from bench.registry import Method, build_method, get_method, make_config
from bench.suites import Suite, get_suite

# Keys that change how a run is watched, not what it computes.
_COSMETIC_KEYS = {"progress", "data.workers"}


class RunFailed(Exception):
    """The run stopped without a result (status says why)."""


def run_directory(config: Mapping[str, Any]) -> Path:
    run = config["run"]
    if run.get("dir"):
        return Path(run["dir"])
    return (
        Path(run["root"])
        / config["tasks"]["name"]
        / config["data"]["name"]
        / config["method"]["name"]
        / f"seed{config['seed']}"
    )


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(_flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def _check_same_config(run_dir: Path, config: Mapping[str, Any]) -> None:
    """A run directory belongs to one config: refuse to resume or skip with a different one."""
    path = run_dir / results.CONFIG
    if not path.exists():
        return
    saved = _flatten(yaml.safe_load(path.read_text())["config"])
    new = _flatten(config)
    keys = (set(saved) | set(new)) - _COSMETIC_KEYS
    differing = sorted(k for k in keys if saved.get(k) != new.get(k))
    if differing:
        shown = ", ".join(f"{k} ({saved.get(k)!r} -> {new.get(k)!r})" for k in differing[:3])
        raise UserError(
            f"{run_dir} holds a run with a different config: {shown}; "
            "choose another run.root or run.dir, or delete that run"
        )


def execute(config: Mapping[str, Any], repo: Path) -> dict[str, Any]:
    """Run (or resume, or skip) the run described by a resolved config; returns its result."""
    run_dir = run_directory(config)
    # Bad names and method options fail before a run directory or dataset is made.
    get_suite(config["tasks"]["name"])
    make_config(get_method(config["method"]["name"]), _method_values(config))
    check_dataset(config["data"])
    _check_same_config(run_dir, config)
    result_path = run_dir / results.RESULT
    if result_path.exists():
        return json.loads(result_path.read_text())
    run_dir.mkdir(parents=True, exist_ok=True)
    if not (run_dir / results.CONFIG).exists():
        provenance = {
            "git": results.git_commit(repo),
            "command": results.command_line(),
            "versions": results.versions(),
        }
        results.write_yaml(run_dir / results.CONFIG, {"config": dict(config), **provenance})
    results.write_status(run_dir, "running")
    try:
        result = _train_and_evaluate(config, run_dir, repo)
    except (UserError, RunFailed) as error:
        results.write_status(run_dir, f"failed: {error}")
        raise
    except BaseException as error:
        results.write_status(run_dir, f"failed: {type(error).__name__}: {error}")
        raise
    write_json(result_path, result)
    results.write_status(run_dir, "done")
    return result


def _train_and_evaluate(config: Mapping[str, Any], run_dir: Path, repo: Path) -> dict[str, Any]:
    progress = bool(config["progress"])
    if config.get("threads"):
        torch.set_num_threads(int(config["threads"]))
    suite = get_suite(config["tasks"]["name"])
    data_config = config["data"]
    store = open_dataset(data_config, suite.tasks, progress)
    data = OfflineData(
        store, suite.tasks, data_config["fraction"], data_config["prompt_episodes"]
    )
    seed = int(config["seed"])
    method = build_method(
        config["method"]["name"], _method_values(config), suite, data, seed, config["device"]
    )
    protocol = eval_protocol(config)
    train = config["train"]
    total_steps = int(train["steps"])
    start, train_seconds = _resume(method, run_dir)
    _train(method, run_dir, start, total_steps, train, train_seconds, protocol, suite, progress)

    eval_start = time.perf_counter()
    scores = evaluate(suite, method.policy, protocol, progress)
    eval_seconds = time.perf_counter() - eval_start
    final = results.load_checkpoint(run_dir / results.CHECKPOINT)
    results.append_metrics(
        run_dir, {"event": "eval", "step": total_steps, "final": True, **_scores_only(scores)}
    )
    return {
        "method": config["method"]["name"],
        "suite": suite.name,
        "tasks": list(suite.tasks),
        "data": {"name": data_config["name"], **data.summary()},
        "scale": config["scale"]["name"],
        "seed": seed,
        "steps": total_steps,
        "success_rate": scores["success_rate"],
        "mean_return": scores["mean_return"],
        "per_task": scores["per_task"],
        "protocol": {**scores["protocol"], "checkpoint": f"final (step {final['step']})"},
        "num_parameters": method.num_parameters(),
        "torch_threads": torch.get_num_threads(),
        "wall_time_s": {"train": final["train_seconds"], "evaluate": eval_seconds},
        "versions": results.versions(),
        "git": results.git_commit(repo),
        "run_dir": str(run_dir),
    }


def eval_protocol(config: Mapping[str, Any]) -> EvalProtocol:
    """The evaluation protocol of a config: goals are seeded from the run seed."""
    seed = int(config["seed"])
    return EvalProtocol(
        episodes=int(config["eval"]["episodes"]),
        goal_pool_seed=int(config["eval"]["goal_pool_seed_offset"]) + seed,
        goal_selection_seed=seed,
    )


def _method_values(config: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in config["method"].items() if k != "name"}


def _resume(method: Method, run_dir: Path) -> tuple[int, float]:
    path = run_dir / results.CHECKPOINT
    if not path.exists():
        results.truncate_metrics(run_dir, lambda event: False)
        return 0, 0.0
    checkpoint = results.load_checkpoint(path)
    method.load_state_dict(checkpoint["method"])
    step = int(checkpoint["step"])
    results.truncate_metrics(run_dir, lambda event: event.get("step", 0) <= step)
    results.append_metrics(run_dir, {"event": "resume", "step": step})
    return step, float(checkpoint["train_seconds"])


def _train(
    method: Method,
    run_dir: Path,
    start: int,
    total_steps: int,
    train: Mapping[str, Any],
    train_seconds: float,
    protocol: EvalProtocol,
    suite: Suite,
    progress: bool,
) -> None:
    log_every, checkpoint_every = int(train["log_every"]), int(train["checkpoint_every"])
    eval_every = int(train["eval_every"])
    if start >= total_steps and (run_dir / results.CHECKPOINT).exists():
        return
    session_start = time.perf_counter()
    paused = 0.0  # time spent in periodic evaluations, which is not training time
    window_start, window_steps = session_start, 0
    with tqdm(total=total_steps, initial=start, desc="train", disable=not progress) as bar:
        for step in range(start, total_steps):
            logs = method.train_step(step)
            bad = {k: v for k, v in logs.items() if not math.isfinite(v)}
            if bad:
                name, value = next(iter(bad.items()))
                raise RunFailed(
                    f"{name} is {value} at step {step}: training diverged; no result written "
                    "(check the data, or lower the learning rate)"
                )
            done, window_steps = step + 1, window_steps + 1
            for event in method.pop_events():
                results.append_metrics(run_dir, {**event, "step": event.get("step", done)})
            bar.update()
            if done % log_every == 0 or done == total_steps:
                now = time.perf_counter()
                rate = window_steps / max(now - window_start, 1e-9)
                event = {"event": "train", "step": done, **logs, "steps_per_second": rate}
                results.append_metrics(run_dir, event)
                bar.set_postfix(loss=f"{logs.get('loss', float('nan')):.4f}")
                window_start, window_steps = now, 0
            if done % checkpoint_every == 0 or done == total_steps:
                seconds = train_seconds + time.perf_counter() - session_start - paused
                state = {"step": done, "train_seconds": seconds, "method": method.state_dict()}
                results.save_checkpoint(run_dir / results.CHECKPOINT, state)
            if eval_every and done % eval_every == 0 and done < total_steps:
                eval_start = time.perf_counter()
                scores = evaluate(suite, method.policy, protocol, progress=False)
                event = {"event": "eval", "step": done, "final": False, **_scores_only(scores)}
                results.append_metrics(run_dir, event)
                paused += time.perf_counter() - eval_start
                window_start = time.perf_counter()


def _scores_only(scores: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "success_rate": scores["success_rate"],
        "mean_return": scores["mean_return"],
        "per_task": {
            task: {"success_rate": r["success_rate"], "mean_return": r["mean_return"]}
            for task, r in scores["per_task"].items()
        },
    }
