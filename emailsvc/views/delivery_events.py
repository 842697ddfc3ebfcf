"""POST /email/webhooks/delivery: signed delivery events from the relay update the log."""

import datetime as dt
import hashlib
import json
import re
import uuid

from flask import Blueprint, current_app, request
from werkzeug.exceptions import RequestEntityTooLarge

from ..addresses import suppression_keys
from ..errors import NotFound
from ..metrics import MESSAGES_BOUNCED
from ..openapi import document
from ..queries.delivery_events import (
    apply_delivery_status,
    apply_recipient_status,
    insert_delivery_event,
    lock_email,
)
from ..queries.suppressions import suppress
from ..queries.webhooks import queue_webhooks
from ..schemas import delivery_event_outcome_schema, delivery_event_schema
from ..services import get_services
from ..signing import verify_delivery_event
from ..web import json_body

bp = Blueprint("delivery_events", __name__, url_prefix="/email/webhooks")
# A bounce is soft (temporary: mailbox full, greylisting) when its detail says so or starts with a
# 4xx reply or 4.x.x status code; any other bounce is hard and suppresses the address.
SOFT_BOUNCE = re.compile(r"\s*(soft\b|4\d\d\b|4\.\d{1,3}\.\d{1,3}\b)", re.IGNORECASE)
# An event is a few hundred bytes. Anyone can POST here, and the signature can only be checked over
# the whole body, so the body is capped before any of it is read: a larger Content-Length is refused
# at once, a chunked body as soon as it passes the cap.
MAX_EVENT_BYTES = 64 * 1024


@bp.post("/delivery")
@document(body=delivery_event_schema, response=delivery_event_outcome_schema, errors=[401, 404, 413])
def receive():
    """Verify the signature, then record the event and apply it; unknown messages are acknowledged."""
    keys = current_app.config["WEBHOOK_SECRET"]
    if not keys:
        raise NotFound()  # no secret configured: the endpoint does not exist
    verify_delivery_event(request.headers.get("X-Webhook-Signature", ""), event_body(), keys)
    event = delivery_event_schema.load(json_body())
    return delivery_event_outcome_schema.dump({"received": True, **record_event(event)})


def event_body():
    """Return the raw body; over MAX_EVENT_BYTES it is 413, refused unread when Content-Length says so."""
    chunked = request.content_length is None
    # werkzeug stops a body without a length at the cap and does not say whether more came: one byte
    # past it tells.
    request.max_content_length = MAX_EVENT_BYTES + chunked
    raw = request.get_data()
    if len(raw) > MAX_EVENT_BYTES:
        request.max_content_length = MAX_EVENT_BYTES  # the limit the 413 names
        raise RequestEntityTooLarge()
    return raw


def record_event(event):
    """Record one event in one transaction; return its outcome (applied, recorded, duplicate or
    unknown_message) and, when it was recorded without effect for a reason worth telling, `ignored`.

    No key names a project here: the message does, for its suppressions and its webhooks alike.
    """
    with get_services().db.transaction() as cur:
        reference = message_reference(event)
        email = lock_email(cur, **reference) if reference else None
        if email is None:
            return {"outcome": "unknown_message"}
        at, name = event["occurred_at"], event["event"]
        if not insert_delivery_event(cur, email["id"], name, event["detail"], at, fingerprint(event)):
            return {"outcome": "duplicate"}
        everyone = suppression_keys(email["to_addrs"] + email["cc_addrs"] + email["bcc_addrs"])
        named = suppression_keys([event["recipient"]]) if event["recipient"] else everyone
        if not set(named) <= set(everyone):
            # An event speaks only for the message's own recipients: one naming anyone else is kept in
            # the log, but changes no status and suppresses no one (a valid signature over a real
            # message id must not put an arbitrary address on the suppression list).
            return {"outcome": "recorded", "ignored": "not_a_recipient"}
        status = apply_delivery_status(cur, email["id"], name, at)
        if event["recipient"]:
            apply_recipient_status(cur, email["id"], named[0], name, at)
        if name == "deferred":
            queue_webhooks(cur, email["id"], name)
        reason = suppression_reason(event)
        if reason:
            suppress(cur, email["project_id"], named, reason, email["id"])
    if status == "BOUNCED":
        MESSAGES_BOUNCED.labels(str(email["project_id"])).inc()
    return {"outcome": "applied" if status else "recorded"}


def suppression_reason(event):
    """Return why the event suppresses its recipient (hard_bounce, complaint), or None."""
    if event["event"] == "complained":
        return "complaint"
    if event["event"] == "bounced" and not SOFT_BOUNCE.match(event["detail"] or ""):
        return "hard_bounce"
    return None


def fingerprint(event):
    """Return what makes an event the same event again: a relay's retry or a replay is recorded once."""
    at = event["occurred_at"] and event["occurred_at"].astimezone(dt.UTC).isoformat()
    key = [event["event"], event["detail"], at, event["recipient"]]
    return hashlib.sha256(json.dumps(key).encode()).digest()


def message_reference(event):
    """Return lock_email's arguments for the message the event names; None when it cannot be one of ours.

    Our Message-IDs are `<{id}@{domain}>`, so the id inside finds the row by its primary key: no index
    on message_id slows every send.
    """
    message_id = event["message_id"] and "<" + event["message_id"].strip().strip("<>") + ">"
    try:
        email_id = uuid.UUID(event["id"] or message_id[1:].partition("@")[0])
    except ValueError:
        return None
    return {"email_id": email_id, "message_id": None if event["id"] else message_id}
