"""The best-of-N columns of a report: the official code's protocol (`best_suc` in its main.py),
each run's highest mean over its evaluations, shown apart from the final score and never mixed
into it; the paper's rows, made that way, sit there too."""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

# The column of the paper's rows where no run evaluated during training (else: best of N).
PAPER_PROTOCOL = "the paper's protocol (best of its evaluations)"


def label(runs: pd.DataFrame) -> str | None:
    """'best of N evaluations' for the runs that evaluated more than once (N as a range where
    runs differ), None when none did."""
    counts = sorted(set(runs.loc[runs["best_evaluations"] > 1, "best_evaluations"]))
    if not counts:
        return None
    n = str(counts[0]) if len(counts) == 1 else f"{counts[0]} to {counts[-1]}"
    return f"best of {n} evaluations"


def column(data: str, best_of: str) -> str:
    return f"{data}, {best_of}"


def fewer_evaluations(runs: pd.DataFrame) -> str | None:
    """Which runs (one row each, labelled) a 'best of N to M' column takes fewer evaluations
    from (an evaluation lost to an interruption in an old run, or another schedule); None when
    every run with a best-of has as many."""
    evaluated = runs[runs["best_evaluations"] > 1]
    most = evaluated["best_evaluations"].max()
    fewer = evaluated[evaluated["best_evaluations"] < most].sort_values(["label", "seed"])
    if fewer.empty:
        return None
    listed = ", ".join(
        f"{run.label} seed {run.seed} ({run.best_evaluations})" for run in fewer.itertuples()
    )
    return f"Best of fewer than {most} evaluations: {listed}."


def with_paper_columns(table: pd.DataFrame, paper: Mapping[str, str]) -> pd.DataFrame:
    """Each data column of `paper` (data -> its paper column), renamed `<data>, final` and
    followed by an empty column for the paper's rows."""
    table = table.copy()
    for data in [d for d in paper if d in table.columns]:
        table.insert(int(table.columns.get_loc(data)) + 1, paper[data], "—")
        table = table.rename(columns={data: f"{data}, final"})
    return table
