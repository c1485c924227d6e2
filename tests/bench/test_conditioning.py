"""`bench analyze conditioning`: a trained DT's dependence on its prompt and its return-to-go,
and its actions in an evaluation's first contexts, from a real (smoke) run's checkpoint."""

from __future__ import annotations

import pytest

from bench.cli import main
from bench.settings import load_settings


def _run(method: str, smoke_data_root, tmp_path) -> list[str]:
    return ["run", f"method={method}", "tasks=mt5", "scale=smoke", "progress=false",
            "eval.episodes=1", f"data.root={smoke_data_root}", f"run.root={tmp_path}"]  # fmt: skip


@pytest.mark.parametrize(("method", "prompted"), [("prompt_dt", True), ("mtdt", False)])
def test_a_trained_runs_conditioning_is_measured_per_task(
    method, prompted, smoke_data_root, tmp_path, capsys
):
    args = _run(method, smoke_data_root, tmp_path)
    assert main(args) == 0
    run_dir = load_settings(args[1:]).run_dir
    capsys.readouterr()
    assert main(["analyze", "conditioning", str(run_dir), f"data.root={smoke_data_root}"]) == 0
    lines = capsys.readouterr().out.splitlines()
    header = lines[1]
    assert ("prompt effect" in header) == prompted  # MTDT has no prompt to measure
    assert "return effect" in header and "|a| first 1" in header and "data |a| first 20" in header
    rows = {line.split()[0]: line.split()[1:] for line in lines[3:]}
    assert len(rows) == 6 and "mean" in rows  # five tasks and their mean
    values = [float(v) for v in rows["mean"]]
    assert all(v >= 0 for v in values) and values[0] > 0  # an action error, never exactly 0


def test_a_run_without_its_checkpoint_is_a_one_line_error(tmp_path, capsys):
    kept = tmp_path / "kept"  # as a committed report run: records, no weights
    kept.mkdir()
    (kept / "config.yaml").write_text("overrides: [method=prompt_dt]\n")
    assert main(["analyze", "conditioning", str(kept)]) == 2
    error = capsys.readouterr().err.strip()
    assert "no checkpoint.pt" in error and "\n" not in error
    assert main(["analyze", "conditioning", str(tmp_path / "missing")]) == 2
    assert "no config.yaml" in capsys.readouterr().err
    assert main(["analyze", "conditioning"]) == 2
    assert "needs a run directory" in capsys.readouterr().err
