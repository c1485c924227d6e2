"""`bench perf train` and `bench perf mask-update`: a method's own steps on synthetic data.

Training is timed twice, as the reference driver (../shared/harmodt-ref) does: a plain pass
for steps/s, then a pass with a `PhaseClock` in the method for the breakdown (the clock's own
cost stays out of the headline figure). The mask update is HarmoDT's Algorithm 2 at mid-
training (t = E/2, where Eq. 12 swaps the most weights), both gradients of every task included.
A method whose stages cost differently (M3DT) has each stage timed from its first step.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Iterator, Sequence
from typing import Any

from bench.perf.load import LoadMeter, peak_rss_mib
from bench.perf.ops import cpu_profiler, top_ops
from bench.perf.phases import PhaseClock
from bench.registry import Method, TrainingStage

TRAIN_PHASES = ("sampling", "forward", "backward", "masking", "optimizer")


def measure_train(
    method: Method, steps: int, warmup: int, op_steps: int = 0, first_step: int = 0
) -> dict[str, Any]:
    """ms per step and steps/s over `steps` steps after `warmup` (from step `first_step`), and
    a per-phase breakdown (ms per step) from a second pass of `steps` steps; with `op_steps`,
    a third pass of that many steps under torch's profiler, op by op."""
    for step in range(first_step, first_step + warmup):
        method.train_step(step)
    durations = []
    timed = first_step + warmup
    with LoadMeter() as load:
        for step in range(timed, timed + steps):
            start = time.perf_counter()
            method.train_step(step)
            durations.append(time.perf_counter() - start)
    seconds = sum(durations)
    breakdown, breakdown_load = _timed_pass(method, range(timed + steps, timed + 2 * steps))
    first_profiled = timed + 2 * steps
    ops = op_profile(method, range(first_profiled, first_profiled + op_steps)) if op_steps else None
    return {
        "steps": steps,
        "warmup": warmup,
        "ms_per_step": 1000 * seconds / steps,
        "ms_per_step_median": 1000 * statistics.median(durations),
        "steps_per_s": steps / seconds,
        "breakdown_ms_per_step": breakdown,
        "load": load.describe(),
        "breakdown_load": breakdown_load.describe(),
        "peak_rss_mib": peak_rss_mib(),
        **({"op_profile": ops} if ops else {}),
    }


def measure_stages(
    method: Method, stages: Sequence[TrainingStage], steps: int, warmup: int, op_steps: int = 0
) -> dict[str, Any]:
    """`measure_train` of each training stage from its first step (the method's
    `training_stages`), and the run's mean step: the stages' figures weighted by their length.
    A method of one stage gets `measure_train`'s figures unchanged."""
    if len(stages) == 1:
        return measure_train(method, steps, warmup, op_steps)
    per_stage = {}
    for stage in stages:
        passes = fitted_passes(stage.steps, steps, warmup, op_steps)
        figures = measure_train(method, *passes, first_step=stage.first_step)
        per_stage[stage.name] = {"first_step": stage.first_step, "steps_in_run": stage.steps,
                                 **figures}  # fmt: skip
    total = sum(stage.steps for stage in stages)

    def weighted(key: str) -> float:  # a stage figure weighed by the stage's steps
        return sum(f[key] * f["steps_in_run"] for f in per_stage.values()) / total

    # Every stage's parts, phases first: a phase that one stage lacks counts 0 in that stage.
    named = [part for f in per_stage.values() for part in f["breakdown_ms_per_step"]]
    parts = dict.fromkeys([p for p in named if p not in ("other", "total")] + ["other", "total"])
    ms_per_step = weighted("ms_per_step")

    def weighted_part(part: str) -> float:
        shares = (
            f["breakdown_ms_per_step"].get(part, 0.0) * f["steps_in_run"]
            for f in per_stage.values()
        )
        return sum(shares) / total

    def weighted_ms(figures: dict[str, Any]) -> float:  # a stage's share of the run's time
        return float(figures["ms_per_step"] * figures["steps_in_run"])

    def busiest(key: str) -> dict[str, Any]:
        loads = (figures[key] for figures in per_stage.values())
        return max(loads, key=lambda load: load["other_cores_busy"])

    # The op table shows the stage that costs the run most (each stage's is in "stages").
    costliest = max(per_stage, key=lambda name: weighted_ms(per_stage[name]))
    ops = per_stage[costliest].get("op_profile")
    if ops:
        ops = {**ops, "unit": f"{costliest}-stage training step"}
    return {  # the steps timed and the warm-up are each stage's own (`fitted_passes`)
        **({"op_profile": ops} if ops else {}),
        "ms_per_step": ms_per_step,
        "ms_per_step_median": weighted("ms_per_step_median"),
        "steps_per_s": 1000 / ms_per_step,
        "breakdown_ms_per_step": {part: weighted_part(part) for part in parts},
        "load": busiest("load"),
        "breakdown_load": busiest("breakdown_load"),
        "peak_rss_mib": peak_rss_mib(),
        "stages": per_stage,
    }


