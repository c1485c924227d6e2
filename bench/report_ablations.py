"""Fig. 4 of the paper in a report: HarmoDT-F's success against each hyper-parameter it sweeps."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from bench.result_table import saved_method_config

# Fig. 4: HarmoDT-F's hyper-parameters, one varied at a time, MTDT and Prompt-DT as lines.
ABLATED_METHOD = "harmodt_f"
ABLATIONS = {"sparsity": "S (sparsity)", "eta_max": "η_max (weights changed per update)",
             "balance": "λ (balance)", "mask_interval": "t_m (steps between updates)"}  # fmt: skip
ABLATION_REFERENCES = ("mtdt", "prompt_dt")


def ablation_points(runs: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """{parameter: a row per run (value, seed, run_success_rate)} for each Fig. 4 parameter
    whose runs (varying it alone, plus the default runs at the value their own config.yaml
    holds: a preset changed since they ran does not move them) span 2+ values."""
    harmodt = runs[runs["method"] == ABLATED_METHOD]
    if harmodt.empty:
        return {}
    defaults = harmodt[harmodt["variant"] == "default"]
    saved = [saved_method_config(run_dir) for run_dir in defaults["run_dir"]]
    points = {}
    for parameter in ABLATIONS:
        swept = harmodt[harmodt["variant"].str.fullmatch(rf"{parameter}=[^,]+")]
        if swept.empty:
            continue
        # A saved value of null was resolved inside the run (HarmoDT's eta_max and t_m follow
        # the network and train.steps), and a run without a readable config.yaml says nothing:
        # such default runs have no value to sit at.
        values = [_number(method.get(parameter)) for method in saved]
        at_default = defaults.assign(value=values).dropna(subset=["value"])
        rows = pd.concat([
            swept.assign(value=swept["variant"].str.split("=").str[1].astype(float)),
            *([at_default] if len(at_default) else []),
        ])  # fmt: skip
        if rows["value"].nunique() >= 2:
            points[parameter] = rows[["value", "seed", "run_success_rate"]].reset_index(drop=True)
    return points


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return math.nan
    return float(value)
