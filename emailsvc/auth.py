"""API keys: how they are made and stored, and the guard every endpoint stands behind.

Every key belongs to one project and acts on that project's mail only.
"""

import functools
import hashlib
import hmac
import secrets

from flask import g, request

from .db import DatabaseUnavailable
from .errors import Forbidden, Unauthorized
from .queries.api_keys import find_active_api_key
from .services import get_services

KEY_PREFIX = "esk_"
SCOPES = ("send", "read")  # what a key may do with its project's mail
# Operator-wide views (metrics, queues), none of any project's mail: granted only by the CLI, and never
# together with SCOPES, so an operator key is refused (403) by every endpoint of mail.
OPERATOR = "operator"


def new_key():
    """Return a new random key (256 bits) with a recognisable prefix."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key):
    """Return the SHA-256 digest stored for a key; a random 256-bit key needs no slow hash."""
    return hashlib.sha256(key.encode()).digest()


def presented_key():
    """Return the key the request carries (Bearer or X-API-Key), or None."""
    header = request.headers.get("Authorization", "")
    if header[:7].lower() == "bearer ":
        return header[7:].strip() or None
    return request.headers.get("X-API-Key") or None


def load_api_key():
    """Look up the request's key once, before rate limiting needs to know who is asking."""
    g.api_key = g.key_lookup_error = None
    key = presented_key()
    if key is None or not key.isascii() or len(key) > 200:
        return
    digest = hash_key(key)
    try:
        with get_services().db.cursor() as cur:
            row = find_active_api_key(cur, digest)
    except DatabaseUnavailable as exc:
        # Only an endpoint that needs the key fails (503); /healthz must answer whatever a probe sends.
        g.key_lookup_error = exc
        return
    if row is not None and hmac.compare_digest(bytes(row["key_hash"]), digest):
        g.api_key = row


def current_project_id():
    """Return the project of the request's key (inside a view guarded by require_scope)."""
    return g.api_key["project_id"]


def require_scope(*scopes):
    """Decorate a view so it needs a valid project key holding every one of `scopes` (none: any project key)."""

    def decorator(view):
        @functools.wraps(view)
        def guarded(*args, **kwargs):
            key = g.get("api_key")
            if g.get("key_lookup_error"):
                raise g.key_lookup_error
            if key is None:
                raise Unauthorized()
            if not set(key["scopes"]) & set(SCOPES):
                raise Forbidden("This is an operator key: it reads no project's mail.")
            missing = [scope for scope in scopes if scope not in key["scopes"]]
            if missing:
                raise Forbidden(f"This API key lacks the '{missing[0]}' scope.")
            return view(*args, **kwargs)

        guarded.required_scopes = scopes  # read by the OpenAPI document
        return guarded

    return decorator
