"""The generators: layout, determinism, resuming, the noise schedule, and the replay-like
data's learning curve, systematic mistakes and summary."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from bench.cli import main
from bench.data.behaviour import BEHAVIOURS, noise_schedule
from bench.data.generate import (
    TaskRollout,
    generate_dataset,
    generate_task,
    generator_name,
    generator_settings,
)
from bench.data.locations import STORE_PREFIXES, dataset_path
from bench.data.probe import probe_task
from bench.data.store import ARRAY_NAMES, DatasetStore
from bench.data.summary import MISSING, episode_returns, summarize, text_bars
from bench.errors import UserError
from bench.suites import get_suite

TASKS = ["basketball-v3", "reach-v3"]
EPISODES = 3


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> DatasetStore:
    root = tmp_path_factory.mktemp("scripted")
    return generate_dataset(root, TASKS, EPISODES, seed=0, pool_seed=0, workers=2, progress=False)


def file_mtimes(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.glob("*/*.npy")}


def test_noise_schedule_anneals_from_random_to_pure_expert():
    assert noise_schedule(0, 10) == (1.0, 0.5)
    assert noise_schedule(9, 10) == (0.0, 0.0)
    middle = noise_schedule(3, 7)
    assert middle == pytest.approx((0.5, 0.25))
    probs = [noise_schedule(e, 10)[0] for e in range(10)]
    assert probs == sorted(probs, reverse=True)


def test_each_task_holds_full_500_step_episodes_ending_in_timeouts(generated):
    assert generated.tasks == TASKS
    for task in TASKS:
        arrays = generated.open_task(task)
        assert arrays.observations.shape == (EPISODES * 500, 39)
        assert arrays.actions.shape == (EPISODES * 500, 4)
        assert arrays.rewards.shape == (EPISODES * 500,)
        np.testing.assert_array_equal(np.flatnonzero(arrays.timeouts), [499, 999, 1499])
        assert not arrays.terminals.any()
        np.testing.assert_array_equal(arrays.episode_starts, [0, 500, 1000])
        assert np.abs(arrays.actions).max() <= 1.0
    generator = generated.manifest["generator"]
    assert generated.manifest["source"] == "scripted"
    assert (generator["episodes_per_task"], generator["seed"], generator["pool_seed"]) == (3, 0, 0)


def test_episodes_go_from_random_to_expert(generated):
    # Uniform-random actions earn ~230 on reach, the expert ~4800 (notes/metaworld-v3.md).
    arrays = generated.open_task("reach-v3")
    returns = [arrays.rewards[s : s + 500].sum() for s in arrays.episode_starts]
    assert returns[0] < 1000 < 4000 < returns[-1]


def test_generation_is_deterministic_across_workers_and_resumes(generated, tmp_path):
    # One task first, then both with one worker: resuming and worker count change nothing.
    generate_dataset(tmp_path, ["reach-v3"], EPISODES, workers=1, progress=False)
    again = generate_dataset(tmp_path, TASKS, EPISODES, workers=1, progress=False)

    assert again.tasks == TASKS
    for task in TASKS:
        for name in ARRAY_NAMES:
            first = (generated.root / task / f"{name}.npy").read_bytes()
            assert (tmp_path / task / f"{name}.npy").read_bytes() == first, (task, name)


def test_rerun_skips_finished_tasks(generated):
    manifest_before = (generated.root / "manifest.json").read_text()
    mtimes_before = file_mtimes(generated.root)

    generate_dataset(generated.root, TASKS, EPISODES, workers=2, progress=False)

    assert (generated.root / "manifest.json").read_text() == manifest_before
    assert file_mtimes(generated.root) == mtimes_before


@pytest.mark.parametrize(
    "settings, named",
    [({"episodes_per_task": 4}, "episodes_per_task 3"), ({"seed": 1}, "seed 0"),
     ({"pool_seed": 2}, "pool_seed 0")],
)  # fmt: skip
def test_other_settings_in_an_existing_dataset_are_refused(generated, settings, named):
    arguments = {"episodes_per_task": EPISODES, "seed": 0, "pool_seed": 0, **settings}
    with pytest.raises(UserError, match=f"other settings: {named}"):
        generate_dataset(generated.root, TASKS, progress=False, **arguments)


def test_unknown_task_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="unknown Meta-World v3 task 'reach-v2'"):
        generate_dataset(tmp_path, ["reach-v2"], 1, progress=False)
    assert not (tmp_path / "manifest.json").exists()


def test_rerun_removes_staging_folders_of_dead_writers(generated):
    finished = subprocess.Popen(["true"])
    finished.wait()
    abandoned = generated.root / f".tmp-reach-v3-{finished.pid}@{socket.gethostname()}"
    abandoned.mkdir()
    (abandoned / "observations.npy").write_bytes(b"half a file")

    generate_dataset(generated.root, TASKS, EPISODES, workers=2, progress=False)

    assert not abandoned.exists()


def listed_tasks(store: Path) -> list[str]:
    try:
        return list(json.loads((store / "manifest.json").read_text())["tasks"])
    except FileNotFoundError:
        return []


def wait_until(condition: Callable[[], object], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_ctrl_c_saves_finished_tasks_in_one_line_and_a_rerun_completes_them(tmp_path):
    store = tmp_path / "replay-ep1"
    # In a session of its own, like a shell job: a terminal's Ctrl-C reaches its whole process
    # group, the generation's workers included.
    process = start_generation(tmp_path, "progress=false")
    try:
        assert wait_until(lambda: listed_tasks(store) or process.poll() is not None, 120)
        os.killpg(process.pid, signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)

    saved = listed_tasks(store)
    assert "Traceback" not in stderr
    assert stderr == (
        f"interrupted: {len(saved)} of 5 tasks are saved in {store}; "
        "run the same command to resume\n"
    )
    assert process.returncode == 130
    assert 1 <= len(saved) < 5
    assert not list(store.glob(".tmp-*"))

    def group_is_gone() -> bool:  # no worker lives on to write after the parent has gone
        try:
            os.killpg(process.pid, 0)
        except ProcessLookupError:
            return True
        return False

    assert wait_until(group_is_gone, 10)

    rerun = ["tasks=mt5", "episodes_per_task=1", f"data.root={tmp_path}", "progress=false"]
    assert main(["data", "generate", *rerun]) == 0
    assert DatasetStore(store).tasks == list(get_suite("mt5").tasks)
    assert main(["data", "verify", str(store)]) == 0


# The replay generator (data.generator=replay, the default) ----------------------------------

RUN_TASK = "reach-v3"  # the fastest task, and one the expert never fails
RUN_EPISODES = 12


@pytest.fixture(scope="module")
def learning_runs() -> dict[str, TaskRollout]:
    """reach-v3's 12 episodes from each generator, rolled out in this process."""
    return {
        name: generate_task(RUN_TASK, RUN_EPISODES, 0, 0, behaviour)
        for name, behaviour in BEHAVIOURS.items()
    }


