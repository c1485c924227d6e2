"""Generated datasets for Meta-World v3, from random to expert within every task.

The paper's MT50 data is a SAC replay buffer "from random to expert". We emulate it with
Meta-World's scripted experts acted out by a behaviour (bench/data/behaviour.py, chosen by
`data.generator`): `replay` (the default), one learning run per task with systematic mistakes
that fade as it becomes the expert, or `noisy_expert`, the expert with annealed i.i.d. noise and
random actions. Each task's manifest entry also holds a summary of its episodes
(bench/data/summary.py).

Generation is long work (MT50 near-optimal is ~3.6 h on 2 cores): tasks run in parallel worker
processes, each finished task is written and added to the manifest at once, and a re-run skips
the tasks the manifest already lists whose files are intact; damaged ones are generated again.
Inside a task, a worker saves its episodes in checksummed chunks (bench.data.chunks), from which
a rerun resumes the task ("resuming <task>: N of M episodes already made"), so a kill, even -9,
loses at most one chunk, and the store ends identical to one never interrupted.
Ctrl-C (or SIGTERM) stops the workers at once and keeps every task already written. Two
processes asking for the same missing tasks make each once: the second waits for the first
(bench.data.writers). A full disk stops it in one line, after the same check up front.
"""

from __future__ import annotations

import errno
import importlib.metadata
import multiprocessing
import signal
import sys
from collections.abc import Callable, Mapping, Sequence
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any, NamedTuple, cast

import numpy as np
from tqdm import tqdm

from bench.data.behaviour import BEHAVIOURS, BehaviourFactory
from bench.data.chunks import (
    CHUNK_EPISODES,
    Chunk,
    PartialTask,
    chunk_ending,
    chunked_episodes,
    remove_partial,
    restore,
)
from bench.data.disk_space import OutOfSpace, check_room, out_of_space, with_margin
from bench.data.locations import DEFAULT_GENERATOR
from bench.data.processes import exit_reason, kill_workers, start_worker
from bench.data.store import (
    MANIFEST_NAME,
    DatasetStore,
    add_tasks_to_manifest,
    provenance,
    read_manifest,
    task_file_bytes,
    write_task,
)
from bench.data.summary import episode_returns, summarize
from bench.data.writers import TaskLocks, remove_abandoned_staging, remove_stale_temporaries
from bench.envs.metaworld import (
    ACTION_DIM,
    MAX_EPISODE_STEPS,
    OBSERVATION_DIM,
    make_env,
    sample_goals,
)
from bench.errors import Interrupted, UserError, unknown_choice
from bench.stop_signals import StopRequest, handle_stop_signals
from bench.suites import HARMODT_MT50_ORDER, v3_name

SOURCE = "scripted"  # a generated Meta-World store's manifest `source`, whichever generator
_POLL_SECONDS = 0.25  # how often the parent refreshes the bar and looks for a stop request


class TaskRollout(NamedTuple):
    """One task's generated data: the store's arrays, and whether each episode succeeded
    (`info["success"]` at any step; the arrays do not keep it)."""

    arrays: dict[str, np.ndarray]
    success: np.ndarray


