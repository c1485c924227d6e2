"""Which seeds of a report's cell are finished, and what the others are doing.

A report reads results, but a cell must never average a partial set of seeds silently: every
run folder below the report's root that has no readable result.json (running, interrupted,
failed, pending) is placed in its cell from its saved config, and the cell says how many of the
expected seeds it averages and why the others are absent (`n=2 of 3: seed 2 interrupted at
step 400`). The expected seeds of a suite are every seed any of its runs (finished or not) has.
"""

from __future__ import annotations

import pandas as pd

Cell = tuple[str, str]  # (label, data)


def seed_accounts(finished: pd.DataFrame, unfinished: pd.DataFrame) -> dict[Cell, str]:
    """{(label, data): 'n=k of m: seed s <status>; ...'} for every cell with unfinished runs.

    `finished` and `unfinished` hold a row per run of one suite with `label`, `data` and
    `seed` (and `status` for the unfinished ones). Cells whose missing seeds have no run folder
    at all are left to the report's plain `n=k` and its warning.
    """
    if unfinished.empty:
        return {}
    expected = sorted(set(finished["seed"]) | set(unfinished["seed"]))
    accounts = {}
    for (label, data), runs in unfinished.groupby(["label", "data"], sort=True):
        cell = finished[(finished["label"] == label) & (finished["data"] == data)]
        done = set(cell["seed"])
        states = {
            int(run.seed): str(run.status) for run in runs.itertuples() if run.seed not in done
        }
        if not states:
            continue
        absent = [
            f"seed {seed} {states.get(seed, 'missing')}" for seed in expected if seed not in done
        ]
        accounts[str(label), str(data)] = f"n={len(done)} of {len(expected)}: {'; '.join(absent)}"
    return accounts
