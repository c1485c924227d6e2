"""Results -> pandas -> tables (tabulate markdown)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd


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
