"""Samplers gather exactly the right rows: windows, padding, returns-to-go, prompts, transitions."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from bench.data.samplers import (
    OfflineData,
    episode_openings,
    prompt_segments,
    sample_prompts,
    sample_segments,
    sample_transitions,
)
from bench.data.store import DatasetStore, add_tasks_to_manifest, write_task
from bench.data.task_cache import STATS_NAME

LENGTHS = (3, 5, 4, 6)  # four episodes; with 2 prompt episodes the first two are for training


def _arrays(offset: float) -> dict[str, np.ndarray]:
    steps = sum(LENGTHS)
    starts = np.concatenate([[0], np.cumsum(LENGTHS)[:-1]]).astype(np.int64)
    observations = np.tile(np.arange(steps, dtype=np.float32)[:, None], (1, 39)) + offset
    timeouts = np.zeros(steps, dtype=bool)
    timeouts[np.cumsum(LENGTHS) - 1] = True
    return {
        "observations": observations,
        "actions": np.tile(np.arange(steps, dtype=np.float32)[:, None] / 100, (1, 4)),
        "rewards": np.arange(steps, dtype=np.float32),
        "terminals": np.zeros(steps, dtype=bool),
        "timeouts": timeouts,
        "episode_starts": starts,
    }


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> OfflineData:
    root = tmp_path_factory.mktemp("hand-made")
    entries = {
        "reach-v3": write_task(root, "reach-v3", _arrays(0.0)),
        "push-v3": write_task(root, "push-v3", _arrays(1000.0)),
    }
    add_tasks_to_manifest(root, entries, {"source": "test"})
    return OfflineData(DatasetStore(root), ["reach-v3", "push-v3"], fraction=1.0, prompt_episodes=2)


def test_split_keeps_the_last_episodes_as_prompts(data):
    task = data.task_data[0]
    assert task.train_starts.tolist() == [0, 3] and task.train_ends.tolist() == [3, 8]
    assert task.prompt_starts.tolist() == [8, 12] and task.prompt_ends.tolist() == [12, 18]
    assert task.train_steps == 8
    # Normalisation statistics come from training steps only (rows 0..7).
    assert task.state_mean[0] == pytest.approx(3.5)


def test_returns_to_go_sum_to_the_episode_end(data):
    rtg = data.task_data[0].returns_to_go
    assert rtg[3] == 3 + 4 + 5 + 6 + 7  # second episode: rows 3..7
    assert rtg[7] == 7
    assert rtg[0] == 0 + 1 + 2


def test_segments_are_left_padded_at_episode_ends(data):
    task = data.task_data[0]
    segment = sample_segments(task, 256, 4, np.random.default_rng(0), 10.0, 1000)
    raw = segment.states[:, :, 0] * task.state_std[0] + task.state_mean[0]
    for row in range(256):
        valid = segment.mask[row].numpy()
        assert valid[-1] and np.all(np.diff(valid.astype(int)) >= 0)  # padding only on the left
        rows = np.rint(raw[row][valid].numpy()).astype(int)
        assert np.all(np.diff(rows) == 1)
        episode = np.searchsorted(task.train_starts, rows[0], side="right") - 1
        assert rows[-1] < task.train_ends[episode]  # never crosses into the next episode
        assert (
            segment.timesteps[row][valid].tolist() == (rows - task.train_starts[episode]).tolist()
        )
        expected_rtg = task.returns_to_go[rows] / 10.0
        np.testing.assert_allclose(segment.returns_to_go[row, valid, 0].numpy(), expected_rtg)
        assert not segment.states[row][~valid].any() and not segment.actions[row][~valid].any()
    starts = set(np.rint(raw[:, -1].numpy()).astype(int))
    assert starts <= set(range(8))  # only training rows, and prompt rows never


def test_episode_openings_are_an_evaluation_s_first_contexts(data):
    task = data.task_data[0]
    for steps in (1, 2, 3):  # the training episodes are 3 and 5 steps long; the context 4
        opening = episode_openings(task, 2, steps, 4, 10.0, 1000)
        valid = opening.mask.numpy()
        assert (valid.sum(axis=1) == steps).all() and valid[:, -1].all()  # left-padded
        raw = opening.states[:, :, 0] * task.state_std[0] + task.state_mean[0]
        last = np.rint(raw[:, -1].numpy()).astype(int)
        # The latest two training episodes, at their step `steps` (its index steps - 1).
        assert last.tolist() == (task.train_starts[-2:] + steps - 1).tolist()
        assert opening.timesteps[:, -1].tolist() == [steps - 1, steps - 1]


def test_prompts_come_only_from_prompt_episodes(data):
    task = data.task_data[1]
    prompts = sample_prompts(task, 64, 5, np.random.default_rng(1), 1.0, 1000)
    last = np.rint(prompts.states[:, -1, 0].numpy() * task.state_std[0] + task.state_mean[0])
    assert set(last.astype(int).tolist()) == {1011, 1017}  # the last step of each prompt episode
    best = prompt_segments(task, np.array([task.best_prompt]), 5, 1.0, 1000)
    assert best.mask.all() and best.timesteps[0].tolist() == [1, 2, 3, 4, 5]


def test_transitions_never_draw_an_episode_last_step(data):
    batch = sample_transitions(data, 2048, np.random.default_rng(2))
    offsets = np.where(batch.task_ids == 1, 1000.0, 0.0)
    rows = (batch.observations[:, 0] - offsets).astype(int)
    assert set(rows.tolist()) == {0, 1, 3, 4, 5, 6}  # training rows except 2 and 7 (episode ends)
    np.testing.assert_array_equal(batch.next_observations[:, 0], batch.observations[:, 0] + 1)
    assert not batch.timeouts.any() and not batch.terminals.any()
    assert 0.4 < batch.task_ids.mean() < 0.6


def test_sub_optimal_uses_the_first_half(tmp_path):
    root = tmp_path / "store"
    entries = {"reach-v3": write_task(root, "reach-v3", _arrays(0.0))}
    add_tasks_to_manifest(root, entries, {"source": "test"})
    half = OfflineData(DatasetStore(root), ["reach-v3"], fraction=0.5, prompt_episodes=1)
    task = half.task_data[0]
    assert task.train_ends.tolist() == [3] and task.prompt_starts.tolist() == [3]


EPISODES, EPISODE_LENGTH = 8, 25  # fraction 1.0 trains on 6 episodes, 0.5 on 2 (2 prompts)


def todays_statistics(root: Path, task: str, train_steps: int) -> tuple[np.ndarray, np.ndarray]:
    """The normalisation as TaskData computed it before it was cached, from the mapped file."""
    train_obs = np.load(root / task / "observations.npy", mmap_mode="r")[:train_steps]
    mean = train_obs.mean(axis=0, dtype=np.float64).astype(np.float32)
    std = (train_obs.std(axis=0, dtype=np.float64) + 1e-6).astype(np.float32)
    return mean, std


def noisy_task(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Observations whose mean and std are not round numbers, so every last bit counts."""
    rng = np.random.default_rng(seed)
    steps = EPISODES * EPISODE_LENGTH
    scales, offsets = 10 ** rng.uniform(-4, 2, 39), 10 ** rng.uniform(-4, 3, 39) * seed
    observations = rng.standard_normal((steps, 39)) * scales + offsets
    return observations, rng.uniform(-1, 1, (steps, 4)), rng.uniform(0, 10, steps)


