"""HMAC signatures: checking the relay's delivery events, and signing our webhooks (Standard Webhooks)."""

import base64
import hashlib
import hmac
import secrets
import time

from .errors import Unauthorized

TOLERANCE = 300  # seconds a signed timestamp may lie in the past or the future
SECRET_PREFIX = "whsec_"


def verify_delivery_event(header, body, keys, now=None):
    """Check `X-Webhook-Signature: t=<unix>,v1=<hex>[,v1=…]` over `"<t>.<body>"`; raise Unauthorized if wrong.

    Any of the `keys` (WEBHOOK_SECRET, several during a rotation) may have made any of the `v1` values.
    """
    timestamp, signatures = None, []
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        if name == "t":
            timestamp = value
        elif name == "v1":
            signatures.append(value.lower())
    if not (timestamp and len(timestamp) <= 12 and timestamp.isascii() and timestamp.isdigit() and signatures):
        raise Unauthorized("Missing or malformed X-Webhook-Signature header.")
    signed = timestamp.encode() + b"." + body
    expected = [hmac.new(key.encode(), signed, hashlib.sha256).hexdigest() for key in keys]
    # Every pair is compared, in constant time, so timing reveals neither which key nor which value matched.
    matches = [hmac.compare_digest(e.encode(), s.encode()) for e in expected for s in signatures]
    if not any(matches):
        raise Unauthorized("Invalid webhook signature.")
    if abs((time.time() if now is None else now) - int(timestamp)) > TOLERANCE:
        raise Unauthorized("The signature timestamp is more than 5 minutes away from now.")


def new_webhook_secret():
    """Return a new endpoint secret in the Standard Webhooks form: `whsec_` + base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def sign_webhook(secret, webhook_id, timestamp, body):
    """Return the `webhook-signature` value: `v1,` + base64 HMAC-SHA256 of `"<id>.<timestamp>.<body>"`."""
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    mac = hmac.new(key, f"{webhook_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()