def test_every_generator_has_a_store_folder():
    assert set(STORE_PREFIXES) == set(BEHAVIOURS)
    data = {"root": "d", "episodes_per_task": 5}
    assert dataset_path(data) == Path("d/replay-ep5")
    assert dataset_path({**data, "generator": "noisy_expert"}) == Path("d/scripted-ep5")
    assert dataset_path({**data, "generator": "noisy_expert"}, get_suite("cheetah_vel")) == Path(
        "d/sac-ep5"
    )


def test_replay_returns_rise_over_the_learning_run(learning_runs):
    rollout = learning_runs["replay"]
    returns = episode_returns(rollout.arrays["rewards"], rollout.arrays["episode_starts"])
    ranks = np.argsort(np.argsort(returns))
    spearman = np.corrcoef(ranks, np.arange(RUN_EPISODES))[0, 1]
    assert spearman > 0.5, returns
    assert not rollout.success[0] and rollout.success[-1]


def test_replay_mistakes_are_systematic_where_noisy_ones_average_away(learning_runs):
    # Fit the sub-optimal half's actions as scale * expert action + intercept, per component.
    # The noisy expert's perturbations are zero-mean given the state (random actions replace the
    # expert's, which only lowers the scale): its intercept is ~0 (0.01-0.03 over seeds 0-5).
    # The replay learner's habits and misconceptions persist: 0.11-0.31 over the same seeds.
    intercepts = {}
    for name, rollout in learning_runs.items():
        arrays = rollout.arrays
        row = probe_task(RUN_TASK, arrays["observations"], arrays["actions"],
                         arrays["episode_starts"])  # fmt: skip
        intercepts[name] = row["|intercept|"]
    assert intercepts["noisy_expert"] < 0.05, intercepts
    assert intercepts["replay"] > max(0.1, 3 * intercepts["noisy_expert"]), intercepts


