"""Queue jobs exactly as RQ's `Queue.enqueue` writes them, for a fraction of its CPU per job.

RQ's enqueue builds a `Job` through its general path (the function checked, timeouts, retries and
callbacks resolved, the dependencies looked at) and then writes, in the caller's pipeline: the queue's
name in `rq:queues`, the job's status, the job's fields, and its id on the queue. On the accept path
that was ~15% of a send's CPU. A `JobWriter` asks RQ once, per process, for the fields of a job made
with the same function and options (a template), and writes every job of a request with those fields and
its own id, arguments, call string and times, in the same commands and the same order, in one script
(PUSH_JOBS): atomic as RQ's MULTI/EXEC is, one command for redis-py to send and read instead of one a write.

It builds on RQ's storage format (`rq==3.0.*` in requirements.txt): `tests/test_rq_enqueue.py` queues
jobs each way and compares what Redis holds, so an RQ upgrade that changes a field fails there.
Scheduled jobs (`enqueue_at`) keep RQ's own path: they are rare, and go through its scheduler.
"""

import threading
import zlib

from rq.job import JobStatus
from rq.utils import get_call_string, now, utcformat

from .redis_scripts import run_script

TEMPLATE_ID = "emailsvc-template"
# The fields that differ between jobs, given per job; every other field is the template's.
OWN_FIELDS = ("created_at", "enqueued_at", "data", "description")
# KEYS: rq:queues, the queue, then each job's hash. ARGV: the queue's key (the member of rq:queues), "1" to push at
# the front, the number of template arguments, the template's fields and values, then per job: its id, its
# time (created_at and enqueued_at), its data and its description.
PUSH_JOBS = """
redis.call("sadd", KEYS[1], ARGV[1])
local shared = tonumber(ARGV[3])
local ids = {}
for j = 3, #KEYS do
    local at = 4 + shared + 4 * (j - 3)
    local fields = {unpack(ARGV, 4, 3 + shared)}
    for _, value in ipairs({"created_at", ARGV[at + 1], "enqueued_at", ARGV[at + 1], "data", ARGV[at + 2],
                            "description", ARGV[at + 3]}) do
        fields[#fields + 1] = value
    end
    redis.call("hset", KEYS[j], unpack(fields))
    ids[#ids + 1] = ARGV[at]
end
if #ids > 0 then
    redis.call(ARGV[2] == "1" and "lpush" or "rpush", KEYS[2], unpack(ids))
end
"""


class JobWriter:
    """Writes `func_name(*args)` jobs of one queue, each with RQ's `options` (retry, TTLs), into a pipeline."""

    def __init__(self, queue, func_name, **options):
        self.queue, self.func_name, self.options = queue, func_name, options
        self._fields = None
        self._lock = threading.Lock()

    def template(self):
        """The fields RQ writes for such a job, asked of RQ once (a job built, never saved)."""
        if self._fields is None:
            with self._lock:
                job = self.queue.create_job(self.func_name, args=(TEMPLATE_ID,), job_id=TEMPLATE_ID, **self.options)
                # What Queue._prepare_for_queue sets before RQ saves a job.
                job.origin = self.queue.name
                job.enqueued_at = now()
                if job.timeout is None:
                    job.timeout = self.queue._default_timeout
                job._status = JobStatus.QUEUED
                self.serializer = job.serializer
                fields = job.to_dict()
                self._shared = [
                    arg for name, value in fields.items() if name not in OWN_FIELDS for arg in (name, value)
                ]
                self._push = self.queue.connection.register_script(PUSH_JOBS)
                self._fields = fields
        return self._fields

    def write(self, job_ids, at_front=False, pipe=None):
        """Queue one job per id (its one argument), in order, as RQ's enqueue would: at once, or in `pipe`."""
        self.template()
        jobs = []
        for job_id in job_ids:
            args = (job_id,)
            data = zlib.compress(self.serializer.dumps((self.func_name, None, args, {})))
            jobs += (job_id, utcformat(now()), data, get_call_string(self.func_name, args, {}, max_length=75))
        keys = [self.queue.redis_queues_keys, self.queue.key, *map(self.queue.job_class.key_for, job_ids)]
        # As RQ pushes them one by one: at the front, the last ends first.
        args = [self.queue.key, "1" if at_front else "0", len(self._shared), *self._shared, *jobs]
        if pipe is None:
            run_script(self._push, keys, args)
        else:
            self._push(keys, args, client=pipe)
