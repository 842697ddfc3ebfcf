"""`python worker.py`: WORKER_PROCESSES sending processes on queue `email`, kept alive by a supervisor.

Each process runs SMTP_CONCURRENCY RQ worker loops as threads (emailsvc/sending.py), each RQ's
SimpleWorker (as ThreadWorker, emailsvc/rq_worker.py: fewer Redis round trips per job), which
performs jobs in-process instead of forking per job; the process keeps its database and SMTP
connections open from one message to the next.
WEBHOOK_PROCESSES separate processes deliver outbound webhooks (queue `webhooks`): a sending process
never waits on a webhook receiver, however slow. One more process runs RQ's scheduler (retries,
send_at; run_scheduler says why it is not forked from a sending process). The supervisor, otherwise
idle, runs the reconciler every RECONCILE_INTERVAL seconds, and a retention pass
(emailsvc/retention.py) in a process of its own at start and then once a day.
"""

import ctypes
import logging
import multiprocessing
import os
import signal
import sys
import threading
import time

from rq.scheduler import RQScheduler

from . import create_app
from .metrics.files import clear_files, mark_dead, use_files
from .notify import dispatch_forever
from .reconciler import reconcile
from .retention import purge
from .rq_worker import LeanWorker
from .sending import SendingProcess
from .services import get_services

log = logging.getLogger("emailsvc.worker")
RESPAWN_DELAY = 1.0
# RQ's worker maintenance (registries) every 30 s instead of its default 10 minutes; and how often a
# scheduler process whose lock another host holds asks for it again.
MAINTENANCE_INTERVAL = 30
PURGE_INTERVAL = 24 * 3600


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
    sys.exit(SendingProcess(app, app.extensions["emailsvc"], MAINTENANCE_INTERVAL).run())


def run_scheduler():
    """Run RQ's scheduler for queue `email` (retries and send_at), in a process of its own.

    RQ's worker forks its scheduler from the worker process; a sending process runs SMTP_CONCURRENCY
    threads, and a fork copies whatever lock another thread holds at that moment (an import lock,
    `_strptime`'s cache lock: every job's timestamps are parsed with strptime) into a child that then
    waits on it for ever, with no scheduled job moved again. This process has one thread. One
    scheduler runs across all hosts (RQ's lock); the others ask for the lock every MAINTENANCE_INTERVAL.
    """
    _die_with_parent()
    app = create_app()
    with app.app_context():
        scheduler = RQScheduler([get_services().email_queue], connection=get_services().redis)
        scheduler.acquire_locks()
        while not scheduler.acquired_locks:  # another host's scheduler has it; SIGTERM ends the wait
            time.sleep(MAINTENANCE_INTERVAL)
            scheduler.acquire_locks()
        scheduler.work()  # until SIGTERM: RQ's own loop, which releases the lock when it stops


def run_webhook_worker():
    """Run one webhook process: the dispatcher of due deliveries, and a worker on queue `webhooks`."""
    _die_with_parent()
    app = create_app()
    threading.Thread(target=dispatch_forever, args=(app,), name="webhook-dispatcher", daemon=True).start()
    with app.app_context():
        LeanWorker([get_services().webhook_queue], connection=get_services().redis).work(logging_level="INFO")


def run_purge():
    """Run one retention pass; SIGTERM or SIGINT stops it between two batches."""
    _die_with_parent()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    signal.signal(signal.SIGINT, lambda signum, frame: stop.set())
    app = create_app()
    try:
        with app.app_context():
            purge(app.config, should_stop=stop.is_set)
    except Exception:  # an outage: tomorrow's pass takes up what is left
        log.exception("retention pass failed")


class Supervisor:
    """Starts the sending and webhook processes, restarts one that dies, reconciles, and stops them all on
    SIGTERM or SIGINT."""

    def __init__(self, app):
        self.app = app
        self.targets = (
            [run_worker] * app.config["WORKER_PROCESSES"]
            + [run_webhook_worker] * app.config["WEBHOOK_PROCESSES"]
            + [run_scheduler]
        )
        self.children = []
        self.roles = {}  # child process -> the function it runs, to restart it as the same kind
        self.stopping = False
        self.signalled = set()
        self.next_reconcile = 0.0
        self.purger = None  # the process of the running retention pass
        self.next_purge = 0.0

    def start_child(self, target):
        child = multiprocessing.get_context("fork").Process(target=target, name=f"emailsvc-{target.__name__}")
        child.start()
        self.children.append(child)
        self.roles[child] = target

    def stop(self, signum=None, frame=None):
        self.stopping = True
        for child in self.children + ([self.purger] if self.purger else []):
            if child.is_alive() and child.pid not in self.signalled:
                self.signalled.add(child.pid)  # once: RQ takes a second SIGTERM as a cold stop
                os.kill(child.pid, signal.SIGTERM)  # warm shutdown: the message in hand is finished

    def reconcile_when_due(self):
        if self.stopping or time.monotonic() < self.next_reconcile:
            return
        self.next_reconcile = time.monotonic() + self.app.config["RECONCILE_INTERVAL"]
        try:
            with self.app.app_context():
                reconcile(self.app.config["RECONCILE_GRACE"])
        except Exception:  # an outage must not stop the supervisor; the next pass tries again
            log.exception("reconciler pass failed")

    def purge_when_due(self, metrics_dir):
        if self.purger is not None and not self.purger.is_alive():
            self.purger.join()
            mark_dead(metrics_dir, "worker", self.purger.pid)
            self.purger = None
        if self.stopping or self.purger is not None or time.monotonic() < self.next_purge:
            return
        self.next_purge = time.monotonic() + PURGE_INTERVAL
        self.purger = multiprocessing.get_context("fork").Process(target=run_purge, name="emailsvc-purge")
        self.purger.start()

    def run(self):
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)
        # The supervisor and every process it starts count into files GET /metrics sums (emailsvc/metrics/files.py);
        # what an earlier run counted goes first.
        metrics_dir = self.app.config["PROMETHEUS_MULTIPROC_DIR"]
        clear_files(metrics_dir, "worker")
        use_files(metrics_dir, "worker")
        for target in self.targets:
            self.start_child(target)
        log.info(
            "started %d sending and %d webhook processes, and RQ's scheduler",
            self.targets.count(run_worker),
            self.targets.count(run_webhook_worker),
        )
        while self.children:
            self.reconcile_when_due()
            self.purge_when_due(metrics_dir)
            time.sleep(0.5)
            for child in [c for c in self.children if not c.is_alive()]:
                child.join()
                mark_dead(metrics_dir, "worker", child.pid)
                self.children.remove(child)
                target = self.roles.pop(child)
                if not self.stopping:
                    log.warning("%s process %s exited with %s; starting another", child.name, child.pid, child.exitcode)
                    time.sleep(RESPAWN_DELAY)
                    if not self.stopping:  # SIGTERM may have come during the delay
                        self.start_child(target)
            if self.stopping:
                self.stop()  # also reaches a process started while the signal was being handled
        if self.purger is not None:
            self.purger.join()


def main():
    """Entry point of worker.py; it logs as the API does (LOG_FORMAT), set up by create_app."""
    Supervisor(create_app()).run()