@pytest.fixture(scope="module")
def replay_store(tmp_path_factory: pytest.TempPathFactory) -> DatasetStore:
    """The same task and episodes through `generate_dataset` (the default generator)."""
    root = tmp_path_factory.mktemp("replay")
    return generate_dataset(root, [RUN_TASK], RUN_EPISODES, workers=1, progress=False)


def test_replay_is_deterministic_in_workers_and_summarised_in_the_manifest(
    learning_runs, replay_store, capsys
):
    store, root = replay_store, replay_store.root
    rollout = learning_runs["replay"]
    for name in ARRAY_NAMES:  # a worker process gives the bytes of this one
        on_disk = np.load(root / RUN_TASK / f"{name}.npy")
        assert on_disk.tobytes() == rollout.arrays[name].tobytes(), name
    assert generator_name(store.manifest) == "replay"
    summary = store.manifest["tasks"][RUN_TASK]["summary"]
    returns = episode_returns(rollout.arrays["rewards"], rollout.arrays["episode_starts"])
    assert summary == summarize(returns, rollout.success)
    assert sum(summary["histogram"]["counts"]) == RUN_EPISODES
    assert summary["returns"]["min"] == pytest.approx(returns.min(), abs=0.01)
    assert summary["success"]["first_half"] == rollout.success[:6].mean()
    by_tenth = summary["success"]["by_tenth"]
    assert len(by_tenth) == 10 and by_tenth[0] == 0 and by_tenth[-1] == 1

    assert main(["data", "info", str(root)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{root}: replay, {RUN_EPISODES} episodes per task, seed 0\n")
    row = next(line for line in out.splitlines() if RUN_TASK in line)
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert cells[:2] == [RUN_TASK, str(RUN_EPISODES)]
    assert cells[5].startswith("[") and len(cells[5]) == 12  # one character per bin
    assert cells[6:8] == [f"{rollout.success.mean():.2f}", f"{rollout.success[:6].mean():.2f}"]
    assert cells[8] == f"[{text_bars(summary['success']['by_tenth'], 1.0)}]"


def test_info_on_a_store_without_summaries_shows_dashes(replay_store, tmp_path, capsys):
    manifest = json.loads((replay_store.root / "manifest.json").read_text())  # all it reads
    del manifest["tasks"][RUN_TASK]["summary"]  # as a store made before summaries existed
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))

    assert main(["data", "info", str(tmp_path)]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if RUN_TASK in line)
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert cells[1:] == [str(RUN_EPISODES), *[MISSING] * 7]


@pytest.mark.parametrize("override", ["data.generator=bogus", "generator=bogus"])
def test_an_unknown_generator_is_refused_in_one_line_before_anything_is_made(
    tmp_path, capsys, override
):
    root = tmp_path / "data"
    assert main(["data", "generate", "tasks=mt5", override, f"data.root={root}"]) == 2
    assert capsys.readouterr().err == (
        "error: unknown data.generator 'bogus'; choose one of: noisy_expert, replay\n"
    )
    assert not root.exists()


