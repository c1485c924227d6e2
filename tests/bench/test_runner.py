"""The run directory: skip when done, resume after kill -9, stop on NaN, never a partial result."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from bench.cli import main
from bench.data.store import DatasetStore
from bench.envs.metaworld import ACTION_DIM, OBSERVATION_DIM
from bench.results import read_status
from bench.settings import load_settings
from bench.suites import get_suite

RUN_DIR = "mt5/near_optimal/{method}/seed0"


def _overrides(method: str, data_root: Path, run_root: Path, *extra: str) -> list[str]:
    return [
        "run",
        f"method={method}",
        "tasks=mt5",
        "scale=smoke",
        f"data.root={data_root}",
        f"run.root={run_root}",
        "progress=false",
        *extra,
    ]


def _per_task(result_path: Path) -> dict[str, tuple[float, float]]:
    result = json.loads(result_path.read_text())
    return {t: (r["success_rate"], r["mean_return"]) for t, r in result["per_task"].items()}


def test_smoke_run_writes_a_complete_result(smoke_data_root, tmp_path):
    assert main(_overrides("mtdt", smoke_data_root, tmp_path)) == 0
    run_dir = tmp_path / RUN_DIR.format(method="mtdt")
    result = json.loads((run_dir / "result.json").read_text())
    assert set(result["per_task"]) == {
        "basketball-v3", "bin-picking-v3", "button-press-topdown-v3", "button-press-v3",
        "button-press-wall-v3",
    }  # fmt: skip
    rates = [r["success_rate"] for r in result["per_task"].values()]
    assert result["success_rate"] == pytest.approx(np.mean(rates))
    assert all(len(r["episode_success"]) == 2 for r in result["per_task"].values())
    assert result["scale"] == "smoke"
    assert result["data"]["generator"] == "replay"  # which generator made its data
    assert result["protocol"]["checkpoint"] == "final (step 50)"
    assert result["dataset_verified"] is True  # its files re-hashed before the first step
    assert result["versions"]["metaworld"] == "3.1.1"
    assert (run_dir / "status").read_text().strip() == "done"
    saved = (run_dir / "config.yaml").read_text()
    assert "commit:" in saved and "name: mtdt" in saved
    steps = [
        e["step"]
        for e in map(json.loads, (run_dir / "metrics.jsonl").open())
        if e["event"] == "train"
    ]
    assert steps == [10, 20, 30, 40, 50]


def test_periodic_evaluations_give_a_labelled_best_of_beside_the_final_score(
    smoke_data_root, tmp_path
):
    args = _overrides("mtdt", smoke_data_root, tmp_path, "train.eval_every=20", "eval.episodes=1")
    assert main(args) == 0
    run_dir = next((tmp_path / "mt5" / "near_optimal" / "mtdt").glob("**/seed0"))
    result = json.loads((run_dir / "result.json").read_text())
    events = map(json.loads, (run_dir / "metrics.jsonl").open())
    events = [event for event in events if event["event"] == "eval"]
    assert [e["step"] for e in events] == [20, 40, 50]
    best = result["best_of_evaluations"]
    scores = [e["success_rate"] for e in events]
    assert best["evaluations"] == 3 and best["success_rate"] == max(scores)
    assert best["step"] == events[scores.index(max(scores))]["step"]
    assert result["success_rate"] == scores[-1]  # the run's score stays the final checkpoint's
    assert "official code" in best["rule"]


def test_finished_run_is_skipped(smoke_data_root, tmp_path, capsys):
    args = _overrides("mtdt", smoke_data_root, tmp_path)
    assert main(args) == 0
    result = tmp_path / RUN_DIR.format(method="mtdt") / "result.json"
    written = result.stat().st_mtime_ns
    assert main(args) == 0
    assert result.stat().st_mtime_ns == written
    capsys.readouterr()
    assert main(["status", str(tmp_path)]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if "seed0" in line)
    assert "| done" in row and "50/50" in row

    # One damaged file per run: status and report name each and still show the good run.
    run_dir = result.parent
    damage = {"config": ("config.yaml", ": ["), "result": ("result.json", "{}"),
              "metrics": ("metrics.jsonl", "not json\n{}\n")}  # fmt: skip
    for name, (file, text) in damage.items():
        shutil.copytree(run_dir, tmp_path / "damaged" / name / "seed0")
        (tmp_path / "damaged" / name / "seed0" / file).write_text(text)
    capsys.readouterr()
    assert main(["status", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "| done" in next(line for line in lines if line.startswith("| mt5/"))
    for name, (file, _) in damage.items():
        row = next(line for line in lines if f"damaged/{name}/" in line)
        assert f"damaged: {file}:" in row
    assert main(["report", str(tmp_path), "--bootstrap-reps", "50"]) == 0
    captured = capsys.readouterr()
    assert "not a run's result (no 'method')" in captured.err and "## Not included" in captured.out
    # Relaunching one says which file is damaged and how to start over, in one line.
    for name in ("config", "result"):
        damaged = tmp_path / "damaged" / name / "seed0"
        assert main([*args, f"run.dir={damaged}"]) == 2
        error = capsys.readouterr().err
        assert error.count("\n") == 1 and f"{damaged / damage[name][0]} is damaged" in error
        assert "run.restart=true starts the run over" in error


@pytest.mark.parametrize("method", ["mtdt", "prompt_dt", "harmodt_f", "mtiql", "mtbc"])
def test_run_killed_with_sigkill_resumes_to_the_uninterrupted_result(
    method, smoke_data_root, tmp_path, kill_at_first_checkpoint
):
    extra = ("train.steps=200", "train.checkpoint_every=40", "train.log_every=20")
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    assert main(_overrides(method, smoke_data_root, straight, *extra)) == 0

    command = [
        sys.executable,
        "-m",
        "bench.cli",
        *_overrides(method, smoke_data_root, killed, *extra),
    ]
    run_dir = load_settings(_overrides(method, smoke_data_root, killed, *extra)[1:]).run_dir
    kill_at_first_checkpoint(command, run_dir)
    # It had no time to say more than the phase it was in; its free lock tells it is gone.
    assert (run_dir / "status").read_text().strip() == "running: training"
    assert read_status(run_dir) == "interrupted (its process is gone) while training"

    assert main(_overrides(method, smoke_data_root, killed, *extra)) == 0
    events = [json.loads(line) for line in (run_dir / "metrics.jsonl").open()]
    resumed_at = [e["step"] for e in events if e["event"] == "resume"]
    assert len(resumed_at) == 1 and 0 < resumed_at[0] < 200
    train_steps = [e["step"] for e in events if e["event"] == "train"]
    assert train_steps == list(range(20, 201, 20))  # nothing lost, nothing logged twice
    straight_result = straight / run_dir.relative_to(killed) / "result.json"
    assert _per_task(run_dir / "result.json") == _per_task(straight_result)


def test_a_damaged_checkpoint_fails_the_run_in_the_phase_that_reads_it(
    smoke_data_root, tmp_path, capsys
):
    args = _overrides("mtdt", smoke_data_root, tmp_path)
    run_dir = load_settings(args[1:]).run_dir
    run_dir.mkdir(parents=True)
    (run_dir / "checkpoint.pt").write_bytes(b"not a checkpoint")
    assert main(args) == 2
    error = capsys.readouterr().err
    assert f"{run_dir / 'checkpoint.pt'} is damaged" in error
    assert read_status(run_dir) == "failed while loading the checkpoint: " + error.removeprefix(
        "error: "
    ).rstrip("\n")


def test_data_changed_under_its_stamp_stops_the_run_before_training(tmp_path, capsys, write_store):
    """A column overwritten and the mtime put back: size and mtime vouch for it, the bytes not."""
    store = tmp_path / "data"
    rng = np.random.default_rng(0)
    tasks = get_suite("mt5").tasks
    arrays = (rng.standard_normal((100, OBSERVATION_DIM)), rng.uniform(-1, 1, (100, ACTION_DIM)))
    write_store(store, {task: (*arrays, np.ones(100)) for task in tasks}, 25)
    path = store / tasks[2] / "observations.npy"
    hour_ago = path.stat().st_mtime_ns - 3600 * 10**9
    for task in tasks:  # data of an earlier session, stamped as verified when a run opened it
        for npy in (store / task).glob("*.npy"):
            os.utime(npy, ns=(hour_ago, hour_ago))
        DatasetStore(store).open_task(task)
    observations = np.load(path, mmap_mode="r+")
    observations[:, 5] = 0.0
    observations.flush()
    del observations
    os.utime(path, ns=(hour_ago, hour_ago))

    args = _overrides("mtdt", tmp_path, tmp_path / "runs", f"data.path={store}")
    assert main(args) == 2
    error = capsys.readouterr().err
    assert error == (
        f"error: dataset file {path} is corrupt (its sha256 differs from the manifest's); "
        "regenerate or re-import it\n"
    )
    run_dir = load_settings(args[1:]).run_dir
    assert not (run_dir / "checkpoint.pt").exists() and not (run_dir / "metrics.jsonl").exists()
    status = (run_dir / "status").read_text()
    assert status.startswith(f"failed while loading data: dataset file {path} is corrupt")


def test_nan_loss_stops_the_run_without_a_result(tmp_path, capsys, write_store):
    """Data with a NaN observation (checksums match: it was written that way) poisons the loss."""
    store = tmp_path / "nan-data"
    rng = np.random.default_rng(0)
    steps = 100
    observations = rng.standard_normal((steps, OBSERVATION_DIM))
    observations[:, 0] = np.nan
    actions = rng.uniform(-1, 1, (steps, ACTION_DIM))
    tasks = (
        "basketball-v3", "bin-picking-v3", "button-press-topdown-v3", "button-press-v3",
        "button-press-wall-v3",
    )  # fmt: skip
    write_store(store, {task: (observations, actions, np.ones(steps)) for task in tasks}, 25)

    args = _overrides("mtdt", tmp_path, tmp_path / "runs", f"data.path={store}")
    code = main(args)
    assert code == 1
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: run failed: loss is nan at step 0") and "\n" not in error
    run_dir = load_settings(args[1:]).run_dir
    assert not (run_dir / "result.json").exists()
    assert (run_dir / "status").read_text().startswith("failed while training: loss is nan")

    assert main(["status", str(tmp_path / "runs")]) == 0
    table = capsys.readouterr().out
    assert str(run_dir.relative_to(tmp_path / "runs")) in table
    assert "| failed while training: loss is nan" in table and table.startswith("1 runs: 1 failed")
    assert "0/50" in table


@pytest.mark.parametrize("method", ["harmodt_f", "prompt_dt", "mtdt"])
def test_a_cheetah_vel_run_reports_the_mean_return_of_each_unseen_test_task(
    method, meta_rl_data_root, tmp_path, capsys
):
    args = ["run", f"method={method}", "tasks=cheetah_vel", "scale=smoke"]
    paths = [f"data.root={meta_rl_data_root}", f"run.root={tmp_path}", "progress=false"]
    assert main([*args, *paths]) == 0
    result = json.loads(
        (tmp_path / f"cheetah_vel/near_optimal/{method}/seed0/result.json").read_text()
    )
    test_tasks = [f"cheetah_vel-{i}" for i in (2, 7, 15, 23, 26)]
    assert list(result["per_task"]) == test_tasks
    assert result["test_tasks"] == test_tasks and len(result["tasks"]) == 35
    returns = [result["per_task"][t]["mean_return"] for t in test_tasks]
    assert all(np.isfinite(returns)) and all(r < 0 for r in returns)  # -|v - v_goal| - ctrl
    assert result["mean_return"] == pytest.approx(np.mean(returns))
    assert {r["split"] for r in result["per_task"].values()} == {"test"}
    assert result["success_rate"] is None and "score" in result["protocol"]
    assert result["unseen_tasks"]["tasks"] == test_tasks
    assert result["unseen_tasks"]["acting"]  # the method names its rule
    assert "cheetah_vel-26" in capsys.readouterr().out  # the per-task table is printed