def cached_steps(task_dir: Path) -> list[int]:
    return sorted(int(n) for n in json.loads((task_dir / STATS_NAME).read_text())["statistics"])


@pytest.mark.parametrize(
    "fraction, prompt_episodes", [(1.0, 2), (0.5, 2), (1.0, 1)], ids=["near", "sub", "custom"]
)
def test_statistics_are_bit_for_bit_todays_at_the_first_open_and_from_the_cache(
    tmp_path, write_store, fraction, prompt_episodes
):
    root = tmp_path / "store"
    write_store(root, {"reach-v3": noisy_task(1)}, EPISODE_LENGTH)

    for _ in range(2):  # the custom split is computed at the first open, then read back
        data = OfflineData(DatasetStore(root), ["reach-v3"], fraction, prompt_episodes)
        task = data.task_data[0]
        mean, std = todays_statistics(root, "reach-v3", task.train_steps)
        assert task.state_mean.dtype == task.state_std.dtype == np.float32
        assert task.state_mean.tobytes() == mean.tobytes()
        assert task.state_std.tobytes() == std.tobytes()
    assert task.train_steps in cached_steps(root / "reach-v3")


def test_written_tasks_carry_the_configured_splits_statistics_and_opens_use_them(
    tmp_path, write_store
):
    root = tmp_path / "store"
    write_store(root, {"reach-v3": noisy_task(1)}, EPISODE_LENGTH)
    near_steps, sub_steps = 6 * EPISODE_LENGTH, 2 * EPISODE_LENGTH
    assert cached_steps(root / "reach-v3") == [sub_steps, near_steps]

    # A planted value proves that opening takes the statistics from the cache, not the data.
    sidecar = root / "reach-v3" / STATS_NAME
    cache = json.loads(sidecar.read_text())
    cache["statistics"][str(near_steps)]["mean"] = [42.0] * 39
    sidecar.write_text(json.dumps(cache))
    data = OfflineData(DatasetStore(root), ["reach-v3"], fraction=1.0, prompt_episodes=2)
    assert data.task_data[0].state_mean.tolist() == [42.0] * 39


