"""A stop request: deferred to a safe point, or at once inside `immediate()`."""

from __future__ import annotations

import signal

import pytest

from bench.stop_signals import StopRequest, handle_stop_signals


def test_a_deferred_stop_waits_and_an_immediate_block_ends_at_once():
    with handle_stop_signals(StopRequest()) as stop, stop.deferred():
        with pytest.raises(KeyboardInterrupt):
            with stop.immediate():
                signal.raise_signal(signal.SIGTERM)
                pytest.fail("the block went on after the signal")
        assert stop.signal_number == signal.SIGTERM


def test_a_stop_requested_before_an_immediate_block_ends_it_on_entry():
    with handle_stop_signals(StopRequest()) as stop, stop.deferred():
        signal.raise_signal(signal.SIGINT)  # deferred: only noted
        assert stop.requested
        entered = False
        with pytest.raises(KeyboardInterrupt):
            with stop.immediate():
                entered = True
        assert not entered


def test_deferral_holds_again_after_an_immediate_block():
    with handle_stop_signals(StopRequest(insist=False)) as stop, stop.deferred():
        with stop.immediate():
            pass
        signal.raise_signal(signal.SIGTERM)  # deferred again: noted, not raised
        signal.raise_signal(signal.SIGTERM)
        assert stop.signal_number == signal.SIGTERM
