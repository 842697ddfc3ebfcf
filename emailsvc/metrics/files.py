"""Where a process keeps its counts, so that a scrape of any one process sums them all.

prometheus_client's multiprocess mode: each process writes its values to memory-mapped files of its
own in PROMETHEUS_MULTIPROC_DIR, and GET /metrics merges every file there. A counter of a process
that has exited stays in the sum, so totals never drop when gunicorn or the supervisor replaces one.
The files are named after the process's role, `web` (gunicorn's workers) or `worker` (worker.py's
supervisor and its processes), so each role empties only its own at start: gunicorn and worker.py
start and stop independently, and neither may wipe the other's counts while it runs.
"""

import glob
import os

from prometheus_client import multiprocess, values


def use_files(directory, role):
    """Make this process, and those it forks, count into `role`'s files in `directory` (before counting anything)."""
    os.makedirs(directory, exist_ok=True)
    # The client opens each process's files in the directory this variable names, when it first counts.
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
    values.ValueClass = values.MultiProcessValue(lambda: f"{role}-{os.getpid()}")


def uses_files():
    """True when this process counts into files (a gunicorn worker, worker.py), False when in memory (tests, CLI)."""
    return bool(getattr(values.ValueClass, "_multiprocess", False))


def clear_files(directory, role):
    """Delete what an earlier run of `role` counted: its counters start again from zero, which Prometheus reads as
    a restart."""
    for path in glob.glob(os.path.join(directory, f"*_{role}-*.db")):
        os.remove(path)


def mark_dead(directory, role, pid):
    """Forget the live gauges of an exited process of `role` (its counters stay in the totals)."""
    multiprocess.mark_process_dead(f"{role}-{pid}", directory)
