"""One sending process: SMTP_CONCURRENCY RQ worker loops as threads, so that many SMTP conversations are in flight.

A send spends nearly all its time waiting on the relay, so one process can keep many in flight. Each
loop is a whole RQ worker (ThreadWorker, emailsvc/rq_worker.py) with its own name, registration,
heartbeat and Redis connection, and runs one job at a time exactly as a single-threaded worker
does. Each job takes its own PostgreSQL connection from the pool, which holds its sending lock from
claim to outcome, and borrows an SMTP connection from services.mailers: the claim, the outcome and
the reconciler's guarantee are those of a single worker, for every message in flight.

The main thread owns the signals. SIGTERM or SIGINT asks every loop for a warm stop: a loop with a
job finishes it and exits; a loop waiting on the queue (a blocking BLMOVE of up to 30 s) is woken at
once by CLIENT UNBLOCK (where Redis forbids the command, it stops at the end of its wait). A second
signal, a second or more later, is a cold stop: the process exits, and the reconciler settles what
it left SENDING. A loop that ends by itself (Redis
gone too long) stops the others, and the process exits 1 so its supervisor starts another.
"""

import logging
import signal
import sys
import threading
import time
from uuid import uuid4

from redis.exceptions import RedisError
from rq import Queue
from rq.logutils import setup_loghandlers

from .rq_worker import ThreadWorker
from .services import EMAIL_QUEUE

log = logging.getLogger("emailsvc.worker")
# Ctrl-C reaches the supervisor and its processes at once, and the supervisor passes it on as SIGTERM:
# a second signal this soon after the first is the same request, not a cold stop (as RQ does).
REPEAT_SIGNAL_WINDOW = 1.0


class SendingProcess:
    """SMTP_CONCURRENCY ThreadWorker loops on queue `email`. None runs RQ's scheduler, which forks: the supervisor
    gives it a process of its own (workers.run_scheduler)."""

    def __init__(self, app, services, maintenance_interval):
        self.app, self.services = app, services
        setup_loghandlers("INFO", name="rq.worker")  # once, before threads could race to add handlers
        setup_loghandlers("INFO", name="rq.job")
        self.loops = []
        for _ in range(app.config["SMTP_CONCURRENCY"]):
            name = uuid4().hex
            # A connection of its own, named after the loop, so a warm stop can find and wake its wait.
            redis = services.new_redis(client_name=name)
            queue = Queue(EMAIL_QUEUE, connection=redis)
            loop = ThreadWorker([queue], name=name, connection=redis, maintenance_interval=maintenance_interval)
            self.loops.append(loop)
        self.threads = []
        self.stop_requested_at = None  # monotonic time of the first stop request
        self.signalled_at = None  # monotonic time of the first SIGTERM or SIGINT
        self.loop_ended_by_itself = False
        self.wake_failed = False
        self.changed = threading.Event()  # a loop ended, or a stop was requested

    def start(self):
        """Start the loops, each in a thread of its own."""
        for index, loop in enumerate(self.loops):
            thread = threading.Thread(target=self._work, args=(loop,), name=f"send-{index}", daemon=True)
            thread.start()
            self.threads.append(thread)

    def _work(self, loop):
        try:
            with self.app.app_context():
                loop.work(logging_level="INFO")
        finally:
            self.changed.set()

    def stop(self):
        """Ask every loop to stop after the job in hand."""
        if self.stop_requested_at is None:
            self.stop_requested_at = time.monotonic()
            for loop in self.loops:
                loop.request_warm_stop()
        self.changed.set()

    def wait(self):
        """Wait until every loop has ended, waking the idle ones once a stop is requested; return the exit status."""
        while any(thread.is_alive() for thread in self.threads):
            self.changed.wait(0.5 if self.stop_requested_at is None else 0.1)
            self.changed.clear()
            if self.stop_requested_at is None and not all(thread.is_alive() for thread in self.threads):
                log.warning("a sending loop ended by itself; stopping the others so the process is restarted")
                self.loop_ended_by_itself = True
                self.stop()
            if self.stop_requested_at is not None:
                self._wake_waiting_loops()
        self.services.mailers.close()
        return 1 if self.loop_ended_by_itself else 0

    def _wake_waiting_loops(self):
        # A loop asked to stop while blocked in BLMOVE would wait out its timeout; CLIENT UNBLOCK … ERROR
        # ends the wait without moving a job. Asked again until the loops are gone: a loop may be just
        # about to block. Without the command (a Redis that forbids it), a loop stops at the end of its
        # wait, within rq_worker.STOP_CHECK_INTERVAL.
        names = {loop.name for loop, thread in zip(self.loops, self.threads, strict=True) if thread.is_alive()}
        try:
            for client in self.services.redis.client_list():
                if client.get("name") in names and "b" in client.get("flags", ""):
                    self.services.redis.client_unblock(client["id"], error=True)
        except RedisError as exc:
            if not self.wake_failed:  # once: this is asked ten times a second until the loops are gone
                log.warning("could not wake the waiting sending loops: %s", exc)
            self.wake_failed = True

    def handle_signal(self, signum, frame):
        if self.signalled_at is None:
            self.signalled_at = time.monotonic()
            log.info("%s: finishing the messages in flight, then stopping", signal.Signals(signum).name)
            self.stop()
        elif time.monotonic() - self.signalled_at > REPEAT_SIGNAL_WINDOW:
            log.warning("cold stop: leaving the messages in flight to the reconciler")
            sys.exit(1)  # the loops are daemon threads; their sending locks end with the process's connections

    def run(self):
        """Run until SIGTERM or SIGINT (the process's main thread); return the exit status."""
        signal.signal(signal.SIGTERM, self.handle_signal)
        signal.signal(signal.SIGINT, self.handle_signal)
        self.start()
        return self.wait()
