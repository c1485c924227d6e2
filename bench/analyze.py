"""`bench analyze <run_dir>`: a run's gradient-conflict diagnostics as figures.

- harmony.png: the averaged harmony score (HarmoDT Def. 3.2) over training, as in the paper's
  Fig. 2a: from HarmoDT's `mask_update` events (with the task masks and without them, at the
  same weights) and from the `harmony` events any DT method logs with analysis.harmony_every=N,
  each beside its chance level (dashed, same colour; `harmony_chance` in methods/dt.py);
  HarmoDT runs add the mean pairwise overlap (IoU) of the task masks below it.
- mask_tsne.png: a t-SNE of the final task masks (paper Fig. 5), for runs whose checkpoint holds
  task masks; distances are the fraction of weights on which two masks differ.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from matplotlib.figure import Figure

from bench import results
from bench.atomic import atomic_file
from bench.errors import UserError
from bench.plots import plot_with_chance
from bench.run_result import read_result

HARMONY_PNG = "harmony.png"
TSNE_PNG = "mask_tsne.png"


def analyze(run_dir: Path) -> list[Path]:
    """Write the figures the run's records allow; returns their paths."""
    metrics = run_dir / results.METRICS
    if not metrics.exists():
        raise UserError(f"{run_dir} has no {results.METRICS}: is it a run directory?")
    events = results.read_metrics(run_dir)
    written = []
    if any(e.get("event") in ("mask_update", "harmony") for e in events):
        written.append(_save(plot_harmony(events), run_dir / HARMONY_PNG))
    masks = _final_masks(run_dir)
    if masks is not None and len(masks) >= 2:
        written.append(
            _save(plot_mask_tsne(masks, _task_names(run_dir, len(masks))), run_dir / TSNE_PNG)
        )
    if not written:
        raise UserError(
            f"{run_dir} has nothing to analyze: no harmony or mask_update events and no task "
            "masks; train a harmodt_* method, or any DT method with analysis.harmony_every=N"
        )
    return written


def plot_harmony(events: list[dict[str, Any]]) -> Figure:
    updates = [e for e in events if e.get("event") == "mask_update"]
    diagnostics = [e for e in events if e.get("event") == "harmony"]
    figure = Figure(figsize=(7, 6.5 if updates else 4), layout="constrained")
    axes = figure.subplots(2 if updates else 1, 1, sharex=True, squeeze=False)[:, 0]
    harmony = axes[0]
    if updates:
        steps = [e["step"] for e in updates]
        for series, marker, label in (
            ("masked", "o", "with task masks (mask updates)"),
            ("unmasked", "s", "without masks, same weights (mask updates)"),
        ):
            if all(series in e["harmony"] for e in updates):  # no unmasked: official gradients
                values = [e["harmony"][series] for e in updates]
                chances = [e.get("harmony_chance", {}).get(series) for e in updates]
                plot_with_chance(harmony, _by_step(steps, values, chances), label, marker=marker)
    if diagnostics:
        by_step = _by_step(
            [e["step"] for e in diagnostics],
            [e["harmony"] for e in diagnostics],
            [e.get("harmony_chance") for e in diagnostics],
        )
        label = "training gradients (analysis.harmony_every)"
        plot_with_chance(harmony, by_step, label, marker=".")
    harmony.axhline(0.0, color="grey", linewidth=0.5)
    harmony.set_ylabel("averaged harmony score (Def. 3.2)\ndashed: its chance level")
    harmony.set_title("Gradient harmony among tasks")
    harmony.legend(loc="best", fontsize="small")
    if updates:
        overlap = axes[1]
        overlap.plot(steps, [e["overlap"] for e in updates], "o-", color="tab:green")
        overlap.set_ylabel("mean pairwise mask IoU")
        overlap.set_ylim(0.0, 1.02)  # a zoomed axis would dress up rounding noise as a trend
    axes[-1].set_xlabel("training step")
    return figure


def _by_step(steps: list[int], values: list[float], chances: list[float | None]) -> pd.DataFrame:
    """One series of events as `plot_with_chance` reads it; a chance level an event lacks
    (logged before it existed) is NaN."""
    chance = [np.nan if value is None else value for value in chances]
    return pd.DataFrame({"harmony": values, "harmony_chance": chance}, index=steps)


def plot_mask_tsne(masks: np.ndarray, names: list[str]) -> Figure:
    """t-SNE of (tasks, weights) boolean masks under the Hamming distance."""
    from sklearn.manifold import TSNE

    distances = _hamming(masks)
    count = len(masks)
    # t-SNE needs perplexity < samples; the usual 30 only fits suites of 91+ tasks.
    perplexity = min(30.0, max(1.0, (count - 1) / 3))
    points = TSNE(
        n_components=2,
        metric="precomputed",
        init="random",
        perplexity=perplexity,
        random_state=0,
    ).fit_transform(distances)
    figure = Figure(figsize=(7, 6), layout="constrained")
    axis = figure.subplots()
    axis.scatter(points[:, 0], points[:, 1], c=np.arange(count), cmap="tab20", s=40)
    for index, ((x, y), name) in enumerate(zip(points, names, strict=True)):
        offset = (4, 4) if index % 2 == 0 else (4, -10)  # neighbours' labels less often collide
        axis.annotate(name, (x, y), fontsize="x-small", xytext=offset, textcoords="offset points")
    axis.set_title(f"t-SNE of the final task masks ({count} tasks, {masks.shape[1]} weights)")
    axis.margins(0.15)  # room for the labels
    axis.set_xticks([])
    axis.set_yticks([])
    return figure


def _hamming(masks: np.ndarray, chunk: int = 1 << 16) -> np.ndarray:
    """Fraction of weights on which each pair of masks differs."""
    shared = np.zeros((len(masks), len(masks)))  # weights active in both masks: exact counts
    for start in range(0, masks.shape[1], chunk):  # a chunk at a time: float64 copies stay small
        block = masks[:, start : start + chunk].astype(np.float64)
        shared += block @ block.T
    active = np.diag(shared)
    differ = active[:, None] + active[None, :] - 2 * shared
    return np.clip(differ / masks.shape[1], 0.0, None)


def _final_masks(run_dir: Path) -> np.ndarray | None:
    path = run_dir / results.CHECKPOINT
    if not path.exists():
        return None
    from bench.registry import task_masks

    masks = task_masks(results.load_checkpoint(path)["method"])
    return None if masks is None else masks.numpy()


def _task_names(run_dir: Path, count: int) -> list[str]:
    if (run_dir / results.RESULT).exists():
        return list(read_result(run_dir).tasks)
    config = run_dir / results.CONFIG
    if config.exists():
        from bench.suites import get_suite

        suite = yaml.safe_load(config.read_text())["config"]["tasks"]["name"]
        return list(get_suite(suite).tasks)
    return [f"task {i}" for i in range(count)]


def _save(figure: Figure, path: Path) -> Path:
    with atomic_file(path, "wb") as handle:
        figure.savefig(handle, format="png", dpi=120)
    return path
