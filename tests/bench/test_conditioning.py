"""`bench analyze conditioning`: a trained DT's dependence on its prompt and its return-to-go,
and its actions in an evaluation's first contexts, from a real (smoke) run's checkpoint."""

from __future__ import annotations

import pytest
import torch
import yaml

from bench.cli import main
from bench.conditioning import _asking_for
from bench.data.samplers import Segment
from bench.settings import load_settings


def _run(method: str, smoke_data_root, tmp_path) -> list[str]:
    return ["run", f"method={method}", "tasks=mt5", "scale=smoke", "progress=false",
            "eval.episodes=1", f"data.root={smoke_data_root}", f"run.root={tmp_path}"]  # fmt: skip


@pytest.mark.parametrize(
    ("method", "prompted"), [("prompt_dt", True), ("mtdt", False), ("harmodt_f", True)]
)
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
    for column in ("task effect", "return effect", "|a| first 1", "data |a| first 20"):
        assert column in header
    rows = {line.split()[0]: line.split()[1:] for line in lines[3:]}
    assert len(rows) == 6 and "mean" in rows  # five tasks and their mean
    mean = dict(zip(_columns(header), rows["mean"], strict=True))
    assert float(mean["action MSE"]) > 0 and float(mean["data |a| first 1"]) > 0
    # Each of these is told its task (a prompt, a task embedding, a mask): swapping what names
    # the task moves the actions (MTDT with conditioning=none would rightly show 0).
    assert float(mean["task effect"]) > 0
    if method == "harmodt_f":  # the mask names the task beside the prompt (0.007 vs 0.003)
        assert float(mean["task effect"]) > float(mean["prompt effect"])


def _columns(header: str) -> list[str]:
    return [name.strip() for name in header.split("  ") if name.strip()]


def _saved_run(run_dir, *overrides: str) -> None:
    """A run directory's config.yaml as the runner writes it: its overrides and their config."""
    run_dir.mkdir()
    config = load_settings(list(overrides)).config
    saved = {"overrides": list(overrides), "config": config}
    (run_dir / "config.yaml").write_text(yaml.safe_dump(saved))


def test_a_run_without_its_checkpoint_is_a_one_line_error(tmp_path, capsys):
    kept = tmp_path / "kept"  # as a committed report run: records, no weights
    _saved_run(kept, "method=prompt_dt")
    assert main(["analyze", "conditioning", str(kept)]) == 2
    error = capsys.readouterr().err.strip()
    assert "no checkpoint.pt" in error and "\n" not in error
    assert main(["analyze", "conditioning", str(tmp_path / "missing")]) == 2
    assert "no config.yaml" in capsys.readouterr().err
    assert main(["analyze", "conditioning"]) == 2
    assert "needs a run directory" in capsys.readouterr().err


def test_a_non_dt_run_and_a_missing_store_are_refused_without_making_data(tmp_path, capsys):
    mtbc = tmp_path / "mtbc"
    _saved_run(mtbc, "method=mtbc")
    assert main(["analyze", "conditioning", str(mtbc)]) == 2
    assert "is a mtbc run" in capsys.readouterr().err
    run, empty = tmp_path / "prompt_dt", tmp_path / "empty"
    empty.mkdir()
    _saved_run(run, "method=prompt_dt", f"data.root={empty}")
    (run / "checkpoint.pt").write_bytes(b"")
    assert main(["analyze", "conditioning", str(run)]) == 2
    assert "does not hold this run's data" in capsys.readouterr().err
    assert not any(empty.iterdir())  # nothing generated


def test_a_run_whose_overrides_no_longer_give_its_config_is_refused(tmp_path, capsys):
    run = tmp_path / "prompt_dt"
    _saved_run(run, "method=prompt_dt")
    saved = yaml.safe_load((run / "config.yaml").read_text())
    saved["config"]["method"]["context_length"] = 5  # as if the default had been 5 back then
    (run / "config.yaml").write_text(yaml.safe_dump(saved))
    (run / "checkpoint.pt").write_bytes(b"")
    assert main(["analyze", "conditioning", str(run)]) == 2
    error = capsys.readouterr().err.strip()
    assert "no longer give" in error and "method.context_length (5 -> 20)" in error
    assert "\n" not in error
    # As the error advises: the old value passed gets the run past the check (to its store).
    assert main(["analyze", "conditioning", str(run), "method.context_length=5"]) == 2
    assert "no longer give" not in capsys.readouterr().err


def test_a_run_made_before_an_option_existed_is_rebuilt_as_it_was_made(tmp_path, capsys):
    """M3DT's sweep runs have no router_init in their config.yaml: today's default, official,
    is not what they ran with, and was refused as a config the overrides no longer give."""
    run = tmp_path / "m3dt"
    _saved_run(run, "method=m3dt")
    saved = yaml.safe_load((run / "config.yaml").read_text())
    del saved["config"]["method"]["router_init"]
    (run / "config.yaml").write_text(yaml.safe_dump(saved))
    (run / "checkpoint.pt").write_bytes(b"")
    assert main(["analyze", "conditioning", str(run)]) == 2
    error = capsys.readouterr().err
    assert "no longer give" not in error and "does not hold this run's data" in error


def test_an_opening_asks_for_the_target_less_what_it_earned():
    mask = torch.tensor([[False, False, True, True, True]])
    returns = torch.tensor([[0.0, 0.0, 5.0, 3.0, 2.5]])[..., None]  # earned 2, then 0.5
    steps = torch.zeros(1, 5, dtype=torch.long)
    opening = Segment(torch.zeros(1, 5, 2), torch.zeros(1, 5, 1), returns, steps, mask, steps[:, 0])
    asked = _asking_for(opening, 10.0).returns_to_go[0, :, 0]
    assert asked.tolist() == [0.0, 0.0, 10.0, 8.0, 7.5]