def fitted_passes(stage_steps: int, steps: int, warmup: int, op_steps: int) -> tuple[int, int, int]:
    """`steps`, `warmup` and `op_steps` cut so that the warm-up, the two timed passes and the
    profiled steps all stay inside a stage of `stage_steps` (a short stage at a small scale):
    a step of the next stage costs differently. The warm-up is kept before timed steps (a
    stage's first steps pay for its first calls), and the timed passes keep a step each at
    least, so a stage of under 2 steps (plus its profiled ones) is still timed past its end."""
    steps = max(1, min(steps, (stage_steps - op_steps - warmup) // 2))
    warmup = max(0, min(warmup, stage_steps - 2 * steps - op_steps))
    return steps, warmup, max(0, min(op_steps, stage_steps - 2 * steps))


def op_profile(method: Method, steps: range) -> dict[str, Any]:
    """The top torch ops by self time over `steps` training steps (bench/perf/ops.py)."""
    with cpu_profiler() as profiler:
        for step in steps:
            method.train_step(step)
    return top_ops(profiler, len(steps), "training step")


def _timed_pass(method: Any, steps: range) -> tuple[dict[str, float], LoadMeter]:
    with _clocked(method) as clock, LoadMeter() as load:
        start = time.perf_counter()
        for step in steps:
            method.train_step(step)
        total = 1000 * (time.perf_counter() - start) / len(steps)
    per_step: dict[str, float] = {}
    if hasattr(method, "phase"):  # the d3rlpy learners have no phases: their total only
        # Only phases the method enters: Prompt-DT's step shows no "masking 0".
        per_step = {
            name: 1000 * clock.seconds[name] / len(steps)
            for name in TRAIN_PHASES
            if clock.calls[name]
        }
    return {**per_step, "other": total - sum(per_step.values()), "total": total}, load


@contextlib.contextmanager
def _clocked(method: Any) -> Iterator[PhaseClock]:
    """A phase clock in the method for the block (where it has phases), its no-op after."""
    clock = PhaseClock(getattr(method, "device", "cpu"))
    if not hasattr(method, "phase"):
        yield clock
        return
    method.phase = clock
    try:
        yield clock
    finally:
        method.phase = contextlib.nullcontext


def measure_mask_update(method: Any, repeats: int = 1) -> dict[str, Any]:
    """Seconds for one HarmoDT mask update over every task (Alg. 2 at t = E/2), with the time
    of its parts: the per-task gradients, the masking inside them, mask generation, and the
    statistics logged with every update."""
    t = method.config.total_steps // 2
    with _clocked(method) as clock, LoadMeter() as load:
        start = time.perf_counter()
        events = [method.update_masks(t) for _ in range(repeats)]
        seconds = (time.perf_counter() - start) / repeats
    parts = {name: value / repeats for name, value in clock.seconds.items()}
    return {
        "seconds": seconds,
        "tasks": len(method.masks),
        "maskable_weights": int(method.masks.shape[1]),
        "swapped_per_task": events[-1]["alpha"],
        "parts_seconds": parts,
        "load": load.describe(),
        "peak_rss_mib": peak_rss_mib(),
    }
