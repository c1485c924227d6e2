"""An explicit `data.path` is checked before a run folder exists: its tasks, their files' sizes
and enough episodes for the run's split (one line, exit 2, nothing made)."""

from __future__ import annotations

import json
import shutil

import pytest

from bench.cli import main


@pytest.fixture
def store(smoke_data_root, tmp_path):
    copy = tmp_path / "store"
    shutil.copytree(smoke_data_root / "replay-ep6", copy)
    return copy


def _refused(store, tmp_path, capsys, *overrides: str) -> str:
    runs = tmp_path / "runs"
    args = ["run", "method=prompt_dt", "tasks=mt5", "scale=smoke", "progress=false",
            f"data.path={store}", f"run.root={runs}", *overrides]  # fmt: skip
    assert main(args) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: ") and error.count("\n") == 1
    assert not runs.exists()  # refused before the run folder (and its lock) was made
    return error


def test_a_store_too_small_for_the_split_is_refused(store, tmp_path, capsys):
    error = _refused(store, tmp_path, capsys, "data.prompt_episodes=6")
    assert (
        "basketball-v3 has 6 episodes; with data.fraction=1.0 and data.prompt_episodes=6" in error
    )
    error = _refused(store, tmp_path, capsys, "data.fraction=0.1")
    assert "none is left to train on" in error


def test_a_store_lacking_a_task_or_a_file_is_refused(store, tmp_path, capsys):
    (store / "button-press-v3" / "actions.npy").unlink()
    error = _refused(store, tmp_path, capsys)
    assert "button-press-v3 is damaged (actions.npy is missing)" in error
    manifest = json.loads((store / "manifest.json").read_text())
    del manifest["tasks"]["button-press-v3"]
    (store / "manifest.json").write_text(json.dumps(manifest))
    error = _refused(store, tmp_path, capsys)
    assert "lacks 1 task(s) of mt5, e.g. 'button-press-v3'" in error


def test_an_unreadable_manifest_is_refused(store, tmp_path, capsys):
    (store / "manifest.json").write_text("{")
    assert "is not valid JSON" in _refused(store, tmp_path, capsys)


def test_a_generator_beside_an_explicit_store_is_refused(store, tmp_path, capsys):
    error = _refused(store, tmp_path, capsys, "data.generator=noisy_expert")
    assert f"data.path={store} is a store already: drop data.generator" in error
