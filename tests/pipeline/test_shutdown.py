"""``pipeline.shutdown.ShutdownSignals``: a signal that lands where Python cannot pass an exception on (a garbage
collector callback: Dask's ``distributed`` installs one) still ends the run, without a traceback."""

from __future__ import annotations

import gc
import os
import signal
import sys
import time

import pytest

from sonolens.pipeline.shutdown import ShutdownSignals


def test_an_interrupt_swallowed_by_a_gc_callback_is_delivered_again(capsys):
    fired: list[int] = []

    def callback(phase, info):
        if phase == "start" and not fired:
            fired.append(1)
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(10_000):  # the handler runs here, inside the callback: its exception cannot propagate
                pass

    gc.callbacks.append(callback)
    try:
        with ShutdownSignals() as signals:
            with pytest.raises(KeyboardInterrupt):
                gc.collect()
                deadline = time.monotonic() + 30  # the interrupt, delivered again, lands here (within ms)
                while time.monotonic() < deadline:
                    pass
    finally:
        gc.callbacks.remove(callback)
    assert fired and signals.received == signal.SIGTERM and signals.exit_code == 143
    err = capsys.readouterr().err
    assert "Traceback" not in err and "Exception ignored" not in err


def test_other_unraisable_exceptions_still_reach_the_previous_hook():
    seen = []
    previous, sys.unraisablehook = sys.unraisablehook, seen.append
    try:
        with ShutdownSignals():
            class Broken:
                def __del__(self):
                    raise ValueError("boom")

            Broken()
        assert [type(u.exc_value) for u in seen] == [ValueError]
        assert sys.unraisablehook == seen.append  # restored on exit
    finally:
        sys.unraisablehook = previous
