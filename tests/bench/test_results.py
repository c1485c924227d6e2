import subprocess
from pathlib import Path

import pytest
import torch

from bench.errors import UserError
from bench.results import git_commit, load_checkpoint, save_checkpoint


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)


def _repo_with_a_committed_sweep(tmp_path: Path) -> Path:
    (tmp_path / "bench").mkdir()
    (tmp_path / "bench" / "runner.py").write_text("STEPS = 1\n")
    (tmp_path / "README.md").write_text("readme\n")
    cell = tmp_path / "reports" / "mt5-quick" / "runs" / "mtbc" / "seed0"
    cell.mkdir(parents=True)
    (cell / "result.json").write_text('{"success_rate": 0.5}\n')
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "sweep")
    return cell


def test_rerunning_a_cell_of_a_committed_sweep_leaves_the_tree_clean(tmp_path: Path) -> None:
    cell = _repo_with_a_committed_sweep(tmp_path)
    (cell / "result.json").write_text('{"success_rate": 0.75}\n')
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "result.json").write_text("{}\n")
    (tmp_path / "scratch.txt").write_text("notes\n")

    assert git_commit(tmp_path)["dirty"] is False


def test_a_changed_tracked_file_or_new_code_makes_the_tree_dirty(tmp_path: Path) -> None:
    _repo_with_a_committed_sweep(tmp_path)
    (tmp_path / "README.md").write_text("changed\n")
    assert git_commit(tmp_path)["dirty"] is True

    _git(tmp_path, "checkout", "--", "README.md")
    assert git_commit(tmp_path)["dirty"] is False
    (tmp_path / "bench" / "new_module.py").write_text("X = 1\n")
    assert git_commit(tmp_path)["dirty"] is True


def test_best_of_evaluations_takes_the_highest_mean_and_the_first_of_ties():
    from bench.results import best_of_evaluations

    def evaluation(step: int, rate: float | None, mean_return: float = 0.0) -> dict:
        return {"event": "eval", "step": step, "success_rate": rate,
                "mean_return": mean_return, "per_task": {}}  # fmt: skip

    events = [evaluation(10, 0.2), {"event": "train", "step": 10}, evaluation(20, 0.6),
              evaluation(30, 0.6), evaluation(40, 0.4)]  # fmt: skip
    best = best_of_evaluations(events)
    assert (best["evaluations"], best["step"], best["success_rate"]) == (4, 20, 0.6)
    by_return = best_of_evaluations([evaluation(1, None, 5.0), evaluation(2, None, -1.0)])
    assert (by_return["step"], by_return["mean_return"]) == (1, 5.0)  # meta-RL: by return
    assert best_of_evaluations([{"event": "train", "step": 1}]) is None


