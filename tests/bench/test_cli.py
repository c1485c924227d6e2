"""Bad input: one line naming the bad value and the choices, exit status 2, nothing written."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from bench.cli import main
from bench.config import expand_sweep
from bench.plan_rates import Rates


def test_unknown_method_exits_2_with_one_line_and_no_traceback(tmp_path):
    completed = subprocess.run(
        [sys.executable, "-m", "bench.cli", "run", "method=nope", f"run.root={tmp_path}"],
        capture_output=True,
        text=True,
    )
    assert completed.returncode == 2
    assert completed.stderr == (
        "error: unknown method 'nope'; choose one of: " + ", ".join(_methods()) + "\n"
    )
    assert not any(tmp_path.iterdir())


def _methods() -> list[str]:
    from bench.registry import registered

    return registered()


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            "tasks=mt7",
            "unknown task suite 'mt7' (did you mean 'mt5'?); choose one of: ant_dir, cheetah_dir, "
            "cheetah_vel, mt30, mt5, mt50",
        ),
        ("scale=huge", "unknown scale preset 'huge'; choose one of: paper, quick, small, smoke"),
        ("method=MTDT", "unknown method 'MTDT' (did you mean 'mtdt'?); choose one of: "),
        ("method=harmodt_x", "unknown method 'harmodt_x' (did you mean 'harmodt_"),
        ("data=medium", "unknown data 'medium'; choose one of: near_optimal, sub_optimal"),
        (
            "train.stepz=3",
            "unknown config key 'train.stepz' (did you mean 'train.steps'?); valid keys at train: ",
        ),
        ("task=mt5", "unknown config key 'task' (did you mean 'tasks'?); valid keys at the top"),
        ("method.sparsty=0.3", "unknown option 'method.sparsty' for method 'mtdt'; its options"),
        (
            "method=harmodt_f method.sparsty=0.3",
            "for method 'harmodt_f' (did you mean 'method.sparsity'?); its options are: ",
        ),
        ("seed=abc", "seed must be an integer, got 'abc'"),
        ("seed=007", "got '007' (Hydra reads a number with a leading zero as text: write 7)"),
        ("data.root=null", "data.root must be a folder path, got 'null'"),
        ("run.dir=5", "run.dir must be a path, got '5', which Hydra reads as a number; quote it"),
        ("seed=0,1", "is a sweep; run sweeps with `bench run -m ...`"),
        ("data.path=/nonexistent/store", "no dataset at data.path=/nonexistent/store"),
        ("launcher=pbs", "unknown launcher 'pbs'; choose one of: local, slurm"),
        (
            "method.conditioning=oops",
            "unknown value for method.conditioning 'oops'; choose one of: none, task_id",
        ),
        # The config is closed: Hydra's delete and add prefixes, and a section set as a value.
        ("~seed", "~seed: seed has a default and cannot be deleted; set it (seed=)"),
        ("train=5", "train is a section, not a value; set its keys (train.<key>=): "),
        ("+train.foo=1", "unknown config key 'train.foo'; valid keys at train: "),
        ("+foo=1", "unknown config key 'foo'; valid keys at the top level: "),
        ("method=prompt_dt data.prompt_episodes=0", "method 'prompt_dt' reads each task's prompt"),
        ("train.steps=2000000000", "train.steps must be <= 1_000_000_000, got 2000000000"),
        ("launcher=slurm launcher.time_min=-1", "launcher.time_min must be >= 1, got -1"),
        (
            "launcher=slurm launcher.sbatch.constraint=a100",
            "launcher.sbatch.constraint is not in launcher.sbatch yet: add it with +launcher.",
        ),
    ],
)
def test_bad_run_override_is_one_line_exit_2(override, message, tmp_path, capsys):
    given = override.split()
    defaults = [d for d in ("scale=smoke", "tasks=mt5") if d.split("=")[0] not in override]
    args = ["run", *given, *defaults, f"run.root={tmp_path}", "progress=false"]
    assert main([*args, f"data.root={tmp_path / 'data'}"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: ") and error.count("\n") == 1
    assert message in error
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["method=mtbc"], "method 'mtbc' cannot act on the unseen test tasks of cheetah_vel"),
        (["method=mtiql"], "method 'mtiql' cannot act on the unseen test tasks of cheetah_vel"),
        (
            ["method=harmodt_f", "harmodt.vote_threshold=35"],
            "method.vote_threshold=35 leaves the unseen-task mask of cheetah_vel empty (35 "
            "training tasks, vote_rule=paper); choose 0 to 34",
        ),
    ],
)
def test_a_method_that_cannot_act_on_unseen_tasks_is_refused_first(
    overrides, message, tmp_path, capsys
):
    args = ["run", *overrides, "tasks=cheetah_vel", "scale=smoke", f"run.root={tmp_path}"]
    assert main([*args, f"data.root={tmp_path / 'data'}", "progress=false"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: ") and error.count("\n") == 1
    assert message in error
    assert not any(tmp_path.iterdir())


def test_cfg_job_prints_the_resolved_config(capsys):
    assert main(["run", "--cfg", "job", "method=prompt_dt", "scale=smoke", "seed=3"]) == 0
    config = yaml.safe_load(capsys.readouterr().out)
    assert config["seed"] == 3
    assert config["run_dir"] == "runs/smoke/mt50/near_optimal/prompt_dt/seed3"
    assert len(config["tasks"]["tasks"]) == 50 and "reach-v3" in config["tasks"]["tasks"]
    assert config["method"]["name"] == "prompt_dt"
    assert config["method"]["n_layer"] == 1  # the preset's value, resolved
    assert "dt" not in config and "harmodt" not in config  # the method section holds them
    assert config["scale"]["name"] == "smoke"


def test_methods_with_a_name_lists_its_options_as_a_run_resolves_them(capsys):
    from bench.config import compose_run

    assert main(["methods", "harmodt_f", "scale=small"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("# harmodt_f: HarmoDTFConfig in harmodt.py; scale=small")
    shown = yaml.safe_load(out)["method"]
    assert shown == compose_run(["method=harmodt_f", "scale=small"]).config["method"]
    assert shown["n_layer"] == 1 and shown["sparsity"] == 0.2  # the preset's, then Table 6's
    assert main(["methods", "harmodtf"]) == 2
    assert "did you mean 'harmodt_f'?" in capsys.readouterr().err
    assert main(["methods", "scale=small"]) == 2  # a method name first


def test_methods_with_a_name_works_out_what_the_section_leaves_to_the_run(capsys):
    assert main(["methods", "m3dt", "tasks=mt5", "scale=smoke"]) == 0
    out = capsys.readouterr().out
    shown = yaml.safe_load(out)["method"]
    assert shown["backbone_steps"] is None and shown["num_experts"] == 16
    comments = [line for line in out.splitlines() if line.startswith("# ")][1:]
    assert comments == [
        "# null: worked out in the run from other values (its docs say how)",
        "# stages of train.steps=50: backbone 20 (from step 0), experts 10 (from step 20), "
        "router 20 (from step 30)",
        "# note with tasks=mt5: method.num_experts=16 is more than the 5 training tasks of "
        "mt5: the run trains 5 experts, one per task (any num_experts >= 5 gives the same run; "
        "docs/m3dt.md)",
    ]
    # A value a run refuses is refused before the section is printed.
    assert main(["methods", "m3dt", "tasks=mt5", "scale=smoke", "method.expert_steps=40"]) == 2
    refused = capsys.readouterr()
    assert "train.steps=50 gives backbone 20 (40 %), experts 40" in refused.err
    assert refused.out == ""


def test_first_contact_commands(capsys):
    assert main(["methods"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == _methods()
    assert all(len(line.split()) > 3 for line in lines)  # a description on every line
    assert not any(line.rstrip().endswith(("/", "(", ":")) for line in lines)  # none cut off
    completed = subprocess.run(
        [sys.executable, "-m", "bench.cli", "run", "--help"], capture_output=True, text=True
    )
    methods = ", ".join(_methods())
    assert f"method=  {methods}" in completed.stdout
    assert "scale=  paper, quick, small, smoke" in completed.stdout
    assert "train.steps" in completed.stdout
    completed = subprocess.run(
        [sys.executable, "-m", "bench.cli", "--version"], capture_output=True, text=True
    )
    assert completed.returncode == 0 and completed.stdout.startswith("mtbench 0.1.0 (commit ")


def test_paper_is_the_default_scale(capsys, monkeypatch):
    # The plan would time paper-sized steps (seconds; tests/bench/test_plan.py covers it).
    monkeypatch.setattr("bench.plan_rates.timed_rates", lambda settings: Rates())
    assert main(["run", "--cfg", "job"]) == 0
    config = yaml.safe_load(capsys.readouterr().out)
    assert config["scale"]["name"] == "paper"
    assert config["tasks"]["name"] == "mt50"
    method = config["method"]
    assert (method["n_layer"], method["n_head"], method["embed_dim"]) == (6, 8, 256)
    assert (method["context_length"], method["batch_size"], method["learning_rate"]) == (
        20,
        8,
        1e-4,
    )
    assert method["dropout"] == 0.1 and method["activation"] == "relu"
    assert config["train"]["steps"] == 1_000_000 and config["eval"]["episodes"] == 50


def test_help_lists_the_subcommands():
    completed = subprocess.run(
        [sys.executable, "-m", "bench.cli", "--help"], capture_output=True, text=True
    )
    assert completed.returncode == 0
    for command in ("run", "data", "methods"):
        assert command in completed.stdout


def test_sweep_expands_to_the_cartesian_product():
    jobs = expand_sweep(["method=mtdt,prompt_dt", "seed=0,1", "tasks=mt5"])
    assert jobs == [
        ["method=mtdt", "seed=0", "tasks=mt5"],
        ["method=mtdt", "seed=1", "tasks=mt5"],
        ["method=prompt_dt", "seed=0", "tasks=mt5"],
        ["method=prompt_dt", "seed=1", "tasks=mt5"],
    ]


def test_sweep_with_a_bad_value_starts_nothing(tmp_path, capsys):
    assert main(["run", "-m", "method=mtdt,nope", f"run.root={tmp_path}"]) == 2
    assert "unknown method 'nope'" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_sweep_runs_every_combination(smoke_data_root, tmp_path, capsys):
    args = ["run", "-m", "method=mtdt,prompt_dt", "tasks=mt5", "scale=smoke", "progress=false"]
    assert main([*args, f"data.root={smoke_data_root}", f"run.root={tmp_path}"]) == 0
    out = capsys.readouterr().out
    assert "2 of 2 runs finished" in out
    comparison = out.split("2 of 2 runs finished")[1]  # once every run has ended
    assert "mt5, scale=smoke, success rate (%)" in comparison
    assert "| mtdt " in comparison and "| prompt_dt " in comparison
    assert "**" not in comparison.split("**", 1)[1].split("\n", 1)[1]  # smoke bolds no cell
    for method in ("mtdt", "prompt_dt"):
        assert (tmp_path / "mt5" / "near_optimal" / method / "seed0" / "result.json").exists()


def test_experts_are_scored_by_the_evaluator_under_a_plain_title(capsys):
    assert main(["experts", "tasks=mt5", "eval.episodes=1", "progress=false"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "scripted expert on mt5, seed 0, scale=paper, 1 episodes per task"
    assert len([line for line in lines if line.startswith("| ")]) == 5 + 2  # header, 5 tasks, mean


def test_experts_are_refused_on_a_suite_without_scripted_experts(capsys):
    assert main(["experts", "tasks=cheetah_dir"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1
    assert "tasks=cheetah_dir has no scripted experts" in error and "tasks=mt50|mt30|mt5" in error


def test_analyze_status_and_report_name_what_is_wrong_with_a_path(tmp_path, capsys):
    assert main(["analyze", "conflict"]) == 2
    assert "did you mean 'conflicts'?" in capsys.readouterr().err
    (tmp_path / "afile").write_text("")
    assert main(["status", str(tmp_path / "afile")]) == 2
    assert f"not a folder: {tmp_path / 'afile'}" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "afile")]) == 2
    assert f"not a folder: {tmp_path / 'afile'}" in capsys.readouterr().err
    assert main(["status", str(tmp_path / "missing")]) == 2
    assert f"no such folder: {tmp_path / 'missing'}" in capsys.readouterr().err


def test_status_checks_its_curves_path_before_printing_the_table(tmp_path, capsys):
    (tmp_path / "afile").write_text("")
    assert main(["status", str(tmp_path), "--curves", str(tmp_path / "afile" / "c.png")]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "afile is a file, not a folder" in captured.err


def test_status_curves_draws_every_run_that_has_evaluated(
    smoke_data_root, tmp_path, capsys, monkeypatch
):
    import shutil

    from bench import plots
    from bench.settings import load_settings

    root = tmp_path / "runs"
    args = ["run", "method=mtdt", "tasks=mt5", "scale=smoke", "progress=false",
            "train.eval_every=20", "eval.episodes=1", f"data.root={smoke_data_root}",
            f"run.root={root}"]  # fmt: skip
    assert main(args) == 0
    done = load_settings(args[1:]).run_dir
    stopped, starting = done.with_name("seed1"), root / "starting" / "seed0"
    shutil.copytree(done, stopped)  # stopped after its evaluation at step 40
    (stopped / "result.json").unlink()
    (stopped / "status").write_text("interrupted at step 40 while training\n")
    metrics = (stopped / "metrics.jsonl").read_text().splitlines(keepends=True)
    periodic = [line for line in metrics if '"final": true' not in line]
    (stopped / "metrics.jsonl").write_text("".join(periodic))
    starting.mkdir(parents=True)  # no evaluation yet: absent from the figure
    shutil.copy(done / "config.yaml", starting / "config.yaml")
    (starting / "status").write_text("running: loading data\n")  # killed: its lock is free

    capsys.readouterr()
    assert main(["status", str(root / "starting"), "--curves", str(tmp_path / "none.png")]) == 0
    out = capsys.readouterr().out
    assert "| interrupted (its process is gone) while loading data |" in out
    assert out.endswith("curves: none drawn, no run below " + str(root / "starting") +
                        " has evaluated yet\n")  # fmt: skip
    assert not (tmp_path / "none.png").exists()

    real, drawn = plots.learning_curves, []

    def learning_curves(curves, *rest):  # the real figure; its data kept to check
        drawn.append(curves)
        return real(curves, *rest)

    monkeypatch.setattr(plots, "learning_curves", learning_curves)
    figure = tmp_path / "figures" / "live.png"
    assert main(["status", str(root), "--curves", str(figure)]) == 0
    assert capsys.readouterr().out.endswith(f"curves: {figure}\n")
    assert figure.read_bytes().startswith(b"\x89PNG") and figure.stat().st_size > 1000
    (curves,) = drawn
    by_label = curves.groupby("label")["step"].apply(list).to_dict()
    label = "mtdt [eval.episodes=1]"  # as `bench report` labels it
    assert by_label == {label: [20, 40, 50], f"{label} (unfinished)": [20, 40]}

    monkeypatch.chdir(tmp_path)
    assert main(["status", str(root), "--curves"]) == 0
    assert (tmp_path / "curves.png").stat().st_size > 0  # the default path, where it runs
    assert main(["status", "--curves", str(root)]) == 2  # a folder taken for the figure's path
    assert "not a .png path" in capsys.readouterr().err
