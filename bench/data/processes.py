"""The worker processes of a generation: started deaf to Ctrl-C, stopped without waiting.

Only the parent acts on a stop request; a worker whose parent is gone (kill -9) ends at its
next message to it (bench.data.generate `_send`).
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection
from multiprocessing.context import SpawnContext
from multiprocessing.process import BaseProcess


def start_worker(
    context: SpawnContext, target: Callable[..., None], job: tuple
) -> tuple[Connection, BaseProcess]:
    """Start `target(sender, *job)`; the receiving end of its pipe and the process."""
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(target=target, args=(sender, *job), daemon=True)
    # A terminal's Ctrl-C reaches the whole process group, but only the parent acts on it.
    # Ignored while the worker starts, SIGINT stays ignored in it from its first instruction
    # (exec keeps an ignored signal ignored, and Python then installs no KeyboardInterrupt
    # handler); ignoring it in the worker's own code would leave its imports (a second) exposed.
    # The price: a Ctrl-C within these few milliseconds is lost.
    with _sigint_ignored():
        process.start()
    sender.close()  # the worker now holds the only write end: its exit reads as EOF here
    return receiver, process


@contextlib.contextmanager
def _sigint_ignored() -> Iterator[None]:
    try:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:  # not the main thread: signals are not ours to change
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def kill_workers(running: dict[Connection, tuple[str, BaseProcess]]) -> None:
    """Terminate the running workers without waiting for their tasks (minutes each).

    A worker killed before its rename leaves a staging folder, never a partial task folder.
    """
    for _, process in running.values():
        process.terminate()
    for receiver, (_, process) in running.items():
        process.join()
        receiver.close()


def exit_reason(exit_code: int | None) -> str:
    if exit_code is not None and exit_code < 0:
        return f"its worker was killed by signal {-exit_code}"
    return f"its worker exited with status {exit_code}; its traceback is above"