def generate_task(
    task: str,
    episodes: int,
    seed: int,
    pool_seed: int,
    behaviour: BehaviourFactory = BEHAVIOURS[DEFAULT_GENERATOR],
    on_episode: Callable[[], None] | None = None,
    resume: Sequence[Chunk] = (),
    on_chunk: Callable[[Chunk], None] | None = None,
) -> TaskRollout:
    """Roll `episodes` full episodes of `behaviour` (a class of bench/data/behaviour.py).

    Deterministic given the arguments: Meta-World's only randomness is the goal, and the goals
    and the behaviour's randomness both come from one generator seeded by (seed, task index),
    goals first. `on_episode` is called after each episode (progress reporting), `on_chunk`
    after each CHUNK_EPISODES episodes but the last ones (to save them); `resume`, the chunks
    an interrupted run saved, continues it where they end, with the same result.
    """
    rng = np.random.default_rng([seed, _task_index(task)])
    goals = sample_goals(task, episodes, pool_seed, rng)
    policy = behaviour(task, episodes, rng)
    num_steps = episodes * MAX_EPISODE_STEPS
    steps = {
        "observations": np.empty((num_steps, OBSERVATION_DIM), dtype=np.float32),
        "actions": np.empty((num_steps, ACTION_DIM), dtype=np.float32),
        "rewards": np.empty(num_steps, dtype=np.float32),
        "terminals": np.zeros(num_steps, dtype=bool),
        "timeouts": np.zeros(num_steps, dtype=bool),
    }
    observations, actions, rewards = steps["observations"], steps["actions"], steps["rewards"]
    terminals, timeouts = steps["terminals"], steps["timeouts"]
    success = np.zeros(episodes, dtype=bool)
    first = restore(resume, steps, success, rng, policy)

    # One env for all episodes: set_task + reset gives the same states as a fresh env, and
    # building an env costs as much as ~100 steps.
    env = make_env(task, goals[0])
    for episode in range(first, episodes):
        goal = goals[episode]
        policy.start_episode(episode)
        env.set_task(goal)
        observation, _ = env.reset()
        start = episode * MAX_EPISODE_STEPS
        for row in range(start, start + MAX_EPISODE_STEPS):
            action = policy.act(observation)
            observations[row] = observation
            actions[row] = action
            observation, reward, terminated, truncated, info = env.step(action)
            rewards[row] = reward
            terminals[row] = terminated
            timeouts[row] = truncated
            success[episode] |= info["success"] > 0
        if on_episode is not None:
            on_episode()
        done = episode + 1
        if on_chunk is not None and done % CHUNK_EPISODES == 0 and done < episodes:
            on_chunk(chunk_ending(done, steps, success, rng, policy))
    env.close()

    episode_starts = np.arange(episodes, dtype=np.int64) * MAX_EPISODE_STEPS
    last_steps = episode_starts + MAX_EPISODE_STEPS - 1
    # The whole format assumes the raw env's semantics: no termination, truncation at step 500.
    if terminals.any() or timeouts.sum() != episodes or not timeouts[last_steps].all():
        raise RuntimeError(f"{task}: Meta-World no longer truncates exactly at step 500 only")
    arrays = {**steps, "episode_starts": episode_starts}
    return TaskRollout(arrays, success)


def generate_dataset(
    root: Path,
    tasks: Sequence[str],
    episodes_per_task: int,
    seed: int = 0,
    pool_seed: int = 0,
    workers: int = 2,
    progress: bool = True,
    verify: bool = False,
    generator: str = DEFAULT_GENERATOR,
) -> DatasetStore:
    """Generate, finish generating or repair a dataset of `generator` (`replay` or
    `noisy_expert`, bench/data/behaviour.py BEHAVIOURS) in `root`; its store.

    The requested tasks the manifest lists are checked first: the sizes of their files always
    (cheap), their sha256 too with `verify`. A damaged task is generated again like a missing
    one, and each repair is reported on stderr. SIGINT or SIGTERM stops the work (the running
    workers killed, the tasks written kept) and raises Interrupted. Tasks another process is
    making are waited for (said on stderr), then checked like the others.
    """
    root = Path(root)
    tasks = list(dict.fromkeys(tasks))
    if not tasks:
        raise UserError("no tasks to generate data for")
    for task in tasks:
        _task_index(task)
    if generator not in BEHAVIOURS:
        raise unknown_choice("data.generator", generator, BEHAVIOURS)
    if episodes_per_task < 1 or workers < 1 or seed < 0 or pool_seed < 0:
        raise UserError(
            f"episodes per task ({episodes_per_task}) and workers ({workers}) must be positive, "
            f"seed ({seed}) and pool seed ({pool_seed}) non-negative"
        )
    header = {
        "source": SOURCE,
        "generator": generator_settings(generator, episodes_per_task, seed, pool_seed),
        **provenance(),
    }
    locks = TaskLocks(root)

    def make(batch: list[str]) -> bool:
        """Generate those of `batch` (whose locks are held) that are missing or damaged, each
        lock released once its task needs nothing more; whether any was generated."""
        todo, damage = tasks_to_write(root, batch, header, verify, stop)
        locks.release(task for task in batch if task not in todo)
        if not todo:
            return False
        # The chunks of a task stay on disk until it is listed: one task's more per worker.
        chunks = min(workers, len(todo)) * _task_bytes(header, chunked=True)
        check_room(root, len(todo) * _task_bytes(header) + chunks)
        written = _generate_in_workers(
            root, todo, damage, header, workers, progress, stop, lambda t: locks.release([t])
        )
        if stop.requested:
            raise _interrupted(root, tasks, set(damage) - set(written), stop)
        return True

    with handle_stop_signals(StopRequest(defer=True, insist=False)) as stop:
        try:
            # A task is checked, and made if need be, only under its lock: ours first, then
            # those another process holds, once it has let go of them.
            mine = locks.take_free(tasks)
            others = [task for task in tasks if task not in mine]
            made = make(mine)
            if others:
                if not locks.wait_saying(others, lambda: stop.requested):
                    raise _interrupted(root, tasks, set(), stop)
                made = make(others) or made
            if made:
                _list_in_order(root, tasks, header)
        finally:
            locks.release_all()
    return DatasetStore(root)


