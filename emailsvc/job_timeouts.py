"""Job timeouts for RQ worker loops that run as threads: one watchdog thread per process for all of them.

RQ's own timeout raises from SIGALRM, which reaches only the main thread; its TimerDeathPenalty
starts a new thread (threading.Timer) for every job and stops it after, ~100 µs of CPU a job
(docs/performance.md). SharedTimerDeathPenalty registers the job's deadline with the process's
watchdog instead, and forgets it when the job ends: no thread per job. The watchdog looks at the
deadlines every WATCH_INTERVAL seconds, so a job is stopped at most that long after its timeout
(RQ's default timeout is 180 s), the way TimerDeathPenalty does it: the exception is raised in the
job's thread (PyThreadState_SetAsyncExc).
"""

import ctypes
import functools
import itertools
import os
import threading
import time

from rq.timeouts import BaseDeathPenalty

WATCH_INTERVAL = 1.0


class _Watchdog:
    """The deadlines of the jobs running in this process's threads, and the thread that enforces them."""

    def __init__(self):
        self._lock = threading.Lock()
        self._deadlines = {}  # token -> (monotonic deadline, thread id, exception class)
        self._tokens = itertools.count()
        self._pid = None

    def watch(self, seconds, exception):
        """Raise `exception` in the calling thread in `seconds` unless forgotten first; return the token."""
        with self._lock:
            if self._pid != os.getpid():  # threads do not survive a fork: one watchdog per process
                self._pid = os.getpid()
                threading.Thread(target=self._run, name="job-timeouts", daemon=True).start()
            token = next(self._tokens)
            self._deadlines[token] = (time.monotonic() + seconds, threading.get_ident(), exception)
        return token

    def forget(self, token):
        with self._lock:
            self._deadlines.pop(token, None)

    def _run(self):
        while True:
            time.sleep(WATCH_INTERVAL)
            now = time.monotonic()
            with self._lock:  # a job that ends meanwhile waits for the raise, or is forgotten before it
                for token, (deadline, thread_id, exception) in list(self._deadlines.items()):
                    if deadline <= now:
                        del self._deadlines[token]
                        _raise_in(thread_id, exception)


def _raise_in(thread_id, exception):
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), ctypes.py_object(exception))


_watchdog = _Watchdog()


@functools.cache
def _with_message(exception, timeout):
    # PyThreadState_SetAsyncExc raises a class, not an instance: a subclass carries RQ's message.
    message = f"Task exceeded maximum timeout value ({timeout} seconds)"
    return type(exception.__name__, (exception,), {"__init__": lambda self, *args: exception.__init__(self, message)})


class SharedTimerDeathPenalty(BaseDeathPenalty):
    """RQ's job timeout for a worker loop in a thread, enforced by the process's one watchdog."""

    _token = None

    def setup_death_penalty(self):
        if self._timeout > 0:
            self._token = _watchdog.watch(self._timeout, _with_message(self._exception, self._timeout))

    def cancel_death_penalty(self):
        if self._token is not None:
            _watchdog.forget(self._token)
            self._token = None
