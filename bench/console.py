"""What the run commands print: one run's per-task result, and the status of every run."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from bench import results
from bench.errors import UserError


def per_task_table(result: Mapping[str, Any]) -> str:
    """One run's per-task success rate and return, with the mean over tasks last."""
    rows = [
        {"task": task, "success_rate": r["success_rate"], "mean_return": r["mean_return"]}
        for task, r in result["per_task"].items()
    ]
    mean = {"success_rate": result["success_rate"], "mean_return": result["mean_return"]}
    rows.append({"task": "mean", **mean})
    frame = pd.DataFrame(rows)
    protocol = result["protocol"]
    title = (
        f"{result['method']} on {result['suite']} ({result['data']['name']}), "
        f"seed {result['seed']}, scale={result['scale']}, "
        f"{protocol['episodes_per_task']} episodes per task, checkpoint {protocol['checkpoint']}"
    )
    return title + "\n\n" + frame.to_markdown(index=False, floatfmt=".3f")


def status_table(root: Path) -> str:
    """One row per run below `root`: its status, last logged step of its planned steps, and
    its mean success rate once done (the final checkpoint's, never a best-of-training)."""
    if not Path(root).is_dir():
        raise UserError(f"no such folder: {root}")
    rows = []
    for run_dir in results.find_runs(root):
        config_path = run_dir / results.CONFIG
        planned = (
            yaml.safe_load(config_path.read_text())["config"]["train"]["steps"]
            if config_path.exists()
            else None
        )
        steps = [e["step"] for e in results.read_metrics(run_dir) if e.get("event") == "train"]
        result_path = run_dir / results.RESULT
        success = (
            f"{json.loads(result_path.read_text())['success_rate']:.3f}"
            if result_path.exists()
            else ""  # not "nan": a run without a result has no score at all
        )
        rows.append(
            {
                "run": str(run_dir.relative_to(root)),
                "status": results.read_status(run_dir),
                "step": f"{steps[-1] if steps else 0}/{planned}",
                "success_rate": success,
            }
        )
    if not rows:
        return f"no runs under {root}"
    return pd.DataFrame(rows).to_markdown(index=False, floatfmt=".3f")