def _interrupted(
    root: Path, tasks: list[str], unrepaired: set[str], stop: StopRequest
) -> Interrupted:
    """Interrupted, counting the `tasks` the manifest lists that are not damaged."""
    listed = read_manifest(root)["tasks"] if (root / MANIFEST_NAME).exists() else {}
    saved = sum(task in listed and task not in unrepaired for task in tasks)
    return Interrupted(
        f"interrupted: {saved} of {len(tasks)} tasks are saved in {root}; "
        "run the same command to resume",
        stop.signal_number or signal.SIGINT,
    )


def _task_bytes(header: Mapping[str, Any], chunked: bool = False) -> int:
    """About how much disk one generated task of `header`'s settings takes (`chunked`: its
    chunks, saved while it is generated)."""
    episodes = int(header["generator"]["episodes_per_task"])
    if chunked:
        episodes = chunked_episodes(episodes)
        if episodes == 0:
            return 0
    steps = episodes * MAX_EPISODE_STEPS
    return with_margin(task_file_bytes(steps, episodes, OBSERVATION_DIM, ACTION_DIM))


def generator_name(manifest: Mapping[str, Any]) -> str:
    """Which generator made a store (its manifest or a generation's header): `replay` or
    `noisy_expert` for generated Meta-World data (stores made before generators had names are
    noisy_expert's), else the store's source (`sac`, `npz-import`, ...)."""
    source = str(manifest.get("source"))
    if source != SOURCE:
        return source
    return str((manifest.get("generator") or {}).get("name", "noisy_expert"))


def _task_index(task: str) -> int:
    """The task's index in the paper's MT50 order: a seed component that no suite choice shifts."""
    stems = {v3_name(stem): index for index, stem in enumerate(HARMODT_MT50_ORDER)}
    if task not in stems:
        raise unknown_choice("Meta-World v3 task", task, stems)
    return stems[task]


def generator_settings(
    generator: str, episodes_per_task: int, seed: int, pool_seed: int
) -> dict[str, Any]:
    """Everything that decides the data; a resumed generation must match it exactly.

    noisy_expert's are those of the stores made before the generator had a name (no `name`,
    its schedule under `noise_schedule`), so that those stores resume and hash as they did.
    """
    schedule = BEHAVIOURS[generator].SCHEDULE
    named = {"name": generator} if generator != "noisy_expert" else {}
    scheduled = {"noise_schedule" if generator == "noisy_expert" else "schedule": schedule}
    return {
        **named,
        "policy": "metaworld.policies scripted experts, actions clipped to [-1, 1]",
        "episodes_per_task": episodes_per_task,
        "episode_steps": MAX_EPISODE_STEPS,
        "seed": seed,
        "pool_seed": pool_seed,
        "rng": "numpy.random.default_rng([seed, index of the task in HARMODT_MT50_ORDER])",
        "goals": "bench.envs.metaworld.sample_goals from metaworld.MT1(task, seed=pool_seed)",
        **scheduled,
        "metaworld": importlib.metadata.version("metaworld"),
        "mujoco": importlib.metadata.version("mujoco"),
    }


