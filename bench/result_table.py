"""Run results -> one pandas DataFrame: a row per (run, task), its scores from result.json only.

Every report table, statistic and plot is computed from this frame (bench.report, bench.plots),
so a number in a report can be traced to the run directory, command and commits in its row.
Beside result.json a row reads the run's config.yaml (its command, model shape and first
commit) and the resume events of its metrics.jsonl (the commits it was resumed at). Periodic
evaluations and HarmoDT's harmony scores, also in metrics.jsonl, are read by `training_curves`
for the plots only.
"""

from __future__ import annotations

import shlex
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from bench import results
from bench.errors import UserError, damage_reason
from bench.run_result import RunResult, read_result

# What must be equal for runs to be averaged together: a report never mixes these.
COHORT = ["scale", "eval_episodes", "store_hash"]
# One cell of a table: the runs of one configuration, one per seed.
CELL = ["method", "variant", "suite", "data"]


def find_results(root: Path) -> list[Path]:
    return results.find_run_files(root, results.RESULT)


def load_results(root: Path, unreadable: list[str] | None = None) -> pd.DataFrame:
    """A row per (run, task) of every result.json below `root`.

    A result.json that cannot be read or is not a run's result is an error naming it; with an
    `unreadable` list, it is appended there as `<path>: <reason>` and the others are read.
    """
    results.check_runs_folder(root)
    rows = []
    for path in find_results(root):
        try:
            rows.extend(_rows(path))
        except UserError as error:
            if unreadable is None:
                raise
            unreadable.append(str(error))
    if not rows:
        damaged = f"; unreadable: {'; '.join(unreadable)}" if unreadable else ""
        raise UserError(f"no readable result.json below {root}; run `bench run` first{damaged}")
    return pd.DataFrame(rows)


def _rows(result_path: Path) -> list[dict[str, Any]]:
    result = read_result(result_path)  # a UserError naming the file and what it lacks
    try:
        return _result_rows(result_path, result)
    except (KeyError, TypeError, AttributeError, ValueError) as error:  # a part of another shape
        reason = damage_reason(error)
        raise UserError(f"{result_path}: not a run's result ({reason})") from None


def _result_rows(result_path: Path, result: RunResult) -> list[dict[str, Any]]:
    run_dir = result_path.parent
    saved = _saved_config(run_dir)
    method_config = saved.get("config", {}).get("method", {})
    overrides = saved.get("overrides")
    command = "bench run " + " ".join(shlex.quote(o) for o in overrides) if overrides else None
    best = result.best_of_evaluations  # None in results made before it existed
    common = {
        "method": result.method,
        "variant": _variant(result.non_default),
        "suite": result.suite,
        "data": result.data.name,
        "generator": result.data.generator,  # None: made before results named it
        "scale": result.scale,
        "seed": result.seed,
        "eval_episodes": result.protocol.episodes_per_task,
        "checkpoint": result.protocol.checkpoint,
        "run_success_rate": _score(result.success_rate),  # NaN: a meta-RL run (by return)
        "best_success_rate": _score(best.success_rate if best else None),
        "best_evaluations": best.evaluations if best else 0,
        "num_parameters": result.num_parameters,
        "n_layer": method_config.get("n_layer"),
        "n_head": method_config.get("n_head"),
        "train_seconds": result.wall_time_s.train,
        "commit": result.git.get("commit", "unknown"),
        "dirty": bool(result.git.get("dirty")),
        "commits": run_commits(run_dir, saved, result),
        "dataset_hash": result.dataset_hash or "unknown",
        "store_hash": (result.dataset_store or {}).get("hash", "unknown"),
        "store": (result.dataset_store or {}).get("path") or result.data.record.get("path"),
        "run_dir": str(run_dir),
        "command": command,
        **{f"version_{name}": result.versions.get(name) for name in _VERSIONS},
    }
    return [
        {
            **common,
            "task": task,
            "success_rate": _score(scores.success_rate),
            "mean_return": float(scores.mean_return),
            "split": scores.split or "train",
        }
        for task, scores in result.per_task.items()
    ]


def run_commits(
    run_dir: Path, saved: Mapping[str, Any], result: RunResult, digits: int = 12
) -> str:
    """Every commit the run was made at, in order: its start (config.yaml, `saved`), each
    resume (metrics.jsonl) and its end (result.json), e.g. `6731e6a483bb, efa76af72066 (dirty
    tree)`, each shortened to `digits`. A run resumed by later code is traced to each piece of
    code that trained it."""
    try:
        resumes = [e for e in results.read_metrics(run_dir) if e.get("event") == "resume"]
    except UserError:  # a damaged metrics.jsonl loses the resumes, not the result
        resumes = []
    seen: list[str] = []
    for git in [saved.get("git"), *(e.get("git") for e in resumes), result.git]:
        if isinstance(git, Mapping) and git.get("commit"):
            name = f"{str(git['commit'])[:digits]}{' (dirty tree)' if git.get('dirty') else ''}"
            if name not in seen:
                seen.append(name)
    return ", ".join(seen) or "unknown"


