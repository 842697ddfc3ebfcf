"""Request plumbing shared by the blueprints: request IDs (on responses and log lines), proxies, JSON bodies."""

import json
import re
import secrets
from inspect import CO_COROUTINE

from flask import Flask, g, request
from werkzeug.middleware.proxy_fix import ProxyFix

from .errors import ApiError, InvalidJson, InvalidParameter, UnsupportedMediaType, ValidationFailed
from .json_budget import check_values
from .logging_config import configure_logging
from .schemas import MAX_BATCH

SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
# PostgreSQL text cannot hold NUL, and UTF-8 cannot encode a lone surrogate (JSON's "\ud800").
UNSTORABLE = re.compile(r"[\x00\ud800-\udfff]")
UNSTORABLE_MESSAGE = "Must not contain NUL characters or unpaired surrogates."
MAYBE_UNSTORABLE = re.compile(rb"\\u(?:0000|[dD][89a-fA-F])")
# Endpoints whose body holds many messages, each allowed its share of values (json_budget).
MANY_MESSAGES = {"emails.batch"}


class App(Flask):
    """Flask, telling a plain function from a coroutine function by its code's flags.

    Flask asks `ensure_sync` before every call of every hook and view (a dozen a send), and
    inspect.iscoroutinefunction unwraps partials and methods before reading the same flag: ~100 of a
    send's ~2,500 Python calls. Functions and bound methods carry their code; anything else is left to Flask."""

    def ensure_sync(self, func):
        code = getattr(func, "__code__", None)
        if code is not None and not code.co_flags & CO_COROUTINE:
            return func
        return super().ensure_sync(func)


def assign_request_id():
    """Use the client's X-Request-ID when it is sane, else make one."""
    given = request.headers.get("X-Request-ID", "")
    g.request_id = given if SANE_REQUEST_ID.match(given) else secrets.token_hex(16)


def add_request_id(response):
    response.headers["X-Request-ID"] = g.get("request_id") or secrets.token_hex(16)
    return response


def json_body():
    """Return the request body as a dict, or raise the 415/413/400/422 the contract names: parsed once a
    request, whoever asks first (the rate limiter counts a batch's messages before its view runs)."""
    here = g._get_current_object()  # one context-local look-up, not one per use (each costs ~10 calls)
    body = here.get("json_body")
    if body is None:
        try:
            body = here.json_body = _parse_body(request._get_current_object())
        except ApiError as exc:
            body = here.json_body = exc
    if isinstance(body, ApiError):
        raise body
    return body


def _parse_body(req):
    mimetype = req.mimetype
    if mimetype != "application/json" and not mimetype.endswith("+json"):
        raise UnsupportedMediaType()
    raw = req.get_data()
    check_values(raw, messages=MAX_BATCH if req.endpoint in MANY_MESSAGES else 1)
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:  # RecursionError: absurdly deep nesting
        raise InvalidJson() from exc
    if not isinstance(body, dict):
        raise InvalidJson()
    # In UTF-8 JSON, NUL and a surrogate can only be spelled as a \u escape: without one in the raw
    # bytes (searched at C speed) there is nothing to look for, and a huge body of small values is not
    # walked. (json.loads also reads UTF-16 and UTF-32, where the escape's bytes differ: walk those.)
    if json.detect_encoding(raw) in ("utf-8", "utf-8-sig") and not MAYBE_UNSTORABLE.search(raw):
        return body
    refused = sorted(key for key, value in body.items() if _holds_unstorable(key, value))
    if refused:
        raise ValidationFailed(details={key: [UNSTORABLE_MESSAGE] for key in refused})
    return body


def _holds_unstorable(*values):
    """Whether a string anywhere in `values` (keys included) holds what the database cannot store."""
    stack = list(values)
    while stack:  # not recursive: a parsed body can be nested nearly as deep as the recursion limit
        value = stack.pop()
        if isinstance(value, str):
            if UNSTORABLE.search(value):
                return True
        elif isinstance(value, dict):
            stack.extend(value.keys())
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
    return False


def refuse_unstorable_query():
    """A query parameter holding NUL (`?to=%00`) is malformed: 400, before any view sends it to SQL."""
    if not request.query_string:  # most requests: nothing to parse
        return
    if any(UNSTORABLE.search(key) or UNSTORABLE.search(value) for key, value in request.args.items(multi=True)):
        raise InvalidParameter("Query parameters must not contain NUL characters.")


def trust_proxies(app):
    """Take the client address from X-Forwarded-For, but only from the TRUSTED_PROXIES hops nearest us."""
    hops = app.config["TRUSTED_PROXIES"]
    if hops > 0:
        # Each proxy appends the address it saw; entries before the last `hops` are the client's own
        # word and are ignored, so a forged header cannot move a client into another rate-limit bucket.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops)


def register_request_hooks(app):
    """Give every request and response an X-Request-ID, every log line too, and trust only our proxies."""
    configure_logging(app.config["LOG_FORMAT"])
    trust_proxies(app)
    app.before_request(assign_request_id)
    app.before_request(refuse_unstorable_query)
    app.after_request(add_request_id)
