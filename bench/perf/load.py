"""How busy the machine is apart from us: a benchmark on shared cores is only as good as this.

With as many torch threads as cores, any other busy process slows a step many times over
(OpenMP threads wait on each other), so every figure is reported with the CPU that other
processes used while it was taken: /proc/stat's busy time minus this process's and its
children's.
"""

from __future__ import annotations

import os
import resource
import sys
import time
from dataclasses import dataclass

QUIET_CORES = 0.25  # other processes' CPU, in cores, above which a figure is not a quiet one


def _busy_seconds() -> tuple[float, float]:
    """(all processes' busy CPU seconds, this process tree's), since boot / process start."""
    ticks = os.sysconf("SC_CLK_TCK")
    with open("/proc/stat") as stat:
        fields = [int(value) for value in stat.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    total_busy = (sum(fields[:8]) - idle) / ticks  # guest time is already inside user time
    times = os.times()
    own = times.user + times.system + times.children_user + times.children_system
    return total_busy, own


@dataclass
class LoadMeter:
    """`with LoadMeter() as load: ...` then `load.other_cores_busy` (cores, averaged)."""

    other_cores_busy: float = 0.0
    seconds: float = 0.0

    def __enter__(self) -> LoadMeter:
        self._start = (time.monotonic(), *_busy_seconds())
        return self

    def __exit__(self, *exc: object) -> None:
        wall, total, own = time.monotonic(), *_busy_seconds()
        self.seconds = wall - self._start[0]
        other = (total - self._start[1]) - (own - self._start[2])
        self.other_cores_busy = max(other, 0.0) / max(self.seconds, 1e-9)

    @property
    def quiet(self) -> bool:
        return self.other_cores_busy <= QUIET_CORES

    def describe(self) -> dict[str, object]:
        return {
            "other_cores_busy": round(self.other_cores_busy, 3),
            "seconds": round(self.seconds, 2),
            "quiet": self.quiet,
        }


def sample_load(seconds: float = 1.0) -> LoadMeter:
    """Other processes' CPU use over the next `seconds` (we sleep meanwhile)."""
    with LoadMeter() as load:
        time.sleep(seconds)
    return load


def peak_rss_mib() -> float:
    """This process's peak resident memory since it started its interpreter, in MiB."""
    # ru_maxrss also counts the parent's peak: a child started with vfork (as subprocess does)
    # runs in the parent's memory until its exec. Linux's VmHWM is the exec'd image's alone.
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # Linux counts KiB
