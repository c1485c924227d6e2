"""Table 4 of the paper: mean episode return on the test tasks of the meta-RL families.

A meta-RL run is scored by return, not success: its cell is the mean ± std over seeds of each
run's mean return on one test task, and its last column the same for the mean over the suite's
test tasks (what the paper's Table 4 reports, one number per family). Each task's header says
whether it is an unseen task (`test`) or a training task scored again (`train`: cheetah_dir).
"""

from __future__ import annotations

import pandas as pd

from bench.report_reference import reference_tables, reported
from bench.suites import benchmark_of, get_suite

MEAN_COLUMN = "mean over test tasks"


def is_unseen_task_suite(suite: str) -> bool:
    """Whether the suite called `suite` is reported by this module's table (its benchmark's say)."""
    return benchmark_of(suite).unseen_task_table


def scored_by_return(suite: str) -> bool:
    """Whether the suite called `suite` is scored by return (no success rate to aggregate)."""
    return benchmark_of(suite).scored_by == "return"


def unseen_task_table(rows: pd.DataFrame) -> pd.DataFrame:
    """label x (each test task, the mean over them) of 'mean ± std' return over seeds; the best
    of each column in bold and `n=k` on a cell with fewer seeds than the most complete one.

    `rows`: one row per (run, task), with columns label, run_dir, task, mean_return.
    """
    suite = get_suite(str(rows["suite"].iloc[0]))
    per_task = rows.groupby(["label", "task"])["mean_return"].agg(["mean", "std", "count"])
    per_run = rows.groupby(["label", "run_dir"])["mean_return"].mean()
    overall = per_run.groupby("label").agg(["mean", "std", "count"])
    overall = overall.assign(task=MEAN_COLUMN).set_index("task", append=True)
    cells = pd.concat([per_task, overall]).reset_index()
    full = int(cells["count"].max())
    best = cells.groupby("task")["mean"].transform("max")
    cells["text"] = [
        ("**{:.1f} ± {:.1f}**" if mean == top else "{:.1f} ± {:.1f}").format(mean, std)
        + (f" (n={count})" if count < full else "")
        for mean, std, count, top in zip(
            cells["mean"], cells["std"].fillna(0.0), cells["count"], best, strict=True
        )
    ]
    table = cells.pivot_table(index="label", columns="task", values="text", aggfunc="first")
    order = [t for t in suite.evaluation_tasks if t in table.columns] + [MEAN_COLUMN]
    table = table[order].fillna("—")
    table.columns = [
        c if c == MEAN_COLUMN else f"{c} ({suite.split(c)})" for c in table.columns
    ]
    return table


def paper_rows(suite: str, label: str, columns: list[str]) -> pd.DataFrame | None:
    """The paper's Table 4 number for the suite (the mean over its test tasks) per method."""
    reference = reference_tables()["table4"]["rows"]
    row = next((r for r in reference if r["suite"] == suite), None)
    if row is None:
        return None
    rows = {
        f"{method} — {label}": {MEAN_COLUMN: reported(value)}
        for method, value in row.items()
        if method != "suite"
    }
    return pd.DataFrame.from_dict(rows, orient="index").reindex(columns=columns).fillna("—")
