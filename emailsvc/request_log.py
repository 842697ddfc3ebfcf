"""The end of every request: its HTTP metrics, and one log line naming the route template (never the path or
the query string, which can hold addresses), the status, the time taken, and the key's project and id."""

import logging
import time

from flask import g, request

from .metrics import UNMATCHED, count_request

log = logging.getLogger("emailsvc.request")


def start_clock():
    g.started = time.perf_counter()


def finish_request(response):
    here, req = g._get_current_object(), request._get_current_object()  # one context-local look-up each
    seconds = time.perf_counter() - here.get("started", time.perf_counter())
    rule, method, status = req.url_rule, req.method, response.status_code
    count_request(rule, method, status, seconds)
    if log.isEnabledFor(logging.INFO):
        key = here.get("api_key")
        fields = {
            "route": rule.rule if rule is not None else UNMATCHED,
            "method": method,
            "status": status,
            "duration_ms": round(seconds * 1000, 2),
            "project": key and key["project_id"],
            "key_id": key and key["id"],
        }
        log.info("%(method)s %(route)s %(status)s %(duration_ms)s ms project=%(project)s key=%(key_id)s", fields,
                 extra=fields)  # fmt: skip
    return response


def register_request_log(app):
    """Time every request from its first hook (register this before any other) to its response."""
    app.before_request(start_clock)
    app.after_request(finish_request)  # registered first, so it runs after every other: the final status
