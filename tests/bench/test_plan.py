"""The plan `bench run` prints before long work: sizes from the store's dtypes, times from
counts and rates, the rates' sources, the warning, and nothing made by `--cfg job`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from bench import plan
from bench.cli import main
from bench.data.generate import generate_task
from bench.data.store import bytes_per_step, write_task
from bench.plan_rates import (
    Rate,
    RateBook,
    median_train_rate,
    speed_key,
    stage_seconds,
    timed_rates,
)
from bench.registry import TrainingStage
from bench.settings import load_settings


def test_store_size_is_what_the_store_writes(tmp_path):
    """The estimate equals, byte for byte, the .npy files of a really generated task."""
    rollout = generate_task("reach-v3", episodes=2, seed=0, pool_seed=0)
    entry = write_task(tmp_path, "reach-v3", rollout.arrays)
    written = sum(record["size"] for record in entry["files"].values())
    assert plan.store_bytes(1, 2, 500, 39, 4) == written
    assert bytes_per_step(39, 4) == 39 * 4 + 4 * 4 + 4 + 1 + 1
    paper_mt50 = plan.store_bytes(50, 2000, 500, 39, 4)  # 50M transitions
    assert plan.size(paper_mt50) == "8.9 GB"


def test_times_from_counts_and_rates():
    # Whole tasks per worker, at most a worker per core: 50 tasks on 2 cores are 25 rounds.
    assert plan.generation_seconds(50, 1_000_000, 2, 2, 1930) == 25 * 1_000_000 / 1930
    assert plan.generation_seconds(5, 1000, 8, 2, 1000) == 3.0
    assert plan.generation_seconds(0, 1000, 2, 2, 1000) == 0.0
    # Periodic evaluations at multiples of eval_every before the end, then the final one.
    assert plan.evaluations_left(20_000, 5000) == 4
    assert plan.evaluations_left(20_000, 5000, done=12_000) == 2
    assert plan.evaluations_left(50, 0) == 1
    assert plan.evaluations_left(20_000, 5000, done=20_000) == 1  # trained, not yet evaluated
    assert plan.episode_seconds(500, 0.0) == pytest.approx(0.06 + 500 * 0.65e-3)
    durations = [plan.duration(s) for s in (45, 600, 3 * 3600, 5 * 86400)]
    assert durations == ["45 s", "10 min", "3.0 h", "5.0 days"]


def _roots(tmp_path: Path) -> list[str]:
    return [f"run.root={tmp_path / 'runs'}", f"data.root={tmp_path / 'data'}"]


def _finished_run(tmp_path: Path, overrides: list[str], steps_per_second: float) -> Path:
    """A finished run folder of `overrides` (seed 1), as the runner leaves one."""
    settings = load_settings([*overrides, "seed=1", *_roots(tmp_path)])
    run_dir = settings.run_dir
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump({"config": settings.config}))
    events = [{"event": "train", "step": 1000 * k, "steps_per_second": steps_per_second + k % 2}
              for k in range(1, 4)]  # fmt: skip
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    tasks = settings.suite.evaluation_tasks
    result = {
        "method": settings.method_name, "suite": settings.suite.name, "data": {"name": "near"},
        "scale": settings.scale, "seed": 1, "success_rate": 0.5, "num_parameters": 1,
        "wall_time_s": {"train": 1.0, "evaluate": 3.6 * 50 * len(tasks)},  # 3.6 s per episode
        "protocol": {"episodes_per_task": 50, "checkpoint": "final"},
        "per_task": {task: {"success_rate": 0.5, "mean_return": 1.0} for task in tasks},
    }  # fmt: skip
    (run_dir / "result.json").write_text(json.dumps(result))
    (run_dir / "status").write_text("done\n")
    return run_dir


def test_cfg_job_shows_the_paper_plan_and_makes_nothing(tmp_path, capsys):
    overrides = ["method=harmodt_f", "tasks=mt50"]
    finished = _finished_run(tmp_path, overrides, steps_per_second=2.0)
    before = sorted(tmp_path.rglob("*"))
    assert main(["run", "--cfg", "job", *overrides, *_roots(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert yaml.safe_load(out)["method"]["name"] == "harmodt_f"  # the plan is YAML comments
    shown = "\n".join(line for line in out.splitlines() if line.startswith("# "))
    assert "50 task(s) to make, 100,000 episodes, 8.9 GB; about 3.6 h, with data.workers=2" in shown
    # The median of 3, 2 and 3 steps/s, from the finished run of the same config.
    assert f"1,000,000 steps, about 3.9 days (3 steps/s, from the finished run {finished})" in shown
    assert "1 x 50 episodes x 50 tasks, about 2.5 h (as in the finished run" in shown
    assert "warning: about 4.1 days on this machine. scale=quick" in shown
    assert "launcher=slurm" in shown
    assert sorted(tmp_path.rglob("*")) == before  # no data, no run folder


def test_a_smoke_run_prints_a_short_plan_first_and_no_warning(tmp_path, capsys, monkeypatch):
    printed_before_the_run = []

    def run(settings, repo, **_):
        printed_before_the_run.append(capsys.readouterr())
        return {"method": "mtdt", "suite": "mt5", "data": {"name": "near_optimal"}, "seed": 0,
                "scale": "smoke", "success_rate": 0.0, "mean_return": 0.0, "per_task": {},
                "protocol": {"episodes_per_task": 2, "checkpoint": "final"}}  # fmt: skip

    monkeypatch.setattr("bench.runner.execute", run)
    args = ["run", "method=mtdt", "tasks=mt5", "scale=smoke", *_roots(tmp_path)]
    assert main(args) == 0
    out, err = printed_before_the_run[0]
    assert out.startswith("plan (estimates, each saying where its rate comes from)")
    assert len(out.splitlines()) == 5  # heading, data, training, evaluation, total
    assert "5 task(s) to make, 30 episodes, 2.7 MB" in out
    assert "50 steps (short: not timed" in out
    assert "1 x 2 episodes x 5 tasks, at least 4 s" in out
    assert "warning" not in out and "timing" not in err
    # A sweep's child runs print nothing: the sweep's plan covered them.
    assert main([args[0], "--no-plan", *args[1:]]) == 0
    assert "plan (" not in printed_before_the_run[1].out


def test_a_sweep_prints_one_plan_summing_its_runs(tmp_path, capsys):
    args = ["run", "-m", "--cfg", "job", "method=mtdt,prompt_dt", "seed=0,1", "tasks=mt5"]
    assert main([*args, "scale=smoke", *_roots(tmp_path)]) == 0
    out = capsys.readouterr().out
    jobs = list(yaml.safe_load_all(out))  # each job's config, then the plan as comments
    assert [(job["method"]["name"], job["seed"]) for job in jobs] == [
        ("mtdt", 0),
        ("mtdt", 1),
        ("prompt_dt", 0),
        ("prompt_dt", 1),
    ]
    assert jobs[3]["run_dir"].endswith("prompt_dt/seed1")
    plan_text = "\n".join(line[2:] for line in out.splitlines() if line.startswith("# "))
    assert plan_text.startswith("plan for 4 runs") and plan_text.count("\nplan") == 0
    assert "replay-ep6: 5 task(s) to make" in plan_text  # one store, counted once
    assert "4 runs, 200 steps" in plan_text and "4 evaluations over 4 runs" in plan_text
    assert not (tmp_path / "runs").exists() and not (tmp_path / "data").exists()


def test_a_resumed_run_plans_its_remaining_steps_at_its_own_rate(tmp_path):
    settings = load_settings(["tasks=mt5", "scale=smoke", "train.steps=500", *_roots(tmp_path)])
    settings.run_dir.mkdir(parents=True)
    (settings.run_dir / "checkpoint.pt").write_bytes(b"")
    (settings.run_dir / "status").write_text("interrupted at step 200\n")
    event = {"event": "train", "step": 200, "steps_per_second": 10.0}
    (settings.run_dir / "metrics.jsonl").write_text(json.dumps(event) + "\n")
    text = plan.describe_plan([settings])
    assert "300 steps, about 30 s (10 steps/s, from this run's metrics.jsonl)" in text


def test_a_resumed_run_plans_the_evaluation_its_process_ended_in(tmp_path):
    settings = load_settings(["tasks=mt5", "scale=smoke", "train.steps=500", "train.eval_every=100",
                              *_roots(tmp_path)])  # fmt: skip
    settings.run_dir.mkdir(parents=True)
    (settings.run_dir / "checkpoint.pt").write_bytes(b"")
    (settings.run_dir / "status").write_text("interrupted at step 200\n")
    events = [{"event": "eval", "step": 100}, {"event": "train", "step": 200}]
    (settings.run_dir / "metrics.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    book = RateBook(allow_timing=False)
    assert plan.run_work(settings, book).evaluations == 4  # 200 again, 300, 400 and the final
    events.append({"event": "eval", "step": 200})
    (settings.run_dir / "metrics.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    assert plan.run_work(settings, book).evaluations == 3


def test_a_meta_rl_suite_plans_its_sac_experts(tmp_path):
    settings = load_settings(["method=prompt_dt", "tasks=cheetah_vel", "scale=smoke",
                              *_roots(tmp_path)])  # fmt: skip
    work = plan.data_work(settings, settings.suite.data_tasks)
    assert work.experts == ("cheetah_vel",) and work.tasks == 40
    assert work.bytes == 40 * plan.store_bytes(1, 6, 200, 20, 6)
    assert "SAC experts for cheetah_vel first" in plan.describe_plan([settings])


def test_timed_rates_come_from_a_few_steps_on_synthetic_data(tmp_path):
    """The path a long run without a known rate takes, on a smoke-sized model (fast)."""
    settings = load_settings(["method=harmodt_f", "tasks=mt5", "scale=smoke", *_roots(tmp_path)])
    rates = timed_rates(settings)
    assert rates.train is not None and rates.train.value > 0
    assert rates.policy_step is not None and rates.policy_step.value > 0
    assert rates.train.source.startswith("timed now on synthetic data")
    assert not (tmp_path / "data").exists() and not (tmp_path / "runs").exists()


def test_a_runs_rate_weighs_each_training_stage_by_its_windows():
    backbone = [{"event": "train", "stage": 1.0, "steps_per_second": r} for r in (9, 10, 11, 50)]
    experts = [{"event": "train", "stage": 2.0, "steps_per_second": 1.0}]
    # 5 windows of equal steps: 4 at stage 1's median 10.5 steps/s, 1 at 1 step/s.
    assert median_train_rate(backbone + experts) == pytest.approx(5 / (4 / 10.5 + 1 / 1.0))
    assert len(stage_seconds(backbone + experts)) == 2
    assert stage_seconds(backbone + experts) == pytest.approx((1 / 10.5, 1.0))
    plain = [{"event": "train", "steps_per_second": r} for r in (9, 10, 11, 50)]
    assert median_train_rate(plain) == pytest.approx(10.5) and len(stage_seconds(plain)) == 1


def test_a_resumed_run_short_of_its_costlier_stages_is_not_rated_by_its_own_windows(tmp_path):
    settings = load_settings(["method=m3dt", "tasks=mt5", "scale=smoke", "train.steps=5000",
                              *_roots(tmp_path)])  # fmt: skip
    settings.run_dir.mkdir(parents=True)
    (settings.run_dir / "checkpoint.pt").write_bytes(b"")
    window = {"event": "train", "stage": 1.0, "steps_per_second": 100.0}
    (settings.run_dir / "metrics.jsonl").write_text(json.dumps(window) + "\n")
    assert RateBook._own_rate(settings) is None  # stage 1 of 3: the plan times all three
    window = {"event": "train", "steps_per_second": 100.0}
    prompt = load_settings(["method=prompt_dt", "tasks=mt5", "scale=smoke", "train.steps=5000",
                            *_roots(tmp_path)])  # fmt: skip
    prompt.run_dir.mkdir(parents=True)
    (prompt.run_dir / "checkpoint.pt").write_bytes(b"")
    (prompt.run_dir / "metrics.jsonl").write_text(json.dumps(window) + "\n")
    own = RateBook._own_rate(prompt)
    assert own is not None and own.value == 100.0


def test_a_method_s_own_speed_fields_keep_apart_runs_whose_steps_cost_differently(tmp_path):
    def key(*overrides: str) -> tuple:
        return speed_key(load_settings(["tasks=mt5", "scale=smoke", *overrides]).config)

    # An M3DT expert step trains every expert: 48 cost about 3x as much as 16.
    assert key("method=m3dt") != key("method=m3dt", "method.num_experts=4")
    assert key("method=m3dt", "seed=1") == key("method=m3dt", "seed=2")
    assert key("method=prompt_dt") != key("method=prompt_dt", "method.embed_dim=64")


def test_a_done_run_is_not_timed(tmp_path, capsys):
    settings = load_settings(["method=prompt_dt", "tasks=mt5", "scale=smoke", "train.steps=5000",
                              *_roots(tmp_path)])  # fmt: skip
    settings.run_dir.mkdir(parents=True)
    (settings.run_dir / "result.json").write_text("{}")
    text = plan.describe_plan([settings])
    assert "skipped     the run is done" in text
    assert "timing" not in capsys.readouterr().err


def test_the_first_progress_line_promises_a_time_left_only_where_steps_cost_alike(tmp_path):
    prompt = load_settings(["method=prompt_dt", "tasks=mt5", "scale=smoke", "train.steps=5000",
                            *_roots(tmp_path)])  # fmt: skip
    assert plan.first_rate_line(prompt, 50.0, 1000) == "training: 50.0 steps/s, about 80 s to go"
    m3dt = load_settings(["method=m3dt", "tasks=mt5", "scale=smoke", "train.steps=5000",
                          *_roots(tmp_path)])  # fmt: skip
    line = plan.first_rate_line(m3dt, 50.0, 1000)
    assert line.startswith("training: 50.0 steps/s in its backbone stage") and "to go" not in line
    assert "in its router stage" in plan.first_rate_line(m3dt, 5.0, 4000)


def test_a_resumed_run_is_timed_by_the_stages_it_has_left():
    stages = (TrainingStage("backbone", 0, 400), TrainingStage("experts", 400, 200),
              TrainingStage("router", 600, 400))  # fmt: skip
    staged = Rate(5.0, "timed", "", stage_seconds=(0.02, 0.36, 0.15))
    assert plan.train_seconds_left(staged, stages, 0) == pytest.approx(8 + 72 + 60)
    # Half-way through the expert stage: 100 expert steps and the router stage are left.
    assert plan.train_seconds_left(staged, stages, 500) == pytest.approx(36 + 60)
    assert plan.train_seconds_left(staged, stages, 1000) == 0
    plain = Rate(5.0, "timed", "")  # no per-stage figures: every step at the mean rate
    assert plan.train_seconds_left(plain, stages, 500) == pytest.approx(500 / 5.0)


def test_a_resumed_staged_runs_plan_gives_the_rate_of_the_steps_it_has_left(tmp_path):
    """Not the whole run's mean (5 steps/s): half-way through the expert stage, 500 steps take
    96 s."""
    settings = load_settings(["method=m3dt", "tasks=mt5", "scale=smoke", "train.steps=1000",
                              *_roots(tmp_path)])  # fmt: skip
    stages = settings.method_config.training_stages(1000)
    staged = Rate(5.0, "timed", "timed now", stage_seconds=(0.02, 0.36, 0.15))
    seconds = plan.train_seconds_left(staged, stages, 500)
    work = plan.RunWork(settings, False, 500, staged, 0, 0.0, "", False, seconds)
    line = plan._train_line([work], local=True)
    assert line == ("500 steps, about 2 min (5.21 steps/s over the steps left, each stage at "
                    "its own rate, timed now)")  # fmt: skip
