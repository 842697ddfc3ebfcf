"""LeanWorker: RQ's SimpleWorker without the Redis round trips a job of milliseconds does not need.

RQ 3's SimpleWorker spends about 27 Redis round trips on each job; most are its worker heartbeat,
written three times per job as three separate commands each, state writes Redis already holds, and
the reads and writes of a finished job's bookkeeping. LeanWorker spends 5 (docs/performance.md):
heartbeats only when needed, the job's start in one transaction, a finished job's bookkeeping in
one Lua script (FINISH_JOB), and the `rq suspend` check with the idle state. It keeps RQ's
behaviour: the intermediate queue, StartedJobRegistry, Retry and the scheduler, warm shutdown,
failed jobs in the FailedJobRegistry for rq-dashboard; a job with dependents, a repeat, a group, a
rate limit or a kept result finishes RQ's own way. RQ's INFO lines about each job that went well
are written at DEBUG (PER_JOB_LINES): emailsvc.jobs logs each attempt's outcome.

ThreadWorker is a LeanWorker that runs in a thread beside others in one sending process
(emailsvc/sending.py). These overrides rely on RQ 3.0's internals (`_stop_requested`,
`_install_signal_handlers`, `dequeue_job_and_maintain_ttl`, `prepare_job_execution`'s body, the
keys FINISH_JOB writes, the texts of PER_JOB_LINES); requirements.txt pins rq==3.0.*,
tests/test_sending.py fails on another version so an upgrade re-reads them, and
tests/test_rq_worker.py compares what Redis keeps after a job with what RQ's own SimpleWorker
leaves, and checks that a job that went well leaves no INFO line of RQ's.
"""

import time

import redis.exceptions
from rq import Queue, SimpleWorker
from rq.exceptions import StopRequested
from rq.executions import WORKER_EXECUTIONS_KEY_TEMPLATE, Execution
from rq.job import JobStatus
from rq.results import Result
from rq.suspension import WORKERS_SUSPENDED
from rq.utils import current_timestamp, now
from rq.worker import WorkerStatus

from .job_timeouts import SharedTimerDeathPenalty

# A heartbeat is skipped only if the worker's key already lives at least this close to what the
# heartbeat would set. RQ blocks on the queue for worker_ttl - 15 s and sets the key to live
# worker_ttl + 60 s, so the key still outlives the longest wait by 65 s.
HEARTBEAT_SLACK = 10
# A thread loop waiting on the queue looks for a stop request at least this often (seconds), in case
# the warm stop cannot wake it with CLIENT UNBLOCK (a Redis that forbids the command).
STOP_CHECK_INTERVAL = 30


# What RQ's handle_job_success writes for a finished job whose result is not kept (result_ttl 0), in one
# atomic round trip instead of ten: the worker's counts; the execution's cleanup; then Job.delete —
# every execution the job's registry holds (RQ's ExecutionRegistry.cleanup and get_executions,
# Execution.delete, StartedJobRegistry.remove_executions) and the job's keys. RQ reads the dependents
# under WATCH and the registries over seven reads first; here the script reads them itself. A job with
# dependents, or not STARTED, is left untouched (returns 0) for RQ's own path.
# KEYS: worker, job, dependents, dependencies, result, the job's executions, the started (wip)
# registry. ARGV: job id, this execution's id, working time (s), now (s), STARTED, the prefix of an
# execution's key, and the two halves of a worker's executions key around the worker's name.
FINISH_JOB = """
if redis.call('SCARD', KEYS[3]) > 0 or redis.call('HGET', KEYS[2], 'status') ~= ARGV[5] then
    return 0
end
redis.call('HINCRBY', KEYS[1], 'successful_job_count', 1)
redis.call('HINCRBYFLOAT', KEYS[1], 'total_working_time', ARGV[3])
local function drop(id)
    local composite = ARGV[1] .. ':' .. id
    local worker_name = redis.call('HGET', ARGV[6] .. composite, 'worker_name')
    redis.call('DEL', ARGV[6] .. composite)
    redis.call('ZREM', KEYS[7], composite)
    redis.call('ZREM', KEYS[6], id)
    if worker_name and worker_name ~= '' then
        redis.call('SREM', ARGV[7] .. worker_name .. ARGV[8], composite)
    end
end
drop(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[6], 0, ARGV[4])
for _, id in ipairs(redis.call('ZRANGE', KEYS[6], 0, -1)) do
    drop(id)
end
redis.call('DEL', KEYS[6], KEYS[2], KEYS[3], KEYS[4], KEYS[5])
return 1
"""


# RQ's INFO lines about a job that went well, four a job (its start, "Job OK", "result discarded", and
# LeanWorker's own "Successfully completed"): ~50 µs of CPU a job for the four, and emailsvc.jobs
# already writes one line per attempt with its outcome. They are written at DEBUG instead; a failed job
# is still logged at ERROR with its traceback, and the worker's own lines (start, stop) stay INFO.
PER_JOB_LINES = frozenset((
    "Worker %s: %s: %s (%s)",  # the job taken from the queue (with its description), and "Job OK"
    "Worker %s: %s: %s",  # the job taken from the queue (without)
    "Worker %s: job %s result discarded immediately",
    "Successfully completed %s in %ss on worker %s",
))  # fmt: skip


class _PerJobLinesAtDebug:
    """RQ's worker logger, writing PER_JOB_LINES at DEBUG."""

    def __init__(self, logger):
        self._logger = logger

    def __getattr__(self, name):
        return getattr(self._logger, name)

    def info(self, msg, *args, **kwargs):
        (self._logger.debug if msg in PER_JOB_LINES else self._logger.info)(msg, *args, **kwargs)


