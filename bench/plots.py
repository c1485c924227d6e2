"""The report's figures (matplotlib, PNG): each function draws one figure into `path`.

Every figure is titled with what it shows and where it comes from (suite, data, preset), so a
PNG read on its own is not mistaken for a paper-scale result.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display on a cluster node or in CI

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes

NO_MASK = "no mask (Prompt-DT)"  # the conflict figure's setting without masks, drawn black


def learning_curves(curves: pd.DataFrame, path: Path, title: str) -> Path:
    """Mean success rate over seeds against the step, a band of ±1 standard error, per method."""
    figure, axes = plt.subplots(figsize=(7, 4.2))
    for label, group in curves.groupby("label", sort=True):
        by_step = group.groupby("step")["success_rate"]
        mean, error = by_step.mean(), by_step.sem().fillna(0.0)
        axes.plot(mean.index, mean.to_numpy() * 100, marker="o", markersize=3, label=label)
        axes.fill_between(
            mean.index, (mean - error).to_numpy() * 100, (mean + error).to_numpy() * 100, alpha=0.2
        )
    axes.set(xlabel="training step (bands: ±1 standard error over seeds)",
             ylabel="success rate (%)", title=title, ylim=(-2, 102))  # fmt: skip
    axes.set_xlim(left=0)  # training starts at step 0; a lone evaluation is not centred in a void
    axes.legend(fontsize=8)
    axes.grid(alpha=0.3)
    return _save(figure, path)


def success_heatmap(per_task: pd.DataFrame, path: Path, title: str) -> Path:
    """Methods x tasks, mean success rate over seeds (%), the value written in each cell."""
    values = per_task.to_numpy(dtype=float) * 100
    height = 3.0 + 0.45 * len(per_task.index)  # room for the rotated task names below
    width = 5 + 0.6 * len(per_task.columns)
    figure, axes = plt.subplots(figsize=(min(width, 30), height))
    image = axes.imshow(values, cmap="viridis", vmin=0, vmax=100, aspect="auto")
    axes.set_xticks(range(len(per_task.columns)), per_task.columns, rotation=60, ha="right")
    axes.set_yticks(range(len(per_task.index)), per_task.index)
    if values.size <= 400:
        for (row, column), value in np.ndenumerate(values):
            colour = "white" if value < 50 else "black"
            axes.text(
                column, row, f"{value:.0f}", ha="center", va="center", fontsize=7, color=colour
            )
    figure.colorbar(image, ax=axes, label="success rate (%)")
    axes.set_title(title)
    return _save(figure, path)


def performance_profiles(
    profiles: Mapping[str, np.ndarray],
    intervals: Mapping[str, np.ndarray],
    thresholds: np.ndarray,
    path: Path,
    title: str,
) -> Path:
    """Fraction of (run, task) scores above each success-rate threshold, with 95 % CI bands."""
    figure, axes = plt.subplots(figsize=(6, 4))
    for name, profile in profiles.items():
        low, high = intervals[name]
        axes.plot(thresholds * 100, profile, label=name)
        axes.fill_between(thresholds * 100, low, high, alpha=0.15)
    axes.set(
        xlabel="success rate threshold τ (%)",
        ylabel="fraction of runs x tasks > τ",
        title=title,
        ylim=(-0.02, 1.02),
    )
    axes.legend(fontsize=8)
    axes.grid(alpha=0.3)
    return _save(figure, path)


def harmony_curves(curves: pd.DataFrame, path: Path, title: str) -> Path:
    """The averaged harmony score (Def. 3.2) over training, a line per cell (`label`: method
    and variant, never merged) and series (HarmoDT's mask updates: with and without masks; the
    `analysis.harmony_every` diagnostic: the training gradients), each beside its chance level
    (dashed, same colour)."""
    figure, axes = plt.subplots(figsize=(7, 4))
    for (label, series), group in curves.groupby(["label", "series"], sort=True):
        by_step = harmony_means(group, "step")
        plot_with_chance(axes, by_step, f"{label} ({series})")
    axes.set(xlabel="training step", ylabel="average harmony score\ndashed: its chance level",
             title=title)  # fmt: skip
    # A line per cell and series: the legend beside the axes, not over the curves.
    axes.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    axes.grid(alpha=0.3)
    return _save(figure, path)


def conflict_curves(frame: pd.DataFrame, settings: list[str], path: Path, title: str) -> Path:
    """HarmoDT Fig. 2a: a column per suite, the averaged harmony score against the training
    step, a line per mask setting (mean over seeds; no mask black) beside its chance level
    (dashed), and below it the score minus the chance level: agreement among the tasks."""
    from bench.suites import suite_size  # imports metaworld: only for this figure

    suites = sorted(frame["suite"].unique(), key=suite_size)
    rows = 2 if frame["harmony_chance"].notna().any() else 1  # no chance: logged before it
    figure, axes = plt.subplots(rows, len(suites), figsize=(5 * len(suites), 3.6 * rows),
                                squeeze=False, sharex="col", sharey="row")  # fmt: skip
    colours = plt.cm.viridis_r([0.15 + 0.7 * i / 5 for i in range(6)])
    for column, suite in enumerate(suites):
        for index, setting in enumerate(settings):
            group = frame[(frame["suite"] == suite) & (frame["setting"] == setting)]
            if group.empty:
                continue
            colour = "black" if setting == NO_MASK else colours[index % len(colours)]
            by_step = harmony_means(group, "step")
            plot_with_chance(axes[0][column], by_step, setting, color=colour)
            if rows == 2:
                excess = by_step["harmony"] - by_step["harmony_chance"]
                axes[1][column].plot(excess.index, excess.to_numpy(), color=colour, label=setting)
        axes[0][column].set_title(suite)
        axes[-1][column].set_xlabel("training step")
        for axis in axes[:, column]:
            axis.axhline(0.0, color="grey", linewidth=0.5)
            axis.grid(alpha=0.3)
    axes[0][0].set_ylabel("averaged harmony score (Def. 3.2)\ndashed: its chance level")
    if rows == 2:
        axes[1][0].set_ylabel("score - chance level")
    axes[-1][-1].legend(fontsize=7)  # the settings; the top label says what dashes are
    figure.suptitle(title)
    return _save(figure, path)


def harmony_means(frame: pd.DataFrame, by: str | list[str]) -> pd.DataFrame:
    """`harmony` and `harmony_chance` per `by` (e.g. the step: means over seeds). A chance
    level is NaN unless every measurement has one (runs logged before it existed do not),
    rather than a mean over the others."""
    columns = frame.groupby(by)[["harmony", "harmony_chance"]]
    return columns.agg(lambda values: values.mean(skipna=False))


def plot_with_chance(axis: Axes, by_step: pd.DataFrame, label: str, **style: Any) -> None:
    """`by_step`'s harmony solid and its chance level dashed in the same colour: the score shows
    agreement among tasks only where it lies above the dashed line. Without a chance level at
    every step, the solid line only."""
    (line,) = axis.plot(by_step.index, by_step["harmony"].to_numpy(), label=label, **style)
    chance = by_step["harmony_chance"]
    if chance.notna().all():
        axis.plot(chance.index, chance.to_numpy(), linestyle="--", color=line.get_color(),
                  label=f"{label}: chance level")  # fmt: skip


def ablation_curves(
    points: Mapping[str, pd.DataFrame],
    names: Mapping[str, str],
    method: str,
    references: Mapping[str, float],
    path: Path,
    title: str,
) -> Path:
    """HarmoDT Fig. 4: a panel per hyper-parameter, mean success (%) over seeds against its
    value with ±1 standard error, and the reference methods' default runs as dashed lines."""
    figure, axes = plt.subplots(1, len(points), figsize=(4.2 * len(points), 3.6), squeeze=False,
                                sharey=True)  # fmt: skip
    for axis, (parameter, rows) in zip(axes[0], points.items(), strict=True):
        by_value = rows.groupby("value")["run_success_rate"]
        mean, error = by_value.mean() * 100, by_value.sem().fillna(0.0) * 100
        axis.errorbar(mean.index, mean.to_numpy(), yerr=error.to_numpy(), marker="o",
                      capsize=3, label=method)  # fmt: skip
        for index, (reference, value) in enumerate(sorted(references.items())):
            axis.axhline(value, linestyle="--", color=f"C{index + 1}", label=reference)
        values = mean.index.to_numpy()
        if values.min() > 0 and values.max() / values.min() >= 20:
            axis.set_xscale("log")
        axis.set(xlabel=names.get(parameter, parameter))
        axis.grid(alpha=0.3)
    axes[0][0].set_ylabel("success rate (%)")
    axes[0][-1].legend(fontsize=8)
    figure.suptitle(title)
    return _save(figure, path)


def _save(figure: plt.Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120, bbox_inches="tight")  # long labels stay inside the PNG
    plt.close(figure)
    return path
