"""Wall time per named phase of a method's step, for `bench perf`'s breakdowns.

A method brackets its work in `with self.phase("forward"): ...`; by default that is a no-op,
and `bench perf` sets `method.phase = PhaseClock(device)`. A phase counts its own time only:
the time of a phase opened inside it (HarmoDT's masking inside the forward) is the inner one's.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager

import torch


class PhaseClock:
    def __init__(self, device: torch.device | str = "cpu") -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        # Device work is asynchronous on a GPU: it is waited for at every phase boundary.
        self._sync = torch.cuda.synchronize if torch.device(device).type == "cuda" else None
        self._inner = [0.0]  # per open phase: time spent in the phases opened inside it

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        self._wait()
        start = time.perf_counter()
        self._inner.append(0.0)
        try:
            yield
        finally:
            self._wait()
            elapsed = time.perf_counter() - start
            inner = self._inner.pop()
            self.seconds[name] += elapsed - inner
            self.calls[name] += 1
            self._inner[-1] += elapsed

    def reset(self) -> None:
        self.seconds.clear()
        self.calls.clear()

    def _wait(self) -> None:
        if self._sync is not None:
            self._sync()
