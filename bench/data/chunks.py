"""A task's episodes saved in chunks while it is generated, so that a killed generation resumes
inside the task instead of starting it over.

A worker saves every CHUNK_EPISODES episodes of its task into `<root>/.partial-<task>/`:

- `episodes-<first>-<end>.npz`: the chunk's rows of the store's per-step arrays, the success of
  its episodes, and what the behaviour carries into the next episode (`carried.<name>`);
- `index.json`: the generator settings, and per chunk its file, its episodes [first, end), its
  sha256 and the random generator's state after its last episode.

Each file is written whole (bench.atomic), the chunk first, then the index that lists it: a
chunk counts only once listed, so a kill, even -9, loses at most the chunk being rolled. A rerun
uses the chunks listed with its own settings, in order, up to the first whose file is missing or
fails its checksum, and makes the rest again. Only the holder of the task's lock
(bench.data.writers) touches the folder, so any file the index does not list is a leftover; the
folder is removed once the task is listed in the manifest.

No pickle anywhere (the project reads none): arrays are .npz loaded with allow_pickle=False, and
the generator's state is JSON (PCG64's is a few integers).
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from bench.atomic import atomic_file, write_json
from bench.data.behaviour import Behaviour
from bench.data.disk_space import is_out_of_space, out_of_space
from bench.envs.metaworld import MAX_EPISODE_STEPS

# About 1 MB and a few seconds of rollouts: small enough that little is lost, large enough that
# the index stays short (200 chunks for a paper-sized task).
CHUNK_EPISODES = 10
INDEX_NAME = "index.json"
_FORMAT = 1
_SUCCESS = "success"
_CARRIED = "carried."


class Chunk(NamedTuple):
    """Episodes [first, end) of a task, and the state its generation had reached after them."""

    first: int
    end: int
    steps: dict[str, np.ndarray]  # the store's per-step arrays: the rows of these episodes
    success: np.ndarray  # (end - first,) bool
    rng_state: Mapping[str, Any]  # the task's generator: `bit_generator.state`
    carried: dict[str, np.ndarray]  # the behaviour's `carried_state()`


class _BadChunk(Exception):
    """A listed chunk that cannot be used; the message says why."""


def partial_folder(root: Path, task: str) -> Path:
    return Path(root) / f".partial-{task}"


def remove_partial(root: Path, task: str) -> None:
    """Delete `task`'s chunks, once the task is listed: nothing will resume from them."""
    folder = partial_folder(root, task)
    if folder.exists():
        shutil.rmtree(folder)


def chunked_episodes(episodes: int) -> int:
    """How many of a task's `episodes` are saved in chunks before the task itself is written.

    Not those of the last chunk: the task is written as soon as they are rolled.
    """
    return (episodes - 1) // CHUNK_EPISODES * CHUNK_EPISODES


def chunk_ending(
    end: int,
    steps: Mapping[str, np.ndarray],
    success: np.ndarray,
    rng: np.random.Generator,
    behaviour: Behaviour,
) -> Chunk:
    """The chunk of the CHUNK_EPISODES episodes of a task's arrays that end at episode `end`,
    which the task's `rng` and `behaviour` have just rolled."""
    first = end - CHUNK_EPISODES
    rows = slice(first * MAX_EPISODE_STEPS, end * MAX_EPISODE_STEPS)
    return Chunk(
        first,
        end,
        {name: array[rows] for name, array in steps.items()},
        success[first:end],
        rng.bit_generator.state,
        behaviour.carried_state(),
    )


def restore(
    chunks: Sequence[Chunk],
    steps: Mapping[str, np.ndarray],
    success: np.ndarray,
    rng: np.random.Generator,
    behaviour: Behaviour,
) -> int:
    """Copy the saved `chunks` into a task's arrays, and put its `rng` and `behaviour` (both just
    made, as for episode 0) in the state the chunks end in; the episode to continue from."""
    end = 0
    for chunk in chunks:
        if chunk.first != end or chunk.end > len(success):
            raise ValueError(f"a chunk of episodes {chunk.first}-{chunk.end} after episode {end}")
        rows = slice(chunk.first * MAX_EPISODE_STEPS, chunk.end * MAX_EPISODE_STEPS)
        for name, array in steps.items():
            array[rows] = chunk.steps[name]
        success[chunk.first : chunk.end] = chunk.success
        end = chunk.end
    if chunks:
        rng.bit_generator.state = chunks[-1].rng_state
        behaviour.restore_carried_state(chunks[-1].carried)
    return end