class LeanWorker(SimpleWorker):
    _alive_until = 0.0  # monotonic time until which the worker's key lives, as last set by a heartbeat
    _finish_job = None  # the FINISH_JOB script, registered on this worker's connection
    _not_suspended = False  # Redis said, with the idle state after the last job, that workers are not suspended
    _starting = None  # the transaction prepare_execution began, which prepare_job_execution completes

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.log = _PerJobLinesAtDebug(self.log)

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
        # heartbeat RQ's loop sends right after the job (which then finds it covered and skips it), and
        # as the `rq suspend` check the loop makes before its next dequeue (check_for_suspension).
        execution = self.prepare_execution(job)
        self.perform_job(job, queue, execution)
        with self.connection.pipeline(transaction=False) as pipe:
            self.set_state(WorkerStatus.IDLE, pipeline=pipe)
            self.heartbeat(pipeline=pipe)
            pipe.exists(WORKERS_SUSPENDED)
            self._not_suspended = not pipe.execute()[-1]

    def check_for_suspension(self, burst):
        # RQ asks Redis (with a heartbeat) before every dequeue; right after a job, the answer came with
        # the idle state a moment ago. Otherwise, and whenever workers are suspended, RQ's own check.
        not_suspended, self._not_suspended = self._not_suspended, False
        if not not_suspended:
            super().check_for_suspension(burst)

    def prepare_execution(self, job):
        # RQ writes the job's execution record and the worker's BUSY state in one transaction, then
        # (prepare_job_execution, called by perform_job next) the job's start in another; here both go
        # in one. Returns the execution as RQ's does; the writes wait for prepare_job_execution.
        pipe = self.connection.pipeline()
        execution = Execution.create(job, self.get_heartbeat_ttl(job), pipeline=pipe, worker_name=self.name)
        self.executions[execution.id] = execution
        self.set_state(WorkerStatus.BUSY, pipeline=pipe)
        self._starting = pipe
        return execution

    def prepare_job_execution(self, job, remove_from_intermediate_queue=False):
        # RQ 3.0's prepare_job_execution on the transaction prepare_execution began (less the process title,
        # which the loops of a sending process share).
        pipe, self._starting = self._starting, None
        if pipe is None:
            return super().prepare_job_execution(job, remove_from_intermediate_queue)
        with pipe:
            heartbeat_ttl = self.get_heartbeat_ttl(job)
            self.heartbeat(heartbeat_ttl, pipeline=pipe)
            job.heartbeat(now(), heartbeat_ttl, pipeline=pipe)
            job.prepare_for_execution(self.name, pipeline=pipe)
            pipe.persist(job.key)
            if remove_from_intermediate_queue:
                pipe.lrem(Queue(job.origin, connection=self.connection).intermediate_queue_key, 1, job.id)
            pipe.execute()

    def set_state(self, state, pipeline=None):
        # The worker writes IDLE after each job and again before the next dequeue; the second write
        # changes nothing in Redis. Every change of state is still written (BUSY goes in RQ's
        # job-start pipeline; SUSPENDED and back through here).
        if pipeline is None and state == self._state:
            return
        super().set_state(state, pipeline=pipeline)

    def handle_job_success(self, job, queue, started_job_registry, execution):
        # emailsvc's jobs keep no result, never repeat, belong to no group and have no rate limit: for
        # them, FINISH_JOB does RQ's bookkeeping in one round trip. Anything else goes RQ's way.
        plain = not (job.repeats_left or job.group_id or job.has_rate_limit)
        if not plain or job.get_result_ttl(self.default_result_ttl) != 0 or not self._finish(job, queue, execution):
            return super().handle_job_success(job, queue, started_job_registry, execution)
        job._status = JobStatus.FINISHED
        self.executions.pop(execution.id, None)
        what = f"{job.description} job" if self.log_job_description else f"job {job.id}"
        self.log.info("Successfully completed %s in %ss on worker %s", what, job.ended_at - job.started_at, self.name)

    def _finish(self, job, queue, execution):
        if self._finish_job is None:
            self._finish_job = self.connection.register_script(FINISH_JOB)
        before, _, after = WORKER_EXECUTIONS_KEY_TEMPLATE.partition("{0}")
        keys = [self.key, job.key, job.dependents_key, job.dependencies_key, Result.get_key(job.id),
                job.execution_registry.key, queue.started_job_registry.key]  # fmt: skip
        args = [job.id, execution.id, (job.ended_at - job.started_at).total_seconds(), current_timestamp(),
                JobStatus.STARTED.value, execution.key[: -len(execution.composite_key)], before, after]  # fmt: skip
        return self._finish_job(keys=keys, args=args) == 1

    def handle_execution_ended(self, job, queue, heartbeat_ttl):
        # RQ also writes the job's last_heartbeat here, for success and failure callbacks that may
        # run long; emailsvc's jobs have none, and the outcome is recorded within milliseconds,
        # while the job's StartedJobRegistry entry (job timeout + 60 s) still stands.
        job.ended_at = now()


class ThreadWorker(LeanWorker):
    """A LeanWorker for a thread that is not the main one: no signal handlers, the process's watchdog for
    the job timeout, and a warm stop the main thread asks for with request_warm_stop()."""

    # RQ's default job timeout raises from SIGALRM, which only ever reaches the main thread.
    death_penalty_class = SharedTimerDeathPenalty

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
