"""A report's figures (bench/plots.py draws them) and the evaluation curves they plot."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from bench import plots, report_ablations, statistics
from bench.result_table import training_curves


def cell_label(row: pd.Series) -> str:
    """A cell's name: the method, and its variant where it is not the default."""
    return row["method"] if row["variant"] == "default" else f"{row['method']} [{row['variant']}]"


def evaluation_curves(
    finished: pd.DataFrame, unfinished: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The evaluations (periodic and final) of the `finished` runs and of the `unfinished` ones,
    labelled by method and variant, the unfinished apart (live curves: never in a table); and
    the finished runs' harmony scores. A run without an evaluation has no row. `bench report`
    and `bench status --curves` draw the first with `plots.learning_curves`."""
    curves, harmony = training_curves(finished)
    curves = curves.assign(label=curves.apply(cell_label, axis=1) if len(curves) else "")
    harmony = harmony.assign(label=harmony.apply(cell_label, axis=1) if len(harmony) else "")
    if not unfinished.empty:
        live, _ = training_curves(unfinished)
        if not live.empty:
            live = live.assign(label=live.apply(cell_label, axis=1) + " (unfinished)")
            drawn = [part for part in (curves, live) if not part.empty]
            curves = pd.concat(drawn, ignore_index=True)
    return curves, harmony


def figures(
    frame: pd.DataFrame,
    matrices: dict[str, np.ndarray],
    per_task: pd.DataFrame,
    assets: Path,
    reps: int,
    name: str,
    title: str,
    unfinished: pd.DataFrame,
) -> list[Path]:
    """The cohort's figures for one suite and data, written under `assets`: per-task heatmap,
    performance profile, evaluation curves, harmony and HarmoDT's ablations where it has them."""
    made = [
        plots.success_heatmap(
            per_task, assets / f"{name}-per-task.png", f"Per-task success: {title}"
        )
    ]
    thresholds = np.linspace(0.0, 1.0, 21)
    profiles, intervals = statistics.performance_profiles(matrices, thresholds, reps=reps)
    made.append(
        plots.performance_profiles(
            profiles,
            intervals,
            thresholds,
            assets / f"{name}-profile.png",
            f"Performance profile: {title}",
        )
    )
    curves, harmony = evaluation_curves(frame, unfinished)
    if curves["step"].nunique() > 1:
        made.append(
            plots.learning_curves(
                curves, assets / f"{name}-curves.png", f"Evaluation during training: {title}"
            )
        )
    if not harmony.empty:
        made.append(
            plots.harmony_curves(harmony, assets / f"{name}-harmony.png", f"Harmony score: {title}")
        )
    runs = frame.drop_duplicates("run_dir")
    points = report_ablations.ablation_points(runs)
    if points:
        references = {
            method: 100 * group["run_success_rate"].mean()
            for method, group in runs[runs["variant"] == "default"].groupby("method")
            if method in report_ablations.ABLATION_REFERENCES
        }
        figure = assets / f"{name}-ablations.png"
        heading = f"Hyper-parameter ablations (Fig. 4): {title}"
        made.append(
            plots.ablation_curves(
                points,
                report_ablations.ABLATIONS,
                report_ablations.ABLATED_METHOD,
                references,
                figure,
                heading,
            )
        )
    return made
