"""`bench analyze conflicts`: the paper's Fig. 2a from short real runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import results
from bench.cli import main
from bench.conflicts import (
    NO_MASK,
    conflict_jobs,
    harmony_frame,
    settings_in_order,
    summary_table,
)
from bench.plots import conflict_curves
from bench.results import find_runs

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
COLUMNS = ["suite", "setting", "mean over training", "chance", "excess", "last", "last chance",
           "last excess", "seeds"]  # fmt: skip


def _run(root: Path, method: dict, events: list[dict], seed: int = 0) -> Path:
    """A run directory as harmony_frame reads it: its config and its metrics."""
    run_dir = root / f"{method['name']}-{method.get('sparsity', 0)}-seed{seed}"
    run_dir.mkdir(parents=True)
    config = {"method": method, "tasks": {"name": "mt5"}, "seed": seed}
    results.write_yaml(run_dir / results.CONFIG, {"config": config})
    for event in events:
        results.append_metrics(run_dir, event)
    return run_dir


def test_conflicts_trains_both_settings_and_writes_table_and_figure(
    smoke_data_root, tmp_path, capfd
):
    out = tmp_path / "reports" / "conflicts.md"
    args = ["analyze", "conflicts", "tasks=mt5", "scale=smoke", "train.steps=20",
            "analysis.harmony_every=10", "progress=false", f"data.root={smoke_data_root}",
            f"run.root={tmp_path / 'runs'}", "--sparsities=0.3", f"--out={out}"]  # fmt: skip
    assert main(args) == 0
    text = out.read_text()
    assert NO_MASK in text and "random masks, sparsity 0.3" in text
    assert "bench run tasks=mt5" in text and "method=harmodt_r method.sparsity=0.3" in text
    assert out.with_suffix(".png").read_bytes().startswith(PNG_MAGIC)

    header = next(line for line in text.splitlines() if line.startswith("| suite"))
    assert [name.strip() for name in header.strip("|").split("|")] == COLUMNS

    frame = harmony_frame(find_runs(tmp_path / "runs"))
    assert sorted(frame["step"].unique()) == [10, 20]
    assert frame["harmony"].between(-1, 1).all() and len(frame) == 4
    assert frame["harmony_chance"].between(-1, 1).all()
    table = summary_table(frame)
    assert list(table["setting"]) == [NO_MASK, "random masks, sparsity 0.3"]
    excess = table["mean over training"] - table["chance"]
    assert table["excess"].tolist() == pytest.approx(excess.tolist())

    capfd.readouterr()
    assert main(args) == 0  # everything done: read again, nothing trained
    rerun = capfd.readouterr().out
    assert rerun.count("skipped: ") == 2 and "training:" not in rerun


def test_harmony_every_defaults_to_twenty_points_and_methods_are_its_own():
    jobs = conflict_jobs(["tasks=mt5,mt30", "scale=smoke"], [0.1, 0.5])
    assert len(jobs) == 6
    assert all("analysis.harmony_every=2" in job for job in jobs)  # smoke: 50 steps
    assert ["method=harmodt_r", "method.sparsity=0.5"] == jobs[2][-2:]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["method=mtdt"], "trains prompt_dt and harmodt_r itself"),
        (["--sparsities=0.1,1.5"], "--sparsities must be numbers in (0, 1)"),
        (["--sparsities=a"], "--sparsities must be numbers like 0.1,0.3"),
    ],
)
def test_bad_conflicts_input_is_one_line(args, message, capsys):
    assert main(["analyze", "conflicts", "tasks=mt5", *args]) == 2
    error = capsys.readouterr().err
    assert message in error and error.count("\n") == 1


def _harmony(chance: float | None) -> list[dict]:
    """Two harmony events, with a chance level or as logged before it existed."""
    extra = {} if chance is None else {"harmony_chance": chance}
    return [{"event": "harmony", "step": step, "harmony": 0.4, **extra} for step in (10, 20)]


def test_runs_logged_before_the_chance_level_still_read(tmp_path):
    """Their chance and excess are NaN, also where another seed of the setting has one (not a
    mean over the runs that do); the figure draws without the excess row."""
    masked = {"name": "harmodt_r", "sparsity": 0.3}
    old = _run(tmp_path, {"name": "prompt_dt"}, _harmony(None))
    new = _run(tmp_path, masked, _harmony(0.35))
    mixed = [
        _run(tmp_path, masked, _harmony(chance), seed) for seed, chance in ((1, 0.3), (2, None))
    ]

    table = summary_table(harmony_frame([old, new]))
    assert list(table.columns) == COLUMNS
    table = table.set_index("setting")
    assert table.loc[NO_MASK, ["chance", "excess", "last excess"]].isna().all()
    masked_row = table.loc["random masks, sparsity 0.3"]
    assert masked_row[["excess", "last excess"]].tolist() == pytest.approx([0.05, 0.05])
    assert summary_table(harmony_frame(mixed))[["chance", "excess"]].isna().all(axis=None)

    for name, runs in (("old", [old]), ("both", [old, new])):
        frame = harmony_frame(runs)
        path = conflict_curves(frame, settings_in_order(frame), tmp_path / f"{name}.png", name)
        assert path.read_bytes().startswith(PNG_MAGIC)
