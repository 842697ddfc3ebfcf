"""What a client may do with a message it has sent: cancel it, move it, or send it again."""

import logging
import uuid

from flask import Blueprint
from redis.exceptions import RedisError

from ..accepting import accept_email
from ..auth import current_project_id, require_scope
from ..errors import ContentPurged, NotCancelable, NotFound, NotReschedulable, NotResendable
from ..idempotency import idempotency_key
from ..jobs import enqueue_delivery
from ..openapi import document
from ..queries.emails import attachment_contents, cancel_email, get_email, reschedule_email
from ..schemas import log_schema, reschedule_schema
from ..services import get_services
from ..web import json_body

log = logging.getLogger(__name__)
bp = Blueprint("lifecycle", __name__, url_prefix="/email/logs")
RESENDABLE = ("SENT", "DELIVERED", "BOUNCED", "COMPLAINED", "FAILED", "CANCELED")
# What a resend copies from the message it resends.
COPIED = ("from_addr", "to_addrs", "cc_addrs", "bcc_addrs", "reply_to", "subject", "body", "html", "headers",
          "metadata", "template")  # fmt: skip


def _email(cur, email_id):
    """The key's project's message with this id, or 404."""
    try:
        row = get_email(cur, current_project_id(), uuid.UUID(email_id))
    except ValueError:
        row = None
    if row is None:
        raise NotFound("No email with this id.")
    return row


@bp.post("/<email_id>/cancel")
@document(response=log_schema, errors=[404, 409])
@require_scope("send")
def cancel(email_id):
    """Cancel a SCHEDULED message, or a PENDING one no worker has taken: it is never sent. Else 409 not_cancelable."""
    with get_services().db.cursor() as cur:
        row = _email(cur, email_id)
        changed = cancel_email(cur, current_project_id(), row["id"])
        row = _email(cur, email_id)  # as the change left it, or as it is when it could not change
        if changed is None:
            raise NotCancelable(details={"status": row["status"]})
    return log_schema.dump(row)


@bp.patch("/<email_id>")
@document(body=reschedule_schema, response=log_schema, errors=[404, 409])
@require_scope("send")
def reschedule(email_id):
    """Move a SCHEDULED message to a new `send_at` (null: now). Else 409 not_reschedulable."""
    at = reschedule_schema.load(json_body())["scheduled_at"]
    with get_services().db.cursor() as cur:
        row = _email(cur, email_id)
        changed = reschedule_email(cur, current_project_id(), row["id"], at)
        moved = _email(cur, email_id)  # as the change left it, or as it is when it could not change
        if changed is None:
            raise NotReschedulable(details={"status": moved["status"]})
    # The job keeps the message's id, so queueing it again moves the one queued for the old time. With the
    # queue down, the reconciler queues the message once it is due (docs/delivery.md).
    try:
        enqueue_delivery(moved["id"], at=at)
    except RedisError:
        log.warning("email %s was moved, but the queue was unavailable; the reconciler will queue it", moved["id"])
    return log_schema.dump(moved)


@bp.post("/<email_id>/resend")
@document(response=log_schema, status=201, errors=[404, 409, 422])
@require_scope("send")
def resend(email_id):
    """Send a finished message again as a new one, with `resent_from` naming it; answered like a send."""
    key = idempotency_key()
    with get_services().db.cursor() as cur:
        row = _email(cur, email_id)
        files = row["attachments"]
        contents = attachment_contents(cur, row["project_id"], [a["sha256"] for a in files]) if files else {}
    if row["content_purged_at"] is not None or any(a["sha256"] not in contents for a in files):
        raise ContentPurged()
    if row["status"] not in RESENDABLE:
        raise NotResendable(details={"status": row["status"]})
    email = {field: row[field] for field in COPIED}
    email.update(scheduled_at=None, resent_from=row["id"])
    email["attachments"] = [{**a, "content": contents[a["sha256"]]} for a in files]
    new, replayed = accept_email(email, {"resend": str(row["id"])}, key)
    return log_schema.dump(new), 201, {"Idempotent-Replayed": "true"} if replayed else {}