def test_a_truncated_or_flipped_checkpoint_is_one_line_naming_it_and_the_way_out(tmp_path):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, {"step": 7, "weights": torch.arange(4000.0)})
    saved = path.read_bytes()
    assert load_checkpoint(path)["step"] == 7

    path.write_bytes(saved[:5000])
    with pytest.raises(UserError) as truncated:
        load_checkpoint(path)
    assert str(truncated.value).startswith(f"checkpoint {path} is truncated (")

    flipped = bytearray(saved)
    flipped[len(saved) // 2] ^= 0x01  # inside the tensor: torch.load alone would take it
    path.write_bytes(bytes(flipped))
    with pytest.raises(UserError) as corrupt:
        load_checkpoint(path)
    assert str(corrupt.value).startswith(f"checkpoint {path} is corrupt (its sha256 differs")
    for error in (truncated, corrupt):
        assert "\n" not in str(error.value)
        assert str(error.value).endswith(
            "run.restart=true starts the run over (its progress is lost)"
        )

    torch.save({"step": 3}, path)  # a checkpoint from before the checksum still resumes
    assert load_checkpoint(path) == {"step": 3}


def test_a_status_names_the_phase_and_a_dead_runs_status_the_phase_it_died_in(tmp_path):
    from bench import results
    from bench.run_lock import RunLock

    lock = RunLock(tmp_path)
    lock.acquire()
    results.write_status(tmp_path, results.running(results.evaluating(40)))
    assert results.read_status(tmp_path) == "running: evaluating at step 40"
    assert results.is_running(results.read_status(tmp_path))
    lock.release()  # as the kernel does when the process is killed
    assert results.read_status(tmp_path) == (
        "interrupted (its process is gone) while evaluating at step 40"
    )
    results.write_status(tmp_path, "running")  # written before phases: still understood
    assert results.read_status(tmp_path) == "interrupted (its process is gone)"

    stopped = results.interrupted(results.FINAL_EVALUATION, 500)
    assert stopped == "interrupted at step 500 while evaluating the final checkpoint"
    assert results.interrupted(results.LOADING, None) == "interrupted while loading data"
    failed = results.failed(results.TRAINING, "loss is nan at step 3: training diverged")
    assert failed == "failed while training: loss is nan at step 3: training diverged"
    for status, phase in [(stopped, results.FINAL_EVALUATION), (failed, results.TRAINING),
                          ("running: loading data", results.LOADING), ("done", None),
                          ("failed: loss is nan", None), ("pending", None)]:  # fmt: skip
        assert results.phase_of(status) == phase
    assert not results.is_running(stopped) and not results.is_running("pending")


def test_a_run_killed_between_its_result_and_its_status_is_done(tmp_path):
    from bench import results

    results.write_status(tmp_path, results.running(results.FINAL_EVALUATION))
    (tmp_path / "result.json").write_text('{"per_task": {}, "success_rate": 0.5')  # damaged
    assert results.read_status(tmp_path) == (
        "interrupted (its process is gone) while evaluating the final checkpoint"
    )
    (tmp_path / "result.json").write_text('{"per_task": {}, "success_rate": 0.5}\n')
    assert results.read_status(tmp_path) == "done"


def test_status_reads_a_run_on_a_read_only_mount_without_writing_its_lock(tmp_path):
    from bench import results
    from bench.console import status_table
    from bench.run_lock import RunLock

    run_dir, mount = tmp_path / "runs" / "the-run", tmp_path / "read-only"
    run_dir.mkdir(parents=True)
    mount.mkdir()
    lock = RunLock(run_dir)
    lock.acquire()
    results.write_status(run_dir, results.running(results.TRAINING))
    bound = subprocess.run(["mount", "--bind", "-o", "ro", str(tmp_path / "runs"), str(mount)],
                           capture_output=True)  # fmt: skip
    if bound.returncode != 0:
        lock.release()
        pytest.skip("bind-mounting read-only is not permitted here")
    try:
        with pytest.raises(OSError):
            (mount / "the-run" / ".lock").open("a")  # really read-only, even for root
        assert results.read_status(mount / "the-run") == "running: training"
        lock.release()  # as the kernel does when the process is killed
        assert results.read_status(mount / "the-run") == (
            "interrupted (its process is gone) while training"
        )
        assert "1 runs: 1 interrupted" in status_table(mount)
    finally:
        lock.release()
        subprocess.run(["umount", "-l", str(mount)], check=True)


def test_status_gives_a_finished_run_its_last_step_not_its_last_logged_one(tmp_path):
    import shutil

    from bench.console import status_table

    committed = Path(__file__).parents[2] / "reports/mt30-small/runs/mt30/near_optimal/mtbc/seed0"
    run_dir = tmp_path / "mtbc" / "seed0"
    shutil.copytree(committed, run_dir)
    metrics = run_dir / "metrics.jsonl"
    lines = metrics.read_text().splitlines(keepends=True)
    # As if train.log_every did not divide train.steps: the last log before the end.
    metrics.write_text("".join(x for x in lines if '"train"' not in x or '"step": 100000' not in x))
    assert "| 100000/100000 |" in status_table(tmp_path)
