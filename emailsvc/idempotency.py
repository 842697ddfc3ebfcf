"""Idempotency-Key: one message (or batch) per key and request, whatever the number of retries or races."""

import hashlib
import json

from flask import request

from .errors import IdempotencyConflict, InvalidParameter, RecipientSuppressed, ServiceUnavailable
from .header_safety import CONTROL_CHARS
from .queries.emails import insert_emails
from .queries.idempotency import find_keyed_emails, insert_emails_once

HEADER = "Idempotency-Key"
MAX_KEY_LENGTH = 255
SEND_ROUTE = "POST /email/send"


def idempotency_key():
    """Return the request's Idempotency-Key, None when absent, or raise 400 when it is malformed."""
    key = request.headers.get(HEADER)
    if key is not None and (not key or len(key) > MAX_KEY_LENGTH or CONTROL_CHARS.search(key)):
        raise InvalidParameter(details={HEADER: [f"Must be 1–{MAX_KEY_LENGTH} characters without control characters."]})
    return key


def fingerprint(body, route=SEND_ROUTE):
    """Return the SHA-256 of the request: the request line `route` (e.g. "POST /email/batch") and the JSON body in
    canonical form, so key order and spacing do not matter, and one key never stands for two endpoints' requests.

    POST /email/send hashes its body alone, as it did before other routes took keys, so a key recorded
    before the upgrade still replays; its hash can equal no other route's, which all start with their route.
    """
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256((canonical if route == SEND_ROUTE else f"{route}\n{canonical}").encode()).digest()


def record_emails(cur, project_id, emails, suppression_keys, api_key_id, key, route, body):
    """Insert the log rows, all or none; with a key, return (the rows the key already created, True) instead when
    there are some.

    A suppressed recipient is a RecipientSuppressed whose details are {index of the message: its
    suppressed addresses}, checked in the insert itself (`suppression_keys`: each message's
    recipients as the list spells them). A different request under the same key is a 409. The
    insert settles races (see insert_emails_once), so the look-up after a lost race always finds
    the winner's committed rows.
    """
    if key is None:
        rows, suppressed = insert_emails(cur, project_id, emails, suppression_keys)
    else:
        request_hash = fingerprint(body, route)
        rows, suppressed = insert_emails_once(cur, project_id, emails, suppression_keys, api_key_id, key, request_hash)
    if suppressed:
        raise RecipientSuppressed(details=suppressed)
    if rows or key is None:
        return rows, False
    existing_hash, existing = find_keyed_emails(cur, api_key_id, key)
    if existing_hash is None:  # the first request with this key failed and released it a moment ago
        raise ServiceUnavailable("A request with this Idempotency-Key just failed; send it again.", retry_after=1)
    if existing_hash != request_hash:
        raise IdempotencyConflict()
    return existing, True
