"""`launcher=slurm` on a real Slurm: job arrays, requeue and preemption, failures, data jobs.

The cluster is the one scripts/slurm-local.sh starts (`.ci/run` brings it up and sets
MTBENCH_REQUIRE_SLURM=1, so that there these tests fail rather than skip without it). The
checks before submission need no cluster and run everywhere.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.results import read_metrics
from bench.slurm_queue import run_state
from bench.suites import get_suite

SMOKE = ("tasks=mt5", "scale=smoke", "progress=false", "launcher=slurm",
         "launcher.cpus_per_task=1")  # fmt: skip
META_RL_SMOKE = ("tasks=cheetah_vel", *SMOKE[1:])


def _slurm_up() -> bool:
    if not os.environ.get("SLURM_CONF"):
        return False
    try:
        return subprocess.run(["sinfo", "-h"], capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.fixture(scope="module")
def slurm() -> None:
    if _slurm_up():
        return
    reason = "no Slurm cluster: run `scripts/slurm-local.sh up` and export SLURM_CONF"
    if os.environ.get("MTBENCH_REQUIRE_SLURM"):
        pytest.fail(reason)
    pytest.skip(reason)


def _bench(
    cwd: Path, *args: str, timeout: float = 600, env: dict | None = None
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "bench.cli", *args],
        cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env,
    )  # fmt: skip


def _sweep(data_root: Path, *values: str) -> list[str]:
    return ["run", "-m", *SMOKE, f"data.root={data_root}", "run.root=runs", *values]


def _per_task(run_dir: Path) -> dict:
    result = json.loads((run_dir / "result.json").read_text())
    return {t: (r["success_rate"], r["mean_return"]) for t, r in result["per_task"].items()}


def _job_id(run_dir: Path) -> str:
    return json.loads((run_dir / "slurm.json").read_text())["job_id"]


def _wait_until(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.5)


def test_a_sweep_is_one_array_and_a_second_submission_submits_nothing(
    slurm, smoke_data_root, tmp_path
):
    args = _sweep(smoke_data_root, "method=mtbc,mtdt", "seed=0,1")
    first = _bench(tmp_path, *args)
    assert first.returncode == 0, first.stderr
    assert "4 runs: 0 done, 0 pending or running, 4 to submit" in first.stdout
    assert first.stdout.count("submitted job array") == 1

    again = _bench(tmp_path, *args)  # while the array is queued or running
    assert again.returncode == 0, again.stderr
    assert "nothing to submit" in again.stdout and "0 to submit" in again.stdout

    waited = _bench(tmp_path, *args, "--wait")
    assert waited.returncode == 0, waited.stderr + waited.stdout
    assert "4 of 4 runs finished" in waited.stdout
    run_dirs = sorted((tmp_path / "runs").glob("mt5/near_optimal/*/seed*"))
    assert len(run_dirs) == 4 and all((d / "result.json").exists() for d in run_dirs)
    arrays = {_job_id(d).split("_")[0] for d in run_dirs}
    assert len(arrays) == 1, arrays
    config = (run_dirs[0] / "config.yaml").read_text()
    assert "launcher: slurm" in config and "submitted_commit" in config
    status = _bench(tmp_path, "status", "runs")
    assert status.stdout.count("| done ") == 4, status.stdout


def test_requeue_and_preemption_resume_to_the_uninterrupted_result(
    slurm, smoke_data_root, tmp_path
):
    values = ("method=mtbc", "train.steps=500", "train.log_every=20", "train.checkpoint_every=50")
    submitted = _bench(tmp_path, *_sweep(smoke_data_root, *values))
    assert submitted.returncode == 0, submitted.stderr
    (run_dir,) = (tmp_path / "runs").glob("mt5/near_optimal/mtbc/*/seed0")
    job = _job_id(run_dir)

    def trained_past(step: int) -> bool:
        return any(e["event"] == "train" and e["step"] > step for e in read_metrics(run_dir))

    def resumed(times: int) -> bool:
        return sum(e["event"] == "resume" for e in read_metrics(run_dir)) >= times

    _wait_until(lambda: trained_past(60), 300, "training to start")
    subprocess.run(["scontrol", "requeue", job], check=True)  # Slurm: SIGTERM, start again
    _wait_until(lambda: resumed(1), 300, "the requeued job to resume")
    _wait_until(lambda: trained_past(max(_resume_steps(run_dir)) + 60), 300, "more training")
    subprocess.run(["scancel", "--signal=USR2", job], check=True)  # submitit's preemption
    _wait_until(lambda: resumed(2), 300, "the preempted job to resume")

    waited = _bench(tmp_path, *_sweep(smoke_data_root, *values), "--wait")
    assert waited.returncode == 0, waited.stderr + waited.stdout
    resumes = _resume_steps(run_dir)
    assert len(resumes) == 2 and 0 < resumes[0] < resumes[1] < 500, resumes
    launches = [e["launch"] for e in read_metrics(run_dir) if e["event"] == "resume"]
    assert [launch["restarts"] for launch in launches] == [1, 2]  # each start says which it was

    local = _bench(tmp_path, "run", *SMOKE[:3], *values, f"data.root={smoke_data_root}",
                   "run.root=local")  # fmt: skip
    assert local.returncode == 0, local.stderr
    (local_dir,) = (tmp_path / "local").glob("mt5/near_optimal/mtbc/*/seed0")
    assert _per_task(run_dir) == _per_task(local_dir)


def _resume_steps(run_dir: Path) -> list[int]:
    return [e["step"] for e in read_metrics(run_dir) if e["event"] == "resume"]


def test_a_failed_job_shows_failed_and_only_it_is_resubmitted(slurm, smoke_data_root, tmp_path):
    args = _sweep(smoke_data_root, "method=mtbc", "seed=0,1", "launcher.max_array_size=1")
    broken = tmp_path / "runs/mt5/near_optimal/mtbc/seed1"
    broken.mkdir(parents=True)
    (broken / "checkpoint.pt").write_bytes(b"not a checkpoint")

    first = _bench(tmp_path, *args, "--wait")
    assert first.returncode == 1, first.stdout + first.stderr
    assert "1 of 2 runs finished" in first.stdout
    assert first.stdout.count("submitted job array") == 2  # split at max_array_size
    status = _bench(tmp_path, "status", "runs").stdout
    (line,) = [row for row in status.splitlines() if "seed1" in row]
    assert "failed while loading the checkpoint: " in line, status
    assert "checkpoint.pt is damaged" in line, status
    unreachable = {**os.environ, "SLURM_CONF": str(tmp_path / "no-such-slurm.conf")}
    offline = _bench(tmp_path, "status", "runs", env=unreachable)
    assert offline.returncode == 0 and "Slurm does not answer" in offline.stdout
    assert "checkpoint.pt is damaged" in offline.stdout  # the run folders still tell

    (broken / "checkpoint.pt").unlink()
    again = _bench(tmp_path, *args, "--wait")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "2 runs: 1 done, 0 pending or running, 1 to submit" in again.stdout
    assert "(1 runs)" in again.stdout


@pytest.mark.parametrize(
    "option",
    # the second is an `#SBATCH` line of the user's own (README): it reaches sbatch
    ["launcher.partition=nosuch", "+launcher.sbatch.constraint=nosuchfeature"],
)
def test_a_submission_sbatch_refuses_is_one_line_and_leaves_no_run(
    slurm, smoke_data_root, tmp_path, option
):
    done = _bench(tmp_path, *_sweep(smoke_data_root, "method=mtbc", option))
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("error: sbatch refused the jobs: ")
    assert done.stderr.count("\n") == 1
    assert not list((tmp_path / "runs").glob("mt5"))


def test_a_restart_that_sbatch_refuses_keeps_the_runs_it_would_have_cleared(
    slurm, smoke_data_root, tmp_path
):
    local = ["run", "tasks=mt5", "scale=smoke", "progress=false", "method=mtbc",
             f"data.root={smoke_data_root}", "run.root=runs"]  # fmt: skip
    assert _bench(tmp_path, *local).returncode == 0  # a finished run, made here
    run_dir = next((tmp_path / "runs").rglob("result.json")).parent
    files = lambda: {p.name: p.read_bytes() for p in run_dir.iterdir() if p.name != ".lock"}
    kept = files()

    args = _sweep(smoke_data_root, "method=mtbc", "run.restart=true", "launcher.partition=nosuch")
    done = _bench(tmp_path, *args)

    assert done.returncode == 2 and done.stderr.startswith("error: sbatch refused the jobs: ")
    assert files() == kept and "result.json" in kept
    assert not (run_dir / ".set-aside").exists()


def test_data_generation_is_one_job_per_task(slurm, tmp_path):
    args = ("data", "generate", "tasks=mt5", "data.episodes_per_task=2", "launcher=slurm",
            "launcher.cpus_per_task=1", f"data.root={tmp_path / 'data'}")  # fmt: skip
    submitted = _bench(tmp_path, *args)
    assert submitted.returncode == 0, submitted.stderr
    assert "5 tasks of mt5" in submitted.stdout
    array = submitted.stdout.split("submitted job array ")[1].split(":")[0]

    def finished() -> bool:
        queue = subprocess.run(["squeue", "-h", f"--jobs={array}"], capture_output=True, text=True)
        return queue.stdout.strip() == ""

    _wait_until(finished, 300, "the generation jobs")
    store = tmp_path / "data/replay-ep2"
    verified = _bench(tmp_path, "data", "verify", str(store))
    assert verified.returncode == 0, verified.stderr
    assert len(json.loads((store / "manifest.json").read_text())["tasks"]) == 5
    assert "nothing to submit" in _bench(tmp_path, *args).stdout


def test_a_second_generation_submission_does_not_queue_the_same_tasks_again(slurm, tmp_path):
    # The jobs wait an hour to start (an #SBATCH line of the user's own): still queued.
    args = ("data", "generate", "tasks=mt5", "data.episodes_per_task=2", "launcher=slurm",
            "launcher.cpus_per_task=1", f"data.root={tmp_path / 'data'}",
            "+launcher.sbatch.begin=now+3600")  # fmt: skip
    first = _bench(tmp_path, *args)
    array = first.stdout.split("submitted job array ")[1].split(":")[0]
    try:
        again = _bench(tmp_path, *args)
        assert again.returncode == 0, again.stderr
        assert f"5 tasks already queued (jobs {array}_0, " in again.stdout
        assert "nothing more to submit" in again.stdout and "submitted" not in again.stdout
        record = tmp_path / "data/.replay-ep2.slurm-generation.json"
        record.write_text(record.read_text()[:-3])  # damaged: read as empty, all 5 go twice
        damaged = _bench(tmp_path, *args)
        assert damaged.returncode == 2 and damaged.stderr.count("\n") == 1, damaged.stderr
        assert damaged.stderr.startswith(f"error: {record} is damaged (")
        assert "delete it to submit every task the store lacks" in damaged.stderr
    finally:
        subprocess.run(["scancel", array], check=False)


def test_a_meta_rl_run_trains_on_its_sac_store_and_ends_with_a_result(
    slurm, meta_rl_data_root, tmp_path
):
    args = ["run", "-m", *META_RL_SMOKE, "method=harmodt_f", "seed=0",
            f"data.root={meta_rl_data_root}", "run.root=runs", "--wait"]  # fmt: skip
    done = _bench(tmp_path, *args)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 of 1 runs finished" in done.stdout
    assert "cheetah_vel, scale=smoke" in done.stdout  # the comparison the CLI prints after
    (run_dir,) = (tmp_path / "runs").glob("cheetah_vel/near_optimal/harmodt_f/seed0")
    result = json.loads((run_dir / "result.json").read_text())
    assert result["suite"] == "cheetah_vel" and result["method"] == "harmodt_f"
    assert list(result["per_task"]) == list(get_suite("cheetah_vel").evaluation_tasks)
    assert result["dataset_store"]["path"] == str(meta_rl_data_root / "sac-ep6")


# Before submission: no cluster needed --------------------------------------------------------


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("launcher.time_min=0", "launcher.time_min must be >= 1, got 0"),
        ("launcher.setup=5", "launcher.setup must be a list of shell lines, got 5"),
    ],
)
def test_bad_launcher_values_exit_2_before_anything_is_made(
    smoke_data_root, tmp_path, override, message
):
    done = _bench(tmp_path, "run", *SMOKE, f"data.root={smoke_data_root}", "run.root=runs",
                  "method=mtbc", override)  # fmt: skip
    assert done.returncode == 2
    assert done.stderr == f"error: {message}\n"
    assert not (tmp_path / "runs").exists()


def test_runs_on_missing_data_are_refused_not_generated_by_every_job(tmp_path):
    done = _bench(tmp_path, "run", "-m", *SMOKE, "method=mtbc,mtdt", "data.root=data")
    assert done.returncode == 2
    assert "lacks 5 of the 5 tasks of mt5" in done.stderr
    assert ("bench data generate tasks=mt5 data.root=data data.generator=replay "
            "data.episodes_per_task=6 data.seed=0 data.goal_pool_seed=0 launcher=slurm"
            ) in done.stderr  # fmt: skip
    assert not (tmp_path / "runs").exists() and not (tmp_path / "data").exists()


def test_a_meta_rl_sweep_is_checked_against_its_sac_store(meta_rl_data_root, tmp_path):
    no_slurm = {**os.environ, "SLURM_CONF": str(tmp_path / "no-such-slurm.conf")}
    ready = _bench(tmp_path, "run", "-m", *META_RL_SMOKE, "method=harmodt_f",
                   f"data.root={meta_rl_data_root}", "run.root=runs", env=no_slurm)  # fmt: skip
    # The SAC store holds every task (train and test): only the cluster is missing.
    assert ready.returncode == 2 and "Slurm does not answer" in ready.stderr, ready.stderr

    missing = _bench(tmp_path, "run", "-m", *META_RL_SMOKE, "method=harmodt_f",
                     "data.root=data", env=no_slurm)  # fmt: skip
    assert missing.returncode == 2
    assert "data/sac-ep6 lacks 40 of the 40 tasks of cheetah_vel" in missing.stderr
    assert ("`bench data generate tasks=cheetah_vel data.root=data data.episodes_per_task=6 "
            "data.expert_steps=300 data.seed=0`, then submit") in missing.stderr  # fmt: skip
    assert not (tmp_path / "data").exists()


def test_a_sweep_over_run_roots_or_cuda_without_gpus_is_refused(smoke_data_root, tmp_path):
    base = ["run", "-m", *SMOKE, "method=mtbc", f"data.root={smoke_data_root}"]
    varied = _bench(tmp_path, *base, "run.root=a,b")  # two log folders for one array
    assert varied.returncode == 2 and "cannot vary run.root" in varied.stderr
    gpu = _bench(tmp_path, *base, "device=cuda")
    assert gpu.returncode == 2 and "launcher.gpus_per_node=0" in gpu.stderr
    assert not (tmp_path / "runs").exists()


def test_a_gpu_is_checked_on_the_node_not_on_the_login_node(smoke_data_root):
    import torch

    from bench.errors import UserError
    from bench.settings import load_settings

    args = ["method=mtbc", "tasks=mt5", "scale=smoke", "device=cuda",
            f"data.root={smoke_data_root}"]  # fmt: skip
    assert load_settings([*args, "launcher=slurm"]).device == "cuda"
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="device=cuda is not available"):
            load_settings(args)


def test_run_state_reads_the_queue_against_the_status_file():
    record = {"job_id": "7_1", "log": "runs/.slurm/7_1/7_1_0_log.out"}
    assert run_state("pending", record, {"7_1": "PENDING"}, {}) == "pending"
    assert run_state("running", record, {"7_1": "RUNNING"}, {}) == "running"
    assert run_state("interrupted at step 40", record, {"7_1": "PENDING"}, {}) == "requeued"
    assert run_state("done", record, {}, {}) == "done"
    killed = run_state("running", record, {}, {"7_1": "OUT_OF_MEMORY"})
    assert killed.startswith("failed: job 7_1 out_of_memory") and "7_1_0_log.out" in killed
    cancelled = run_state("interrupted at step 40", record, {}, {"7_1": "CANCELLED"})
    assert cancelled == "failed: job 7_1 cancelled after it was interrupted at step 40"
    assert run_state("failed: loss is nan", record, {}, {}) == "failed: loss is nan"
    assert run_state("running", record, None, {}) == "running"  # Slurm unreachable
    assert run_state("running", None, {}, {}) == "running"  # never submitted to Slurm
    assert run_state("running", record, {"7_1": "REQUEUE_HOLD"}, {}) == "requeued"
    assert run_state("failed: loss is nan", record, {"7_1": "COMPLETING"}, {}) == (
        "failed: loss is nan"
    )


def test_run_state_keeps_the_phase_a_run_is_in_or_was_killed_in():
    record = {"job_id": "7_1", "log": "runs/.slurm/7_1/7_1_0_log.out"}
    evaluating = "running: evaluating at step 40"
    assert run_state(evaluating, record, {"7_1": "RUNNING"}, {}) == evaluating
    assert run_state("running: training", record, {"7_1": "PENDING"}, {}) == "pending"
    assert run_state("running: training", record, None, {}) == "running: training"
    stopped = "interrupted at step 40 while training"
    assert run_state(stopped, record, {"7_1": "PENDING"}, {}) == "requeued"
    requeued = stopped.replace("interrupted", "requeued")  # what a preempted job's run says
    # Started again, and not yet past its first status write:
    assert run_state(requeued, record, {"7_1": "RUNNING"}, {}) == "running"
    killed = run_state(evaluating, record, {}, {"7_1": "OUT_OF_MEMORY"})
    assert killed == (
        "failed while evaluating at step 40: job 7_1 out_of_memory without a word from the run; "
        "see runs/.slurm/7_1/7_1_0_log.out"
    )
    gone = "interrupted (its process is gone) while loading data"  # read_status: lock free
    assert run_state(gone, record, {}, {"7_1": "NODE_FAIL"}).startswith(
        "failed while loading data: job 7_1 node_fail without a word"
    )
    cancelled = run_state(stopped, record, {}, {"7_1": "CANCELLED"})
    assert cancelled == f"failed: job 7_1 cancelled after it was {stopped}"
    failed = "failed while evaluating the final checkpoint: OSError: no space"
    assert run_state(failed, record, {"7_1": "COMPLETING"}, {}) == failed
    assert run_state(failed, record, {}, {}) == failed
