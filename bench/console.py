"""What the run commands print: one run's per-task result, and the status of every run."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from bench import results
from bench.errors import UserError, damage_reason
from bench.output_paths import check_output_file
from bench.run_result import DamagedResult, RunResult


def per_task_table(result: Mapping[str, Any]) -> str:
    """One run's per-task success rate and return, with the mean over tasks last (a meta-RL
    suite's: the return on each test task and which split it is from; there is no success)."""
    scored = result["success_rate"] is not None
    rows = [
        {"task": task, **_scores(r, scored), **({"split": r["split"]} if "split" in r else {})}
        for task, r in result["per_task"].items()
    ]
    rows.append({"task": "mean", **_scores(result, scored)})
    frame = pd.DataFrame(rows).fillna("")  # the mean row has no split
    protocol = result["protocol"]
    data, checkpoint = result["data"]["name"], protocol["checkpoint"]  # "-": none (experts)
    title = (
        f"{result['method']} on {result['suite']}{f' ({data})' if data != '-' else ''}, "
        f"seed {result['seed']}, scale={result['scale']}, "
        f"{protocol['episodes_per_task']} episodes per task"
        + (f", checkpoint {checkpoint}" if checkpoint != "-" else "")
    )
    text = title + "\n\n" + frame.to_markdown(index=False, floatfmt=".3f")
    best = result.get("best_of_evaluations")
    if best and best["evaluations"] > 1:
        score = best["mean_return"] if best["success_rate"] is None else best["success_rate"]
        text += (
            f"\n\nbest of {best['evaluations']} evaluations (the official code's protocol, "
            f"not this run's score): {score:.3f} at step {best['step']}"
        )
    return text


def _last_eval(event: Mapping[str, Any] | None) -> str:
    if event is None:
        return ""
    if event["success_rate"] is None:
        return f"return {event['mean_return']:.1f} @ {event['step']}"
    return f"{event['success_rate']:.3f} @ {event['step']}"


def _scores(scores: Mapping[str, Any], with_success: bool) -> dict[str, Any]:
    shown = {"success_rate": scores["success_rate"]} if with_success else {}
    return {**shown, "mean_return": scores["mean_return"]}


def _score_text(score: float | None) -> str:
    return "" if score is None else f"{score:.3f}"


class _Damaged(Exception):
    """A run file that cannot be read: `<file>: <reason>`."""


def _run_row(run_dir: Path, state: str) -> dict[str, str]:
    """A run's status row; `_Damaged` names the first of its files that cannot be read."""
    from bench.slurm_queue import read_job_record

    config_path = run_dir / results.CONFIG
    planned = None
    if config_path.exists():
        try:
            planned = yaml.safe_load(config_path.read_text())["config"]["train"]["steps"]
        except (OSError, yaml.YAMLError, KeyError, TypeError) as error:
            raise _Damaged(f"{results.CONFIG}: {damage_reason(error)}") from None
    try:
        events = results.read_metrics(run_dir)
    except UserError:
        raise _Damaged(f"{results.METRICS}: a line is not a JSON event") from None
    steps = [e["step"] for e in events if e.get("event") == "train"]
    step = steps[-1] if steps else 0  # the last logged: a running run's latest known
    evaluations = [e for e in events if e.get("event") == "eval"]
    result_path = run_dir / results.RESULT
    success = ""  # not "nan": without a result (or scored by return) there is no success
    if result_path.exists():
        try:
            result = RunResult.from_json(json.loads(result_path.read_text()))
        except (OSError, ValueError, DamagedResult) as error:
            raise _Damaged(f"{results.RESULT}: {damage_reason(error)}") from None
        success = _score_text(result.success_rate)
        step = result.steps if result.steps is not None else step  # past its last log
    record = read_job_record(run_dir)
    return {
        "status": (state.splitlines() or [""])[0],  # a failure's first line
        "job": record["job_id"] if record else "",
        "step": f"{step}/{planned}",
        "last_eval": _last_eval(evaluations[-1] if evaluations else None),
        "success_rate": success,
    }


def status_table(root: Path) -> str:
    """One row per run below `root`: its state, its Slurm job where it has one, its last
    logged step (a finished run's last) of its planned steps, its last periodic evaluation,
    and its mean success rate once done (the final checkpoint's, never a best-of-training).
    Slurm is asked once."""
    from bench.slurm_queue import describe_runs

    results.check_runs_folder(root)
    run_dirs = results.find_runs(root)
    if not run_dirs:
        return f"no runs under {root}"
    states, note = describe_runs(run_dirs)
    rows = []
    for run_dir in run_dirs:
        row = {"run": str(run_dir.relative_to(root)), "job": ""}
        try:
            row |= _run_row(run_dir, states[run_dir])
        except _Damaged as damage:  # one damaged run is shown as such; the others still are
            row |= {"status": f"damaged: {damage}", "step": "", "last_eval": "",
                    "success_rate": ""}  # fmt: skip
        rows.append(row)
    frame = pd.DataFrame(rows)
    if not frame["job"].any():
        frame = frame.drop(columns="job")
    counts = frame["status"].str.split(r"[: ]", regex=True).str[0].value_counts()
    summary = f"{len(frame)} runs: " + ", ".join(f"{n} {state}" for state, n in counts.items())
    # Every cell is already text; parsed as numbers, job 1_0 would read as 10.
    table = frame.to_markdown(index=False, disable_numparse=True)
    return "\n".join([summary, *([note] if note else []), "", table])


def check_curves_path(path: Path) -> None:
    """`bench status --curves PATH` can write its PNG (checked before the table is printed)."""
    if path.is_dir() or path.suffix.lower() != ".png":
        raise UserError(
            f"--curves {path}: not a .png path (the folder goes first: bench status runs/ --curves)"
        )
    check_output_file(path, "--curves")


def status_curves(root: Path, path: Path) -> str:
    """The evaluations of every run below `root`, finished or not, drawn into `path` as
    `bench report` draws them (the unfinished labelled apart); the line that says where, or
    that no run has evaluated yet. A run without an evaluation is not in the figure. `path` is
    checked first, by `check_curves_path` (before `bench status` prints its table)."""
    from bench import plots
    from bench.report_figures import evaluation_curves
    from bench.result_table import unfinished_runs

    runs = unfinished_runs(root, finished=())  # every run folder its config.yaml places
    # Done as everywhere else: a whole result.json (a damaged one is drawn as unfinished).
    done = runs["run_dir"].map(lambda run_dir: results.has_result(Path(run_dir))).astype(bool)
    curves, _ = evaluation_curves(runs[done], runs[~done])
    if curves.empty:
        return f"curves: none drawn, no run below {root} has evaluated yet"
    drawn = sorted(set(curves["suite"] + " " + curves["data"]))
    if len(drawn) > 1:  # one figure for them all: each line says its suite and data
        where = ", " + curves["suite"] + " " + curves["data"]
        curves = curves.assign(label=curves["label"] + where)
    scales = ", ".join(sorted(set(runs["scale"])))
    path.parent.mkdir(parents=True, exist_ok=True)
    title = f"Evaluation during training: {'; '.join(drawn)}, scale={scales}"
    plots.learning_curves(curves, path, title)
    return f"curves: {path}"
