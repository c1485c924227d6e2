"""Faults injected into real `bench run`s: a kill -9 at a file's replacement, a full disk, a
signal while the command starts. Each is one line (or nothing, for kill -9), leaves no file
partial, and the same command then ends with the scores and the final checkpoint of a run
that never failed."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from bench.cli import main
from bench.results import load_checkpoint, read_metrics, read_status
from bench.settings import load_settings

# Checkpoints at steps 50, 100, 150 and 200 (the last before the final evaluation).
EXTRA = ("train.steps=200", "train.checkpoint_every=50", "train.log_every=10")

# The child `bench run` that kills itself (SIGKILL, no chance to clean up) just before or just
# after the `count`th os.replace onto a file named `name`: where bench.atomic renames a
# written temporary over its target.
KILL_AT_REPLACE = """
import os, signal, sys
name, count, when = sys.argv[1], int(sys.argv[2]), sys.argv[3]
replace, seen = os.replace, 0
def replace_then_maybe_die(source, destination, *args, **kwargs):
    global seen
    hit = os.path.basename(destination) == name and (seen := seen + 1) == count
    if hit and when == "before":
        os.kill(os.getpid(), signal.SIGKILL)
    replace(source, destination, *args, **kwargs)
    if hit:
        os.kill(os.getpid(), signal.SIGKILL)
os.replace = replace_then_maybe_die
from bench.cli import main
sys.exit(main(sys.argv[4:]))
"""


def _args(data_root: Path, run_root: Path) -> list[str]:
    return [
        "run", "method=mtdt", "tasks=mt5", "scale=smoke", "progress=false", "--no-plan",
        f"data.root={data_root}", f"run.root={run_root}", *EXTRA,
    ]  # fmt: skip


def _run_dir(run_root: Path) -> Path:
    return load_settings([*EXTRA, "method=mtdt", "tasks=mt5", "scale=smoke",
                          f"run.root={run_root}"]).run_dir  # fmt: skip


@pytest.fixture(scope="module")
def reference(smoke_data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The run directory of the same run, never interrupted."""
    root = tmp_path_factory.mktemp("reference")
    assert main(_args(smoke_data_root, root)) == 0
    return _run_dir(root)


def _killed_at(name: str, count: int, when: str, args: list[str]) -> None:
    command = [sys.executable, "-c", KILL_AT_REPLACE, name, str(count), when, *args]
    child = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert child.returncode == -signal.SIGKILL, child.stderr


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and np.array_equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return type(a) is type(b) and len(a) == len(b) and all(map(_equal, a, b))
    return type(a) is type(b) and a == b


def _assert_as_uninterrupted(run_dir: Path, reference: Path) -> None:
    """The scores of every task, and the final checkpoint's step, weights, optimizer and
    generators, are those of the run that was never interrupted; nothing was logged twice."""
    result, expected = (json.loads((d / "result.json").read_text()) for d in (run_dir, reference))
    assert result["per_task"] == expected["per_task"]
    checkpoint, expected = (load_checkpoint(d / "checkpoint.pt") for d in (run_dir, reference))
    for key in ("step", "method", "rng", "dataset_hash"):
        assert _equal(checkpoint[key], expected[key]), key
    steps = [e["step"] for e in read_metrics(run_dir) if e["event"] == "train"]
    assert steps == list(range(10, 201, 10))
    assert read_status(run_dir) == "done"
    assert not list(run_dir.glob(".*.tmp-*"))


def test_killed_at_a_checkpoint_and_again_at_the_resumes_metrics_it_ends_as_if_never_killed(
    smoke_data_root, tmp_path, reference
):
    args, run_dir = _args(smoke_data_root, tmp_path), _run_dir(tmp_path)

    _killed_at("checkpoint.pt", 2, "before", args)  # step 100's written, not yet renamed
    assert load_checkpoint(run_dir / "checkpoint.pt")["step"] == 50  # step 50's, whole
    assert len(list(run_dir.glob(".checkpoint.pt.tmp-*"))) == 1
    assert max(e["step"] for e in read_metrics(run_dir)) == 100  # logged past the checkpoint

    _killed_at("metrics.jsonl", 1, "after", args)  # the resume cut its log back to step 50
    assert max(e["step"] for e in read_metrics(run_dir)) == 50

    assert main(args) == 0  # the killed resume had not yet logged its resume
    assert [e["step"] for e in read_metrics(run_dir) if e["event"] == "resume"] == [50]
    _assert_as_uninterrupted(run_dir, reference)


