"""A run's lifecycle: one process per run, Ctrl-C, failed starts, restarts, changed data."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.cli import main
from bench.envs.metaworld import ACTION_DIM, OBSERVATION_DIM
from bench.errors import UserError
from bench.results import read_metrics, read_status
from bench.settings import load_settings

MT5 = (
    "basketball-v3", "bin-picking-v3", "button-press-topdown-v3", "button-press-v3",
    "button-press-wall-v3",
)  # fmt: skip


def _args(data_root: Path, run_root: Path, *extra: str) -> list[str]:
    return [
        "run", "method=mtdt", "tasks=mt5", "scale=smoke", "progress=false",
        f"data.root={data_root}", f"run.root={run_root}", *extra,
    ]  # fmt: skip


def _bench(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "bench.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a terminal's foreground job
    )


def _result(run_dir: Path) -> dict:
    result = json.loads((run_dir / "result.json").read_text())
    return {t: (r["success_rate"], r["mean_return"]) for t, r in result["per_task"].items()}


def _train_steps(run_dir: Path) -> list[int]:
    return [e["step"] for e in read_metrics(run_dir) if e["event"] == "train"]


def test_two_launches_of_one_run_train_it_once(smoke_data_root, tmp_path):
    args = _args(smoke_data_root, tmp_path, "train.steps=300", "train.log_every=50")
    first, second = _bench(args), _bench(args)
    outputs = [process.communicate(timeout=300) for process in (first, second)]
    codes = sorted(process.returncode for process in (first, second))
    trained = [out for out, _ in outputs if "training:" in out]
    assert len(trained) == 1
    if codes == [0, 2]:  # the second came while the first trained
        refusal = next(err for _, err in outputs if err)
        assert "is already being run by process" in refusal and refusal.count("\n") == 1
    else:  # the second came after the first had finished
        assert codes == [0, 0] and any("skipped:" in out for out, _ in outputs)
    run_dir = tmp_path / "mt5/near_optimal/mtdt/train.steps=300/seed0"
    assert _train_steps(run_dir) == [50, 100, 150, 200, 250, 300]


CUDA = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA GPU (resume bit-for-bit on CUDA)"
)


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=CUDA)])
def test_ctrl_c_stops_with_one_line_and_the_relaunch_ends_as_an_uninterrupted_run(
    device, smoke_data_root, tmp_path, capsys
):
    """Dropout draws from the global generators (CUDA's on a GPU): the checkpoint restores them."""
    extra = (
        "train.steps=400", "train.log_every=20", "train.checkpoint_every=1000", f"device={device}"
    )  # fmt: skip
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    assert main(_args(smoke_data_root, straight, *extra)) == 0
    run_dir = load_settings(_args(smoke_data_root, stopped, *extra)[1:]).run_dir

    process = _bench(_args(smoke_data_root, stopped, *extra))
    deadline = time.monotonic() + 120
    while not _train_steps(run_dir):  # SIGINT once training has begun
        assert process.poll() is None and time.monotonic() < deadline, process.stderr.read()
        time.sleep(0.01)
    os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C in a terminal sends
    _, stderr = process.communicate(timeout=120)

    assert process.returncode == 130
    assert "Traceback" not in stderr and stderr.count("\n") == 1
    step = int(stderr.split("interrupted at step ")[1].split(" ")[0])
    assert 0 < step < 400
    said = f"interrupted at step {step} while training"
    assert stderr == f"{said}; run the same command to resume\n"
    assert read_status(run_dir) == said
    assert not (run_dir / "result.json").exists()

    capsys.readouterr()
    assert main(_args(smoke_data_root, stopped, *extra)) == 0
    assert f"resuming from step {step} of 400" in capsys.readouterr().out
    straight_dir = straight / run_dir.relative_to(stopped)
    assert _result(run_dir) == _result(straight_dir)
    assert _train_steps(run_dir) == list(range(20, 401, 20))


def _wait_for_status(run_dir: Path, status: str, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 120
    while not (run_dir / "status").exists() or (run_dir / "status").read_text() != status + "\n":
        assert process.poll() is None and time.monotonic() < deadline, process.stderr.read()
        time.sleep(0.005)


def _status_row(root: Path, capsys) -> str:
    capsys.readouterr()
    assert main(["status", str(root)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("1 runs: 1 ")
    return next(line for line in out.splitlines() if "seed0" in line)


def test_bench_status_names_the_phase_a_run_was_killed_or_stopped_in(
    smoke_data_root, tmp_path, capsys
):
    args = _args(smoke_data_root, tmp_path, "train.eval_every=20", "train.checkpoint_every=20")
    run_dir = load_settings(args[1:]).run_dir

    killed = _bench(args)  # kill -9 in the periodic evaluation at step 20
    _wait_for_status(run_dir, "running: evaluating at step 20", killed)
    os.killpg(killed.pid, signal.SIGKILL)
    killed.communicate(timeout=60)
    row = _status_row(tmp_path, capsys)
    assert "| interrupted (its process is gone) while evaluating at step 20 |" in row

    stopped = _bench(args)  # resumed from step 20 (its evaluation first); Ctrl-C in the final
    _wait_for_status(run_dir, "running: evaluating the final checkpoint", stopped)
    os.killpg(stopped.pid, signal.SIGINT)
    _, stderr = stopped.communicate(timeout=120)
    assert stopped.returncode == 130
    said = "interrupted at step 50 while evaluating the final checkpoint"
    assert stderr == f"{said}; run the same command to resume\n"
    assert f"| {said} |" in _status_row(tmp_path, capsys)

    assert main(args) == 0  # trained to the end: only the final evaluation is left
    assert "| done " in _status_row(tmp_path, capsys)
    # The evaluation killed at step 20 was made again on resuming: none of the 3 is lost.
    assert [e["step"] for e in read_metrics(run_dir) if e["event"] == "eval"] == [20, 40, 50]
    result = json.loads((run_dir / "result.json").read_text())
    assert result["best_of_evaluations"]["evaluations"] == 3


def test_a_stop_during_a_periodic_evaluation_ends_it_at_once_and_the_resume_makes_it_again(
    smoke_data_root, tmp_path, capsys
):
    """A preemption's notice gives seconds, an MT30 evaluation takes minutes: the stop does not
    wait for it. The checkpoint every 25 steps does not fall on the evaluation at step 20, so
    the run writes one there before it evaluates."""
    extra = ("train.eval_every=20", "train.checkpoint_every=25", "eval.episodes=3")
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    assert main(_args(smoke_data_root, straight, *extra)) == 0
    run_dir = load_settings(_args(smoke_data_root, stopped, *extra)[1:]).run_dir

    process = _bench(_args(smoke_data_root, stopped, *extra))
    _wait_for_status(run_dir, "running: evaluating at step 20", process)
    os.killpg(process.pid, signal.SIGTERM)  # what Slurm sends (submitit's notice becomes it)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 143
    said = "interrupted at step 20 while evaluating at step 20"
    assert stderr == f"{said}; run the same command to resume\n"
    assert read_status(run_dir) == said
    assert not [e for e in read_metrics(run_dir) if e["event"] == "eval"]  # none half recorded

    capsys.readouterr()
    assert main(_args(smoke_data_root, stopped, *extra)) == 0
    assert "resuming from step 20 of 50" in capsys.readouterr().out
    assert [e["step"] for e in read_metrics(run_dir) if e["event"] == "eval"] == [20, 40, 50]
    straight_dir = straight / run_dir.relative_to(stopped)
    assert _result(run_dir) == _result(straight_dir)
    best = [json.loads((d / "result.json").read_text())["best_of_evaluations"]
            for d in (run_dir, straight_dir)]  # fmt: skip
    assert best[0] == best[1]


def test_a_final_evaluation_recorded_before_the_result_is_made_again_not_counted_twice(
    smoke_data_root, tmp_path
):
    args = _args(smoke_data_root, tmp_path, "train.eval_every=20")
    run_dir = load_settings(args[1:]).run_dir
    assert main(args) == 0
    # The process ended between the final evaluation's event and result.json.
    (run_dir / "result.json").unlink()
    assert main(args) == 0
    assert [e["step"] for e in read_metrics(run_dir) if e["event"] == "eval"] == [20, 40, 50]
    result = json.loads((run_dir / "result.json").read_text())
    assert result["best_of_evaluations"]["evaluations"] == 3


def _nan_store(root: Path, write_store) -> Path:
    rng = np.random.default_rng(0)
    observations = rng.standard_normal((100, OBSERVATION_DIM))
    observations[:, 0] = np.nan
    actions = rng.uniform(-1, 1, (100, ACTION_DIM))
    write_store(root, {task: (observations, actions, np.ones(100)) for task in MT5}, 25)
    return root


def test_a_failed_start_is_replaced_by_the_corrected_config(
    smoke_data_root, tmp_path, capsys, write_store
):
    nan_store = _nan_store(tmp_path / "nan-store", write_store)
    run_dir = tmp_path / "the-run"
    args = _args(smoke_data_root, tmp_path / "runs", f"run.dir={run_dir}")
    assert main([*args, f"data.path={nan_store}"]) == 1
    assert read_status(run_dir).startswith("failed while training: loss is nan")

    good_store = smoke_data_root / "replay-ep6"
    assert main([*args, f"data.path={good_store}"]) == 0
    assert "which made no progress" in capsys.readouterr().out
    assert read_status(run_dir) == "done"


def test_a_different_config_with_progress_needs_run_restart(smoke_data_root, tmp_path, capsys):
    run_dir = tmp_path / "the-run"
    args = _args(smoke_data_root, tmp_path / "runs", f"run.dir={run_dir}")
    assert main(args) == 0
    capsys.readouterr()
    assert main([*args, "train.steps=60"]) == 2
    out, error = capsys.readouterr()
    assert "different config with progress: train.steps (50 -> 60)" in error
    assert "run.restart=true" in error and error.count("\n") == 1
    assert out == ""  # refused before a plan that would time its training
    assert main([*args, "train.steps=60", "--cfg", "job"]) == 2  # as the run would be
    assert "different config with progress" in capsys.readouterr().err

    assert main([*args, "train.steps=60", "run.restart=true"]) == 0
    assert f"cleared {run_dir}" in capsys.readouterr().out
    assert json.loads((run_dir / "result.json").read_text())["steps"] == 60


def test_a_finished_run_without_its_checkpoint_is_never_cleared_for_another_config(
    smoke_data_root, tmp_path, capsys
):
    """As the committed reports keep their runs: config.yaml, metrics.jsonl, result.json."""
    run_dir = tmp_path / "the-run"
    args = _args(smoke_data_root, tmp_path / "runs", f"run.dir={run_dir}")
    assert main(args) == 0
    (run_dir / "checkpoint.pt").unlink()
    result = (run_dir / "result.json").read_text()
    capsys.readouterr()
    assert main([*args, "train.steps=60"]) == 2
    assert "different config with progress: train.steps (50 -> 60)" in capsys.readouterr().err
    assert (run_dir / "result.json").read_text() == result


def test_resuming_onto_a_changed_dataset_is_refused(smoke_data_root, tmp_path, capsys, write_store):
    other = tmp_path / "other-store"
    rng = np.random.default_rng(1)
    observations = rng.standard_normal((100, OBSERVATION_DIM))
    arrays = (observations, np.zeros((100, ACTION_DIM)), np.ones(100))
    write_store(other, dict.fromkeys(MT5, arrays), 25)
    link = tmp_path / "store"
    link.symlink_to(smoke_data_root / "replay-ep6")
    args = _args(smoke_data_root, tmp_path / "runs", f"data.path={link}")
    assert main(args) == 0
    run_dir = next((tmp_path / "runs").rglob("result.json")).parent
    first = json.loads((run_dir / "result.json").read_text())
    assert len(first["dataset_hash"]) == 64 and first["git"]["commit"]
    (run_dir / "result.json").unlink()  # the run is back to "trained, not yet evaluated"
    link.unlink()
    link.symlink_to(other)
    capsys.readouterr()
    assert main(args) == 2
    assert "the dataset changed since" in capsys.readouterr().err


def test_leftover_temporary_files_of_a_killed_writer_are_removed(smoke_data_root, tmp_path):
    run_dir = tmp_path / "the-run"
    run_dir.mkdir()
    leftover = run_dir / ".checkpoint.pt.tmp-99999"
    leftover.write_bytes(b"half a checkpoint")
    assert main(_args(smoke_data_root, tmp_path, f"run.dir={run_dir}")) == 0
    assert not leftover.exists()


def test_metrics_tolerate_a_torn_last_line_only(tmp_path):
    good = '{"event": "train", "step": 10}\n'
    (tmp_path / "metrics.jsonl").write_text(good + '{"event": "tr')
    assert read_metrics(tmp_path) == [{"event": "train", "step": 10}]
    (tmp_path / "metrics.jsonl").write_text(good + "garbage\n" + good)
    with pytest.raises(UserError, match="line 2 is not a JSON event"):
        read_metrics(tmp_path)
