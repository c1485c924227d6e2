"""Fig. 4 of the paper in a report: HarmoDT-F's success against each hyper-parameter it sweeps."""

from __future__ import annotations

import pandas as pd

# Fig. 4: HarmoDT-F's hyper-parameters, one varied at a time, MTDT and Prompt-DT as lines.
ABLATED_METHOD = "harmodt_f"
ABLATIONS = {"sparsity": "S (sparsity)", "eta_max": "η_max (weights changed per update)",
             "balance": "λ (balance)", "mask_interval": "t_m (steps between updates)"}  # fmt: skip
ABLATION_REFERENCES = ("mtdt", "prompt_dt")


def ablation_points(runs: pd.DataFrame, scale: str) -> dict[str, pd.DataFrame]:
    """{parameter: a row per run (value, seed, run_success_rate)} for each Fig. 4 parameter
    whose runs (varying it alone, plus the default runs at the preset's value) span 2+ values."""
    from bench.config import compose_run

    harmodt = runs[runs["method"] == ABLATED_METHOD]
    if harmodt.empty:
        return {}
    preset = compose_run([f"method={ABLATED_METHOD}", f"scale={scale}"]).config["method"]
    defaults = harmodt[harmodt["variant"] == "default"]
    points = {}
    for parameter in ABLATIONS:
        swept = harmodt[harmodt["variant"].str.fullmatch(rf"{parameter}=[^,]+")]
        if swept.empty:
            continue
        # A preset value of null is resolved per run (HarmoDT's eta_max and t_m follow the
        # network and train.steps): the default runs then have no one value to sit at.
        at_default = (
            [] if preset[parameter] is None else [defaults.assign(value=float(preset[parameter]))]
        )
        rows = pd.concat([
            swept.assign(value=swept["variant"].str.split("=").str[1].astype(float)),
            *at_default,
        ])  # fmt: skip
        if rows["value"].nunique() >= 2:
            points[parameter] = rows[["value", "seed", "run_success_rate"]].reset_index(drop=True)
    return points
