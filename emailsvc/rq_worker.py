"""LeanWorker: RQ's SimpleWorker without the Redis round trips a job of milliseconds does not need.

RQ 3's SimpleWorker spends about 27 Redis round trips on each job; most are its worker heartbeat,
written three times per job as three separate commands each, and state writes Redis already holds.
The overrides below are small and keep RQ's behaviour: the intermediate queue, StartedJobRegistry,
Retry and the scheduler, warm shutdown, failed jobs in the FailedJobRegistry for rq-dashboard.
Left as RQ does it (copying RQ's large methods would be fragile): handle_job_success's WATCH and
read of the job's dependents, and the reads job.delete makes to find the registries to clean.

ThreadWorker is a LeanWorker that runs in a thread beside others in one sending process
(emailsvc/sending.py). These overrides rely on RQ 3.0's internals (`_stop_requested`,
`_install_signal_handlers`, `dequeue_job_and_maintain_ttl`); requirements.txt pins rq==3.0.*, and
tests/test_sending.py fails on another version so an upgrade re-reads them.
"""

import time

import redis.exceptions
from rq import SimpleWorker
from rq.exceptions import StopRequested
from rq.timeouts import TimerDeathPenalty
from rq.utils import now
from rq.worker import WorkerStatus

# A heartbeat is skipped only if the worker's key already lives at least this close to what the
# heartbeat would set. RQ blocks on the queue for worker_ttl - 15 s and sets the key to live
# worker_ttl + 60 s, so the key still outlives the longest wait by 65 s.
HEARTBEAT_SLACK = 10
# A thread loop waiting on the queue looks for a stop request at least this often (seconds), in case
# the warm stop cannot wake it with CLIENT UNBLOCK (a Redis that forbids the command).
STOP_CHECK_INTERVAL = 30


class LeanWorker(SimpleWorker):
    _alive_until = 0.0  # monotonic time until which the worker's key lives, as last set by a heartbeat

    def heartbeat(self, timeout=None, pipeline=None):
        # RQ beats after each job, before each dequeue and after it: nine round trips a job, all
        # saying "alive". A beat the key's current TTL already covers (within HEARTBEAT_SLACK) is
        # skipped; one that is needed goes as one pipelined round trip instead of three. Beats
        # inside pipelines (job start, job end, suspension check) are always written, and tracked:
        # the job start sets a shorter TTL (job timeout + 60 s), which the job end's beat restores.
        timeout = timeout or self.worker_ttl + 60
        if pipeline is not None:
            super().heartbeat(timeout, pipeline=pipeline)
        elif self._alive_until >= time.monotonic() + timeout - HEARTBEAT_SLACK:
            return
        else:
            with self.connection.pipeline(transaction=False) as pipe:
                super().heartbeat(timeout, pipeline=pipe)
                pipe.execute()
        self._alive_until = time.monotonic() + timeout

    def execute_job(self, job, queue):
        # SimpleWorker's own three lines, with the IDLE state written in the same round trip as the
        # heartbeat RQ's loop sends right after the job (which then finds it covered and skips it).
        execution = self.prepare_execution(job)
        self.perform_job(job, queue, execution)
        with self.connection.pipeline(transaction=False) as pipe:
            self.set_state(WorkerStatus.IDLE, pipeline=pipe)
            self.heartbeat(pipeline=pipe)
            pipe.execute()

    def set_state(self, state, pipeline=None):
        # The worker writes IDLE after each job and again before the next dequeue; the second write
        # changes nothing in Redis. Every change of state is still written (BUSY goes in RQ's
        # job-start pipeline; SUSPENDED and back through here).
        if pipeline is None and state == self._state:
            return
        super().set_state(state, pipeline=pipeline)

    def handle_execution_ended(self, job, queue, heartbeat_ttl):
        # RQ also writes the job's last_heartbeat here, for success and failure callbacks that may
        # run long; emailsvc's jobs have none, and the outcome is recorded within milliseconds,
        # while the job's StartedJobRegistry entry (job timeout + 60 s) still stands.
        job.ended_at = now()


class ThreadWorker(LeanWorker):
    """A LeanWorker for a thread that is not the main one: no signal handlers, a timer for the job
    timeout, and a warm stop the main thread asks for with request_warm_stop()."""

    # RQ's default job timeout raises from SIGALRM, which only ever reaches the main thread.
    death_penalty_class = TimerDeathPenalty

    def _install_signal_handlers(self):
        # Only the main thread may install them; it owns SIGTERM and SIGINT and stops every loop.
        pass

    def request_warm_stop(self):
        """Finish the job in hand, if any, and take no other (called from another thread).

        A loop blocked waiting for a job is woken by CLIENT UNBLOCK … ERROR on its Redis connection
        (see sending.py), which makes the wait fail without taking a job.
        """
        self._shutdown_requested_date = now()
        self.handle_warm_shutdown_request()
        self._stop_requested = True  # RQ's loop checks it before each dequeue

    def dequeue_job_and_maintain_ttl(self, timeout, max_idle_time=None):
        # RQ's own wait retries its BLMOVE until a job comes, however long, and never looks at a stop
        # request; here each wait lasts at most STOP_CHECK_INTERVAL (given as the idle time after which
        # RQ's wait returns None), and a stop request is checked before the next.
        wait = None if timeout is None else min(timeout, STOP_CHECK_INTERVAL)
        while not self._stop_requested:
            try:
                result = super().dequeue_job_and_maintain_ttl(wait, max_idle_time=wait)
            except redis.exceptions.ResponseError as exc:
                if self._stop_requested and str(exc).startswith("UNBLOCKED"):
                    break
                raise
            if result is not None and self._stop_requested:
                self._give_back(*result)
                break
            if result is not None or wait is None:  # a job, or an empty queue in burst mode
                return result
        raise StopRequested()

    def _give_back(self, job, queue):
        # A job that reached this loop's wait just as the stop was requested (before the wake-up could
        # end the wait) goes back to the front of its queue, untouched, for the next worker.
        with self.connection.pipeline() as pipe:
            pipe.lrem(queue.intermediate_queue_key, 1, job.id)
            pipe.lpush(queue.key, job.id)
            pipe.execute()
