"""API keys: how they are made and stored, and the guard every endpoint stands behind.

Every key belongs to one project and acts on that project's mail only.
"""

import functools
import hashlib
import hmac
import math
import re
import secrets
import time

from flask import current_app, g, request

from . import key_memory
from .db import DatabaseUnavailable
from .errors import Forbidden, RateLimited, Unauthorized
from .queries.api_keys import find_active_api_key
from .services import get_services

KEY_PREFIX = "esk_"
# What new_key makes: the prefix and 32 bytes in unpadded URL-safe base64. Anything else is no key of
# ours and is refused without a look-up.
KEY_SHAPE = re.compile(r"esk_[A-Za-z0-9_-]{43}")
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
    """Look up the request's key once, before rate limiting needs to know who is asking.

    Whatever is wrong with the key, only an endpoint that needs one fails; /healthz must answer
    whatever a probe sends. A key this process remembers (key_memory.py) costs no look-up here:
    confirm_remembered_key checks it after the rate-limit count.
    """
    here = g._get_current_object()  # one context-local look-up, not one per use (each costs ~10 calls)
    here.api_key = here.key_lookup_error = None
    key = presented_key()
    if key is None:
        return
    try:
        here.api_key = look_up_key(key, remember=True)
    except (RateLimited, DatabaseUnavailable) as exc:
        here.key_lookup_error = exc  # 429 or 503 where a key is needed


def confirm_remembered_key():
    """After the rate-limit count: a remembered key stands only if the count read the revocation token it was
    remembered under; else it is looked up again (forgotten, if revoked)."""
    remembered = g.pop("remembered_key", None)
    if remembered is not None and not key_memory.confirmed(remembered):
        current_app.extensions["emailsvc.keys"].forget(hash_key(presented_key()))
        load_api_key()


def look_up_key(key, remember=False):
    """Return the active key row of the key text `key`, or None; for the API's header and the page's sign-in.

    A malformed key, or any key from an address that has presented too many unknown ones (RateLimited),
    is never looked up: guessing keys costs no database queries. With `remember`, a key this process
    remembers is returned as remembered (to be confirmed: confirm_remembered_key), and one looked up is
    remembered.
    """
    if not KEY_SHAPE.fullmatch(key):
        return None
    extensions = current_app.extensions
    unknown_keys = extensions["emailsvc.unknown_keys"]
    wait = unknown_keys.retry_after(request.remote_addr)
    if wait:
        raise too_many_unknown_keys(unknown_keys.limit, wait)
    digest = hash_key(key)
    memory = extensions["emailsvc.keys"]
    if remember and (remembered := memory.recall(digest)) is not None:
        g.remembered_key = remembered
        return remembered.row
    token = memory.last_token  # read before the look-up: see key_memory.py
    with get_services().db.cursor() as cur:
        row = find_active_api_key(cur, digest)
    if row is not None and hmac.compare_digest(bytes(row["key_hash"]), digest):
        if remember:
            memory.remember(digest, row, token)
        return row
    unknown_keys.failed(request.remote_addr)
    return None


def too_many_unknown_keys(limit, wait):
    """The 429 for an address whose keys are not looked up for `wait` more seconds."""
    headers = {
        "Retry-After": str(wait),
        "X-RateLimit-Limit": str(limit.amount),
        "X-RateLimit-Remaining": "0",
        "X-RateLimit-Reset": str(math.ceil(time.time() + wait)),
    }
    message = f"Too many unknown API keys from this address ({limit}); retry after the seconds in Retry-After."
    return RateLimited(message, headers=headers)


def current_project_id():
    """Return the project of the request's key (inside a view guarded by require_scope)."""
    return g.api_key["project_id"]


def require_scope(*scopes):
    """Decorate a view so it needs a valid project key holding every one of `scopes` (none: any project key)."""

    def decorator(view):
        @functools.wraps(view)
        def guarded(*args, **kwargs):
            here = g._get_current_object()
            key = here.get("api_key")
            if here.get("key_lookup_error"):
                raise here.key_lookup_error
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


def require_operator(token_setting=None):
    """Decorate a view so it needs an `operator` key, or the secret the setting `token_setting` holds (when set).

    Project keys, whatever their scopes, are 403. A wrong token counts as an unknown key of its
    address, so guessing one is limited as guessing keys is; the comparison takes the same time
    whatever the guess.
    """

    def decorator(view):
        @functools.wraps(view)
        def guarded(*args, **kwargs):
            token = current_app.config[token_setting] if token_setting else ""
            presented = presented_key()
            if token and presented and not KEY_SHAPE.fullmatch(presented):
                unknown_keys = current_app.extensions["emailsvc.unknown_keys"]
                wait = unknown_keys.retry_after(request.remote_addr)
                if wait:
                    raise too_many_unknown_keys(unknown_keys.limit, wait)
                if hmac.compare_digest(hashlib.sha256(presented.encode()).digest(),
                                       hashlib.sha256(token.encode()).digest()):  # fmt: skip
                    return view(*args, **kwargs)
                unknown_keys.failed(request.remote_addr)
                raise Unauthorized()
            if g.get("key_lookup_error"):
                raise g.key_lookup_error
            if g.get("api_key") is None:
                raise Unauthorized()
            if OPERATOR not in g.api_key["scopes"]:
                raise Forbidden(f"This needs an API key with the '{OPERATOR}' scope; project keys have none.")
            return view(*args, **kwargs)

        guarded.required_scopes = (OPERATOR,)  # read by the OpenAPI document
        return guarded

    return decorator
