"""A dataset in the published MT50 npz layout, written with Meta-World alone, imports and trains.

The writer below deliberately uses none of mtbench's code: it rolls Meta-World's own scripted
experts with decreasing noise and saves one `<task>-v2/<i>.npz` per episode, alternating float
`terminals` and bool `dones` (the done flag only at the 500-step time limit), as the release does.
"""

from __future__ import annotations

import json
from pathlib import Path

import metaworld
import numpy as np
from metaworld.policies import ENV_POLICY_MAP

from bench.cli import main
from bench.data.store import DatasetStore

MT5_V2 = ("basketball", "bin-picking", "button-press-topdown", "button-press", "button-press-wall")
EPISODES = 4


def _write_release(root: Path) -> None:
    for index, stem in enumerate(MT5_V2):
        name = f"{stem}-v3"
        benchmark = metaworld.MT1(name, seed=7)
        env = benchmark.train_classes[name]()
        policy = ENV_POLICY_MAP[name]()
        rng = np.random.default_rng(index)
        folder = root / f"{stem}-v2"
        folder.mkdir(parents=True)
        for episode in range(EPISODES):
            env.set_task(benchmark.train_tasks[episode])
            obs, _ = env.reset()
            noise = 0.5 * (1 - episode / (EPISODES - 1))
            record = {"observations": [], "actions": [], "rewards": [], "done": []}
            for step in range(500):
                action = np.clip(policy.get_action(obs) + noise * rng.standard_normal(4), -1, 1)
                record["observations"].append(obs)
                obs, reward, _, _, _ = env.step(action)
                record["actions"].append(action)
                record["rewards"].append(reward)
                record["done"].append(step == 499)
            arrays = {
                "observations": np.asarray(record["observations"], dtype=np.float32),
                "actions": np.asarray(record["actions"], dtype=np.float32),
                "rewards": np.asarray(record["rewards"], dtype=np.float32),
            }
            if index % 2:
                arrays["dones"] = np.asarray(record["done"], dtype=bool)
            else:
                arrays["terminals"] = np.asarray(record["done"], dtype=np.float32)
            np.savez(folder / f"{episode}.npz", **arrays)


def test_published_layout_imports_and_trains(tmp_path, capsys):
    release = tmp_path / "MT50" / "dataset"
    _write_release(release)
    store_path = tmp_path / "imported"
    assert main(["data", "import-npz", str(release), "--out", str(store_path)]) == 0
    store = DatasetStore(store_path)
    assert store.tasks == [f"{stem}-v3" for stem in MT5_V2]
    arrays = store.open_task("bin-picking-v3")
    assert arrays.num_episodes == EPISODES and arrays.num_steps == EPISODES * 500
    original = np.load(release / "bin-picking-v2" / "2.npz")
    np.testing.assert_array_equal(arrays.observations[1000:1500], original["observations"])
    assert arrays.timeouts.sum() == EPISODES and not arrays.terminals.any()

    run_root = tmp_path / "runs"
    overrides = [
        "method=prompt_dt", "tasks=mt5", "scale=smoke", f"data.path={store_path}",
        f"run.root={run_root}", "progress=false",
    ]  # fmt: skip
    assert main(["run", *overrides]) == 0
    # data.path is a non-default value: the run directory says so (with a hash: it is a path).
    (result_path,) = (run_root / "mt5/near_optimal/prompt_dt").glob("data.path=*/seed0/result.json")
    result = json.loads(result_path.read_text())
    assert len(result["per_task"]) == 5
    assert result["data"]["path"] == str(store_path)
    assert result["data"]["train_episodes_per_task"] == [EPISODES - 2] * 5
