"""SIGTERM as a graceful stop: what `ray job stop` and `kubectl delete` send the sweep driver.

Ray's own handler (installed by `ray.init`) exits at once, and a SIGTERM otherwise reaches Ray's C++
handler, which aborts the process: Tune then writes no final state and the sweep no trials.csv. While
the sweep runs, SIGTERM does what Ctrl-C does: it calls the SIGINT handler in place then, which inside
`Tuner.fit()` is Tune's "stop the experiment" (running trials stop, the state is saved, fit returns)
and outside it raises KeyboardInterrupt. The job supervisor SIGKILLs after RAY_JOB_STOP_WAIT_TIME_S
(cluster/runtime_env.yaml sets it long enough for the final files).
"""

from __future__ import annotations

import contextlib
import signal
import threading


class Stop:
    """Whether a SIGTERM arrived while `sigterm_stops_the_sweep()` was active."""

    received = False


@contextlib.contextmanager
def sigterm_stops_the_sweep():
    stop = Stop()
    if threading.current_thread() is not threading.main_thread():  # signals reach only the main thread
        yield stop
        return

    def on_sigterm(signum, frame):
        first = not stop.received
        stop.received = True
        handler = signal.getsignal(signal.SIGINT)
        if not first:
            return  # the stop is under way; the supervisor's SIGKILL ends it if it takes too long
        if callable(handler):
            handler(signal.SIGINT, frame)
        else:
            raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGTERM, previous)
