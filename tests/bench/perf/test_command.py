"""`bench perf`: every stage runs end to end at a tiny size and writes what it printed; bad input
is refused before anything is measured. No figure is asserted: speed is measured, not tested."""

from __future__ import annotations

import json

import pytest

from bench.cli import main
from bench.perf.train import fitted_passes

TINY = ["tasks=mt5", "scale=smoke", "threads=1"]


def _perf(tmp_path, *args):
    out = tmp_path / "perf.json"
    code = main(["perf", *args, *TINY, "--json-out", str(out)])
    return code, (json.loads(out.read_text()) if out.exists() else None)


def test_train_reports_steps_and_a_breakdown_that_adds_up(tmp_path, capsys):
    code, result = _perf(tmp_path, "train", "method=harmodt_f", "--steps", "3", "--warmup", "1",
                         "--episodes", "4")  # fmt: skip
    assert code == 0
    figures = result["figures"]
    assert figures["steps_per_s"] == pytest.approx(1000 / figures["ms_per_step"])
    parts = figures["breakdown_ms_per_step"]
    assert set(parts) == {"sampling", "forward", "backward", "masking", "optimizer", "other",
                          "total"}  # fmt: skip
    assert parts["masking"] > 0  # HarmoDT's masking is timed apart from the forward
    named = sum(value for name, value in parts.items() if name != "total")
    assert named == pytest.approx(parts["total"])
    assert result["config"]["method"] == "harmodt_f"
    assert "other_cores_busy" in result["load_before"]
    printed = capsys.readouterr().out
    assert "ms per step" in printed and "masking" in printed
    assert "is not the ms per step above" in printed  # the two totals are told apart


def test_ops_profiles_training_op_by_op(tmp_path, capsys):
    code, result = _perf(tmp_path, "train", "method=prompt_dt", "--steps", "1", "--warmup", "0",
                         "--episodes", "4", "--ops", "2")  # fmt: skip
    assert code == 0
    # Only the phases Prompt-DT has: HarmoDT's masking is no part of its step.
    parts = result["figures"]["breakdown_ms_per_step"]
    assert set(parts) == {"sampling", "forward", "backward", "optimizer", "other", "total"}
    _check_op_profile(result["figures"]["op_profile"], "training step", 2)
    assert "top ops over 2 profiled training steps" in capsys.readouterr().out


def _check_op_profile(profile, unit, units):
    assert (profile["unit"], profile["units"]) == (unit, units)
    ops = profile["ops"]
    assert len(ops) == 15 and sum(o["share"] for o in ops) <= 1.0
    assert [o["self_ms_per_unit"] for o in ops] == sorted(
        (o["self_ms_per_unit"] for o in ops), reverse=True
    )
    assert any(o["op"] in {"aten::mm", "aten::addmm", "aten::bmm"} for o in ops)


def test_a_method_without_phases_gets_its_total_only(tmp_path):
    code, result = _perf(tmp_path, "train", "method=mtbc", "--steps", "2", "--warmup", "1",
                         "--episodes", "4")  # fmt: skip
    assert code == 0
    assert set(result["figures"]["breakdown_ms_per_step"]) == {"other", "total"}


def test_a_method_of_several_stages_has_each_timed_from_its_first_step(tmp_path, capsys):
    code, result = _perf(tmp_path, "train", "method=m3dt", "--steps", "2", "--warmup", "1",
                         "--episodes", "4", "--ops", "1")  # fmt: skip
    assert code == 0
    figures = result["figures"]
    stages = figures["stages"]
    assert list(stages) == ["backbone", "experts", "router"]
    lengths = [stages[name]["steps_in_run"] for name in stages]
    assert [stages[name]["first_step"] for name in stages] == [0, lengths[0], sum(lengths[:2])]
    weighted = sum(s["ms_per_step"] * s["steps_in_run"] for s in stages.values()) / sum(lengths)
    assert figures["ms_per_step"] == pytest.approx(weighted)
    assert figures["breakdown_ms_per_step"]["total"] == pytest.approx(
        sum(s["breakdown_ms_per_step"]["total"] * s["steps_in_run"] for s in stages.values())
        / sum(lengths)
    )
    # The stages' phases, each weighed by its stage's length; none of them masks.
    assert {"sampling", "forward", "backward", "optimizer"} <= set(figures["breakdown_ms_per_step"])
    assert "masking" not in figures["breakdown_ms_per_step"]
    printed = capsys.readouterr().out
    assert "training stage" in printed
    costliest = max(stages, key=lambda n: stages[n]["ms_per_step"] * stages[n]["steps_in_run"])
    assert figures["op_profile"]["unit"] == f"{costliest}-stage training step"
    assert f"profiled {costliest}-stage training steps" in printed


