"""Samplers gather exactly the right rows: windows, padding, returns-to-go, prompts, transitions."""

from __future__ import annotations

import numpy as np
import pytest

from bench.data.samplers import (
    OfflineData,
    prompt_segments,
    sample_prompts,
    sample_segments,
    sample_transitions,
)
from bench.data.store import DatasetStore, add_tasks_to_manifest, write_task

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
