"""The plan `bench run` prints before it starts: data to make, training, evaluations, and times.

Sizes come from the store's own array dtypes and shapes; times from counts and rates. Data
generation and the simulator use rates measured on this project's 2-core machine kind (the
constants below, each with its source); training and the policy use the rates
bench.plan_rates finds for the config (a run's own metrics, a finished run's, or a few steps
timed now). Every time is an estimate and says where its rate came from.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.data.locations import dataset_path, expert_path

# The store's own sizes, so that an estimate follows any change to what the store writes.
from bench.data.store import read_manifest, task_file_bytes
from bench.envs.metaworld import ACTION_DIM, MAX_EPISODE_STEPS, OBSERVATION_DIM
from bench.plan_rates import Rate, RateBook, Rates, steps_done
from bench.registry import TrainingStage
from bench.results import RESULT, periodic_evaluation_lost
from bench.settings import Settings

# Measured on this machine kind (2 cores), in the project's notes kept outside this repository
# (shared/notes/): the plan prints what was measured, not a path a user does not have.
GENERATION_STEPS_PER_SECOND = 1930  # expert env steps per CPU-second, MT50 harmonic mean
GENERATION_SOURCE = "~1930 env steps/s per worker, measured over MT50 on a 2-core machine"
SAC_STEPS_PER_SECOND = 70  # d3rlpy SAC, an update per env step (shared/notes/d3rlpy.md)
# docs/performance.md: an env-step with the evaluator's bookkeeping ("Evaluation"), and making
# and resetting an episode's env (3.0 s per task of 50 episodes, "Making the environments").
EVAL_SIMULATOR_SECONDS = 0.65e-3
EVAL_SETUP_SECONDS = 0.06
WARN_SECONDS = 3 * 3600  # longer than an afternoon: worth a smaller preset or a cluster


def store_bytes(tasks: int, episodes: int, episode_steps: int, obs_dim: int, act_dim: int) -> int:
    """The files of `tasks` tasks of `episodes` full episodes each, as the store writes them."""
    return tasks * task_file_bytes(episodes * episode_steps, episodes, obs_dim, act_dim)


def generation_seconds(
    tasks: int, steps_per_task: int, workers: int, cores: int, steps_per_second: float
) -> float:
    """Whole tasks, one per worker process at a time, at most one process per core."""
    parallel = max(1, min(workers, cores, tasks))
    return math.ceil(tasks / parallel) * steps_per_task / steps_per_second


def evaluations_left(steps: int, eval_every: int, done: int = 0) -> int:
    """Periodic evaluations after `done` steps (at multiples of eval_every before the end),
    plus the final one."""
    periodic = (steps - 1) // eval_every - done // eval_every if eval_every else 0
    return max(periodic, 0) + 1


def episode_seconds(episode_steps: int, policy_step_seconds: float) -> float:
    """One evaluation episode: its env made and reset, then every step's simulator and policy."""
    return EVAL_SETUP_SECONDS + episode_steps * (EVAL_SIMULATOR_SECONDS + policy_step_seconds)


def duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def first_rate_line(settings: Settings, rate: float, done: int) -> str:
    """What a run's first logged window says of the time left (the runner prints it); where the
    run's stages cost differently (M3DT), it names the stage it measured instead."""
    total_steps = settings.train.steps
    stages = settings.method_config.training_stages(total_steps)
    if len(stages) == 1:
        return f"training: {rate:.1f} steps/s, about {duration((total_steps - done) / rate)} to go"
    stage = next(s for s in reversed(stages) if s.first_step < done)
    return (
        f"training: {rate:.1f} steps/s in its {stage.name} stage; its {len(stages)} stages' "
        "steps cost differently, so no time left is given from it (`bench perf train` times "
        "each stage, as a plan long enough to be timed does)"
    )


def size(count: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count} B"


@dataclass(frozen=True)
class DataWork:
    """What one store still lacks and what making it takes."""

    store: Path
    tasks: int  # to make
    episodes: int  # per task
    bytes: int
    seconds: float
    workers: int  # generator processes; 0: made in the run's own process (meta-RL)
    experts: tuple[str, ...] = ()  # meta-RL families whose SAC expert is trained first


