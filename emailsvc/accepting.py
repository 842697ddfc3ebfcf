"""Accepting a message: the sender check, the row (suppression and Idempotency-Key settled in its insert),
the queue, and the rollback when the queue is down. POST /email/send and a resend both come here."""

import uuid

from flask import current_app, g
from redis.exceptions import RedisError

from .addresses import domain_of, is_special_use, suppression_keys
from .auth import current_project_id
from .errors import ServiceUnavailable, ValidationFailed
from .idempotency import record_email
from .jobs import enqueue_delivery
from .queries.emails import mark_failed
from .queries.idempotency import release_key
from .services import get_services

QUEUE_DOWN = "The queue was unavailable, so the message was not queued."


def check_sender(sender):
    """Refuse a sender outside EMAIL_ALLOWED_FROM_DOMAINS, so the service is no open relay."""
    allowed = current_app.config["EMAIL_ALLOWED_FROM_DOMAINS"]
    if allowed and domain_of(sender) not in allowed:
        raise ValidationFailed(details={"from": ["This sender domain is not allowed."]})


def check_special_use(email):
    """With EMAIL_REJECT_SPECIAL_USE, refuse the request's addresses at special-use names (.local,
    .test, localhost…); EMAIL_DEFAULT_FROM is the operator's own choice and is not checked."""
    if not current_app.config["EMAIL_REJECT_SPECIAL_USE"]:
        return
    fields = {"to": email["to_addrs"], "cc": email["cc_addrs"], "bcc": email["bcc_addrs"],
              "from": [email["from_addr"]], "reply_to": [email["reply_to"]]}  # fmt: skip
    refused = [field for field, addresses in fields.items()
               if any(a and is_special_use(domain_of(a)) for a in addresses)]  # fmt: skip
    if refused:
        message = "Special-use domain names (.local, .test, localhost, …) are refused by this service."
        raise ValidationFailed(details={field: [message] for field in refused})


def accept_email(email, body, key):
    """Record the loaded (and rendered) `email` as PENDING or SCHEDULED and queue it; return (row, replayed).

    `body` is what the Idempotency-Key `key` fingerprints; a replay returns the row the key made.
    """
    check_special_use(email)
    email["from_addr"] = email["from_addr"] or current_app.config["EMAIL_DEFAULT_FROM"]
    check_sender(email["from_addr"])
    email_id = uuid.uuid4()
    email.setdefault("template", None)
    email.setdefault("resent_from", None)
    email.update(
        id=email_id,
        project_id=current_project_id(),
        api_key_id=g.api_key["id"],
        status="SCHEDULED" if email["scheduled_at"] else "PENDING",
        message_id=f"<{email_id}@{domain_of(email['from_addr'])}>",
    )
    db = get_services().db
    recipients = suppression_keys(email["to_addrs"] + email["cc_addrs"] + email["bcc_addrs"])
    with db.cursor() as cur:
        row, replayed = record_email(cur, email, recipients, key, body)
    if replayed:
        return row, True
    try:
        enqueue_delivery(email_id, at=email["scheduled_at"])
    except RedisError as exc:
        with db.cursor() as cur:
            mark_failed(cur, email_id, QUEUE_DOWN, from_statuses=["PENDING", "SCHEDULED"], release_lock=False)
            release_key(cur, email_id)
        raise ServiceUnavailable(QUEUE_DOWN + " It is recorded as FAILED; send it again.") from exc
    return row, False
