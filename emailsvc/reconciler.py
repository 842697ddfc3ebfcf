"""The reconciler: puts back on the queue what a crash or a Redis restart took off it.

A pass (run by worker.py every RECONCILE_INTERVAL seconds, and by `flask --app wsgi reconcile`):
1. settles SENDING rows whose sending lock no live worker holds (their worker was killed): back to
   PENDING and queued again if attempts remain, else FAILED; and refuses the recipients still
   deferred on a SENT message whose last attempt was so abandoned;
2. re-enqueues rows waiting for a job (PENDING, SCHEDULED and due, or SENT with recipients waiting
   for a retry) unchanged for the grace period whose job is gone: missing (Redis restarted empty,
   or a crash between insert and enqueue), failed, or taken by a worker that died before recording;
3. hands to the queue a job RQ's scheduler should have moved more than the grace period ago;
4. deletes idempotency keys older than 24 h.
What it queues goes to the front of the queue: it has waited already, and must not wait again
behind a backlog. Passes are serialised by a PostgreSQL advisory lock, so every worker may run them.
"""

import logging
import time

from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.job import Job, JobStatus
from rq.utils import utcparse

from .jobs import MAX_ATTEMPTS, enqueue_delivery
from .metrics import RECONCILER_RECOVERIES
from .queries.emails import (
    list_waiting,
    lock_reconciler,
    settle_abandoned,
    settle_abandoned_retries,
    unlock_reconciler,
)
from .queries.idempotency import purge_expired_keys
from .services import get_services

log = logging.getLogger(__name__)
RETRY_NOTE = "The worker stopped before recording the outcome; sending again with the same Message-ID."
FAILED_NOTE = "The worker stopped before recording the outcome of the last attempt."


def reconcile(grace):
    """Run one pass; return what it did as counts, or None when another pass holds the lock."""
    services = get_services()
    done = {"abandoned": 0, "failed": 0, "requeued": 0, "expired_keys": 0}
    with services.db.cursor() as cur:
        if not lock_reconciler(cur):
            return None
        try:
            _settle_abandoned(cur, done)
            _requeue_lost(cur, services.email_queue, grace, done)
            done["expired_keys"] = purge_expired_keys(cur)
        finally:
            if not cur.connection.closed:
                unlock_reconciler(cur)
    if any(done.values()):
        log.info("reconciler: %s", ", ".join(f"{name} {count}" for name, count in done.items()))
    for kind in ("abandoned", "failed", "requeued"):
        if done[kind]:
            RECONCILER_RECOVERIES.labels(kind).inc(done[kind])
    return done


def _settle_abandoned(cur, done):
    while settled := settle_abandoned(cur, MAX_ATTEMPTS, RETRY_NOTE, FAILED_NOTE):
        for row in settled:
            if row["status"] == "PENDING":
                enqueue_delivery(row["id"], at_front=True)
                done["abandoned"] += 1
            else:
                done["failed"] += 1
    while refused := settle_abandoned_retries(cur, MAX_ATTEMPTS, FAILED_NOTE):
        done["failed"] += len(refused)


def _requeue_lost(cur, queue, grace, done):
    after = None
    while page := list_waiting(cur, grace, after):
        after = (page[-1]["updated_at"], page[-1]["id"])
        gone, overdue = _lost_jobs(queue, [str(row["id"]) for row in page], grace)
        for email_id in gone:
            enqueue_delivery(email_id, at_front=True)
            done["requeued"] += 1
        for email_id in overdue:
            try:
                queue.scheduled_job_registry.requeue(email_id)
            except (InvalidJobOperation, NoSuchJobError):
                continue  # the scheduler moved it meanwhile
            done["requeued"] += 1


def _lost_jobs(queue, job_ids, grace):
    """Return (ids whose job is gone, ids whose scheduled job is overdue by more than `grace` seconds).

    Alive: queued (but not stranded in RQ's intermediate list by a worker killed mid-dequeue),
    scheduled and not overdue, or started less than `grace` ago (its worker is about to claim the
    row). Anything else is gone: missing, failed, or started by a worker that died before claiming.
    Mistaking a live job for a gone one only adds a job that finds the row taken and does nothing.
    """
    pipe = queue.connection.pipeline(transaction=False)
    pipe.lrange(queue.intermediate_queue_key, 0, -1)
    for job_id in job_ids:
        pipe.hmget(Job.key_for(job_id), "status", "started_at")
        pipe.zscore(queue.scheduled_job_registry.key, job_id)
    stranded, *replies = pipe.execute()
    stranded = {job_id.decode() for job_id in stranded}
    cutoff = time.time() - grace
    gone, overdue = [], []
    for job_id, (status, started_at), due in zip(job_ids, replies[::2], replies[1::2], strict=True):
        status = status.decode() if status else None
        if status == JobStatus.QUEUED and job_id not in stranded:
            continue
        if status == JobStatus.STARTED and started_at and utcparse(started_at.decode()).timestamp() > cutoff:
            continue
        if status == JobStatus.SCHEDULED and due is not None:
            if due < cutoff:
                overdue.append(job_id)
            continue
        gone.append(job_id)
    return gone, overdue
