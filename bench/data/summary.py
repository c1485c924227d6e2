"""What a task's data holds, in a few numbers: the spread of its episode returns and how often
its episodes succeed, over all episodes, over the first half (the sub-optimal split) and in each
tenth of the episodes (how success rises over a run from random to expert).

The paper's data is a replay buffer "from random to expert": a wide spread of returns per task,
and a success fraction rising from ~0 to the expert's. The generators record this summary in each
task's manifest entry while they roll the episodes out (success is not in the stored arrays);
`bench data info` and the end of `bench data generate` show it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

HISTOGRAM_BINS = 10
SUCCESS_PARTS = 10  # success is also recorded per tenth of the episodes, in order
SUB_OPTIMAL_FRACTION = 0.5  # configs/data/sub_optimal.yaml: the first half of each task's episodes
_BARS = " ▁▂▃▄▅▆▇█"
MISSING = "\u2013"  # an en dash: a store made before summaries were recorded, or an import


def episode_returns(rewards: np.ndarray, episode_starts: np.ndarray) -> np.ndarray:
    """The undiscounted return of each episode, in float64 (float32 sums of 500 rewards drift)."""
    return np.add.reduceat(np.asarray(rewards, dtype=np.float64), episode_starts)


def summarize(returns: np.ndarray, success: np.ndarray) -> dict[str, Any]:
    """The manifest's `summary` of one task from its per-episode returns and successes."""
    quartiles = np.quantile(returns, [0.0, 0.25, 0.5, 0.75, 1.0])
    counts, edges = np.histogram(returns, bins=HISTOGRAM_BINS)
    first_half = max(1, round(len(success) * SUB_OPTIMAL_FRACTION))
    names = ("min", "q1", "median", "q3", "max")
    return {
        "returns": dict(zip(names, _rounded(quartiles), strict=True)),
        "histogram": {"edges": _rounded(edges), "counts": [int(count) for count in counts]},
        "success": {
            "all": float(np.mean(success)),
            "first_half": float(np.mean(success[:first_half])),
            "by_tenth": [
                round(float(np.mean(part)), 3)
                for part in np.array_split(success, SUCCESS_PARTS)
                if len(part)  # fewer than 10 episodes: fewer parts
            ],
        },
    }


def _rounded(values: np.ndarray) -> list[float]:
    # Returns are sums of float32 rewards: more digits would only record rounding noise.
    return [round(float(value), 2) for value in values]


def text_bars(values: Sequence[float], top: float | None = None) -> str:
    """One character per value, its height proportional to value / `top` (default: the
    largest value); 0 is a space."""
    top = max(values, default=0) if top is None else top
    if top <= 0:
        return " " * len(values)
    levels = len(_BARS) - 1
    # A non-zero value gets at least the lowest bar, so that it never looks like 0.
    heights = [0 if value <= 0 else max(1, round(levels * value / top)) for value in values]
    return "".join(_BARS[height] for height in heights)


def summary_table(manifest: Mapping[str, Any], tasks: Sequence[str] | None = None) -> str:
    """One row per task of a store (or of `tasks`): episodes, return min / median / max, the
    return histogram from min to max, success over all episodes and the first half, and
    success in each tenth of the episodes (bars from 0 to 1)."""
    entries = manifest["tasks"]
    rows = [_row(task, entries[task]) for task in (entries if tasks is None else tasks)]
    return pd.DataFrame(rows).to_markdown(index=False, disable_numparse=True)


def _row(task: str, entry: Mapping[str, Any]) -> dict[str, str]:
    summary = entry.get("summary")
    row = {"task": task, "episodes": str(entry.get("episodes", MISSING))}
    if not summary:
        columns = ("return min", "median", "max", "histogram", "success all", "first half",
                   "success by tenth")  # fmt: skip
        return {**row, **dict.fromkeys(columns, MISSING)}
    returns, success = summary["returns"], summary["success"]
    return {
        **row,
        "return min": f"{returns['min']:.0f}",
        "median": f"{returns['median']:.0f}",
        "max": f"{returns['max']:.0f}",
        # Brackets, not bars: the table is markdown, and a bar would end the cell.
        "histogram": f"[{text_bars(summary['histogram']['counts'])}]",
        "success all": f"{success['all']:.2f}",
        "first half": f"{success['first_half']:.2f}",
        # Stores made before it was recorded lack it.
        "success by tenth": f"[{text_bars(success['by_tenth'], 1.0)}]"
        if "by_tenth" in success
        else MISSING,
    }


def store_summary(root: Path) -> str:
    """`bench data info`: the store's origin in a line, then its summary table."""
    from bench.data.generate import generator_name
    from bench.data.store import DatasetStore

    store = DatasetStore(root)
    manifest = store.manifest
    settings = manifest.get("generator") or {}
    made = f"{root}: {generator_name(manifest)}"
    if "episodes_per_task" in settings:
        made += f", {settings['episodes_per_task']} episodes per task, seed {settings.get('seed')}"
    text = made + "\n\n" + summary_table(manifest) + "\n\n" + _hashes(manifest)
    # The table is the manifest's summary: say where the files no longer match it.
    damaged = store.damaged_tasks(store.tasks)
    if damaged:
        listed = "; ".join(f"{task} ({why})" for task, why in damaged.items())
        text += (
            f"\n\nwarning: {len(damaged)} task(s) no longer match the manifest above: {listed}; "
            f"`bench data verify {root}` checks every file's sha256 and says how to repair"
        )
    return text


def _hashes(manifest: Mapping[str, Any]) -> str:
    """The hashes a run's result.json and a report name this store by: the store's own (a
    report section's heading) and, per suite it holds, what that suite's runs read."""
    from bench.results import dataset_hash, store_hash
    from bench.suites import SUITES

    held = set(manifest["tasks"])
    suites = [
        f"{name} {dataset_hash(manifest, suite.data_tasks)[:12]}"
        for name, suite in SUITES.items()
        if name in manifest.get("suites", []) and set(suite.data_tasks) <= held
    ]
    line = f"store hash {store_hash(manifest)[:12]} (a report's section heading names it)"
    if suites:
        line += "; dataset hash per suite (result.json's dataset_hash): " + ", ".join(suites)
    return line
