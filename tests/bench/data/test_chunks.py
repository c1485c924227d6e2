"""Generation resumes inside a task: a kill -9 loses at most the chunk being rolled, the rerun
ends with the store an uninterrupted generation makes, and saved episodes that cannot be
trusted (a corrupt chunk, other settings) are made again."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from bench.data.behaviour import BEHAVIOURS
from bench.data.chunks import CHUNK_EPISODES, INDEX_NAME, Chunk, PartialTask, partial_folder
from bench.data.generate import generate_dataset, generate_task, generator_settings
from bench.data.store import ARRAY_NAMES, DatasetStore

TASK = "reach-v3"  # the fastest task
EPISODES = 2 * CHUNK_EPISODES + 1  # two chunks saved, then the last episode
STEP_ARRAYS = [name for name in ARRAY_NAMES if name != "episode_starts"]
# One task in a process of its own (the CLI makes whole suites only).
GENERATE = (
    "import sys; from bench.data.generate import generate_dataset; "
    f"generate_dataset(sys.argv[1], [{TASK!r}], {EPISODES}, workers=1, progress=False)"
)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> DatasetStore:
    root = tmp_path_factory.mktemp("uninterrupted")
    return generate_dataset(root, [TASK], EPISODES, workers=1, progress=False)


def saved_chunks(root: Path) -> int:
    """How many chunks of TASK the index in `root` lists."""
    try:
        index = json.loads((partial_folder(root, TASK) / INDEX_NAME).read_text())
    except FileNotFoundError:
        return 0
    return len(index["chunks"])


class Killed(Exception):
    """Stands for a kill just after a chunk was saved."""


def save_chunks(root: Path, count: int) -> None:
    """Leave in `root` what a generation of TASK killed after `count` chunks leaves."""
    partial = PartialTask(root, TASK, generator_settings("replay", EPISODES, 0, 0))

    def save_then_stop(chunk: Chunk) -> None:
        partial.save(chunk)
        if chunk.end == count * CHUNK_EPISODES:
            raise Killed

    with pytest.raises(Killed):
        generate_task(TASK, EPISODES, 0, 0, BEHAVIOURS["replay"], on_chunk=save_then_stop)


@pytest.mark.parametrize("generator", sorted(BEHAVIOURS))
def test_a_rollout_resumed_from_a_chunk_is_the_uninterrupted_one(generator):
    chunks: list[Chunk] = []
    # Two episodes after the chunk: the last one, an expert's, would hide a lost behaviour state.
    episodes = CHUNK_EPISODES + 2
    whole = generate_task(TASK, episodes, 0, 0, BEHAVIOURS[generator], on_chunk=chunks.append)
    rolled: list[None] = []
    resumed = generate_task(TASK, episodes, 0, 0, BEHAVIOURS[generator],
                            lambda: rolled.append(None), resume=chunks)  # fmt: skip

    assert [(chunk.first, chunk.end) for chunk in chunks] == [(0, CHUNK_EPISODES)]
    assert len(rolled) == 2  # only the episodes after the chunk
    for name, array in whole.arrays.items():
        np.testing.assert_array_equal(resumed.arrays[name], array, err_msg=name)
    np.testing.assert_array_equal(resumed.success, whole.success)


def test_a_kill_9_inside_a_task_loses_at_most_one_chunk_and_the_rerun_ends_identical(
    uninterrupted, tmp_path
):
    store = tmp_path / "store"

    def generate() -> subprocess.Popen:
        command = [sys.executable, "-c", GENERATE, str(store)]
        return subprocess.Popen(command, start_new_session=True, stderr=subprocess.PIPE, text=True)

    process = generate()
    try:
        deadline = time.monotonic() + 120
        while not saved_chunks(store) and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert saved_chunks(store), "no chunk was saved"
        os.killpg(process.pid, signal.SIGKILL)  # the parent and its worker, mid-task
        process.communicate()
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    kept = saved_chunks(store) * CHUNK_EPISODES
    assert kept >= CHUNK_EPISODES and not (store / "manifest.json").exists()

    rerun = generate()
    _, stderr = rerun.communicate(timeout=300)

    assert rerun.returncode == 0, stderr
    assert re.fullmatch(f"resuming {TASK}: {kept} of {EPISODES} episodes already made\n", stderr)
    assert DatasetStore(store).manifest["tasks"] == uninterrupted.manifest["tasks"]
    assert not partial_folder(store, TASK).exists()


def test_a_corrupt_chunk_is_made_again_and_the_chunks_before_it_are_kept(
    uninterrupted, tmp_path, capsys
):
    save_chunks(tmp_path, 2)
    second = partial_folder(tmp_path, TASK) / f"episodes-{10:06d}-{20:06d}.npz"
    data = bytearray(second.read_bytes())
    data[len(data) // 2] ^= 1
    second.write_bytes(data)

    store = generate_dataset(tmp_path, [TASK], EPISODES, workers=1, progress=False)

    assert capsys.readouterr().err == (
        f"{TASK}: {second} is corrupt (its sha256 differs from the index's); making its "
        f"episodes from {CHUNK_EPISODES} on again\n"
        f"resuming {TASK}: {CHUNK_EPISODES} of {EPISODES} episodes already made\n"
    )
    assert store.manifest["tasks"] == uninterrupted.manifest["tasks"]


def test_episodes_saved_with_other_settings_are_not_used(uninterrupted, tmp_path, capsys):
    # A first chunk as seed 1 would leave it, but all zeros: used, it would show in the store.
    arrays = uninterrupted.open_task(TASK)
    rows = CHUNK_EPISODES * 500
    steps = {name: np.zeros_like(getattr(arrays, name)[:rows]) for name in STEP_ARRAYS}
    carried = {"shift_wander": np.zeros((3, 3)), "bias_wander": np.zeros(4)}
    state = np.random.default_rng(1).bit_generator.state
    chunk = Chunk(0, CHUNK_EPISODES, steps, np.zeros(CHUNK_EPISODES, bool), state, carried)
    PartialTask(tmp_path, TASK, generator_settings("replay", EPISODES, 1, 0)).save(chunk)

    store = generate_dataset(tmp_path, [TASK], EPISODES, seed=0, workers=1, progress=False)

    assert capsys.readouterr().err == (
        f"{TASK}: {partial_folder(tmp_path, TASK)} holds episodes made with other settings; "
        "making its episodes from 0 on again\n"
    )
    assert store.manifest["tasks"] == uninterrupted.manifest["tasks"]


def test_chunks_of_a_task_already_listed_are_removed_by_the_next_generation(uninterrupted):
    # Left by a kill between listing the task and removing its chunks.
    folder = partial_folder(uninterrupted.root, TASK)
    folder.mkdir()
    (folder / INDEX_NAME).write_text("{}")

    generate_dataset(uninterrupted.root, [TASK], EPISODES, workers=1, progress=False)

    assert not folder.exists()
