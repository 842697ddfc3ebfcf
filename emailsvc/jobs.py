"""The queue: enqueue a logged message for delivery, and the job that delivers it."""

import logging
import select
import time
from datetime import timedelta

import psycopg2
from flask import current_app
from rq import Retry, get_current_job

from . import smtp_health
from .metrics import count_attempt
from .queries.emails import (
    attachment_contents,
    claim_for_sending,
    holds_sending_lock,
    record_attempt,
    release_if_held,
    unlock_for_sending,
)
from .recipients import settle, targets
from .rq_enqueue import JobWriter
from .services import FAILED_JOB_TTL, get_services

log = logging.getLogger(__name__)
MAX_RETRIES = 3
MAX_ATTEMPTS = 1 + MAX_RETRIES
DELIVER = "emailsvc.jobs.deliver"
# A job RQ starts before its message is due waits for the time if it is this close (its scheduler
# counts whole seconds, and its host's clock may run ahead of PostgreSQL's), and claims it then.
EARLY_WAIT_LIMIT = 5.0
# For this long after the claim, a connection on which PostgreSQL has said nothing proves the claim
# still stands: the server ends a silent session only after its keepalives fail (25 s, db.py), and
# any other end of the session (terminated, server restarted) reaches the socket as a message or a reset.
QUIET_CLAIM = 5.0


class RetryLater(Exception):
    """Recipients were deferred: the attempt is recorded, and the job fails so that RQ runs it again."""


class ClaimLost(Exception):
    """The worker's database session ended mid-attempt, so the reconciler may have given the message to
    another worker: nothing was sent, nothing can be recorded, and the job fails so that RQ runs it again
    (a run that finds the message taken does nothing)."""


def next_whole_second(at):
    """Return `at` rounded up to a whole second: RQ's scheduler truncates times to the second, and would
    otherwise start the job up to a second before `at`."""
    whole = at.replace(microsecond=0)
    return whole if whole == at else whole + timedelta(seconds=1)


def enqueue_delivery(email_id, at=None, at_front=False):
    """Queue the delivery of one logged message, at once or at the datetime `at`; the job carries only its id.

    `at_front` puts it before the backlog: for a message that has already waited (the reconciler's).
    """
    enqueue_deliveries([(email_id, at)], at_front)


def enqueue_deliveries(deliveries, at_front=False):
    """Queue the delivery of logged messages, each (id, None or the datetime it is due), in one round trip."""
    jobs = delivery_jobs()
    # The job id is the message's: one job per message, so the reconciler can tell whether it exists.
    at_once = [str(email_id) for email_id, at in deliveries if at is None]
    later = [(str(email_id), next_whole_second(at)) for email_id, at in deliveries if at is not None]
    if not later:
        jobs.write(at_once, at_front)  # one script: atomic, one round trip
        return
    # With scheduled ones (RQ's enqueue_at), every write goes in one MULTI/EXEC, still one round trip.
    with jobs.queue.connection.pipeline() as pipe:
        pipe.multi()
        if at_once:
            jobs.write(at_once, at_front, pipe)
        for email_id, at in later:
            jobs.queue.enqueue_at(at, DELIVER, email_id, job_id=email_id, pipeline=pipe, **jobs.options)
        pipe.execute()


def delivery_jobs():
    """The app's writer of delivery jobs (emailsvc/rq_enqueue.py), made on first use."""
    jobs = current_app.extensions.get("emailsvc.delivery_jobs")
    if jobs is None:
        jobs = current_app.extensions["emailsvc.delivery_jobs"] = JobWriter(
            get_services().email_queue,
            DELIVER,
            retry=Retry(max=MAX_RETRIES, interval=current_app.config["EMAIL_RETRY_INTERVALS"]),
            result_ttl=0,
            failure_ttl=FAILED_JOB_TTL,
        )
    return jobs


