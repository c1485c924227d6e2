"""Every value is checked before any data or run folder is made: one line, exit 2, nothing left."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bench.cli import main
from bench.settings import load_settings

# (override, what the one-line error must say); {tmp} is the test's folder.
BAD_RUN_INPUTS = [
    ("eval.episodes=0", "eval.episodes must be >= 1, got 0"),
    ("train.steps=0", "train.steps must be >= 1, got 0"),
    ("train.steps=-5", "train.steps must be >= 1, got -5"),
    ("train.steps=1e3", "train.steps must be an integer, got '1e3'"),  # as typed, not 1000.0
    ("train.log_every=0", "train.log_every must be >= 1"),
    ("train.checkpoint_every=0", "train.checkpoint_every must be >= 1"),
    ("train.eval_every=-1", "train.eval_every must be >= 0"),
    ("data.fraction=2.0", "data.fraction must be in (0, 1], got 2.0"),
    ("data.fraction=0", "data.fraction must be in (0, 1], got 0"),
    ("data.prompt_episodes=6", "no training episode is left"),
    # 2 x 0.5 rounds to 1 episode, which is the prompt (3 x 0.5 rounds to 2 as the split does:
    # test_a_half_episode_is_rounded_as_the_split_rounds_it)
    ("data.episodes_per_task=2 data.fraction=0.5 data.prompt_episodes=1", "uses 1 episode(s)"),
    ("data.workers=0", "data.workers must be >= 1"),
    ("seed=-1", "seed must be >= 0, got -1"),
    ("threads=0", "threads must be null (torch's default) or an integer >= 1, got 0"),
    ("interop_threads=0", "interop_threads must be null"),
    ("device=gpu", "unknown device 'gpu'; choose one of: cpu, cuda, cuda:<index>, mps"),
    ("device=cuda:x", "unknown device 'cuda:x'"),
    ("method.n_head=3", "n_head"),
    ("method.context_length=0", "context_length"),
    ("method.learning_rate=0", "learning_rate"),
    ("method.dropout=1.5", "dropout"),
    ("method.conditioning=oops", "unknown value for method.conditioning 'oops'"),
    ("method=harmodt_f method.sparsity=1.5", "method.sparsity must be in [0, 1), got 1.5"),
    ("method=harmodt_f method.balance=nan", "method.balance must be a finite number, got nan"),
    ("method.target_return=nan", "method.target_return must be a finite number"),
    ("method.learning_rate=inf", "method.learning_rate must be a finite number"),
    ("method=harmodt_f method.eta_max=-1", "method.eta_min must be >= 0 and <= eta_max"),
    ("method=harmodt_f method.mask_interval=0", "method.mask_interval must be null"),
    ("data.path=~/x", "cannot parse override 'data.path=~/x'"),
    ("data.path='{tmp}/missing-store'", "no dataset at data.path="),
    ("data.path={tmp}/afile", "is a file; it must be a dataset folder"),
    ("data.root={tmp}/afile", "data.root={tmp}/afile is a file"),
    ("run.root={tmp}/afile/runs", "is a file, not a folder"),
    ("run.root=/sys/mtbench-runs", "cannot write under /sys"),
    ("logger=tensorbord", "logger 'tensorbord' (did you mean 'tensorboard'?); choose one of: none"),
    ("logger=[wandb,mlflow]", "unknown logger 'mlflow'"),
    ("data.name=../../../escaped", "data.name='../../../escaped' holds a path separator"),
]
if not __import__("torch").cuda.is_available():
    BAD_RUN_INPUTS.append(("device=cuda", "device=cuda is not available"))


@pytest.mark.parametrize(("override", "message"), BAD_RUN_INPUTS)
def test_bad_run_input_is_one_line_exit_2_and_leaves_nothing(override, message, tmp_path, capsys):
    (tmp_path / "afile").write_text("not a folder")
    runs, data = tmp_path / "runs", tmp_path / "data"
    args = ["tasks=mt5", "scale=smoke", "progress=false", f"run.root={runs}", f"data.root={data}"]
    override = override.format(tmp=tmp_path)
    assert main(["run", *args, *override.split(" ")]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: ") and error.count("\n") == 1, error
    assert message.format(tmp=tmp_path) in error
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]  # no run or data folder


def test_a_bad_sweep_value_is_refused_before_any_job_runs(tmp_path, capsys):
    args = ["run", "-m", "method=mtdt", "train.steps=10,0", "tasks=mt5", "scale=smoke"]
    assert main([*args, f"run.root={tmp_path}", f"data.root={tmp_path}"]) == 2
    assert "train.steps must be >= 1, got 0" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_bad_input_from_a_real_process_prints_no_traceback(tmp_path):
    completed = subprocess.run(
        [sys.executable, "-m", "bench.cli", "run", "eval.episodes=0", f"run.root={tmp_path}"],
        capture_output=True,
        text=True,
    )
    assert completed.returncode == 2
    assert completed.stderr == "error: eval.episodes must be >= 1, got 0\n"
    assert not any(tmp_path.iterdir())


def test_settings_are_typed_and_expand_the_home_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    settings = load_settings(["scale=smoke", "tasks=mt5", "run.root='~/runs'", "train.steps=7"])
    assert settings.train.steps == 7 and settings.eval.episodes == 2
    assert settings.run_dir == Path(tmp_path) / "runs/mt5/near_optimal/mtdt/train.steps=7/seed0"
    assert settings.method_config.n_layer == 1  # the method's own typed config
    assert settings.suite.num_tasks == 5


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("episodes_per_task=0", "data.episodes_per_task must be >= 1, got 0"),
        ("workers=0", "data.workers must be >= 1, got 0"),
        (
            "tasks=mt7",
            "unknown task suite 'mt7' (did you mean 'mt5'?); choose one of: ant_dir, cheetah_dir, "
            "cheetah_vel, mt30, mt5, mt50",
        ),
        ("data.fraction=3", "data.fraction must be in (0, 1], got 3"),
        ("data.root={tmp}/afile", "data.root={tmp}/afile is a file"),
        ("data.root=/sys/mtbench-data", "data.root: cannot write under /sys"),
        ("data.path={tmp}", "data generate writes a generated store; drop data.path"),
        # Not read by generation, but a bad value is refused wherever it is given.
        ("seed=-1", "seed must be >= 0, got -1"),
        ("train.steps=0", "train.steps must be >= 1, got 0"),
    ],
)
def test_bad_data_generate_input_is_one_line_exit_2_and_leaves_nothing(
    override, message, tmp_path, capsys
):
    (tmp_path / "afile").write_text("not a folder")
    args = ["data", "generate", "tasks=mt5", "scale=smoke", f"data.root={tmp_path / 'data'}"]
    assert main([*args, override.format(tmp=tmp_path)]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: ") and error.count("\n") == 1
    assert message.format(tmp=tmp_path) in error
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


def test_a_half_episode_is_rounded_as_the_split_rounds_it(tmp_path):
    """3 episodes x 0.5 are 2 in the sampler (round half to even): one prompt leaves one."""
    split = ["data.episodes_per_task=3", "data.fraction=0.5", "data.prompt_episodes=1"]
    overrides = ["method=mtbc", "tasks=mt5", *split, f"data.root={tmp_path}", "run.root=runs"]
    assert load_settings(overrides).data.prompt_episodes == 1


def test_a_store_made_with_other_settings_is_refused_before_a_run_folder(
    smoke_data_root, tmp_path, capsys
):
    runs = tmp_path / "runs"
    args = ["run", "method=mtbc", "tasks=mt5", "scale=smoke", f"data.root={smoke_data_root}"]
    assert main([*args, "data.seed=1", f"run.root={runs}", "progress=false"]) == 2
    error = capsys.readouterr().err
    assert "holds a dataset made with other settings: seed 0 (asked: 1)" in error
    assert error.count("\n") == 1 and not runs.exists()
