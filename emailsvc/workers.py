"""`python worker.py`: WORKER_PROCESSES sending processes on queue `email`, kept alive by a supervisor.

Each process runs RQ's SimpleWorker, which performs jobs in-process instead of forking per job, so
it keeps its database connection and its SMTP connection open from one message to the next.
"""

import ctypes
import logging
import multiprocessing
import os
import signal
import time

from rq import SimpleWorker

from . import create_app
from .config import load_config
from .services import get_services

log = logging.getLogger("emailsvc.worker")
RESPAWN_DELAY = 1.0


def _die_with_parent():
    # If the supervisor is killed outright, its workers get SIGTERM: each finishes its message, stops.
    try:
        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG, Linux only
    except (OSError, AttributeError):
        pass


def run_worker():
    """Run one sending process until it is told to stop."""
    _die_with_parent()
    app = create_app()
    with app.app_context():
        services = get_services()
        worker = SimpleWorker([services.email_queue], connection=services.redis)
        try:
            worker.work(with_scheduler=True, logging_level="INFO")
        finally:
            services.mailer.close()


class Supervisor:
    """Starts the sending processes, restarts one that dies, and stops them all on SIGTERM or SIGINT."""

    def __init__(self, count):
        self.count = count
        self.children = []
        self.stopping = False

    def start_child(self):
        child = multiprocessing.get_context("fork").Process(target=run_worker, name="emailsvc-worker")
        child.start()
        self.children.append(child)

    def stop(self, signum, frame):
        self.stopping = True
        for child in self.children:
            if child.is_alive():
                os.kill(child.pid, signal.SIGTERM)  # warm shutdown: the message in hand is finished

    def run(self):
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)
        for _ in range(self.count):
            self.start_child()
        log.info("started %d sending processes", self.count)
        while self.children:
            time.sleep(0.5)
            for child in [c for c in self.children if not c.is_alive()]:
                child.join()
                self.children.remove(child)
                if not self.stopping:
                    log.warning("sending process %s exited with %s; starting another", child.pid, child.exitcode)
                    time.sleep(RESPAWN_DELAY)
                    self.start_child()


def main():
    """Entry point of worker.py."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    Supervisor(load_config()["WORKER_PROCESSES"]).run()
