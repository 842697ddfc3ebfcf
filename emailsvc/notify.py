"""Outbound webhooks: dispatch due deliveries to RQ queue `webhooks`, and the job that POSTs one.

A status change queues its deliveries in the database, in the statement that makes the change. The
dispatcher moves due ones onto the queue; the job signs and POSTs one, records the attempt, and
schedules the next try in the database. Retry times live in PostgreSQL rather than in RQ's scheduler
so a day of retries survives a Redis restart. All of this runs in the webhook processes of
`worker.py`, never in the sending processes, so a slow receiver never slows mail.
"""

import json
import logging
import time
from http.client import HTTPException

import psycopg2.errors
from flask import current_app

from .metrics import WEBHOOK_DELIVERIES
from .queries.webhooks import (
    abandon_delivery,
    abandon_waiting_deliveries,
    claim_delivery,
    claim_due_deliveries,
    get_delivery_log,
    record_attempt,
)
from .schemas import webhook_id, webhook_log_schema
from .services import FAILED_JOB_TTL, get_services
from .signing import sign_webhook
from .webhook_targets import TargetRefused, vet_url

log = logging.getLogger(__name__)
LEASE = 600  # seconds a queued or sending delivery waits before it is presumed lost and sent again
DISABLE_AFTER = 24 * 3600  # seconds of failures without a success that disable an endpoint
BATCH = 100
DISPATCH_INTERVAL = 1.0
RESPONSE_EXCERPT = 1000  # bytes of a receiver's answer kept with the attempt


def dispatch_due():
    """Put the deliveries that are due on the `webhooks` queue; return how many."""
    with get_services().db.cursor() as cur:
        ids = claim_due_deliveries(cur, BATCH, LEASE)
    queue = get_services().webhook_queue
    for delivery_id in ids:
        queue.enqueue("emailsvc.notify.deliver_webhook", str(delivery_id), result_ttl=0, failure_ttl=FAILED_JOB_TTL)
    return len(ids)


def dispatch_forever(app):
    """Run dispatch_due about once a second, for as long as the process lives."""
    with app.app_context():
        while True:
            try:
                if dispatch_due() == BATCH:
                    continue  # more are due: no pause
            except Exception:  # an outage, or anything else, must not end the loop: the next tick retries
                log.exception("dispatching webhooks failed")
            time.sleep(DISPATCH_INTERVAL)


def deliver_webhook(delivery_id):
    """Sign and POST one delivery, record the attempt, and schedule the next one if it failed."""
    db, config = get_services().db, current_app.config
    with db.cursor() as cur:
        delivery = claim_delivery(cur, delivery_id, LEASE)
        if delivery is None:
            return  # a duplicate job, or the endpoint was deleted
        if delivery["disabled_at"] is not None:
            abandon_delivery(cur, delivery_id)
            WEBHOOK_DELIVERIES.labels("abandoned").inc()
            return
        row = get_delivery_log(cur, delivery_id)
    body = json.dumps(
        {
            "id": webhook_id(delivery["id"]),
            "type": delivery["type"],
            "created_at": delivery["created_at"].isoformat(),
            "data": webhook_log_schema.dump(row),
        },
        separators=(",", ":"),
    ).encode()
    attempt = post(
        delivery["url"],
        signed_headers(delivery, body),
        body,
        config["WEBHOOK_TIMEOUT"],
        config["WEBHOOK_ALLOW_PRIVATE"],
    )
    intervals = config["WEBHOOK_RETRY_INTERVALS"]
    retry_in = intervals[delivery["attempts"]] if delivery["attempts"] < len(intervals) else None
    WEBHOOK_DELIVERIES.labels("delivered" if attempt["ok"] else "retrying" if retry_in is not None else "failed").inc()
    try:
        with db.cursor() as cur:
            endpoint = record_attempt(cur, delivery_id, attempt, retry_in, DISABLE_AFTER)
            if endpoint and endpoint["disabled_at"]:
                log.warning("webhook endpoint %s failed for a day and is disabled", endpoint["id"])
                abandon_waiting_deliveries(cur, endpoint["id"])
    except psycopg2.errors.ForeignKeyViolation:
        log.info("webhook delivery %s was deleted with its endpoint during the attempt", delivery_id)


def signed_headers(delivery, body):
    """Return the Standard Webhooks headers; the timestamp, and so the signature, is new on each attempt."""
    msg_id, timestamp = webhook_id(delivery["id"]), str(int(time.time()))
    return {
        "Content-Type": "application/json",
        "User-Agent": "emailsvc-webhooks",
        "webhook-id": msg_id,
        "webhook-timestamp": timestamp,
        "webhook-signature": sign_webhook(delivery["secret"], msg_id, timestamp, body),
    }


def post(url, headers, body, timeout, allow_private=False):
    """POST once; return the attempt: ok (a 2xx answer), status_code, error, response excerpt, duration_ms.

    The host is resolved and vetted for this attempt (its addresses may have changed since the endpoint
    was registered) and the connection goes to the vetted addresses only. A redirect is not followed:
    it is the receiver's misconfiguration, and following it would resend the signed body elsewhere.
    """
    started = time.monotonic()
    status, error, response = None, None, b""
    try:
        target = vet_url(url, allow_private)
        connection = target.connection(timeout)
        try:
            connection.request("POST", target.path, body, headers)
            answer = connection.getresponse()
            status, response = answer.status, answer.read(RESPONSE_EXCERPT)
        finally:
            connection.close()
        if not 200 <= status < 300:
            error = f"HTTP {status} {answer.reason}".rstrip()
    except TargetRefused as exc:
        error = f"refused to connect: {exc}"
    except (OSError, HTTPException, ValueError) as exc:
        error = f"{type(exc).__name__}: {exc}".rstrip(": ")
    return {
        "ok": status is not None and 200 <= status < 300,
        "status_code": status,
        "error": error,
        "response": response.decode(errors="replace").replace("\x00", "") or None,
        "duration_ms": int((time.monotonic() - started) * 1000),
    }