def test_a_mistyped_shorthand_is_named_with_its_closest_one(tmp_path, capsys):
    root = tmp_path / "data"
    assert main(["data", "generate", "tasks=mt5", "episode_per_task=6", f"data.root={root}"]) == 2
    assert capsys.readouterr().err == (
        "error: unknown key 'episode_per_task' (did you mean 'episodes_per_task'?); this "
        "command's shorthands: episodes_per_task, workers, generator\n"
    )
    assert not root.exists()


def test_a_run_with_an_unknown_generator_is_refused_before_anything_is_made(tmp_path, capsys):
    args = ["run", "method=mtbc", "tasks=mt5", "scale=smoke", "data.generator=bogus",
            f"data.root={tmp_path / 'data'}", f"run.root={tmp_path / 'runs'}"]  # fmt: skip
    assert main(args) == 2
    assert "unknown data.generator 'bogus'" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_a_slurm_generation_job_makes_the_generator_it_was_given(tmp_path):
    from bench.config import compose_run
    from bench.slurm import generate_task_job

    data = compose_run(["data.generator=noisy_expert", "data.episodes_per_task=1"]).config["data"]
    data = {**data, "root": str(tmp_path)}
    assert generate_task_job(RUN_TASK, data, str(Path.cwd())) == RUN_TASK
    store = DatasetStore(tmp_path / "scripted-ep1")
    assert store.tasks == [RUN_TASK] and generator_name(store.manifest) == "noisy_expert"


def test_generator_names_of_stores():
    assert generator_name({"source": "scripted", "generator": {"name": "replay"}}) == "replay"
    assert generator_name({"source": "scripted", "generator": {"seed": 0}}) == "noisy_expert"
    assert generator_name({"source": "sac", "generator": {}}) == "sac"
    assert generator_name({"source": "npz-import"}) == "npz-import"


def test_noisy_expert_settings_are_those_of_the_stores_made_before_generators_had_names():
    settings = generator_settings("noisy_expert", 3, 0, 0)
    assert "name" not in settings
    assert list(settings) == ["policy", "episodes_per_task", "episode_steps", "seed",
                              "pool_seed", "rng", "goals", "noise_schedule", "metaworld",
                              "mujoco"]  # fmt: skip
    assert settings["noise_schedule"] == (
        "progress = e / max(N - 1, 1); random_prob = 1 - progress; noise_std = 0.5 * (1 - progress)"
    )
    assert generator_settings("replay", 3, 0, 0)["name"] == "replay"


# Faults: another generator, a killed parent, a full disk, what killed writers leave ----------


def start_generation(data_root: Path, *extra: str) -> subprocess.Popen:
    """`bench data generate tasks=mt5 episodes_per_task=1` into `data_root`, in a session of its
    own; stderr, which its workers share, piped."""
    arguments = ["tasks=mt5", "episodes_per_task=1", f"data.root={data_root}", *extra]
    return subprocess.Popen(
        [sys.executable, "-m", "bench.cli", "data", "generate", *arguments],
        cwd=data_root,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_two_processes_making_one_store_make_each_task_once_and_both_succeed(tmp_path):
    store = tmp_path / "replay-ep1"
    first = start_generation(tmp_path, "progress=false")
    second = start_generation(tmp_path, "progress=false")
    try:
        errors = [process.communicate(timeout=240)[1] for process in (first, second)]
    finally:
        for process in (first, second):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)

    assert [first.returncode, second.returncode] == [0, 0], errors
    assert not any("Traceback" in error for error in errors)
    waited = [error for error in errors if error]
    assert waited and all(
        error.startswith(f"waiting for another process that is making {store} (")
        and error.count("\n") == 1
        for error in waited
    ), errors
    assert DatasetStore(store).tasks == list(get_suite("mt5").tasks)
    assert main(["data", "verify", str(store)]) == 0


