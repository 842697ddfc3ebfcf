"""POST /email/send and GET /email/logs/<id>."""

import uuid

from flask import Blueprint, current_app, g
from redis.exceptions import RedisError

from ..addresses import domain_of, is_special_use, suppression_keys
from ..auth import current_project_id, require_scope
from ..errors import ServiceUnavailable, ValidationFailed
from ..idempotency import idempotency_key, record_email
from ..jobs import enqueue_delivery
from ..log_pages import read_message
from ..openapi import document
from ..queries.emails import mark_failed
from ..queries.idempotency import release_key
from ..schemas import log_schema, log_with_events_schema, send_schema
from ..services import get_services
from ..web import json_body

bp = Blueprint("emails", __name__, url_prefix="/email")
SEND_EXAMPLE = {"to": ["Alice <alice@example.com>"], "subject": "Your order has shipped", "body": "It is on its way.",
                "html": "<p>It is on its way.</p>", "metadata": {"order_id": "42"}}  # fmt: skip
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


@bp.post("/send")
@document(body=send_schema, example=SEND_EXAMPLE, response=log_schema, status=201)
@require_scope("send")
def send():
    """Validate, record as PENDING (or SCHEDULED), queue, and answer 201 with the log."""
    body, key = json_body(), idempotency_key()
    email = send_schema.load(body)
    check_special_use(email)
    email["from_addr"] = email["from_addr"] or current_app.config["EMAIL_DEFAULT_FROM"]
    check_sender(email["from_addr"])
    email_id = uuid.uuid4()
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
        return log_schema.dump(row), 201, {"Idempotent-Replayed": "true"}
    try:
        enqueue_delivery(email_id, at=email["scheduled_at"])
    except RedisError as exc:
        with db.cursor() as cur:
            mark_failed(cur, email_id, QUEUE_DOWN, from_statuses=["PENDING", "SCHEDULED"], release_lock=False)
            release_key(cur, email_id)
        raise ServiceUnavailable(QUEUE_DOWN + " It is recorded as FAILED; send it again.") from exc
    return log_schema.dump(row), 201


@bp.get("/logs/<email_id>")
@document(response=log_with_events_schema, errors=[404])
@require_scope("read")
def get_log(email_id):
    """Return one log of the key's project with its events, oldest first; another project's id is unknown here."""
    return log_with_events_schema.dump(read_message(get_services(), current_project_id(), email_id))