def test_mask_update_times_both_gradients_and_the_mask_generation(tmp_path):
    code, result = _perf(tmp_path, "mask-update", "method=harmodt_m", "--episodes", "4")
    assert code == 0
    figures = result["figures"]
    assert figures["tasks"] == 5
    assert figures["swapped_per_task"] > 0  # t = E/2: Eq. 12's largest swap
    assert {"gradients", "mask generation", "statistics"} <= set(figures["parts_seconds"])
    assert sum(figures["parts_seconds"].values()) <= figures["seconds"]


def test_eval_splits_policy_and_simulator_time(tmp_path):
    code, result = _perf(tmp_path, "eval", "method=prompt_dt", "--episodes", "4",
                         "--eval-tasks", "1", "--eval-steps", "3", "--ops", "2")  # fmt: skip
    assert code == 0
    figures = result["figures"]
    _check_op_profile(figures["op_profile"], "policy call", 2)
    assert figures["env_steps"] == figures["episodes_per_task"] * 3
    assert figures["policy_env_steps_per_s"] == pytest.approx(
        1000 / figures["policy_ms_per_env_step"]
    )
    assert figures["simulator_ms_per_env_step"] > 0


def test_data_opens_a_store_it_wrote_and_keeps_it_for_the_next_measurement(tmp_path):
    store = tmp_path / "store"
    out = tmp_path / "data.json"
    args = ["perf", "data", "--episodes", "3", "--store", str(store), "--json-out", str(out)]
    assert main(args) == 0
    figures = json.loads(out.read_text())["figures"]
    assert figures["steps"] == 50 * 3 * 500 and figures["write_s"] is not None
    assert figures["warm_open_s"] > 0 and figures["warm_ms_per_batch"] > 0
    assert main(args) == 0  # the kept store is measured again, not written again
    assert json.loads(out.read_text())["figures"]["write_s"] is None


def test_ratios_come_from_the_reference_json(tmp_path):
    reference = tmp_path / "ref.json"
    reference.write_text(json.dumps({"train": {"ms_per_step_mean": 250.0, "steps_per_s": 4.0}}))
    code, result = _perf(tmp_path, "train", "method=prompt_dt", "--steps", "2", "--warmup", "0",
                         "--episodes", "4", "--reference", str(reference))  # fmt: skip
    assert code == 0
    expected = 250.0 / result["figures"]["ms_per_step"]
    assert result["ratios"]["train_speedup"] == pytest.approx(expected, rel=1e-3)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["warp"], "unknown perf stage 'warp'; choose one of: train, mask-update, eval, data"),
        (["mask-update", "method=mtdt"], "mask-update measures HarmoDT's mask update"),
        (["train", "method=mtbc", "precision=bf16"], "bf16 is not implemented for method=mtbc"),
        (["train", "precision=fp16"], "unknown precision 'fp16'; choose one of: fp32, bf16"),
        (["train", "--steps", "0"], "--steps must be >= 1, got 0"),
        (["eval", "--eval-tasks", "6"], "--eval-tasks 6: mt5 has 5 tasks"),
        (["data", "--reference", "x.json"], "the official code has no data-store figure"),
        (["data", "--ops", "3"], "--ops profiles training steps or policy calls: train or eval"),
        (["train", "--reference", "missing.json"], "--reference missing.json: no such file"),
    ],
)
def test_bad_input_is_one_line_and_exit_2_with_no_json(tmp_path, capsys, args, message):
    code, result = _perf(tmp_path, *args, "--episodes", "4")
    assert code == 2
    error = capsys.readouterr().err
    assert error.startswith("error: ") and message in error and error.count("\n") == 1
    assert result is None


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "--episodes", "0"], "--episodes must be >= 1, got 0"),
        (["train", "--json-out", "perf.txt"], "the file name must end in .json"),
        (["train", "--json-out", "folder"], "--json-out folder is a folder"),
        (["data", "--store", "afile"], "--store afile is a file; name a folder"),
    ],
)
def test_bad_paths_and_counts_are_refused_before_measuring(tmp_path, monkeypatch, capsys, args,
                                                           message):  # fmt: skip
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("")
    (tmp_path / "folder").mkdir()
    assert main(["perf", *args, *TINY]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: ") and message in error and error.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "folder"]  # no runs/perf


@pytest.mark.parametrize(
    ("stage_steps", "asked", "fitted"),
    [
        (1000, (50, 5, 0), (50, 5, 0)),  # a long stage: as asked
        (80, (50, 5, 0), (37, 5, 0)),  # the warm-up first, then two passes of what is left
        (40, (50, 5, 2), (16, 5, 2)),  # the profiled steps kept
        (4, (50, 5, 0), (1, 2, 0)),  # a step per pass, the warm-up what is left
        (1, (50, 5, 0), (1, 0, 0)),  # too short to stay inside: a step per pass still
    ],
)
def test_a_short_stage_is_timed_inside_itself(stage_steps, asked, fitted):
    assert fitted_passes(stage_steps, *asked) == fitted
