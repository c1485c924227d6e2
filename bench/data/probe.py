"""A linear behaviour-cloning probe of a dataset's mistakes (docs/scripted-experts.md).

A least-squares cloner (observation -> action, with a bias) fitted on a task's data learns the
data's average action around each state. Zero-mean perturbations of the expert average away: the
cloner lands near the expert, shrunk toward 0 where random actions replace some of its actions.
Systematic mistakes do not average away, and the cloner inherits them. The probe fits the
cloner on the even episodes of a split of each task (the sub-optimal first half by default) and
compares it with the expert's own action on the states of the split's odd episodes (held out).
It also fits the cloner to the expert's actions on the same training states: that cloner's error
is what a linear model cannot do, and the distance between the two cloners is what the data's
mistakes did.

    python -m bench.data.probe data/replay-ep100 data/scripted-ep100
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.data.store import DatasetStore
from bench.envs.metaworld import ScriptedExpert


def expert_actions(task: str, observations: np.ndarray) -> np.ndarray:
    """The scripted expert's actions at `observations`, clipped to [-1, 1]."""
    return ScriptedExpert(task).act(np.asarray(observations), None)


def fit_linear_cloner(observations: np.ndarray, actions: np.ndarray) -> np.ndarray:
    """(40, 4) least-squares weights of action ~ [observation, 1] (minimum norm: some
    observation components are constant within a task)."""
    inputs = _with_bias(observations)
    weights, *_ = np.linalg.lstsq(inputs, np.asarray(actions, dtype=np.float64), rcond=None)
    return weights


def cloner_actions(weights: np.ndarray, observations: np.ndarray) -> np.ndarray:
    """The cloner's actions, clipped to [-1, 1] as the env would clip them."""
    return np.clip(_with_bias(observations) @ weights, -1.0, 1.0)


def expert_fit(actions: np.ndarray, expert: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(scale, intercept) per action component of the fit action ~ scale * expert + intercept.

    Mistakes that are zero-mean given the state leave the intercept at ~0 (random actions that
    replace the expert's only lower the scale); systematic ones move it. A component the expert
    holds constant cannot tell the two apart (least squares then takes the minimum norm).
    """
    fits = [
        np.linalg.lstsq(np.stack([expert[:, k], np.ones(len(expert))], axis=1),
                        np.asarray(actions[:, k], dtype=np.float64), rcond=None)[0]
        for k in range(actions.shape[1])
    ]  # fmt: skip
    scale, intercept = np.array(fits).T
    return scale, intercept


def _with_bias(observations: np.ndarray) -> np.ndarray:
    observations = np.asarray(observations, dtype=np.float64)
    return np.hstack([observations, np.ones((len(observations), 1))])


def probe_task(
    task: str, observations: np.ndarray, actions: np.ndarray, episode_starts: np.ndarray,
    fraction: float = 0.5,
) -> dict[str, Any]:  # fmt: skip
    """The probe's figures for one task's data (full-length arrays; the split is taken here)."""
    episodes = max(2, round(len(episode_starts) * fraction))
    ends = np.append(episode_starts[1:], len(actions))
    rows = np.arange(int(ends[episodes - 1]))
    episode = np.searchsorted(episode_starts, rows, side="right") - 1
    train, held_out = rows[episode % 2 == 0], rows[episode % 2 == 1]
    states = np.asarray(observations[: len(rows)])
    expert = expert_actions(task, states)
    cloner = cloner_actions(fit_linear_cloner(states[train], actions[train]), states[held_out])
    best = cloner_actions(fit_linear_cloner(states[train], expert[train]), states[held_out])
    error = cloner - expert[held_out]
    scale, intercept = expert_fit(np.asarray(actions[: len(rows)]), expert)
    return {
        "task": task,
        "episodes": episodes,
        "mse": float(np.mean(error**2)),
        "floor": float(np.mean((best - expert[held_out]) ** 2)),
        "excess": float(np.mean((cloner - best) ** 2)),
        "|mean error|": float(np.linalg.norm(error.mean(axis=0))),
        "mean error (x y z grip)": " ".join(f"{value:+.2f}" for value in error.mean(axis=0)),
        "|intercept|": float(np.linalg.norm(intercept)),
        "scale (x y z)": " ".join(f"{value:+.2f}" for value in scale[:3]),
    }


def probe_store(root: Path, fraction: float = 0.5) -> pd.DataFrame:
    """One row per task of the store at `root` (`probe_task`)."""
    store = DatasetStore(root)
    rows = []
    for task in store.tasks:
        arrays = store.open_task(task)
        rows.append(probe_task(task, arrays.observations, arrays.actions,
                               arrays.episode_starts, fraction))  # fmt: skip
    return pd.DataFrame(rows)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.data.probe", description=__doc__)
    parser.add_argument("stores", nargs="+", type=Path, help="dataset folders")
    parser.add_argument("--fraction", type=float, default=0.5, help="probe this first part")
    args = parser.parse_args(argv)
    for root in args.stores:
        frame = probe_store(root, args.fraction)
        numbers = ["mse", "floor", "excess", "|mean error|", "|intercept|"]
        mean = {"task": "mean", **frame[numbers].mean().to_dict()}
        frame = pd.concat([frame.astype({"episodes": str}), pd.DataFrame([mean])]).fillna("")
        print(f"{root} (fitted on the first {args.fraction:g} of each task's episodes)\n")
        print(frame.to_markdown(index=False, floatfmt=".4f") + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