def tasks_to_write(
    root: Path, tasks: Sequence[str], header: dict[str, Any], verify: bool, stop: StopRequest
) -> tuple[list[str], dict[str, str]]:
    """(the `tasks` a generator must write, {damaged task: what is wrong with it}) in `root`.

    A generated store is resumed only with the settings in `header`; abandoned staging folders
    are removed first, and the saved chunks of the intact listed `tasks` (a kill between listing
    a task and removing them) after the check. A stop requested while the files are checked
    changes nothing. The caller holds the locks of `tasks`.
    """
    listed = _tasks_already_generated(root, header)
    remove_abandoned_staging(root)
    remove_stale_temporaries(root, MANIFEST_NAME)
    damage = _damaged_tasks(root, [task for task in tasks if task in listed], verify, stop)
    if stop.signal_number is not None:
        message = f"interrupted while checking the files of {root}; nothing was changed"
        raise Interrupted(message, stop.signal_number)
    for task in tasks:
        if task in listed and task not in damage:
            remove_partial(root, task)
    return [task for task in tasks if task not in listed or task in damage], damage


def _tasks_already_generated(root: Path, header: dict[str, Any]) -> set[str]:
    """Tasks `root` already lists, after checking they were made with the same settings.

    On a match the header keeps the dataset's original creation time.
    """
    if not (root / "manifest.json").exists():
        return set()
    manifest = read_manifest(root)
    _check_same_settings(root, manifest, header)
    header["created"] = manifest.get("created", header["created"])
    return set(manifest["tasks"])


def _check_same_settings(
    root: Path, manifest: Mapping[str, Any], header: Mapping[str, Any]
) -> None:
    old = {"source": manifest.get("source"), **(manifest.get("generator") or {})}
    new = {"source": header["source"], **header["generator"]}
    differences = [
        f"{key} {old.get(key)!r} (asked: {new.get(key)!r})"
        for key in dict.fromkeys([*old, *new])
        if old.get(key) != new.get(key)
    ]
    if differences:
        raise UserError(
            f"{root} holds a dataset made with other settings: {'; '.join(differences)}; "
            "generate into another folder or delete it"
        )


def check_store_settings(
    root: Path, generator: str, episodes_per_task: int, seed: int, pool_seed: int
) -> None:
    """Before a run or generation makes anything: a generated store already in `root` was made
    with these settings (else the one-line error generation itself would give, later)."""
    if not (root / MANIFEST_NAME).exists():
        return
    settings = generator_settings(generator, episodes_per_task, seed, pool_seed)
    _check_same_settings(root, read_manifest(root), {"source": SOURCE, "generator": settings})


def _damaged_tasks(
    root: Path, listed: list[str], verify: bool, stop: StopRequest
) -> dict[str, str]:
    """{task: what is wrong with its files} for the `listed` tasks that disagree with the
    manifest; stops early (incomplete) once a stop is requested."""
    if not listed:
        return {}
    store = DatasetStore(root)
    damage = {}
    for task in listed:
        if stop.signal_number is not None:
            break
        problem = store.damage(task, checksums=verify)
        if problem is not None:
            damage[task] = problem
    return damage


def _worker(
    results: Connection,
    root: Path,
    task: str,
    settings: dict[str, Any],
    generator: str,
    replace: bool,
) -> None:
    """A worker process: one task from rollout (resumed from its saved chunks, if any) to its
    folder on disk.

    Sends `{"resumed": episodes, "discarded": why or None}` first if it found saved episodes,
    None after each episode it rolls (progress), then the task's manifest entry, with the
    summary of its episodes, or a UserError's one line (a full disk: `{"failed": ...,
    "no_space": ...}`).
    """
    try:
        partial = PartialTask(root, task, settings)
        saved, discarded = partial.load()
        if saved or discarded:
            _send(results, {"resumed": saved[-1].end if saved else 0, "discarded": discarded})
        rollout = generate_task(
            task,
            settings["episodes_per_task"],
            settings["seed"],
            settings["pool_seed"],
            BEHAVIOURS[generator],
            lambda: _send(results, None),
            resume=saved,
            on_chunk=partial.save,
        )
        del saved  # their arrays are in the rollout's now
        entry = write_task(root, task, rollout.arrays, replace=replace)
    except UserError as error:  # the parent prints it, once, and stops the other workers
        _send(results, {"failed": str(error), "no_space": isinstance(error, OutOfSpace)})
        return
    returns = episode_returns(rollout.arrays["rewards"], rollout.arrays["episode_starts"])
    _send(results, {**entry, "summary": summarize(returns, rollout.success)})


