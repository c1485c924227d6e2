"""`bench analyze conflicts`: the paper's Fig. 2a from short real runs."""

from __future__ import annotations

import pytest

from bench.cli import main
from bench.conflicts import NO_MASK, conflict_jobs, harmony_frame, summary_table
from bench.results import find_runs

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


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

    frame = harmony_frame(find_runs(tmp_path / "runs"))
    assert sorted(frame["step"].unique()) == [10, 20]
    assert frame["harmony"].between(-1, 1).all() and len(frame) == 4
    table = summary_table(frame)
    assert list(table["setting"]) == [NO_MASK, "random masks, sparsity 0.3"]

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
