"""`bench perf train` and `bench perf mask-update`: a method's own steps on synthetic data.

Training is timed twice, as the reference driver (../shared/harmodt-ref) does: a plain pass
for steps/s, then a pass with a `PhaseClock` in the method for the breakdown (the clock's own
cost stays out of the headline figure). The mask update is HarmoDT's Algorithm 2 at mid-
training (t = E/2, where Eq. 12 swaps the most weights), both gradients of every task included.
"""

from __future__ import annotations

import contextlib
import resource
import statistics
import time
from typing import Any

from bench.perf.load import LoadMeter
from bench.perf.phases import PhaseClock
from bench.registry import Method

TRAIN_PHASES = ("sampling", "forward", "backward", "masking", "optimizer")


def measure_train(method: Method, steps: int, warmup: int) -> dict[str, Any]:
    """ms per step and steps/s over `steps` steps after `warmup`, and a per-phase breakdown
    (ms per step) from a second pass of `steps` steps."""
    for step in range(warmup):
        method.train_step(step)
    durations = []
    with LoadMeter() as load:
        for step in range(warmup, warmup + steps):
            start = time.perf_counter()
            method.train_step(step)
            durations.append(time.perf_counter() - start)
    seconds = sum(durations)
    breakdown, breakdown_load = _timed_pass(method, range(warmup + steps, warmup + 2 * steps))
    return {
        "steps": steps,
        "warmup": warmup,
        "ms_per_step": 1000 * seconds / steps,
        "ms_per_step_median": 1000 * statistics.median(durations),
        "steps_per_s": steps / seconds,
        "breakdown_ms_per_step": breakdown,
        "load": load.describe(),
        "breakdown_load": breakdown_load.describe(),
        "peak_rss_mb": _peak_rss_mb(),
    }


def _timed_pass(method: Any, steps: range) -> tuple[dict[str, float], LoadMeter]:
    clock = PhaseClock(getattr(method, "device", "cpu"))
    has_phases = hasattr(method, "phase")
    if has_phases:
        method.phase = clock
    try:
        with LoadMeter() as load:
            start = time.perf_counter()
            for step in steps:
                method.train_step(step)
            total = time.perf_counter() - start
    finally:
        if has_phases:
            method.phase = contextlib.nullcontext
    per_step = {name: 1000 * clock.seconds.get(name, 0.0) / len(steps) for name in TRAIN_PHASES}
    if not has_phases:
        per_step = {}  # a method without phases (the d3rlpy learners): the total only
    per_step["other"] = 1000 * total / len(steps) - sum(per_step.values())
    per_step["total"] = 1000 * total / len(steps)
    return per_step, load


def measure_mask_update(method: Any, repeats: int = 1) -> dict[str, Any]:
    """Seconds for one HarmoDT mask update over every task (Alg. 2 at t = E/2), with the time
    of its parts: the per-task gradients, the masking inside them, mask generation, and the
    statistics logged with every update."""
    if not hasattr(method, "update_masks"):
        raise TypeError("mask-update measures HarmoDT's mask update: use a harmodt_* method")
    t = method.config.total_steps // 2
    clock = PhaseClock(method.device)
    method.phase = clock
    try:
        with LoadMeter() as load:
            start = time.perf_counter()
            events = [method.update_masks(t) for _ in range(repeats)]
            seconds = (time.perf_counter() - start) / repeats
    finally:
        method.phase = contextlib.nullcontext
    parts = {name: value / repeats for name, value in clock.seconds.items()}
    return {
        "seconds": seconds,
        "tasks": len(method.masks),
        "maskable_weights": int(method.masks.shape[1]),
        "swapped_per_task": events[-1]["alpha"],
        "parts_seconds": parts,
        "load": load.describe(),
        "peak_rss_mb": _peak_rss_mb(),
    }


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
