"""`python worker.py`: WORKER_PROCESSES sending processes on queue `email`, kept alive by a supervisor.

Each process runs RQ's SimpleWorker, which performs jobs in-process instead of forking per job, so
it keeps its database connection and its SMTP connection open from one message to the next.
WEBHOOK_PROCESSES separate processes deliver outbound webhooks (queue `webhooks`): a sending process
never waits on a webhook receiver, however slow.
"""

import ctypes
import logging
import multiprocessing
import os
import signal
import threading
import time

from rq import SimpleWorker

from . import create_app
from .config import load_config
from .notify import dispatch_forever, webhook_queue
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


def run_webhook_worker():
    """Run one webhook process: the dispatcher of due deliveries, and a worker on queue `webhooks`."""
    _die_with_parent()
    app = create_app()
    threading.Thread(target=dispatch_forever, args=(app,), name="webhook-dispatcher", daemon=True).start()
    with app.app_context():
        SimpleWorker([webhook_queue()], connection=get_services().redis).work(logging_level="INFO")


class Supervisor:
    """Starts the sending and webhook processes, restarts one that dies, and stops them all on SIGTERM or SIGINT."""

    def __init__(self, count, webhook_count=0):
        self.targets = [run_worker] * count + [run_webhook_worker] * webhook_count
        self.children = []
        self.roles = {}  # child process -> the function it runs, to restart it as the same kind
        self.stopping = False

    def start_child(self, target):
        child = multiprocessing.get_context("fork").Process(target=target, name=f"emailsvc-{target.__name__}")
        child.start()
        self.children.append(child)
        self.roles[child] = target

    def stop(self, signum, frame):
        self.stopping = True
        for child in self.children:
            if child.is_alive():
                os.kill(child.pid, signal.SIGTERM)  # warm shutdown: the message in hand is finished

    def run(self):
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)
        for target in self.targets:
            self.start_child(target)
        log.info("started %d sending and %d webhook processes", self.targets.count(run_worker),
                 self.targets.count(run_webhook_worker))  # fmt: skip
        while self.children:
            time.sleep(0.5)
            for child in [c for c in self.children if not c.is_alive()]:
                child.join()
                self.children.remove(child)
                if not self.stopping:
                    log.warning("%s process %s exited with %s; starting another", child.name, child.pid, child.exitcode)
                    time.sleep(RESPAWN_DELAY)
                    self.start_child(self.roles.pop(child))


def main():
    """Entry point of worker.py."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    config = load_config()
    Supervisor(config["WORKER_PROCESSES"], config["WEBHOOK_PROCESSES"]).run()
