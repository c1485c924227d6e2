"""The dataset store: arrays round-trip, and every kind of damage is a UserError naming the file."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from bench.data.generate import generator_settings
from bench.data.store import (
    ARRAY_NAMES,
    STAMP_NAME,
    DatasetStore,
    add_tasks_to_manifest,
    write_task,
)
from bench.data.task_cache import STATS_NAME
from bench.data.writers import remove_abandoned_staging
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


def test_a_writer_with_other_settings_cannot_list_its_task_beside_the_others(dataset):
    """Two generations of one folder with different seeds, both started before either listed
    a task, passed the start's check: the second to list must not mix its task in."""
    root, _ = dataset
    add_tasks_to_manifest(root, {}, {"source": "test", "generator": {"seed": 0}})
    entry = write_task(root, "push-v3", make_arrays((4,), seed=1))

    with pytest.raises(UserError, match="listed meanwhile by a writer with other generator"):
        add_tasks_to_manifest(
            root, {"push-v3": entry}, {"source": "test", "generator": {"seed": 1}}
        )

    assert DatasetStore(root).tasks == [TASK]


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
    generator = generator_settings("noisy_expert", episodes_per_task=2, seed=3, pool_seed=4)
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
        f"'data.root=\"{data_root}\"' data.generator=noisy_expert episodes_per_task=2 data.seed=3 "
        "data.goal_pool_seed=4`"
    )