def data_work(settings: Settings, tasks: Sequence[str]) -> DataWork:
    """The part of `tasks` that settings' store lacks (none for an explicit data.path)."""
    data, suite = settings.data, settings.suite
    store, episodes = dataset_path(data.section(), suite), data.episodes_per_task
    if data.path:
        return DataWork(store, 0, episodes, 0, 0.0, 1)
    listed = read_manifest(store)["tasks"] if (store / "manifest.json").is_file() else {}
    missing = [task for task in dict.fromkeys(tasks) if task not in listed]
    if not suite.benchmark.trains_experts:  # scripted-expert workers
        steps = MAX_EPISODE_STEPS * episodes
        seconds = generation_seconds(len(missing), steps, data.workers,
                                     os.cpu_count() or 1, GENERATION_STEPS_PER_SECOND)  # fmt: skip
        made = store_bytes(len(missing), episodes, MAX_EPISODE_STEPS, OBSERVATION_DIM, ACTION_DIM)
        return DataWork(store, len(missing), episodes, made, seconds, data.workers)
    from bench.envs import mujoco_meta

    families = [mujoco_meta.parse_task(task)[0] for task in missing]
    trained = {f for f in families if expert_path(store, f, data.expert_steps, data.seed).exists()}
    experts = tuple(sorted(set(families) - trained))
    # One expert per family, then each task rolled out, all in the run's own process
    # (bench/data/sac_experts.py); no MuJoCo rollout rate was measured: Meta-World's is used.
    steps = mujoco_meta.EPISODE_STEPS * episodes
    seconds = (len(experts) * data.expert_steps / SAC_STEPS_PER_SECOND
               + len(missing) * steps / GENERATION_STEPS_PER_SECOND)  # fmt: skip
    made = sum(store_bytes(1, episodes, mujoco_meta.EPISODE_STEPS,
                           mujoco_meta.OBSERVATION_DIM[f], mujoco_meta.ACTION_DIM[f])
               for f in families)  # fmt: skip
    return DataWork(store, len(missing), episodes, made, seconds, 0, experts)


@dataclass(frozen=True)
class RunWork:
    """One run's training and evaluations still to do, and what is known of their time."""

    settings: Settings
    done: bool  # result.json exists: the run is skipped
    steps: int  # left to train
    train: Rate | None  # steps per second; None: no rate known
    evaluations: int
    eval_seconds: float
    eval_basis: str  # how eval_seconds was reached
    eval_at_least: bool  # the policy's time is missing from eval_seconds

    train_seconds: float | None  # None: no rate known


def run_work(settings: Settings, book: RateBook) -> RunWork:
    done = not settings.run.restart and (settings.run_dir / RESULT).exists()
    rates = Rates() if done else book.rates(settings)  # a done run is skipped: nothing to time
    start = steps_done(settings)
    steps = 0 if done else settings.train.steps - start
    train, evaluations = settings.train, 0
    if not done:
        # A periodic evaluation the process ended in is made again first on resuming.
        lost = periodic_evaluation_lost(settings.run_dir, start, train.eval_every, train.steps)
        evaluations = evaluations_left(train.steps, train.eval_every, start) + lost
    task_episodes = evaluations * settings.eval.episodes * len(settings.suite.evaluation_tasks)
    episode_steps = settings.suite.benchmark.episode_steps
    at_least = False
    if rates.eval_episode:
        each, basis = rates.eval_episode.value, f"as in {rates.eval_episode.source}"
    elif rates.policy_step:
        each = episode_seconds(episode_steps, rates.policy_step.value)
        basis = "policy timed now, simulator from docs/performance.md"
    else:
        each, at_least = episode_seconds(episode_steps, 0.0), True
        basis = "the simulator's time from docs/performance.md; the policy's not timed"
    stages = settings.method_config.training_stages(settings.train.steps)
    seconds = 0.0 if steps == 0 else None  # nothing left to train takes no time at any rate
    if steps and rates.train:
        seconds = train_seconds_left(rates.train, stages, start)
    return RunWork(settings, done, steps, rates.train, evaluations, task_episodes * each,
                   basis, at_least, seconds)  # fmt: skip


def train_seconds_left(rate: Rate, stages: Sequence[TrainingStage], start: int) -> float:
    """Seconds to train from step `start` to the end: each stage's steps left at its own
    rate where the rate has one per stage (M3DT's), else every step at the mean rate."""
    if len(rate.stage_seconds) != len(stages):
        last = stages[-1]
        return (last.first_step + last.steps - start) / rate.value
    return sum(
        max(0, stage.first_step + stage.steps - max(start, stage.first_step)) * seconds
        for stage, seconds in zip(stages, rate.stage_seconds, strict=True)
    )