def deliver(email_id):
    """Send one logged message to its waiting recipients and record the outcome; raise RetryLater while some
    are deferred, so RQ retries.

    Two statements per attempt: the claim takes the sending lock, the outcome releases it.
    """
    services = get_services()
    # One connection for the whole delivery: the sending lock lives on it from claim to outcome.
    # The SMTP connection is leased first: a send waiting for one holds no row and no database connection.
    with services.mailers.lease() as mailer, services.db.cursor() as cur:
        row = _claim(cur, email_id)
        if row is None:
            return
        claimed_at = time.monotonic()
        try:
            _attempt(cur, services, mailer, email_id, row, claimed_at)
        except RetryLater:
            raise  # recorded, and the lock released, by record_attempt
        except BaseException:
            # The lock must not outlive the attempt, or the reconciler could never settle the row: the
            # outcome statement released it, unless it failed or no outcome was recorded.
            if not cur.connection.closed:
                release_if_held(cur, email_id)
            raise


def _claim(cur, email_id):
    """Return the claimed row, or None when the message is not waiting or another job is sending it."""
    for _ in range(3):
        claim = claim_for_sending(cur, email_id)
        if claim.row is not None:
            return claim.row
        if claim.locked:  # the lock was taken for a message that was not waiting
            unlock_for_sending(cur, email_id)
        if claim.due_in is None or claim.due_in <= 0:
            break
        if claim.due_in > EARLY_WAIT_LIMIT:
            log.warning("email %s: a job started %.0f s before the message is due; it is left to its time", email_id,
                        claim.due_in)  # fmt: skip
            return None
        time.sleep(claim.due_in)
    log.info("email %s is not waiting, or another job is sending it; nothing to do", email_id)
    return None


def _attempt(cur, services, mailer, email_id, row, claimed_at):
    if row["attachments"]:  # the bytes are read here alone, to build the message
        row["attachment_contents"] = attachment_contents(
            cur, row["project_id"], [a["sha256"] for a in row["attachments"]]
        )
    started = time.perf_counter()
    outcome = mailer.send(row, targets(row), lambda: _still_claimed(cur, email_id, claimed_at))
    seconds = time.perf_counter() - started
    if outcome.claim_lost:
        cur.connection.close()  # so the pool never hands the dead connection out again
        raise ClaimLost(f"email {email_id}: the sending claim was lost before DATA; nothing was sent")
    job = get_current_job()
    # The row counts attempts across jobs: one queued again by the reconciler has fresh retries.
    final = not (job is not None and job.retries_left and row["attempts"] < MAX_ATTEMPTS)
    record = settle(row, outcome, final)
    record_attempt(cur, email_id, record, was_sending=row["status"] == "SENDING")
    smtp_health.note(services.redis, outcome.failure)
    verdict, code, enhanced = _verdict(outcome, record)
    count_attempt(verdict, code, enhanced, seconds)
    fields = {"email_id": str(email_id), "attempt": row["attempts"], "outcome": verdict, "smtp_code": code}
    log.info("email %(email_id)s attempt %(attempt)s: %(outcome)s (%(smtp_code)s)", fields, extra=fields)
    if record.retry_pending:
        # The reply's codes only: its text, like the recorded error, may name a recipient, and RQ logs this.
        reply = " ".join(str(part) for part in (code, enhanced) if part) or "no reply"
        raise RetryLater(f"recipients deferred ({reply}); RQ runs the job again")


def _verdict(outcome, record):
    """Return (sent, deferred or failed; the deciding reply's code and enhanced status) of an attempt."""
    if any(status == "accepted" for status, _, _ in outcome.recipients.values()):
        return "sent", outcome.data_reply.code, outcome.data_reply.enhanced_status
    error = record.last_error or {}
    return ("deferred" if record.retry_pending else "failed"), error.get("smtp_code"), error.get("enhanced_status")


def _still_claimed(cur, email_id, claimed_at):
    """True when this worker still holds the message's sending claim: asked just before DATA."""
    conn = cur.connection
    if time.monotonic() - claimed_at < QUIET_CLAIM and not select.select([conn.fileno()], [], [], 0)[0]:
        return True  # see QUIET_CLAIM: no round trip needed
    try:
        return holds_sending_lock(cur, email_id)
    except psycopg2.Error:
        return False