def test_statistics_of_rewritten_observations_are_computed_again(tmp_path, write_store):
    root = tmp_path / "store"
    store = write_store(root, {"reach-v3": noisy_task(1)}, EPISODE_LENGTH)
    # Other values in the same shape, the manifest updated to them, the old cache left behind.
    path = root / "reach-v3" / "observations.npy"
    np.save(path, noisy_task(2)[0].astype(np.float32))
    entry = store.manifest["tasks"]["reach-v3"]
    entry["files"]["observations.npy"]["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    add_tasks_to_manifest(root, {"reach-v3": entry}, {"source": "test"})

    data = OfflineData(DatasetStore(root), ["reach-v3"], fraction=1.0, prompt_episodes=2)
    mean, std = todays_statistics(root, "reach-v3", data.task_data[0].train_steps)
    assert data.task_data[0].state_mean.tobytes() == mean.tobytes()
    assert data.task_data[0].state_std.tobytes() == std.tobytes()
    assert cached_steps(root / "reach-v3") == [data.task_data[0].train_steps]  # stale ones gone


@pytest.mark.parametrize("fraction", [1.0, 0.5])
def test_returns_to_go_are_bit_for_bit_todays(tmp_path, write_store, fraction):
    root = tmp_path / "store"
    write_store(root, {"reach-v3": noisy_task(1)}, EPISODE_LENGTH)
    task = OfflineData(DatasetStore(root), ["reach-v3"], fraction, 2).task_data[0]

    # The gathers TaskData did before it used that episodes are contiguous from row 0.
    used = round(EPISODES * fraction)
    starts = np.arange(used) * EPISODE_LENGTH
    ends = starts + EPISODE_LENGTH
    rewards = np.load(root / "reach-v3" / "rewards.npy")[: ends[-1]]
    cumulative = np.concatenate([[0.0], np.cumsum(rewards, dtype=np.float64)])
    episode_of_step = np.repeat(np.arange(len(starts)), ends - starts)
    step = np.arange(len(episode_of_step))
    expected = (cumulative[ends[episode_of_step]] - cumulative[step]).astype(np.float32)
    assert task.returns_to_go.tobytes() == expected.tobytes()


def test_an_unseen_task_gets_the_training_task_with_the_nearest_prompt(tmp_path, write_store):
    """Prompt episodes (the last 2 of 4) decide: t3's prompt observations sit nearest t1's."""
    rng = np.random.default_rng(1)
    centres = {"t0": 0.0, "t1": 5.0, "t2": 10.0, "t3": 6.0}
    arrays = {
        t: (rng.normal(size=(40, 3)) * 0.1 + c, np.zeros((40, 2)), np.zeros(40))
        for t, c in centres.items()
    }
    store = write_store(tmp_path / "store", arrays, episode_length=10)
    data = OfflineData(store, ["t0", "t1", "t2"], 1.0, 2, unseen_tasks=["t3"])
    assert data.num_tasks == 3 and data.task(3).task == "t3" and data.task(3).task_id == 3
    assert data.nearest_training_task(3) == 1
    assert [data.nearest_training_task(i) for i in range(3)] == [0, 1, 2]  # seen: itself
