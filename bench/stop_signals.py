"""Ctrl-C (SIGINT) and SIGTERM as a request to stop at a safe point, for long work.

While a `StopRequest` is deferring, a signal only sets the request, which the work reads where
stopping leaves everything whole (between training steps, between polls of data workers).
Outside deferral, and at a second signal when `insist` is on, it interrupts at once
(KeyboardInterrupt), as the user expects of a second Ctrl-C.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

HANDLED = (signal.SIGINT, signal.SIGTERM)


class StopRequest:
    def __init__(self, defer: bool = False, insist: bool = True) -> None:
        self.signal_number: int | None = None
        self._defer = defer
        self._insist = insist

    @property
    def requested(self) -> bool:
        return self.signal_number is not None

    def handle(self, signal_number: int, frame: FrameType | None) -> None:
        first = self.signal_number is None
        self.signal_number = signal_number
        if self._defer and (first or not self._insist):
            return
        raise KeyboardInterrupt

    @contextmanager
    def deferred(self) -> Iterator[None]:
        """Signals only set the request inside this block."""
        self._defer = True
        try:
            yield
        finally:
            self._defer = False


@contextmanager
def handle_stop_signals(stop: StopRequest) -> Iterator[StopRequest]:
    """Route SIGINT and SIGTERM to `stop` for the block (not from a thread: left alone)."""
    previous = {number: signal.getsignal(number) for number in HANDLED}
    try:
        for number in previous:
            signal.signal(number, stop.handle)
    except ValueError:  # not the main thread: signals are not ours to handle
        yield stop
        return
    try:
        yield stop
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
