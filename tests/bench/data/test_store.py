"""The dataset store: arrays round-trip, and every kind of damage is a UserError naming the file."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from bench.data.store import (
    ARRAY_NAMES,
    STAMP_NAME,
    DatasetStore,
    add_tasks_to_manifest,
    remove_abandoned_staging,
    write_task,
)
from bench.data.task_cache import STATS_NAME
from bench.errors import UserError
from bench.suites import get_suite

TASK = "reach-v3"
HOUR_NS = 3600 * 10**9


def make_arrays(episode_lengths: tuple[int, ...] = (3, 5), seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    lengths = np.array(episode_lengths, dtype=np.int64)
    num_steps = int(lengths.sum())
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    timeouts = np.zeros(num_steps, dtype=bool)
    timeouts[starts + lengths - 1] = True
    return {
        "observations": rng.standard_normal((num_steps, 39)).astype(np.float32),
        "actions": rng.uniform(-1, 1, (num_steps, 4)).astype(np.float32),
        "rewards": rng.standard_normal(num_steps).astype(np.float32),
        "terminals": np.zeros(num_steps, dtype=bool),
        "timeouts": timeouts,
        "episode_starts": starts,
    }


def set_mtime(path: Path, mtime_ns: int) -> None:
    os.utime(path, ns=(mtime_ns, mtime_ns))


def age_files(task_dir: Path) -> None:
    """Date the files an hour back, as data written in an earlier session (see test_fresh_...)."""
    for path in task_dir.glob("*.npy"):
        set_mtime(path, time.time_ns() - HOUR_NS)


def flip_last_byte(path: Path) -> None:
    """Corrupt the data region (the last byte), keeping the size."""
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.fixture
def dataset(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    root = tmp_path / "data"
    arrays = make_arrays()
    entry = write_task(root, TASK, arrays)
    add_tasks_to_manifest(root, {TASK: entry}, {"source": "test"})
    age_files(root / TASK)
    return root, arrays


def test_round_trip_gives_equal_memory_mapped_arrays(dataset):
    root, written = dataset
    store = DatasetStore(root)
    opened = store.open_task(TASK)

    assert store.tasks == [TASK]
    for name in ARRAY_NAMES:
        array = getattr(opened, name)
        assert isinstance(array, np.memmap)
        assert array.dtype == written[name].dtype
        np.testing.assert_array_equal(array, written[name])
    assert (opened.num_episodes, opened.num_steps) == (2, 8)
    np.testing.assert_array_equal(opened.episode_ends(), [3, 8])
    entry = store.manifest["tasks"][TASK]
    assert (entry["episodes"], entry["steps"]) == (2, 8)
    assert store.manifest["schema_version"] == 1 and store.manifest["source"] == "test"


def test_adding_tasks_keeps_earlier_ones_and_their_order(dataset):
    root, _ = dataset
    entry = write_task(root, "push-v3", make_arrays((4,), seed=1))
    add_tasks_to_manifest(root, {"push-v3": entry}, {"source": "test", "note": "second"})

    store = DatasetStore(root)
    assert store.tasks == [TASK, "push-v3"]
    assert store.manifest["note"] == "second"
    np.testing.assert_array_equal(store.open_task("push-v3").episode_starts, [0])
    assert not list(root.glob(".tmp-*"))


def test_truncated_file_is_named(dataset):
    root, _ = dataset
    path = root / TASK / "actions.npy"
    size = path.stat().st_size
    with open(path, "r+b") as file:
        file.truncate(size - 10)

    expected = f"actions.npy is truncated ({size - 10} of {size} bytes)"
    with pytest.raises(UserError, match=re.escape(expected)):
        DatasetStore(root).open_task(TASK)


def test_overlong_and_missing_files_are_named(dataset):
    root, _ = dataset
    with open(root / TASK / "rewards.npy", "ab") as file:
        file.write(b"\0")
    with pytest.raises(UserError, match=re.escape("rewards.npy is longer than recorded")):
        DatasetStore(root).open_task(TASK)

    (root / TASK / "rewards.npy").unlink()
    with pytest.raises(UserError, match=re.escape("rewards.npy is missing")):
        DatasetStore(root).open_task(TASK)


def test_flipped_bytes_are_caught_on_open_and_by_verify(dataset):
    root, _ = dataset
    flip_last_byte(root / TASK / "observations.npy")
    store = DatasetStore(root)

    with pytest.raises(UserError, match=re.escape("observations.npy is corrupt")) as on_open:
        store.open_task(TASK)
    with pytest.raises(UserError, match=re.escape("observations.npy is corrupt")):
        store.verify()
    assert "\n" not in str(on_open.value)


def test_stamp_skips_hashing_until_the_mtime_changes(dataset):
    root, _ = dataset
    store = DatasetStore(root)
    store.open_task(TASK)
    stamp = json.loads((root / TASK / STAMP_NAME).read_text())
    assert sorted(stamp) == sorted(f"{name}.npy" for name in ARRAY_NAMES)

    # Same size, same mtime: the stamp is trusted, so this corruption goes unseen on open...
    path = root / TASK / "observations.npy"
    mtime_ns = path.stat().st_mtime_ns
    flip_last_byte(path)
    set_mtime(path, mtime_ns)
    store.open_task(TASK)
    # ...but verify() always hashes,
    with pytest.raises(UserError, match=re.escape("observations.npy is corrupt")):
        store.verify()
    # and a changed mtime makes open hash the file again.
    set_mtime(path, mtime_ns + 1)
    with pytest.raises(UserError, match=re.escape("observations.npy is corrupt")):
        store.open_task(TASK)


def test_fresh_files_are_not_stamped(tmp_path):
    # A file changed within the mtime granularity of its hashing can keep its mtime, so files
    # written moments ago are hashed again on the next open.
    root = tmp_path / "data"
    add_tasks_to_manifest(root, {TASK: write_task(root, TASK, make_arrays())}, {"source": "test"})
    store = DatasetStore(root)
    store.open_task(TASK)

    path = root / TASK / "actions.npy"
    mtime_ns = path.stat().st_mtime_ns
    flip_last_byte(path)
    set_mtime(path, mtime_ns)
    with pytest.raises(UserError, match=re.escape("actions.npy is corrupt")):
        store.open_task(TASK)


def test_header_that_disagrees_with_the_manifest_is_named(dataset):
    root, written = dataset
    store = DatasetStore(root)
    store.open_task(TASK)  # stamped: the next open trusts the bytes and reads the header
    path = root / TASK / "rewards.npy"
    mtime_ns = path.stat().st_mtime_ns
    np.save(path, written["rewards"].view(np.int32))  # same size, other dtype
    set_mtime(path, mtime_ns)

    with pytest.raises(UserError, match=re.escape("rewards.npy holds int32")):
        store.open_task(TASK)


def test_missing_or_foreign_manifest_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match=re.escape("manifest.json is missing")):
        DatasetStore(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"schema_version": 99, "tasks": {}}))
    with pytest.raises(UserError, match="schema version 99"):
        DatasetStore(tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(UserError, match="not valid JSON"):
        DatasetStore(tmp_path)


def test_unknown_task_lists_the_tasks_held(dataset):
    root, _ = dataset
    with pytest.raises(UserError, match=r"'push-v3' is not in the dataset.*reach-v3"):
        DatasetStore(root).open_task("push-v3")


def test_write_task_rejects_malformed_arrays(tmp_path):
    arrays = make_arrays()
    with pytest.raises(ValueError, match="rewards must be float32"):
        write_task(tmp_path, TASK, {**arrays, "rewards": arrays["rewards"].astype(np.float64)})
    with pytest.raises(ValueError, match="episode_starts"):
        write_task(tmp_path, TASK, {**arrays, "episode_starts": np.array([0, 0], dtype=np.int64)})
    with pytest.raises(ValueError, match="length"):
        write_task(tmp_path, TASK, {**arrays, "actions": arrays["actions"][:-1]})
    assert not any(tmp_path.iterdir())


def test_write_task_replaces_a_leftover_folder_but_never_a_listed_task(dataset):
    root, _ = dataset
    leftover = root / "push-v3"
    leftover.mkdir()
    (leftover / "junk.npy").write_bytes(b"half a file")
    write_task(root, "push-v3", make_arrays())
    assert not (leftover / "junk.npy").exists()

    with pytest.raises(UserError, match="already part of the dataset"):
        write_task(root, TASK, make_arrays())


def test_write_task_replaces_a_listed_task_on_request(dataset):
    root, _ = dataset
    replacement = make_arrays((4, 4), seed=7)
    entry = write_task(root, TASK, replacement, replace=True)
    add_tasks_to_manifest(root, {TASK: entry}, {"source": "test"})

    np.testing.assert_array_equal(
        DatasetStore(root).open_task(TASK).rewards, replacement["rewards"]
    )
    assert not list(root.glob(".tmp-*"))


def test_damage_names_the_file_and_hashes_only_when_asked(dataset):
    root, _ = dataset
    store = DatasetStore(root)
    assert store.damage(TASK, checksums=True) is None

    flip_last_byte(root / TASK / "observations.npy")
    assert store.damage(TASK, checksums=False) is None
    assert store.damage(TASK, checksums=True) == (
        "observations.npy is corrupt (its sha256 differs from the manifest's)"
    )
    (root / TASK / "actions.npy").write_bytes(b"short")
    assert store.damage(TASK, checksums=False).startswith("actions.npy is truncated (5 of ")
    shutil.rmtree(root / TASK)
    assert store.damage(TASK, checksums=False) == "its folder is missing"


def write_generated_store(root: Path, tasks: tuple[str, ...]) -> Path:
    """Hand-made arrays under the manifest header of a `bench data generate` store."""
    entries = {task: write_task(root, task, make_arrays()) for task in tasks}
    generator = {"episodes_per_task": 2, "seed": 3, "pool_seed": 4}
    add_tasks_to_manifest(root, entries, {"source": "scripted", "generator": generator})
    return root


def test_damage_in_a_generated_store_names_the_command_that_repairs_it(tmp_path):
    data_root = tmp_path / "my data"
    root = write_generated_store(data_root / "scripted-ep2", get_suite("mt5").tasks)
    task = get_suite("mt5").tasks[1]
    flip_last_byte(root / task / "rewards.npy")

    with pytest.raises(UserError) as error:
        DatasetStore(root).open_task(task)
    assert str(error.value) == (
        f"dataset file {root / task / 'rewards.npy'} is corrupt (its sha256 differs from the "
        f"manifest's); repair with `bench data generate --verify tasks=mt5 "
        f"'data.root={data_root}' data.generator=noisy_expert episodes_per_task=2 data.seed=3 "
        "data.goal_pool_seed=4`"
    )


def test_damage_outside_a_whole_suite_still_names_the_command(tmp_path):
    root = write_generated_store(tmp_path / "scripted-ep2", ("reach-v3",))
    (root / "reach-v3" / "actions.npy").unlink()

    with pytest.raises(
        UserError, match=re.escape("--verify tasks=<a suite holding it> data.root=")
    ):
        DatasetStore(root).open_task("reach-v3")


def test_damage_in_an_imported_store_says_reimport(tmp_path):
    root = tmp_path / "imported"
    add_tasks_to_manifest(
        root, {TASK: write_task(root, TASK, make_arrays())}, {"source": "npz-import"}
    )
    (root / TASK / "actions.npy").unlink()

    with pytest.raises(UserError, match=r"actions\.npy is missing; re-import it$"):
        DatasetStore(root).verify()


def dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def test_abandoned_staging_is_removed_only_when_its_writer_is_gone(tmp_path):
    host, dead = socket.gethostname(), dead_pid()
    abandoned = [f".tmp-reach-v3-{dead}@{host}", f".tmp-push-v3-{dead}"]  # the second: older name
    kept = [f".tmp-reach-v3-{os.getpid()}@{host}", f".tmp-reach-v3-{dead}@other-{host}"]
    for name in abandoned + kept:
        (tmp_path / name).mkdir()
        (tmp_path / name / "observations.npy").write_bytes(b"half a file")

    removed = remove_abandoned_staging(tmp_path)

    assert sorted(path.name for path in removed) == sorted(abandoned)
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(kept)


@pytest.fixture
def read_only_store(dataset, tmp_path, monkeypatch):
    """The dataset in folders its user cannot write to (shared storage), a fresh user cache."""
    if os.geteuid() == 0:
        pytest.skip("root writes into read-only folders")
    root, _ = dataset
    cache = tmp_path / "cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    folders = [root, root / TASK]
    for folder in folders:
        folder.chmod(0o555)
    yield root, cache / "mtbench" / "stores"
    for folder in folders:
        folder.chmod(0o755)


def test_a_read_only_store_is_hashed_once_per_user(read_only_store):
    root, user_cache = read_only_store
    DatasetStore(root).open_task(TASK)
    assert not (root / TASK / STAMP_NAME).exists()
    [stamp] = user_cache.glob(f"*/{TASK}-*/{STAMP_NAME}")
    assert sorted(json.loads(stamp.read_text())) == sorted(f"{n}.npy" for n in ARRAY_NAMES)

    # Same size, same mtime: the user's stamp is trusted, so the next open does not hash...
    path = root / TASK / "observations.npy"
    mtime_ns = path.stat().st_mtime_ns
    flip_last_byte(path)
    set_mtime(path, mtime_ns)
    DatasetStore(root).open_task(TASK)
    # ...while verify() still does.
    with pytest.raises(UserError, match=re.escape("observations.npy is corrupt")):
        DatasetStore(root).verify()


def test_a_read_only_store_caches_statistics_per_user(read_only_store):
    root, user_cache = read_only_store
    arrays = DatasetStore(root).open_task(TASK)
    first = DatasetStore(root).state_statistics(arrays, 3)  # no split of 2 episodes is written

    [cache] = user_cache.glob(f"*/{TASK}-*/{STATS_NAME}")
    assert list(json.loads(cache.read_text())["statistics"]) == ["3"]
    again = DatasetStore(root).state_statistics(arrays, 3)
    train = np.load(root / TASK / "observations.npy", mmap_mode="r")[:3]
    mean = train.mean(axis=0, dtype=np.float64).astype(np.float32)
    std = (train.std(axis=0, dtype=np.float64) + 1e-6).astype(np.float32)
    assert first[0].tobytes() == again[0].tobytes() == mean.tobytes()
    assert first[1].tobytes() == again[1].tobytes() == std.tobytes()
