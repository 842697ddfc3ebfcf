"""LeanWorker: RQ's SimpleWorker without the Redis round trips a job of milliseconds does not need.

RQ 3's SimpleWorker spends about 27 Redis round trips on each job; most are its worker heartbeat,
written three times per job as three separate commands each, and state writes Redis already holds.
The overrides below are small and keep RQ's behaviour: the intermediate queue, StartedJobRegistry,
Retry and the scheduler, warm shutdown, failed jobs in the FailedJobRegistry for rq-dashboard.
Left as RQ does it (copying RQ's large methods would be fragile): handle_job_success's WATCH and
read of the job's dependents, and the reads job.delete makes to find the registries to clean.
"""

import time

from rq import SimpleWorker
from rq.utils import now
from rq.worker import WorkerStatus

# A heartbeat is skipped only if the worker's key already lives at least this close to what the
# heartbeat would set. RQ blocks on the queue for worker_ttl - 15 s and sets the key to live
# worker_ttl + 60 s, so the key still outlives the longest wait by 65 s.
HEARTBEAT_SLACK = 10


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