def test_damage_outside_a_whole_suite_still_names_the_command(tmp_path):
    root = write_generated_store(tmp_path / "scripted-ep2", ("reach-v3",))
    (root / "reach-v3" / "actions.npy").unlink()

    with pytest.raises(
        UserError, match=re.escape("--verify tasks=<a suite holding it> 'data.root=")
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
    abandoned += [f".import-staging-{dead}@{host}", f".import-staging-{dead}"]
    kept = [f".tmp-reach-v3-{os.getpid()}@{host}", f".tmp-reach-v3-{dead}@other-{host}"]
    kept += [f".import-staging-{os.getpid()}@{host}", f".import-staging-{dead}@other-{host}"]
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


# Names a manifest holds stay inside the store (bench.data.paths) ------------------------------


def edit_manifest(root: Path, change: Callable[[dict], None]) -> None:
    manifest = json.loads((root / "manifest.json").read_text())
    change(manifest)
    (root / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize("name", ["../../../../../../dev/zero", "/etc/shadow", ".verified.json"])
def test_a_manifest_naming_a_file_outside_its_task_folder_is_refused_in_one_line(dataset, name):
    root, _ = dataset
    record = {"sha256": "0" * 64, "size": 1, "shape": [1], "dtype": "float32"}
    edit_manifest(root, lambda manifest: manifest["tasks"][TASK]["files"].update({name: record}))

    with pytest.raises(UserError) as error:
        DatasetStore(root)  # before any file is opened, hashed or measured
    message = str(error.value)
    assert message.startswith(f"dataset manifest {root / 'manifest.json'} lists the file {name!r}")
    assert "\n" not in message and "bytes" not in message  # /etc/shadow's size is not told


def test_a_manifest_naming_a_task_or_checksum_outside_the_store_is_refused(dataset):
    root, _ = dataset
    edit_manifest(root, lambda manifest: manifest["tasks"].update({"..": {"files": {}}}))
    with pytest.raises(UserError, match=r"lists the task '\.\.', which starts with '\.'"):
        DatasetStore(root)

    def escaping_checksum(manifest: dict) -> None:
        del manifest["tasks"][".."]
        manifest["tasks"][TASK]["files"]["observations.npy"]["sha256"] = "../../../x"

    edit_manifest(root, escaping_checksum)  # it names a folder of the user's cache
    with pytest.raises(UserError, match=r"lists the file observations\.npy of .* without a sha256"):
        DatasetStore(root)


@pytest.mark.parametrize(
    ("key", "value", "said"),
    [
        ("size", None, "without a size in bytes (got None)"),
        ("shape", "3000", "without a shape (got '3000')"),
        ("dtype", "float99", "without a dtype numpy knows (got 'float99')"),
    ],
)
def test_a_hand_edited_file_record_is_named_not_a_traceback(dataset, key, value, said):
    root, _ = dataset

    def edit(manifest: dict) -> None:
        manifest["tasks"][TASK]["files"]["actions.npy"][key] = value

    edit_manifest(root, edit)
    with pytest.raises(
        UserError, match=re.escape(f"lists the file actions.npy of task {TASK} {said}")
    ):
        DatasetStore(root)


def test_a_task_file_linked_to_a_device_or_out_of_the_store_is_refused(dataset, tmp_path):
    root, _ = dataset
    path = root / TASK / "observations.npy"
    outside = tmp_path / "elsewhere.npy"
    shutil.copy2(path, outside)  # the very bytes: only where they lie is wrong
    path.unlink()
    path.symlink_to(outside)
    with pytest.raises(UserError, match=re.escape(f"{path} is a link to a file outside {root}")):
        DatasetStore(root).open_task(TASK)

    path.unlink()
    path.symlink_to("/dev/zero")
    with pytest.raises(UserError, match=re.escape(f"{path} is not a regular file; ")):
        DatasetStore(root).verify()

    path.unlink()
    (root / "shared.npy").write_bytes(outside.read_bytes())
    path.symlink_to(root / "shared.npy")  # a link inside the store is the store's business
    DatasetStore(root).verify()


def test_a_column_overwritten_with_its_mtime_restored_passes_the_stamp_but_not_verify(dataset):
    root, _ = dataset
    DatasetStore(root).open_task(TASK)  # stamped: the files are an hour old
    path = root / TASK / "observations.npy"
    mtime_ns = path.stat().st_mtime_ns
    observations = np.load(path, mmap_mode="r+")
    observations[:, 3] += 1.0
    observations.flush()
    del observations
    set_mtime(path, mtime_ns)

    DatasetStore(root).open_task(TASK)  # the stamp vouches for it: what runs trusted before
    with pytest.raises(UserError, match=re.escape(f"{path} is corrupt")):
        DatasetStore(root).verify([TASK])  # what a run does now, before its first step


def test_what_verify_hashed_is_not_hashed_again_on_open(tmp_path, monkeypatch):
    root = tmp_path / "data"  # written just now: too fresh for a stamp
    add_tasks_to_manifest(root, {TASK: write_task(root, TASK, make_arrays())}, {"source": "test"})
    store = DatasetStore(root)
    store.verify([TASK])

    hashed = []
    monkeypatch.setattr("bench.data.store.check_sha256", lambda *args: hashed.append(args))
    store.open_task(TASK)
    assert hashed == []
    DatasetStore(root).open_task(TASK)  # another store object has verified nothing
    assert len(hashed) == len(ARRAY_NAMES)


def test_the_repair_command_parses_with_a_non_ascii_data_root(tmp_path):
    from bench.settings import load_data_settings

    data_root = tmp_path / "dätä, mine"  # Hydra's grammar refuses both unquoted
    root = write_generated_store(data_root / "scripted-ep2", get_suite("mt5").tasks)
    (root / get_suite("mt5").tasks[0] / "actions.npy").unlink()
    with pytest.raises(UserError) as error:
        DatasetStore(root).verify()

    command = re.search(r"repair with `([^`]*)`", str(error.value))
    argv = shlex.split(command[1])
    assert argv[:4] == ["bench", "data", "generate", "--verify"]
    overrides = [f"data.{o}" if o.startswith("episodes_per_task=") else o for o in argv[4:]]
    suite, data, _, _ = load_data_settings(overrides)
    assert (suite.name, data.root, data.episodes_per_task) == ("mt5", str(data_root), 2)
