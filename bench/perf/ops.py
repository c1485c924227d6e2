"""`bench perf … --ops N`: torch's profiler over N steps, the top ops by self time.

The profiler's own cost inflates the small ops, so the shares say where time goes, not how
long a step takes: the timed passes without it give that.
"""

from __future__ import annotations

from typing import Any

from torch.profiler import ProfilerActivity, profile


def cpu_profiler() -> profile:
    return profile(activities=[ProfilerActivity.CPU])


def top_ops(profiler: profile, calls: int, unit: str, top: int = 15) -> dict[str, Any]:
    """The `top` ops of a stopped profiler by self time: ms per `unit` (a training step, a
    policy call), share of every op's self time, and calls per unit."""
    averages = sorted(profiler.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total_us = sum(event.self_cpu_time_total for event in averages)
    return {
        "unit": unit,
        "units": calls,
        "self_ms_per_unit_all_ops": total_us / 1000 / calls,
        "ops": [
            {
                "op": event.key,
                "self_ms_per_unit": event.self_cpu_time_total / 1000 / calls,
                "share": event.self_cpu_time_total / total_us,
                "calls_per_unit": event.count / calls,
            }
            for event in averages[:top]
        ],
    }