class PartialTask:
    """The saved chunks of one task of one store, generated with `settings`."""

    def __init__(self, root: Path, task: str, settings: Mapping[str, Any]) -> None:
        self.folder = partial_folder(root, task)
        # As JSON gives them back, so that the comparison with a read index is exact.
        self.settings = json.loads(json.dumps(settings))
        self.entries: list[dict[str, Any]] = []

    def load(self) -> tuple[list[Chunk], str | None]:
        """The chunks an earlier run saved with these settings, in order, each checked against
        its sha256; and why saved episodes were discarded, if any were.

        What is not used is deleted, and the index cut to the chunks returned, which the
        following `save`s extend.
        """
        if not self.folder.is_dir():
            return [], None
        listed, problem = self._read_index()
        chunks: list[Chunk] = []
        for entry in listed:
            try:
                chunks.append(self._read_chunk(entry, chunks[-1].end if chunks else 0))
            except _BadChunk as bad:
                problem = str(bad)
                break
        self.entries = listed[: len(chunks)]
        if not self.entries:
            shutil.rmtree(self.folder)
            return [], problem
        if problem is not None:
            self._write_index()
        kept = {INDEX_NAME, *(entry["file"] for entry in self.entries)}
        for path in self.folder.iterdir():
            if path.name not in kept:  # a chunk never listed, a bad one, a killed temporary
                path.unlink()
        return chunks, problem

    def save(self, chunk: Chunk) -> None:
        """Write `chunk` whole, then the index that lists it."""
        arrays = {**chunk.steps, _SUCCESS: chunk.success}
        arrays.update({_CARRIED + name: value for name, value in chunk.carried.items()})
        buffer = io.BytesIO()
        # numpy's default, named so that mypy does not take **arrays to be able to fill it
        np.savez(buffer, allow_pickle=True, **arrays)
        data = buffer.getvalue()
        name = f"episodes-{chunk.first:06d}-{chunk.end:06d}.npz"
        entry = {
            "file": name,
            "first": chunk.first,
            "end": chunk.end,
            "sha256": hashlib.sha256(data).hexdigest(),
            "rng": chunk.rng_state,
        }
        try:
            with atomic_file(self.folder / name, "wb") as handle:
                handle.write(data)
            self._write_index([*self.entries, entry])
        except OSError as error:
            if is_out_of_space(error, self.folder, len(data)):
                raise out_of_space(self.folder.parent, len(data)) from None
            raise
        self.entries.append(entry)

    def _read_index(self) -> tuple[list[dict[str, Any]], str | None]:
        """The chunks the index lists if it was written with these settings; why not if not."""
        path = self.folder / INDEX_NAME
        try:
            index = json.loads(path.read_text())
        except FileNotFoundError:  # killed before its first chunk was listed
            return [], None
        except ValueError:
            return [], f"{path} is unreadable"
        if not isinstance(index, dict) or index.get("format") != _FORMAT:
            return [], f"{path} is unreadable"
        if index.get("settings") != self.settings:
            return [], f"{self.folder} holds episodes made with other settings"
        return list(index.get("chunks", [])), None

    def _read_chunk(self, entry: Mapping[str, Any], first: int) -> Chunk:
        """The chunk `entry` lists, which must begin at episode `first`."""
        try:
            name, start, end = str(entry["file"]), int(entry["first"]), int(entry["end"])
            expected, rng_state = str(entry["sha256"]), dict(entry["rng"])
        except (KeyError, TypeError, ValueError):
            raise _BadChunk(f"{self.folder / INDEX_NAME} lists a malformed chunk") from None
        path = self.folder / name
        if Path(name).name != name or start != first or end <= start:
            raise _BadChunk(f"{path} is not the chunk that follows episode {first}")
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise _BadChunk(f"{path} is missing") from None
        if hashlib.sha256(data).hexdigest() != expected:
            raise _BadChunk(f"{path} is corrupt (its sha256 differs from the index's)")
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
        success = arrays.pop(_SUCCESS)
        carried = {
            key.removeprefix(_CARRIED): arrays.pop(key)
            for key in list(arrays)
            if key.startswith(_CARRIED)
        }
        return Chunk(start, end, arrays, success, rng_state, carried)

    def _write_index(self, entries: list[dict[str, Any]] | None = None) -> None:
        chunks = self.entries if entries is None else entries
        index = {"format": _FORMAT, "settings": self.settings, "chunks": chunks}
        write_json(self.folder / INDEX_NAME, index)
