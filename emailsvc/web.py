"""Request plumbing shared by the blueprints: request IDs and JSON bodies."""

import json
import re
import uuid

from flask import g, request

from .errors import InvalidJson, UnsupportedMediaType

SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def assign_request_id():
    """Use the client's X-Request-ID when it is sane, else make one."""
    given = request.headers.get("X-Request-ID", "")
    g.request_id = given if SANE_REQUEST_ID.match(given) else uuid.uuid4().hex


def add_request_id(response):
    response.headers["X-Request-ID"] = g.get("request_id") or uuid.uuid4().hex
    return response


def json_body():
    """Return the request body as a dict, or raise the 415/400 the contract names."""
    if request.mimetype != "application/json" and not request.mimetype.endswith("+json"):
        raise UnsupportedMediaType()
    try:
        body = json.loads(request.get_data())
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:  # RecursionError: absurdly deep nesting
        raise InvalidJson() from exc
    if not isinstance(body, dict):
        raise InvalidJson()
    return body


def register_request_hooks(app):
    """Give every request and response an X-Request-ID."""
    app.before_request(assign_request_id)
    app.after_request(add_request_id)
