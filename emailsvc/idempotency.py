"""Idempotency-Key: one message per key and request body, whatever the number of retries or races."""

import hashlib
import json

from flask import request

from .errors import IdempotencyConflict, InvalidParameter, RecipientSuppressed, ServiceUnavailable
from .header_safety import CONTROL_CHARS
from .queries.emails import insert_email
from .queries.idempotency import find_keyed_email, insert_email_once

HEADER = "Idempotency-Key"
MAX_KEY_LENGTH = 255


def idempotency_key():
    """Return the request's Idempotency-Key, None when absent, or raise 400 when it is malformed."""
    key = request.headers.get(HEADER)
    if key is not None and (not key or len(key) > MAX_KEY_LENGTH or CONTROL_CHARS.search(key)):
        raise InvalidParameter(details={HEADER: [f"Must be 1–{MAX_KEY_LENGTH} characters without control characters."]})
    return key


def fingerprint(body):
    """Return the SHA-256 of the JSON body in canonical form, so key order and spacing do not matter."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).digest()


def record_email(cur, email, suppression_keys, key, body):
    """Insert the log row; with a key, return (the row the key already created, True) instead when there is one.

    A suppressed recipient is a 422, checked in the insert itself (`suppression_keys`: the
    recipients as the list spells them). A different body under the same key is a 409. The insert
    settles races (see insert_email_once), so the look-up after a lost race always finds the
    winner's committed row.
    """
    if key is None:
        row, suppressed = insert_email(cur, email, suppression_keys)
    else:
        request_hash = fingerprint(body)
        row, suppressed = insert_email_once(cur, email, suppression_keys, key, request_hash)
    if suppressed:
        raise RecipientSuppressed(details={"addresses": suppressed})
    if row is not None or key is None:
        return row, False
    existing = find_keyed_email(cur, email["api_key_id"], key)
    if existing is None:  # the first request with this key failed and released it a moment ago
        raise ServiceUnavailable("A request with this Idempotency-Key just failed; send it again.", retry_after=1)
    if bytes(existing["request_hash"]) != request_hash:
        raise IdempotencyConflict()
    return existing, True
