"""The importer of the published `<task>-v2/<i>.npz` layout: faithful arrays, nothing partial."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from bench.data.import_npz import import_npz
from bench.errors import UserError

STEPS = 50
EPISODES = 3
# Alphabetical order differs from the HarmoDT order (basketball 0, reach 27, push 29).
FOLDERS = ("reach-v2", "push-v2", "basketball-v2")


def write_episode(path: Path, folder: str, index: int) -> dict[str, np.ndarray]:
    """One episode file, in the variants found in the wild (see each branch)."""
    rng = np.random.default_rng([FOLDERS.index(folder), index])
    episode = {
        "observations": rng.standard_normal((STEPS, 39)).astype(np.float32),
        "actions": rng.uniform(-1, 1, (STEPS, 4)).astype(np.float32),
        "rewards": rng.uniform(0, 10, STEPS).astype(np.float32),
    }
    done = np.zeros(STEPS, dtype=np.float32)
    done[-1] = 1.0
    if folder == "reach-v2":  # float `terminals`
        arrays = {**episode, "terminals": done}
    elif folder == "push-v2":  # bool `dones`, rewards as a column
        arrays = {**episode, "rewards": episode["rewards"][:, None], "dones": done.astype(bool)}
    else:  # float64 everything, bool `terminals`
        arrays = {k: v.astype(np.float64) for k, v in episode.items()}
        arrays["terminals"] = done.astype(bool)
    np.savez(path, **arrays)
    return episode


@pytest.fixture
def release(tmp_path: Path) -> tuple[Path, dict[str, list[dict[str, np.ndarray]]]]:
    source = tmp_path / "release"
    episodes = {}
    for folder in FOLDERS:
        (source / folder).mkdir(parents=True)
        episodes[folder] = [
            write_episode(source / folder / f"{i}.npz", folder, i) for i in range(EPISODES)
        ]
    (source / "README.txt").write_text("files next to the task folders are ignored")
    return source, episodes


def test_import_concatenates_episodes_with_timeouts_at_their_ends(release, tmp_path):
    source, episodes = release
    store = import_npz(source, tmp_path / "data", progress=False)

    assert store.tasks == ["basketball-v3", "reach-v3", "push-v3"]
    for task in store.tasks:
        arrays = store.open_task(task)
        written = episodes[task.replace("-v3", "-v2")]
        for name in ("observations", "actions", "rewards"):
            expected = np.concatenate([episode[name] for episode in written]).astype(np.float32)
            np.testing.assert_array_equal(getattr(arrays, name), expected)
        np.testing.assert_array_equal(arrays.episode_starts, [0, 50, 100])
        np.testing.assert_array_equal(np.flatnonzero(arrays.timeouts), [49, 99, 149])
        assert not arrays.terminals.any()
    store.verify()
    assert store.manifest["source"] == "npz-import"
    assert store.manifest["done_flags"] == "mapped to timeouts"
    assert store.manifest["import"] == {
        "path": str(source),
        "episodes_per_task": 3,
        "layout": "<task>-v2/<i>.npz",
    }
    assert not list((tmp_path / "data").glob(".import-staging-*"))


def test_episode_count_imports_the_first_files_of_each_task(release, tmp_path):
    source, episodes = release
    store = import_npz(source, tmp_path / "data", episodes=2, progress=False)

    arrays = store.open_task("reach-v3")
    assert arrays.num_episodes == 2
    expected = np.concatenate([episode["actions"] for episode in episodes["reach-v2"][:2]])
    np.testing.assert_array_equal(arrays.actions, expected)


def drop_actions(path: Path) -> None:
    with np.load(path) as archive:
        arrays = {key: archive[key] for key in archive.files if key != "actions"}
    np.savez(path, **arrays)


def edit(path: Path, key: str, change: Callable[[np.ndarray], np.ndarray]) -> None:
    with np.load(path) as archive:
        arrays = {k: archive[k] for k in archive.files}
    key = key if key in arrays else "dones"
    arrays[key] = change(arrays[key])
    np.savez(path, **arrays)


def set_at(index: int, value: float) -> Callable[[np.ndarray], np.ndarray]:
    def change(array: np.ndarray) -> np.ndarray:
        array = array.copy()
        array.reshape(len(array), -1)[index] = value
        return array

    return change


# The damaged file is in push-v2, the last task in HARMODT order: the tasks before it have been
# staged already when it is found, and must not reach dest.
@pytest.mark.parametrize(
    "damage, problem",
    [
        (drop_actions, "has no actions"),
        (lambda p: edit(p, "observations", lambda a: a[:, :38]), "observations of shape"),
        (lambda p: edit(p, "actions", lambda a: a[:-1]), "different lengths"),
        (lambda p: edit(p, "rewards", set_at(7, np.nan)), "non-finite rewards"),
        (lambda p: edit(p, "terminals", set_at(10, 1)), "set at step 10 before its last step 49"),
        (lambda p: p.write_bytes(b"not a zip file"), "cannot be read"),
    ],
)
def test_a_damaged_file_is_named_and_nothing_is_imported(release, tmp_path, damage, problem):
    source, _ = release
    damage(source / "push-v2" / "1.npz")
    dest = tmp_path / "data"
    dest.mkdir()
    (dest / "notes.txt").write_text("a user's file")

    with pytest.raises(UserError, match=problem) as error:
        import_npz(source, dest, progress=False)

    assert str(source / "push-v2" / "1.npz") in str(error.value)
    assert [p.name for p in dest.iterdir()] == ["notes.txt"]


def test_nothing_is_created_when_dest_did_not_exist(release, tmp_path):
    source, _ = release
    drop_actions(source / "push-v2" / "2.npz")
    with pytest.raises(UserError, match=re.escape("push-v2/2.npz has no actions")):
        import_npz(source, tmp_path / "data", progress=False)
    assert not (tmp_path / "data").exists()


def test_a_gap_in_the_numbering_names_the_first_missing_file(release, tmp_path):
    source, _ = release
    (source / "reach-v2" / "1.npz").unlink()
    with pytest.raises(UserError, match=re.escape("reach-v2/1.npz is missing")):
        import_npz(source, tmp_path / "data", progress=False)
    assert not (tmp_path / "data").exists()


def test_tasks_with_different_episode_counts_are_refused(release, tmp_path):
    source, _ = release
    (source / "push-v2" / "2.npz").unlink()
    with pytest.raises(UserError, match="different numbers of episodes"):
        import_npz(source, tmp_path / "data", progress=False)
    # ...unless an episode count every task has is asked for.
    assert import_npz(source, tmp_path / "data", episodes=2, progress=False).tasks


def test_an_unknown_task_folder_is_listed(release, tmp_path):
    source, _ = release
    (source / "reach-v2-old").mkdir()
    with pytest.raises(UserError, match="not Meta-World tasks: reach-v2-old"):
        import_npz(source, tmp_path / "data", progress=False)


def test_importing_over_an_existing_dataset_is_refused(release, tmp_path):
    source, _ = release
    import_npz(source, tmp_path / "data", episodes=1, progress=False)
    with pytest.raises(UserError, match="already holds a dataset"):
        import_npz(source, tmp_path / "data", progress=False)


def test_an_episode_file_that_is_a_fifo_is_refused_not_read_forever(release, tmp_path):
    source, _ = release
    path = source / "push-v2" / "1.npz"
    path.unlink()
    os.mkfifo(path)
    with pytest.raises(UserError, match=re.escape(f"episode file {path} is not a regular file")):
        import_npz(source, tmp_path / "data", progress=False)
    assert not (tmp_path / "data").exists()


# An importer that dies (SIGKILL) as it moves its second task from staging into argv[2].
_KILLED_WHILE_MOVING = """
import os, signal, sys
from pathlib import Path
from bench.data.import_npz import import_npz
source, dest = Path(sys.argv[1]), Path(sys.argv[2])
rename, moved = os.rename, []
def rename_then_die(source_path, target, *args, **kwargs):
    if Path(target).parent == dest:
        moved.append(target)
        if len(moved) == 2:
            os.kill(os.getpid(), signal.SIGKILL)
    rename(source_path, target, *args, **kwargs)
os.rename = rename_then_die
import_npz(source, dest, progress=False)
"""


def test_the_next_import_removes_what_a_killed_import_left(release, tmp_path):
    source, dest = release[0], tmp_path / "data"
    killed = subprocess.run([sys.executable, "-c", _KILLED_WHILE_MOVING, str(source), str(dest)])
    assert killed.returncode == -signal.SIGKILL
    (left,) = dest.glob(".import-staging-*")
    assert re.fullmatch(rf"\.import-staging-[0-9]+@{re.escape(socket.gethostname())}", left.name)
    assert not (dest / "manifest.json").exists()

    store = import_npz(source, dest, progress=False)

    assert not list(dest.glob(".import-staging-*"))
    assert store.tasks == ["basketball-v3", "reach-v3", "push-v3"]
    store.verify()
