"""Where a plan's training and evaluation speeds come from (bench.plan turns them into times).

In order of trust: the run's own metrics.jsonl (resuming), a finished run of the same method,
suite, scale, model size, precision, device and threads under `run.root` (its metrics.jsonl
and result.json), and last a few steps timed now on a synthetic store of the configured
shapes (bench/perf). Each rate carries the words that say where it came from, so that an
estimate is never shown without its source.
"""

from __future__ import annotations

import re
import statistics
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from bench import results
from bench.errors import UserError
from bench.run_result import RunResult, read_result
from bench.settings import Settings
from bench.suites import Suite

# Timing costs, per training stage (one for most methods), a warm-up step, one step timed
# plain and one timed with a phase clock (bench.perf.train.measure_train's two passes; their
# mean is the rate), and two policy calls. Below TIMING_MIN_STEPS training steps the run's own
# first log line ("training: N steps/s, about T to go") comes sooner than timing would pay.
# A step trains one task (round-robin; M3DT's expert step one per expert: `tasks_per_step`),
# so its cost does not grow with the suite: that many tasks time it, and spare building every
# task's state (HarmoDT's masks take a second per task).
TIMING_MIN_STEPS = 1000
# Synthetic episodes only need to hold the sampler's segments and prompts, not 500 steps.
SYNTHETIC_EPISODE_STEPS = 100
# The shape of the model and its batch: what sets a step's cost, beside the keys below.
_SHAPE_KEYS = ("n_layer", "n_head", "embed_dim", "context_length", "prompt_length",
               "batch_size", "hidden_units")  # fmt: skip


@dataclass(frozen=True)
class Rate:
    """A measured figure (a speed, or seconds per unit) and where it came from (`kind`: own,
    finished or timed; `source`: words for the plan)."""

    value: float
    kind: str
    source: str
    # Training rates of a method whose stages cost differently (M3DT): seconds per step of
    # each of its `training_stages`, in order, so a resumed run is timed by the stages it has
    # left (bench.plan.train_seconds_left); empty where its steps cost alike.
    stage_seconds: tuple[float, ...] = ()


@dataclass(frozen=True)
class Rates:
    """What a plan needs to put times on a run's training and evaluation."""

    train: Rate | None = None  # training steps per second
    eval_episode: Rate | None = None  # seconds per task-episode, all in (a finished run's)
    policy_step: Rate | None = None  # the policy's seconds per env-step of one episode (timed)


def speed_key(config: Mapping[str, Any]) -> tuple:
    """What a run's speed depends on: method, suite, scale, model size (and batch), the
    method's own `speed_fields` (M3DT's expert count), precision, device and threads."""
    from bench.registry import get_method

    method = config["method"]
    name = method["name"]
    try:
        own = get_method(name).config_cls.speed_fields
    except UserError:  # a run of a method no longer registered: its shape still compares
        own = ()
    shape = tuple(str(method.get(key)) for key in _SHAPE_KEYS + own)
    return (name, config["tasks"]["name"], config["scale"]["name"], shape,
            config.get("precision"), str(config.get("device")), config.get("threads"))  # fmt: skip


def median_train_rate(events: list[dict[str, Any]]) -> float | None:
    """The steps/s of a run's `train` events: the median of each training stage's windows
    (robust to a window with a slow start), the stages weighed by their windows' count."""
    rates = _stage_rates(events)
    windows = sum(len(stage) for stage in rates.values())
    seconds = sum(len(stage) / statistics.median(stage) for stage in rates.values())
    return windows / seconds if windows else None


def stage_seconds(events: list[dict[str, Any]]) -> tuple[float, ...]:
    """Seconds per step of each training stage the events reached, in the order they did
    (the median window of each)."""
    return tuple(1 / statistics.median(stage) for stage in _stage_rates(events).values())


def _stage_rates(events: list[dict[str, Any]]) -> dict[Any, list[float]]:
    rates: dict[Any, list[float]] = {}  # insertion order: the order the stages ran in
    for event in events:
        if event.get("event") == "train" and event.get("steps_per_second"):
            rates.setdefault(event.get("stage"), []).append(float(event["steps_per_second"]))
    return rates


class RateBook:
    """Rates per speed key, gathered once: a sweep's runs of one config share them."""

    def __init__(self, allow_timing: bool = True) -> None:
        self.allow_timing = allow_timing  # False for Slurm: this machine is not where it runs
        self._known: dict[tuple, Rates] = {}

    def rates(self, settings: Settings) -> Rates:
        own = self._own_rate(settings)
        key = speed_key(settings.config)
        if key not in self._known:
            found = finished_run_rates(settings)
            if found is None and self.allow_timing and settings.train.steps >= TIMING_MIN_STEPS:
                found = timed_rates(settings)
            self._known[key] = found or Rates()
        shared = self._known[key]
        return Rates(own or shared.train, shared.eval_episode, shared.policy_step)

    @staticmethod
    def _own_rate(settings: Settings) -> Rate | None:
        """A resuming run's own speed, measured on this data and (likely) this machine."""
        if settings.run.restart or not (settings.run_dir / results.CHECKPOINT).exists():
            return None
        events = results.read_metrics(settings.run_dir)
        stages = settings.method_config.training_stages(settings.train.steps)
        if len(stage_seconds(events)) < len(stages):  # its costlier stages are still ahead
            return None
        rate = median_train_rate(events)
        source = "from this run's metrics.jsonl"
        return Rate(rate, "own", source, _staged(events, stages)) if rate else None


