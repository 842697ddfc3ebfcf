"""The narrowed rate-limit check (emailsvc/limiter.py) answers every request as flask-limiter's own check
does: the same statuses, refusals and X-RateLimit headers, request for request. A flask-limiter upgrade that
changes its check fails here."""

import psycopg2
import pytest
from conftest import TABLES, make_key
from flask_limiter import Limiter
from redis import Redis

import emailsvc.limits
from emailsvc import create_app
from emailsvc.limiter import CountingLimiter

SEND = {"to": "a@example.com", "subject": "s", "body": "b"}
LIMITS = {
    "RATELIMIT_DEFAULT": "12 per minute",
    "RATELIMIT_SEND": "6 per minute",
    "RATELIMIT_MESSAGES": "8 per minute",
    "RATELIMIT_PROJECT": "10 per minute",
    "RATELIMIT_DELIVERY_EVENTS": "5 per minute",
}


def script(app):
    """Requests that meet every limit: sends, batches taking several messages, one too many, reads, dry runs,
    unknown routes, probes, requests without a key; return what a client sees of each."""
    client, first, second = app.test_client(), {"X-API-Key": make_key(app)}, {"X-API-Key": make_key(app)}
    requests = [
        ("POST", "/email/send", SEND, first),
        ("POST", "/email/batch", {"messages": [SEND] * 3}, first),
        ("POST", "/email/batch", {"messages": [SEND] * 5}, first),  # over RATELIMIT_MESSAGES: takes none
        ("POST", "/email/batch", {"messages": [SEND, {"to": "nobody"}]}, first),  # 422: its 2 given back
        ("POST", "/email/webhooks/delivery", {"events": []}, None),  # unsigned: its own limit only
        ("POST", "/email/send?dry_run=true", SEND, first),
        ("POST", "/email/send", SEND, second),
        ("GET", "/email/logs", None, first),
        ("GET", "/no/such/route", None, first),
        ("GET", "/healthz", None, None),
        ("GET", "/email/logs", None, None),
        *[("POST", "/email/send", SEND, first)] * 5,
        *[("POST", "/email/send", SEND, second)] * 4,  # the project's limit, across both keys
        *[("GET", "/email/logs", None, first)] * 4,  # RATELIMIT_DEFAULT
    ]
    seen = []
    for method, url, body, headers in requests:
        response = client.open(url, method=method, json=body, headers=headers or {})
        seen.append(
            (
                method,
                url,
                response.status_code,
                (response.get_json(silent=True) or {}).get("error", {}).get("code"),
                response.headers.get("X-RateLimit-Limit"),
                response.headers.get("X-RateLimit-Remaining"),
                "Retry-After" in response.headers,
            )
        )
    return seen


def fresh(database):
    conn = psycopg2.connect(database)
    with conn, conn.cursor() as cur:
        cur.execute(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE")
    conn.close()


@pytest.mark.parametrize("limits", [LIMITS, {**LIMITS, "RATELIMIT_PROJECT": ""}])
def test_every_request_is_answered_as_flask_limiters_own_check_answers_it(settings, database, monkeypatch, limits):
    narrowed_app = create_app({**settings, **limits})
    assert isinstance(narrowed_app.extensions["emailsvc.limiter"], CountingLimiter)
    narrowed = script(narrowed_app)

    fresh(database)
    Redis.from_url(settings["REDIS_URL"]).flushdb()
    monkeypatch.setattr(emailsvc.limits, "CountingLimiter", Limiter)
    own_app = create_app({**settings, **limits})
    assert type(own_app.extensions["emailsvc.limiter"]) is Limiter
    own = script(own_app)

    assert narrowed == own
    assert {status for _, _, status, *_ in own} >= {200, 201, 401, 404, 422, 429}  # every kind of answer met


@pytest.mark.parametrize("configure", [lambda limiter, view: limiter.limit("1 per minute")(view), Limiter.exempt])
def test_a_limit_or_exemption_it_does_not_check_fails_every_request_rather_than_being_ignored(app, configure):
    limiter = app.extensions["emailsvc.limiter"]
    configure(limiter, app.view_functions["logs.list_logs"])
    limiter._resolved = None
    with app.test_request_context("/email/logs"), pytest.raises(RuntimeError, match="plain default limits only"):
        limiter._check_request_limit()
    assert not limiter._storage_dead  # not taken for a Redis failure