@pytest.mark.parametrize(
    ("name", "count"),
    [("checkpoint.pt", 4), ("result.json", 1)],
    ids=["after-the-final-checkpoint", "between-result-and-status"],
)
def test_killed_after_the_last_writes_it_ends_as_if_never_killed(
    name, count, smoke_data_root, tmp_path, reference, capsys
):
    args, run_dir = _args(smoke_data_root, tmp_path), _run_dir(tmp_path)
    _killed_at(name, count, "after", args)
    if name == "result.json":  # its status was never written: the whole result says done
        assert (run_dir / "status").read_text().startswith("running")
        assert read_status(run_dir) == "done"
    else:
        assert not (run_dir / "result.json").exists()

    capsys.readouterr()
    assert main(args) == 0
    said = capsys.readouterr().out
    assert ("skipped:" in said) == (name == "result.json")
    assert ("resuming from step 200 of 200" in said) == (name == "checkpoint.pt")
    _assert_as_uninterrupted(run_dir, reference)


@pytest.fixture
def small_disk(mount_tmpfs: Callable[[str], Path]) -> Path:
    """A 20 MB tmpfs (the issue's full disk)."""
    return mount_tmpfs("20m")


def _fill(path: Path, leave: int) -> None:
    """Grow `path` until its file system has `leave` bytes free (about: whole pages)."""
    with open(path, "ab") as file:
        file.write(bytes(max(shutil.disk_usage(path.parent).free - leave, 0)))


def _one_line_no_space(stderr: str, mount: Path, run_dir: Path) -> bool:
    return (
        re.fullmatch(
            rf"error: no space left on {mount}: \d+\.\d MB free, about \d+\.\d MB needed for "
            rf"{run_dir}; free some space \(or choose another run\.root\), then run the same "
            r"command to resume\n",
            stderr,
        )
        is not None
    )


def test_a_full_disk_while_training_is_one_line_and_the_run_resumes_identically(
    smoke_data_root, small_disk, reference, capsys
):
    args, run_dir = _args(smoke_data_root, small_disk), _run_dir(small_disk)
    filler = small_disk / "filler"

    _fill(filler, leave=0)  # full from the start: not even the lock's line fits
    capsys.readouterr()
    assert main(args) == 2
    assert _one_line_no_space(capsys.readouterr().err, small_disk, run_dir)
    assert not (run_dir / "config.yaml").exists() and not list(run_dir.glob(".*.tmp-*"))

    # Room for the first checkpoint (and the small files), not for a second beside it.
    checkpoint_bytes = (reference / "checkpoint.pt").stat().st_size
    os.truncate(filler, 0)
    _fill(filler, leave=checkpoint_bytes * 3 // 2)
    child = subprocess.run([sys.executable, "-m", "bench.cli", *args], capture_output=True,
                           text=True, timeout=600)  # fmt: skip
    assert child.returncode == 2, child.stderr
    assert _one_line_no_space(child.stderr, small_disk, run_dir), child.stderr
    assert load_checkpoint(run_dir / "checkpoint.pt")["step"] == 50  # the one before, whole
    assert not list(run_dir.glob(".*.tmp-*"))
    assert (run_dir / "metrics.jsonl").read_text().endswith("\n")  # no line half written
    assert "no space left on" in read_status(run_dir)

    filler.unlink()
    assert main(args) == 0
    assert [e["step"] for e in read_metrics(run_dir) if e["event"] == "resume"] == [50]
    _assert_as_uninterrupted(run_dir, reference)


def _default_stop_signals() -> None:
    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, signal.SIG_DFL)


@pytest.mark.parametrize(
    ("seconds", "stop"),
    [(0.1, signal.SIGINT), (0.3, signal.SIGINT), (0.6, signal.SIGINT), (0.3, signal.SIGTERM)],
)
def test_a_stop_while_the_command_starts_is_one_line(seconds, stop, tmp_path):
    """Python is still importing torch: a KeyboardInterrupt there was a traceback (or was
    swallowed by the module being imported, and the run went on)."""
    bench = Path(sys.executable).parent / "bench"  # the console script users type
    command = [str(bench), "run", "method=mtdt", "tasks=mt5", "scale=smoke", "progress=false",
               f"data.root={tmp_path / 'data'}", f"run.root={tmp_path / 'runs'}"]  # fmt: skip
    # As from a terminal: a test session started in the background (`pytest &`) ignores SIGINT,
    # and a child inherits that until bench routes it, so the earliest Ctrl-C would be lost.
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=_default_stop_signals)  # fmt: skip
    time.sleep(seconds)
    process.send_signal(stop)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 128 + stop, stderr
    assert "Traceback" not in stderr and stderr.count("\n") == 1, stderr