def _send(results: Connection, message: Any) -> None:
    """Send to the parent; if it is gone (kill -9), end quietly with it: no one reads on."""
    try:
        results.send(message)
    except BrokenPipeError:
        sys.exit(0)


def _generate_in_workers(
    root: Path,
    todo: list[str],
    damage: dict[str, str],
    header: dict[str, Any],
    workers: int,
    progress: bool,
    stop: StopRequest,
    on_listed: Callable[[str], None],
) -> list[str]:
    """Generate `todo` in worker processes, listing each task in the manifest once written (then
    calling `on_listed(task)`), and return the tasks listed. On a stop request it kills the
    running workers and returns at once; a worker's UserError (a full disk) stops them all."""
    settings = header["generator"]
    episodes = settings["episodes_per_task"]
    # "spawn": forking a parent that may hold threads (tqdm, torch) is unsafe.
    context = multiprocessing.get_context("spawn")
    waiting = list(todo)
    running: dict[Connection, tuple[str, BaseProcess]] = {}
    written: list[str] = []
    failed: dict[str, int | None] = {}
    bar = tqdm(
        total=len(todo) * episodes, unit="ep", desc="generating", disable=not progress, smoothing=0
    )
    with bar:
        try:
            while (waiting or running) and stop.signal_number is None:
                while waiting and len(running) < workers:
                    task = waiting.pop(0)
                    job = (root, task, settings, generator_name(header))
                    receiver, process = start_worker(context, _worker, (*job, task in damage))
                    running[receiver] = (task, process)
                ready = wait(list(running), timeout=_POLL_SECONDS)  # some of the receivers
                for receiver in cast("list[Connection]", ready):
                    task, process = running[receiver]
                    try:
                        entry = receiver.recv()
                    except EOFError:  # the worker has exited, with or without sending an entry
                        del running[receiver]
                        receiver.close()
                        process.join()
                        if task not in written:  # keep the other tasks going: their work is kept
                            failed[task] = process.exitcode
                        continue
                    if entry is None:
                        bar.update(1)
                        continue
                    if "resumed" in entry:
                        _say_resumed(task, entry["resumed"], episodes, entry["discarded"])
                        bar.update(entry["resumed"])
                        continue
                    left = len(todo) - len(written)
                    if entry.get("no_space"):
                        raise out_of_space(root, left * _task_bytes(header))
                    if "failed" in entry:
                        raise UserError(entry["failed"])
                    try:
                        add_tasks_to_manifest(root, {task: entry}, header)
                    except OSError as error:
                        if error.errno != errno.ENOSPC:
                            raise
                        raise out_of_space(root, left * _task_bytes(header)) from None
                    remove_partial(root, task)
                    written.append(task)
                    on_listed(task)
                    bar.set_postfix_str(f"{len(written)}/{len(todo)} tasks written")
                    if task in damage:
                        tqdm.write(f"repaired {task}: {damage[task]}", file=sys.stderr)
        finally:
            if running:
                kill_workers(running)
                remove_abandoned_staging(root)
    if failed and stop.signal_number is None:
        reasons = ", ".join(f"{task} ({exit_reason(code)})" for task, code in failed.items())
        raise RuntimeError(
            f"generating {reasons} failed; the other tasks are saved, re-run to resume"
        )
    return written


def _say_resumed(task: str, resumed: int, episodes: int, discarded: str | None) -> None:
    if discarded is not None:
        message = f"{task}: {discarded}; making its episodes from {resumed} on again"
        tqdm.write(message, file=sys.stderr)
    if resumed:
        message = f"resuming {task}: {resumed} of {episodes} episodes already made"
        tqdm.write(message, file=sys.stderr)


def _list_in_order(root: Path, tasks: list[str], header: dict[str, Any]) -> None:
    """List `tasks` in the requested order in the manifest, not in the order they finished."""
    listed = read_manifest(root)["tasks"]
    if [task for task in listed if task in tasks] != tasks:
        add_tasks_to_manifest(root, {task: listed[task] for task in tasks}, header)