def test_workers_whose_parent_is_killed_end_quietly(tmp_path):
    process = start_generation(tmp_path, "episodes_per_task=4", "progress=true")
    stderr: list[str] = []
    reader = threading.Thread(target=lambda: stderr.extend(iter(process.stderr.readline, "")))
    reader.start()
    try:
        # The bar counts episodes: the workers are past their start, sending progress.
        assert wait_until(lambda: re.search(r" [1-9][0-9]*/20 \[", "".join(stderr)), 120)
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        reader.join(timeout=60)  # the workers hold the pipe: it ends when the last one does
        assert not reader.is_alive(), "a worker lived on after its parent was killed"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    assert "Traceback" not in "".join(stderr) and "BrokenPipeError" not in "".join(stderr)


@pytest.fixture
def small_disk(mount_tmpfs: Callable[[str], Path]) -> Path:
    """A 1 MiB tmpfs: room for the two tiny tasks, no more."""
    return mount_tmpfs("1m")


def test_a_full_disk_is_one_line_and_the_generation_resumes_identically(small_disk, tiny_store):
    store, filler, tasks = small_disk / "replay-ep4", small_disk / "filler", tiny_store.tasks

    def fill_once_the_first_task_is_listed() -> None:
        if wait_until(lambda: listed_tasks(store), 120):
            with open(filler, "wb") as file, contextlib.suppress(OSError):
                while True:
                    file.write(bytes(16 << 10))
                    file.flush()

    filling = threading.Thread(target=fill_once_the_first_task_is_listed)
    filling.start()
    with pytest.raises(UserError) as full:
        generate_dataset(store, tasks, 4, workers=1, progress=False)
    filling.join()
    message = str(full.value)
    assert re.fullmatch(
        rf"no space left on {small_disk}: 0\.0 MB free, about 0\.4 MB needed for {store}; free "
        r"some space \(or choose another data\.root\), then run the same command to resume",
        message,
    ), message
    assert listed_tasks(store) == tasks[:1] and not list(store.glob(".tmp-*"))
    with pytest.raises(UserError, match=re.escape(f"no space left on {small_disk}: 0.0 MB free")):
        generate_dataset(store, tasks, 4, workers=1, progress=False)  # checked up front

    filler.unlink()
    resumed = generate_dataset(store, tasks, 4, workers=1, progress=False)
    for task in tasks:  # byte for byte what a generation that never failed wrote
        assert resumed.manifest["tasks"][task] == tiny_store.manifest["tasks"][task]


def test_a_rerun_removes_the_temporaries_of_killed_writers(tiny_store):
    root, task = tiny_store.root, tiny_store.tasks[0]
    finished = subprocess.Popen(["true"])
    finished.wait()
    stale = [
        root / f".manifest.json.tmp-{finished.pid}",  # no manifest writer: its lock is free
        root / task / f".stats.json.tmp-{os.getpid()}",  # an hour old: no write takes so long
    ]
    live = root / task / f".verified.json.tmp-{os.getpid()}"  # a stamp being written right now
    for path in [*stale, live]:
        path.write_text("{")
    os.utime(stale[1], (time.time() - 3600, time.time() - 3600))

    generate_dataset(root, tiny_store.tasks, 4, progress=False)

    assert [path.exists() for path in [*stale, live]] == [False, False, True]
    live.unlink()


def test_a_finished_store_on_a_read_only_mount_is_still_checked_and_served(tiny_store, tmp_path):
    mount = tmp_path / "read-only"
    mount.mkdir()
    bound = subprocess.run(["mount", "--bind", "-o", "ro", str(tiny_store.root), str(mount)],
                           capture_output=True)  # fmt: skip
    if bound.returncode != 0:
        pytest.skip("bind-mounting read-only is not permitted here")
    try:
        with pytest.raises(OSError):
            (mount / "probe").write_text("")  # really read-only, even for root
        store = generate_dataset(mount, tiny_store.tasks, 4, progress=False)  # no lock to take
        store.verify()
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)
