"""`logger=tensorboard,wandb`: the curves of metrics.jsonl, read back with each tool's own reader,
each step once after a kill -9 and a resume."""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from bench.cli import main
from bench.config import expand_sweep
from bench.settings import load_settings
from bench.tracking import event_scalars, start_trackers

TASKS = ("reach-v3", "push-v3")


def _run_args(data_root: Path, run_root: Path, *extra: str) -> list[str]:
    return [
        "method=mtdt",
        "tasks=mt5",
        "scale=smoke",
        f"data.root={data_root}",
        f"run.root={run_root}",
        "progress=false",
        *extra,
    ]


# Readers ----------------------------------------------------------------------------------------


def _tensorboard_scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar curve, as TensorBoard shows it."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(folder), size_guidance={"scalars": 0})
    accumulator.Reload()
    return {
        tag: [(event.step, event.value) for event in accumulator.Scalars(tag)]
        for tag in accumulator.Tags()["scalars"]
    }


def _tensorboard_points(folder: Path) -> Counter[tuple[str, int]]:
    """(tag, step) of every scalar in every event file, unfiltered: what any reader sees."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    points: Counter[tuple[str, int]] = Counter()
    for path in folder.glob("events.out.tfevents.*"):
        for event in EventFileLoader(str(path)).Load():
            points.update((value.tag, event.step) for value in event.summary.value)
    return points


def _wandb_records(path: Path) -> list[Any]:
    """The records of a `.wandb` file: wandb's `Record` protobufs in LevelDB's log format (a
    7-byte file header, 32 KiB blocks of records with a 7-byte header: crc, length, type). A
    killed writer leaves a torn tail, which ends the list."""
    from wandb.proto import wandb_internal_pb2

    block, header = 32768, 7
    data = path.read_bytes()
    assert data[:4] == b":W&B", f"{path} is no wandb transaction log"
    records, pending, offset = [], b"", header
    while True:
        if block - offset % block < header:  # a block's tail too short for a header is padding
            offset += block - offset % block
        if offset + header > len(data):
            return records
        _, length, kind = struct.unpack("<IHB", data[offset : offset + header])
        chunk = data[offset + header : offset + header + length]
        if kind == 0 or len(chunk) < length:
            return records
        offset += header + length
        pending += chunk
        if kind in (1, 4):  # FULL or LAST: a whole record
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""


def _row(items: Any) -> dict[str, Any]:
    """A history row or config: wandb writes each key as `key` or as a nested key's parts."""
    return {item.key or ".".join(item.nested_key): json.loads(item.value_json) for item in items}


def _wandb_segments(run_dir: Path) -> list[dict[str, Any]]:
    """Each offline segment of the run, in order of start: its run record's id and config and
    its history rows ({key: value} with `_step`)."""
    segments = []
    for path in (run_dir / "wandb").glob("offline-run-*/run-*.wandb"):
        records = _wandb_records(path)
        run = next(r.run for r in records if r.WhichOneof("record_type") == "run")
        rows = [_row(r.history.item) for r in records if r.WhichOneof("record_type") == "history"]
        config = _row(run.config.update)
        segments.append({"start": run.start_time.ToNanoseconds(), "id": run.run_id,
                         "config": config, "rows": rows})  # fmt: skip
    return sorted(segments, key=lambda segment: segment["start"])


def _metrics(run_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").open()]


# A killed and resumed run -----------------------------------------------------------------------


def test_a_run_killed_with_sigkill_and_resumed_tracks_every_step_once(
    smoke_data_root, tmp_path, wait_for
):
    extra = ("logger=[tensorboard,wandb]", "train.steps=120", "train.checkpoint_every=40",
             "train.log_every=20", "train.eval_every=60", "eval.episodes=1")  # fmt: skip
    args = _run_args(smoke_data_root, tmp_path, *extra)
    run_dir = load_settings(args).run_dir
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.cli", "run", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for(run_dir / "checkpoint.pt", process)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    segments_file = run_dir / "wandb" / "mtbench-segments.json"
    killed_segment = json.loads(segments_file.read_text())["open"]
    assert killed_segment and (run_dir / "wandb" / killed_segment).is_dir()

    assert main(["run", *args]) == 0

    events = _metrics(run_dir)
    resumed_at = [e["step"] for e in events if e["event"] == "resume"]
    assert len(resumed_at) == 1 and 0 < resumed_at[0] < 120
    train = {e["step"]: e for e in events if e["event"] == "train"}
    evals = {e["step"]: e for e in events if e["event"] == "eval"}
    assert list(train) == [20, 40, 60, 80, 100, 120] and list(evals) == [60, 120]
    task = "button-press-v3"

    # TensorBoard: the curves of metrics.jsonl, each (tag, step) once in the files themselves.
    folder = run_dir / "tensorboard"
    points = _tensorboard_points(folder)
    assert points and max(points.values()) == 1, [p for p, n in points.items() if n > 1]
    curves = _tensorboard_scalars(folder)
    assert [step for step, _ in curves["train/loss"]] == list(train)
    assert [v for _, v in curves["train/loss"]] == pytest.approx(
        [e["loss"] for e in train.values()], rel=1e-6
    )
    success = curves[f"eval/{task}/success_rate"]
    assert success == [(s, e["per_task"][task]["success_rate"]) for s, e in evals.items()]

    # W&B: the killed segment is gone; the kept ones hold each step once, in order.
    assert not (run_dir / "wandb" / killed_segment).exists()
    segments = _wandb_segments(run_dir)
    assert segments and {s["id"] for s in segments} == {json.loads(segments_file.read_text())["id"]}
    rows = [row for segment in segments for row in segment["rows"]]
    steps = [row["_step"] for row in rows]
    assert steps == sorted(set(steps)), steps
    loss = {row["_step"]: row["train/loss"] for row in rows if "train/loss" in row}
    assert loss == pytest.approx({s: e["loss"] for s, e in train.items()})
    per_task = {row["_step"]: row[f"eval/{task}/success_rate"] for row in rows
                if f"eval/{task}/success_rate" in row}  # fmt: skip
    assert per_task == {s: e["per_task"][task]["success_rate"] for s, e in evals.items()}
    identity = segments[-1]["config"]["identity"]
    assert identity["run_dir"] == str(run_dir) and identity["method"] == "mtdt"
    assert identity["git"]["commit"] and segments[-1]["config"]["train"]["steps"] == 120
    assert json.loads(segments_file.read_text())["open"] is None


# W&B segments, without training -----------------------------------------------------------------


def _write_metrics(run_dir: Path, events: list[dict[str, Any]]) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))


