"""The queue: enqueue a logged message for delivery, and the job that delivers it."""

import logging

from flask import current_app
from rq import Retry, get_current_job

from .mailer import PermanentFailure, TransientFailure
from .queries.emails import (
    claim_for_sending,
    mark_failed,
    mark_retrying,
    mark_sent,
    release_if_held,
    unlock_for_sending,
)
from .services import FAILED_JOB_TTL, get_services

log = logging.getLogger(__name__)
MAX_RETRIES = 3
MAX_ATTEMPTS = 1 + MAX_RETRIES


def enqueue_delivery(email_id, at=None, at_front=False):
    """Queue the delivery of one logged message, at once or at the datetime `at`; the job carries only its id.

    `at_front` puts it before the backlog: for a message that has already waited (the reconciler's).
    """
    email_id = str(email_id)
    options = {
        "job_id": email_id,  # one job per message, so the reconciler can tell whether it exists
        "retry": Retry(max=MAX_RETRIES, interval=current_app.config["EMAIL_RETRY_INTERVALS"]),
        "result_ttl": 0,
        "failure_ttl": FAILED_JOB_TTL,
    }
    queue = get_services().email_queue
    # Given a pipeline, RQ queues its writes there instead of executing two of its own: the job,
    # its status and the queue entry go in one MULTI/EXEC, one round trip.
    with queue.connection.pipeline() as pipe:
        if at is None:
            queue.enqueue("emailsvc.jobs.deliver", email_id, at_front=at_front, pipeline=pipe, **options)
        else:
            queue.enqueue_at(at, "emailsvc.jobs.deliver", email_id, pipeline=pipe, **options)
        pipe.execute()


def deliver(email_id):
    """Send one logged message and record the outcome; transient failures raise so RQ retries.

    Two statements per message: the claim takes the sending lock, the outcome releases it.
    """
    services = get_services()
    # One connection for the whole delivery: the sending lock lives on it from claim to outcome.
    with services.mailers.lease() as mailer, services.db.cursor() as cur:
        locked, row = claim_for_sending(cur, email_id)
        if row is None:
            if locked:  # rare: a duplicate job for a message no longer waiting took the lock for nothing
                unlock_for_sending(cur, email_id)
            log.info("email %s is not waiting, or another job is sending it; nothing to do", email_id)
            return
        try:
            _send_and_record(cur, mailer, email_id, row)
        except TransientFailure:
            raise  # recorded, and the lock released, by mark_retrying or mark_failed
        except BaseException:
            # The lock must not outlive the attempt, or the reconciler could never settle the row: the
            # outcome statement released it, unless it failed or no outcome was recorded.
            if not cur.connection.closed:
                release_if_held(cur, email_id)
            raise


def _send_and_record(cur, mailer, email_id, row):
    try:
        reply = mailer.send(row)
    except PermanentFailure as exc:
        mark_failed(cur, email_id, str(exc))
        return
    except TransientFailure as exc:
        job = get_current_job()
        # The row counts attempts across jobs: one queued again by the reconciler has fresh retries.
        if job is not None and job.retries_left and row["attempts"] < MAX_ATTEMPTS:
            mark_retrying(cur, email_id, str(exc))
        else:
            mark_failed(cur, email_id, f"Retries exhausted. Last error: {exc}")
        raise
    mark_sent(cur, email_id, reply)