def describe_plan(jobs: Sequence[Settings], local: bool = True) -> str:
    """The plan of one run or a sweep, as printed: data, training, evaluation, total and,
    run locally past WARN_SECONDS, a warning pointing at the cheaper ways. `local`: the runs
    run on this machine (not Slurm), so its speed may be timed and is what the times are."""
    book = RateBook(allow_timing=local)
    works = [run_work(settings, book) for settings in jobs]
    stores: dict[Path, tuple[Settings, list[str]]] = {}
    for settings in jobs:  # runs on one store share its data: each store counted once
        store = dataset_path(settings.data.section(), settings.suite)
        entry = stores.setdefault(store, (settings, []))
        entry[1].extend(settings.suite.data_tasks)
    data = [data_work(settings, tasks) for settings, tasks in stores.values()]
    runs = "" if len(jobs) == 1 else f" for {len(jobs)} runs"
    lines = [f"plan{runs} (estimates, each saying where its rate comes from):"]
    lines += [f"  data        {_data_line(work)}" for work in data]
    active = [work for work in works if not work.done]
    if len(works) == 1 and not active:
        lines.append("  skipped     the run is done (its result.json exists)")
    elif len(active) < len(works):
        lines.append(f"  skipped     {len(works) - len(active)} done run(s)")
    if not active:
        return "\n".join(lines)
    lines.append(f"  training    {_train_line(active, local)}")
    lines.append(f"  evaluation  {_eval_line(active)}")
    known = [w.train_seconds for w in active if w.train_seconds is not None]
    total = sum(w.seconds for w in data) + sum(known) + sum(w.eval_seconds for w in active)
    untimed = " + the training not timed" if len(known) < len(active) else ""
    here = " on this machine" if local else ""
    lines.append(f"  total       about {duration(total)}{here}{untimed}")
    if local and total > WARN_SECONDS:
        lines.append(
            f"warning: about {duration(total)} on this machine. scale=quick runs a suite in "
            "minutes; launcher=slurm runs on a cluster (README, Running on a Slurm cluster)"
        )
    return "\n".join(lines)


def _data_line(work: DataWork) -> str:
    if not work.tasks:
        return f"{work.store}: ready"
    if work.workers:
        how = f"with data.workers={work.workers} ({GENERATION_SOURCE})"
    else:  # SAC experts, then rollouts put at Meta-World's step rate (none measured for MuJoCo)
        experts = ", ".join(work.experts)
        how = (f"SAC experts for {experts} first ({SAC_STEPS_PER_SECOND} steps/s, "
               "measured, 2 cores), then rollouts" if experts else "rollouts")  # fmt: skip
        how += f" ({GENERATION_SOURCE})"
    return (f"{work.store}: {work.tasks} task(s) to make, {work.tasks * work.episodes:,} "
            f"episodes, {size(work.bytes)}; about {duration(work.seconds)}, {how}")  # fmt: skip


def _train_line(active: Sequence[RunWork], local: bool) -> str:
    steps = sum(w.steps for w in active)
    known = [w for w in active if w.train is not None]
    time = f", about {duration(sum(w.train_seconds or 0.0 for w in known))}" if known else ""
    untimed = len(active) - len(known)
    why = ("short: not timed; a run prints its speed as it starts" if local
           else "no finished run of this config under run.root to take a rate from")  # fmt: skip
    if len(active) == 1:
        work = active[0]
        train = work.train
        source = f"{train.value:.3g} steps/s, {train.source}" if train else why
        if train and train.stage_seconds and work.train_seconds:
            # The whole run's mean would misstate a run resumed in a slower or faster stage.
            source = (f"{work.steps / work.train_seconds:.3g} steps/s over the steps left, each "
                      f"stage at its own rate, {train.source}")  # fmt: skip
        return f"{steps:,} steps{time} ({source})"
    kinds = Counter(w.train.kind for w in known if w.train)
    rates = [f"{count} {_KIND_WORDS[kind]}" for kind, count in sorted(kinds.items())]
    parts = [f"rates: {', '.join(rates)}"] if rates else []
    parts += [f"{untimed} without a rate ({why})"] if untimed else []
    return f"{len(active)} runs, {steps:,} steps{time} ({'; '.join(parts)})"


_KIND_WORDS = {"own": "from the run's own metrics", "finished": "from finished runs",
               "timed": "timed now on synthetic data"}  # fmt: skip


def _eval_line(active: Sequence[RunWork]) -> str:
    at_least = "at least" if any(w.eval_at_least for w in active) else "about"
    seconds = f"{at_least} {duration(sum(w.eval_seconds for w in active))}"
    if len(active) == 1:
        work = active[0]
        count = (f"{work.evaluations} x {work.settings.eval.episodes} episodes x "
                 f"{len(work.settings.suite.evaluation_tasks)} tasks")  # fmt: skip
        return f"{count}, {seconds} ({work.eval_basis})"
    evaluations = sum(w.evaluations for w in active)
    return f"{evaluations} evaluations over {len(active)} runs, {seconds}"
