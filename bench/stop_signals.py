"""Ctrl-C (SIGINT) and SIGTERM as a request to stop at a safe point, for long work.

While a `StopRequest` is deferring, a signal only sets the request, which the work reads where
stopping leaves everything whole (between training steps, between polls of data workers).
Outside deferral, and at a second signal when `insist` is on, it interrupts at once
(KeyboardInterrupt), as the user expects of a second Ctrl-C.

Around a whole command, `one_line_stops` makes every other stop one line and exit status
128 + the signal's number (130 for Ctrl-C, 143 for SIGTERM), never a traceback.
"""

from __future__ import annotations

import os
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
    def immediate(self) -> Iterator[None]:
        """Inside deferral, a block that a signal interrupts at once: long work that leaves
        nothing half made (an evaluation the run makes again when it resumes), which a stop
        must not wait for, as a preemption's grace period would end first."""
        deferring, self._defer = self._defer, False
        try:
            if self.requested:  # after deferral ends: a signal in between is not left waiting
                raise KeyboardInterrupt
            yield
        finally:
            self._defer = deferring


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


def stop_line(signal_number: int) -> str:
    """What a command stopped by `signal_number` says, as its one line."""
    return f"interrupted by {signal.Signals(signal_number).name}"


def _stop_the_command(signal_number: int, frame: FrameType | None) -> None:
    if signal_number == signal.SIGINT and not _importing(frame):
        raise KeyboardInterrupt  # the work's own handling (a sweep's, a wait's) comes first
    os.write(2, (stop_line(signal_number) + "\n").encode())
    os._exit(128 + signal_number)


def _importing(frame: FrameType | None) -> bool:
    """Whether `frame` runs inside an import (torch's takes most of a second)."""
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            return True
        frame = frame.f_back
    return False


@contextmanager
def one_line_stops() -> Iterator[None]:
    """For a whole command, where work that stops at a safe point routes the signals to its
    own `StopRequest`: a SIGTERM, or a Ctrl-C while a module is imported, ends the process at
    once with `stop_line` and 128 + the signal's number, as SIGTERM's default ends it at once
    (a KeyboardInterrupt inside an import can be swallowed there, or turn into another error
    in the next import of the half-made module); any other Ctrl-C raises KeyboardInterrupt,
    which the command turns into the same line once the work has unwound."""
    previous = {number: signal.getsignal(number) for number in HANDLED}
    try:
        for number in previous:
            signal.signal(number, _stop_the_command)
    except ValueError:  # not the main thread: signals are not ours to handle
        yield
        return
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
