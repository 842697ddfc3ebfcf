"""The queue: enqueue a logged message for delivery, and the job that delivers it."""

import logging

from flask import current_app
from rq import Retry, get_current_job

from .mailer import PermanentFailure, TransientFailure
from .queries.emails import claim_for_sending, mark_failed, mark_retrying, mark_sent
from .services import get_services

log = logging.getLogger(__name__)
MAX_RETRIES = 3
FAILED_JOB_TTL = 7 * 24 * 3600  # failed jobs stay visible in the dashboard for a week


def enqueue_delivery(email_id):
    """Queue the delivery of one logged message; the job carries only its id."""
    email_id = str(email_id)
    get_services().email_queue.enqueue(
        "emailsvc.jobs.deliver",
        email_id,
        job_id=email_id,  # one job per message, so the reconciler can tell whether it exists
        retry=Retry(max=MAX_RETRIES, interval=current_app.config["EMAIL_RETRY_INTERVALS"]),
        result_ttl=0,
        failure_ttl=FAILED_JOB_TTL,
    )


def deliver(email_id):
    """Send one logged message and record the outcome; transient failures raise so RQ retries."""
    services = get_services()
    with services.db.cursor() as cur:
        row = claim_for_sending(cur, email_id)
    if row is None:
        log.info("email %s is not waiting; nothing to send", email_id)
        return
    try:
        reply = services.mailer.send(row)
    except PermanentFailure as exc:
        with services.db.cursor() as cur:
            mark_failed(cur, email_id, str(exc))
        return
    except TransientFailure as exc:
        job = get_current_job()
        with services.db.cursor() as cur:
            if job is not None and job.retries_left:
                mark_retrying(cur, email_id, str(exc))
            else:
                mark_failed(cur, email_id, f"Retries exhausted. Last error: {exc}")
        raise
    with services.db.cursor() as cur:
        mark_sent(cur, email_id, reply)
