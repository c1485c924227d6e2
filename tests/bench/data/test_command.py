"""`bench data`: generation reuses finished tasks, verify names a corrupted file (one line, 2)."""

from __future__ import annotations

import json
import shutil

from bench.cli import main


def test_data_generate_reuses_finished_tasks(smoke_data_root, capsys):
    manifest = smoke_data_root / "replay-ep6" / "manifest.json"
    before = manifest.read_text()
    assert json.loads(before)["suites"] == ["mt5"]
    args = ["data", "generate", "tasks=mt5", "episodes_per_task=6", f"data.root={smoke_data_root}"]
    assert main([*args, "progress=false"]) == 0
    assert manifest.read_text() == before
    assert "5 tasks" in capsys.readouterr().out


def test_data_verify_names_a_corrupted_file(tiny_store, tmp_path, capsys):
    copy = tmp_path / "copy"
    shutil.copytree(tiny_store.root, copy)
    actions = copy / "reach-v3" / "actions.npy"
    raw = bytearray(actions.read_bytes())
    raw[-1] ^= 0xFF  # same size, one flipped byte
    actions.write_bytes(bytes(raw))
    assert main(["data", "verify", str(tiny_store.root)]) == 0
    assert main(["data", "verify", str(copy)]) == 2
    error = capsys.readouterr().err
    assert "actions.npy" in error and "reach-v3" in error and error.count("\n") == 1


def test_data_info_says_which_tasks_no_longer_match_the_manifest(tiny_store, tmp_path, capsys):
    copy = tmp_path / "copy"
    shutil.copytree(tiny_store.root, copy)
    assert main(["data", "info", str(copy)]) == 0
    assert "warning" not in capsys.readouterr().out
    (copy / "reach-v3" / "rewards.npy").unlink()
    assert main(["data", "info", str(copy)]) == 0  # still shown: the table is the manifest's
    out = capsys.readouterr().out
    assert "warning: 1 task(s) no longer match the manifest above: reach-v3 (rewards.npy" in out
