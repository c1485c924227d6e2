"""Run results -> one pandas DataFrame: a row per (run, task), read from result.json files only.

Every report table, statistic and plot is computed from this frame (bench.report, bench.plots),
so a number in a report can be traced to the run directory, command and commit in its row.
Periodic evaluations and HarmoDT's harmony scores, which live in metrics.jsonl, are read by
`training_curves` for the plots only.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from bench import results
from bench.errors import UserError

# What must be equal for runs to be averaged together: a report never mixes these.
COHORT = ["scale", "eval_episodes", "store_hash"]
# One cell of a table: the runs of one configuration, one per seed.
CELL = ["method", "variant", "suite", "data"]


def find_results(root: Path) -> list[Path]:
    return sorted(Path(root).rglob(results.RESULT))


def load_results(root: Path) -> pd.DataFrame:
    """A row per (run, task) of every result.json below `root`."""
    if not Path(root).is_dir():
        raise UserError(f"no such folder: {root}")
    rows = []
    for path in find_results(root):
        rows.extend(_rows(path))
    if not rows:
        raise UserError(f"no result.json below {root}; run `bench run` first")
    return pd.DataFrame(rows)


def _rows(result_path: Path) -> list[dict[str, Any]]:
    try:
        result = json.loads(result_path.read_text())
    except (OSError, ValueError) as error:
        raise UserError(f"cannot read {result_path}: {error}") from None
    run_dir = result_path.parent
    saved = _saved_config(run_dir)
    method_config = saved.get("config", {}).get("method", {})
    overrides = saved.get("overrides")
    command = "bench run " + " ".join(shlex.quote(o) for o in overrides) if overrides else None
    non_default = result.get("non_default") or {}
    versions = result.get("versions", {})
    common = {
        "method": result["method"],
        "variant": _variant(non_default),
        "suite": result["suite"],
        "data": result["data"]["name"],
        "scale": result["scale"],
        "seed": int(result["seed"]),
        "eval_episodes": int(result["protocol"]["episodes_per_task"]),
        "checkpoint": result["protocol"]["checkpoint"],
        "run_success_rate": _score(result["success_rate"]),  # NaN: a meta-RL run (by return)
        "num_parameters": int(result["num_parameters"]),
        "n_layer": method_config.get("n_layer"),
        "n_head": method_config.get("n_head"),
        "train_seconds": float(result["wall_time_s"]["train"]),
        "commit": result.get("git", {}).get("commit", "unknown"),
        "dirty": bool(result.get("git", {}).get("dirty")),
        "dataset_hash": result.get("dataset_hash", "unknown"),
        "store_hash": (result.get("dataset_store") or {}).get("hash", "unknown"),
        "run_dir": str(run_dir),
        "command": command,
        **{f"version_{name}": versions.get(name) for name in _VERSIONS},
    }
    return [
        {
            **common,
            "task": task,
            "success_rate": _score(scores["success_rate"]),
            "mean_return": float(scores["mean_return"]),
            "split": scores.get("split", "train"),
        }
        for task, scores in result["per_task"].items()
    ]


def _score(value: float | None) -> float:
    return float("nan") if value is None else float(value)


def _variant(non_default: dict[str, Any]) -> str:
    """The run directory's extra component, unhashed: `sparsity=0.3,train.steps=2000`."""
    parts = sorted(f"{key.removeprefix('method.')}={value}" for key, value in non_default.items())
    return ",".join(parts) or "default"


_VERSIONS = ("metaworld", "mujoco", "gymnasium", "torch", "d3rlpy")


def _saved_config(run_dir: Path) -> dict[str, Any]:
    path = run_dir / results.CONFIG
    if not path.exists():
        return {}
    return yaml.safe_load(path.read_text()) or {}


def training_curves(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """From one read of each run's metrics.jsonl, for the runs in `frame`:

    - evaluations: a row per (run, evaluation), periodic and final: step and success rate;
    - harmony: a row per (run, mask update or harmony diagnostic): the averaged harmony score.
    """
    evaluations, harmony = [], []
    for _, run in frame.drop_duplicates("run_dir").iterrows():
        cell = {k: run[k] for k in [*CELL, "seed"]}
        for event in results.read_metrics(Path(run["run_dir"])):
            kind, step = event.get("event"), event.get("step")
            if kind == "eval":
                evaluations.append({**cell, "step": step, "success_rate": event["success_rate"]})
            elif kind == "mask_update":
                for series, value in event["harmony"].items():
                    harmony.append({**cell, "step": step, "series": series, "harmony": value})
            elif kind == "harmony":
                harmony.append(
                    {**cell, "step": step, "series": "unmasked", "harmony": event["harmony"]}
                )
    return (
        pd.DataFrame(evaluations, columns=[*CELL, "seed", "step", "success_rate"]),
        pd.DataFrame(harmony, columns=[*CELL, "seed", "step", "series", "harmony"]),
    )