def _train(step: int) -> dict[str, Any]:
    return {"event": "train", "step": step, "loss": 1.0 / step}


ABOUT = {
    "run": {"root": "runs"},
    "identity": {"method": "mtdt", "suite": "tiny", "scale": "smoke", "run_dir": "x"},
}


def test_wandb_segments_continue_one_run_and_a_crashed_one_is_sent_again(tmp_path):
    """Interrupted at its checkpoint (a complete segment), then crashed past the next one (a
    segment discarded at the next start, whose kept steps are sent again)."""
    run_dir = tmp_path / "run"
    start = lambda step: start_trackers(["wandb"], run_dir, ABOUT, TASKS, step, print)
    _write_metrics(run_dir, [])
    first = start(0)
    for step in (10, 20):
        first.log(_train(step))
    first.close(checkpoint_step=20)  # Ctrl-C: stopped at its checkpoint

    _write_metrics(run_dir, [_train(10), _train(20)])
    second = start(20)
    for step in (30, 40, 50):
        second.log(_train(step))
    second.close(checkpoint_step=40)  # crashed at 50, past its checkpoint at 40
    segments = json.loads((run_dir / "wandb" / "mtbench-segments.json").read_text())
    assert segments["through"] == 20 and segments["open"]

    _write_metrics(run_dir, [_train(s) for s in (10, 20, 30, 40)])  # as the runner cuts it
    third = start(40)
    third.log(_train(50))
    third.close(checkpoint_step=50)

    kept = _wandb_segments(run_dir)
    assert len(kept) == 2 and kept[0]["id"] == kept[1]["id"]
    assert [[row["_step"] for row in s["rows"]] for s in kept] == [[10, 20], [30, 40, 50]]


# Mapping and settings ----------------------------------------------------------------------------


def test_events_become_curves_at_their_step_with_one_name_per_task():
    update = {"event": "mask_update", "step": 20, "alpha": 3, "sparsity": [0.2, 0.3],
              "harmony": {"masked": 0.5}, "harmony_chance": {"masked": 0.25},
              "overlap": 0.7}  # fmt: skip
    assert event_scalars(update, TASKS) == {
        "harmodt/alpha": 3.0,
        "harmodt/sparsity/reach-v3": 0.2,
        "harmodt/sparsity/push-v3": 0.3,
        "harmodt/harmony_masked": 0.5,
        "harmodt/harmony_chance_masked": 0.25,
        "harmodt/overlap": 0.7,
    }
    evaluation = {"event": "eval", "step": 50, "final": True, "success_rate": None,
                  "mean_return": 3.0, "per_task": {"reach-v3": {"success_rate": 1.0}}}  # fmt: skip
    assert event_scalars(evaluation, TASKS) == {
        "eval/mean_return": 3.0,
        "eval/reach-v3/success_rate": 1.0,
    }
    assert event_scalars({"event": "resume", "step": 40, "threads": 2}, TASKS) == {}


def test_logger_forms_are_a_list_never_a_sweep_and_no_part_of_the_run(tmp_path):
    base = ["method=mtdt", "tasks=mt5", "scale=smoke", f"run.root={tmp_path}"]
    assert load_settings(base).loggers == ()
    assert load_settings([*base, "logger=none"]).loggers == ()
    both = load_settings([*base, "logger=tensorboard,wandb"])  # without -m: the list
    assert both.loggers == load_settings([*base, "logger=[tensorboard,wandb]"]).loggers
    assert both.loggers == ("tensorboard", "wandb")
    assert both.run_dir == load_settings(base).run_dir  # it changes no result
    jobs = expand_sweep(["method=mtdt,prompt_dt", "logger=tensorboard,wandb"])  # with -m
    assert [job[1] for job in jobs] == ["logger=[tensorboard,wandb]"] * 2


def test_a_logger_whose_package_is_missing_names_the_extra(tmp_path, monkeypatch, capsys):
    import importlib.util

    found = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else found(name, *a)
    )
    args = ["run", "tasks=mt5", "scale=smoke", f"run.root={tmp_path}", "logger=[tensorboard,wandb]"]
    assert main(args) == 2
    error = capsys.readouterr().err
    assert error == "error: logger=wandb needs the wandb package, which is not installed: " \
        "pip install -e '.[tracking]'\n"  # fmt: skip
    assert not any(tmp_path.iterdir())  # refused before anything was made