def finished_run_rates(settings: Settings) -> Rates | None:
    """The rates of the newest finished run with the same speed key under `run.root`."""
    root = settings.run.root
    if not root.is_dir():
        return None
    key, suite, method = speed_key(settings.config), settings.suite.name, settings.method_name
    finished = []
    for run_dir in results.find_runs(root):
        # The layout <suite>/<data>/<method>/...: skip other runs without reading their YAML.
        if suite not in run_dir.parts or method not in run_dir.parts:
            continue
        result_path, config_path = run_dir / results.RESULT, run_dir / results.CONFIG
        if run_dir != settings.run_dir and result_path.exists() and config_path.exists():
            config = (yaml.safe_load(config_path.read_text()) or {}).get("config") or {}
            if config.get("method") and speed_key(config) == key:
                finished.append((result_path.stat().st_mtime, run_dir))
    for _, run_dir in sorted(finished, reverse=True):
        events = results.read_metrics(run_dir)
        train = median_train_rate(events)
        if train is None:
            continue
        stages = settings.method_config.training_stages(settings.train.steps)
        where = f"the finished run {run_dir}"
        try:
            episode = _episode_seconds(read_result(run_dir))
        except UserError:  # damaged: its status and report say so; its speed is still good
            episode = None
        return Rates(
            Rate(train, "finished", f"from {where}", _staged(events, stages)),
            Rate(episode, "finished", where) if episode else None,
        )
    return None


def _staged(events: list[dict[str, Any]], stages: tuple[Any, ...]) -> tuple[float, ...]:
    """Per-stage seconds where the method has several stages and the events hold them all."""
    seconds = stage_seconds(events)
    return seconds if len(stages) > 1 and len(seconds) == len(stages) else ()


def _episode_seconds(result: RunResult) -> float | None:
    """Seconds per task-episode of a finished run's final evaluation."""
    seconds, episodes = result.wall_time_s.evaluate, result.protocol.episodes_per_task
    tasks = len(result.per_task)
    return seconds / (episodes * tasks) if seconds and episodes and tasks else None


def timed_rates(settings: Settings) -> Rates:
    """A few training steps and policy calls of this config, timed on a synthetic store of its
    shapes (bench/perf: speed depends on shapes, not values)."""

    from bench.perf.load import QUIET_CORES
    from bench.perf.synthetic import write_synthetic_store
    from bench.perf.train import measure_stages
    from bench.process_state import set_threads
    from bench.registry import build_for_run

    print("plan: timing a few training steps on synthetic data ...", file=sys.stderr, flush=True)
    set_threads(settings.threads, settings.interop_threads)  # as the run will have them
    data = settings.data
    config, tasks = settings.method_config, settings.suite.tasks
    suite = Suite(settings.suite.name, tasks[: config.tasks_per_step(len(tasks))],
                  settings.suite.benchmark)  # fmt: skip
    # Enough episodes that the training fraction keeps one after the prompts.
    episodes = max(4, int((data.prompt_episodes + 2) / data.fraction) + 1)
    with tempfile.TemporaryDirectory(prefix="mtbench-plan-") as folder:
        store = write_synthetic_store(
            Path(folder), suite.tasks, episodes, episode_steps=SYNTHETIC_EPISODE_STEPS
        )
        offline, method = build_for_run(settings, store, suite)
        # A task's (a stage's) first step builds what later ones reuse: a warm-up step.
        stages = config.training_stages(settings.train.steps)
        figures = measure_stages(method, stages, steps=1, warmup=1)
        policy_seconds = _policy_seconds(method, settings.eval.episodes, offline.obs_dim)
    step_seconds = lambda f: (f["ms_per_step"] + f["breakdown_ms_per_step"]["total"]) / 2000
    busy = figures["load"]["other_cores_busy"]
    busy_note = f"; other processes kept {busy:.1f} cores busy" if busy >= QUIET_CORES else ""
    rates = ", ".join(f"{name} {1000 / stage['ms_per_step']:.3g}"
                      for name, stage in figures.get("stages", {}).items())  # fmt: skip
    stages_note = f"; its stages weighed by their steps: {rates} steps/s" if rates else ""
    source = f"timed now on synthetic data{stages_note}{busy_note}"
    per_stage = tuple(step_seconds(f) for f in figures.get("stages", {}).values())
    return Rates(
        train=Rate(1 / step_seconds(figures), "timed", source, per_stage),
        policy_step=Rate(policy_seconds, "timed", source),
    )


def _policy_seconds(method: Any, episodes: int, obs_dim: int) -> float:
    """The policy's seconds per env-step of one episode, acting for `episodes` lockstep episodes
    (a DT's context is always K long, masked, so every call costs the same)."""
    import numpy as np

    policy = method.policy(0)
    policy.reset(episodes)
    observations = np.zeros((episodes, obs_dim), dtype=np.float32)
    policy.act(observations, None)  # the first call builds what later ones reuse (a prompt's)
    start = time.perf_counter()
    policy.act(observations, np.zeros(episodes, dtype=np.float32))
    return (time.perf_counter() - start) / episodes


def steps_done(settings: Settings) -> int:
    """The step a run resumes from: its checkpoint's, as its status says it, else its last
    logged step rounded down to the checkpoint cadence (a killed run's status says nothing)."""
    if settings.run.restart or not (settings.run_dir / results.CHECKPOINT).exists():
        return 0
    status = results.read_status(settings.run_dir)
    # `interrupted at step N while ...` (N: the checkpoint's); a phase's step is not it.
    said = re.match(r"(?:interrupted|requeued) at step (\d+)", status)
    if said:
        return int(said[1])
    events = results.read_metrics(settings.run_dir)
    logged = max((int(e["step"]) for e in events if e.get("event") == "train"), default=0)
    every = settings.train.checkpoint_every
    return min(logged // every * every, settings.train.steps)
