"""POST /email/webhooks/delivery: signed delivery events from the relay update the log."""

import datetime as dt
import hashlib
import json
import re
import uuid

from flask import Blueprint, current_app, request

from ..addresses import suppression_keys
from ..errors import NotFound
from ..openapi import document
from ..queries.delivery_events import apply_delivery_status, insert_delivery_event, lock_email
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


@bp.post("/delivery")
@document(body=delivery_event_schema, response=delivery_event_outcome_schema, errors=[401, 404])
def receive():
    """Verify the signature, then record the event and apply it; unknown messages are acknowledged."""
    keys = current_app.config["WEBHOOK_SECRET"]
    if not keys:
        raise NotFound()  # no secret configured: the endpoint does not exist
    verify_delivery_event(request.headers.get("X-Webhook-Signature", ""), request.get_data(), keys)
    event = delivery_event_schema.load(json_body())
    return {"received": True, "outcome": record_event(event)}


def record_event(event):
    """Record one event in one transaction; return applied, recorded, duplicate or unknown_message.

    No key names a project here: the message does, for its suppressions and its webhooks alike.
    """
    with get_services().db.transaction() as cur:
        reference = message_reference(event)
        email = lock_email(cur, **reference) if reference else None
        if email is None:
            return "unknown_message"
        at, name = event["occurred_at"], event["event"]
        if not insert_delivery_event(cur, email["id"], name, event["detail"], at, fingerprint(event)):
            return "duplicate"
        status = apply_delivery_status(cur, email["id"], name, at)
        if name == "deferred":
            queue_webhooks(cur, email["id"], name)
        reason = suppression_reason(event)
        if reason:
            suppress(cur, email["project_id"], recipients(event, email), reason, email["id"])
    return "applied" if status else "recorded"


def suppression_reason(event):
    """Return why the event suppresses its recipient (hard_bounce, complaint), or None."""
    if event["event"] == "complained":
        return "complaint"
    if event["event"] == "bounced" and not SOFT_BOUNCE.match(event["detail"] or ""):
        return "hard_bounce"
    return None


def recipients(event, email):
    """Return the addresses an event is about: the one it names, else every recipient of the message."""
    everyone = email["to_addrs"] + email["cc_addrs"] + email["bcc_addrs"]
    addresses = [event["recipient"]] if event["recipient"] else everyone
    return suppression_keys(addresses)


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