def _score(value: float | None) -> float:
    return float("nan") if value is None else float(value)


def unfinished_runs(root: Path, finished: Collection[str]) -> pd.DataFrame:
    """A row per run folder below `root` that is not among the `finished` run directories (those
    `load_results` read): running, interrupted, failed, pending, or holding a result that could
    not be read. Its cell, seed, the cohort keys its saved config holds, and what its status
    says, and the data store its config names (None where it cannot tell: the run is then
    counted in every cohort of its scale and episodes). Folders whose config.yaml cannot be read
    are left out: nothing places them in a cell."""
    rows = []
    for run_dir in results.find_runs(root):
        if str(run_dir) in finished:
            continue
        saved = _saved_config(run_dir)
        config = saved.get("config")
        if not isinstance(config, dict):
            continue
        try:
            rows.append({
                "method": config["method"]["name"],
                "variant": _variant(saved.get("non_default") or {}),
                "suite": config["tasks"]["name"],
                "data": config["data"]["name"],
                "scale": config["scale"]["name"],
                "eval_episodes": int(config["eval"]["episodes"]),
                "seed": int(config["seed"]),
                "status": _unfinished_status(run_dir),
                "store": _store(config),
                "run_dir": str(run_dir),
            })  # fmt: skip
        except (KeyError, TypeError, ValueError):
            continue
    columns = [*CELL, "scale", "eval_episodes", "seed", "status", "store", "run_dir"]
    return pd.DataFrame(rows, columns=columns)


def _store(config: Mapping[str, Any]) -> str | None:
    """The data store a run's config reads, as its result.json would name it."""
    from bench.data.locations import dataset_path
    from bench.suites import SUITES

    suite = SUITES.get(str(config["tasks"]["name"]))
    try:
        return str(dataset_path(config["data"], suite)) if suite is not None else None
    except (KeyError, TypeError, UserError):  # a config of an older layout
        return None


def _unfinished_status(run_dir: Path) -> str:
    if (run_dir / results.RESULT).exists():
        return "unreadable result.json"
    try:
        return results.read_status(run_dir)
    except OSError as error:
        return f"unreadable status ({error.strerror})"


def _variant(non_default: Mapping[str, Any]) -> str:
    """The run directory's extra component, unhashed: `sparsity=0.3,train.steps=2000`."""
    parts = sorted(f"{key.removeprefix('method.')}={value}" for key, value in non_default.items())
    return ",".join(parts) or "default"


_VERSIONS = ("metaworld", "mujoco", "gymnasium", "torch", "d3rlpy")


def saved_method_config(run_dir: str | Path) -> dict[str, Any]:
    """The method section of a run's saved config.yaml: the values it ran with, whatever
    today's presets say ({} where the file is missing or unreadable)."""
    config = _saved_config(Path(run_dir)).get("config")
    method = config.get("method") if isinstance(config, dict) else None
    return method if isinstance(method, dict) else {}


def _saved_config(run_dir: Path) -> dict[str, Any]:
    path = run_dir / results.CONFIG
    if not path.exists():
        return {}
    try:
        saved = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):  # the result stands; only its command and sizes are lost
        return {}
    return saved if isinstance(saved, dict) else {}


def training_curves(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """From one read of each run's metrics.jsonl, for the runs in `frame`:

    - evaluations: a row per (run, evaluation), periodic and final: step and success rate;
    - harmony: a row per (run, mask update or harmony diagnostic): the averaged harmony score
      and its chance level (NaN for runs logged before the chance level existed), by series:
      a mask update's `masked` and `unmasked`, the diagnostic's `training gradients`.
    """
    evaluations, harmony = [], []
    for _, run in frame.drop_duplicates("run_dir").iterrows():
        cell = {k: run[k] for k in [*CELL, "seed"]}
        try:
            events = results.read_metrics(Path(run["run_dir"]))
        except UserError:  # a damaged metrics.jsonl loses that run's curves, not the report
            events = []
        for event in events:
            kind, step = event.get("event"), event.get("step")
            if kind == "eval":
                evaluations.append({**cell, "step": step, "success_rate": event["success_rate"]})
            elif kind == "mask_update":
                chances = event.get("harmony_chance", {})
                for series, value in event["harmony"].items():
                    harmony.append({**cell, "step": step, "series": series, "harmony": value,
                                    "harmony_chance": _score(chances.get(series))})  # fmt: skip
            elif kind == "harmony":  # the gradients the method trains with: HarmoDT's masked
                harmony.append({**cell, "step": step, "series": "training gradients",
                                "harmony": event["harmony"],
                                "harmony_chance": _score(event.get("harmony_chance"))})  # fmt: skip
    return (
        pd.DataFrame(evaluations, columns=[*CELL, "seed", "step", "success_rate"]),
        pd.DataFrame(
            harmony, columns=[*CELL, "seed", "step", "series", "harmony", "harmony_chance"]
        ),
    )
