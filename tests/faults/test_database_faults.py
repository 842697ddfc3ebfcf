"""PostgreSQL stopped under the API and the worker."""

import time

import pytest
from conftest import http, wait_for

from .conftest import MEASURED

pytestmark = pytest.mark.slow
SEND = {"to": "alice@example.com", "subject": "Hello", "body": "Hi Alice"}


def test_database_down_answers_503_quickly_and_the_service_recovers_on_its_own(fault):
    base = fault.start_api()
    worker = fault.start_worker(WORKER_PROCESSES="1")  # one process, so the next delivery meets its dead connection
    status, _, first = http("POST", base + "/email/send", SEND, fault.auth)
    assert status == 201  # the pools now hold connections that the outage will kill
    wait_for(lambda: _sent(base, fault, first["id"]), timeout=30, message="the first message SENT")
    fault.pg.stop()

    slowest = 0.0
    requests = [
        ("POST", "/email/send", SEND, fault.auth),
        ("POST", "/email/send", SEND, fault.auth),
        ("GET", f"/email/logs/{first['id']}", None, fault.auth),
        ("GET", "/readyz", None, {}),
    ]
    for method, path, body, auth in requests:
        asked = time.monotonic()
        status, headers, answer = http(method, base + path, body, auth, timeout=25)  # > gunicorn's timeout
        slowest = max(slowest, time.monotonic() - asked)
        assert status == 503, (path, status, answer)
        assert answer["error"]["code"] == "service_unavailable" and headers["Retry-After"]
    assert answer["error"]["details"] == {"database": False, "redis": True}
    assert http("GET", base + "/healthz")[0] == 200
    wait_for(lambda: "reconciler pass failed" in fault.log_of(worker), timeout=30, message="a reconciler pass to fail")

    fault.pg.start()
    back = time.monotonic()
    wait_for(lambda: http("GET", base + "/readyz")[0] == 200, timeout=30, message="/readyz to recover")
    status, _, log = wait_for(lambda: _created(base, fault), timeout=30, message="a send to be accepted")
    wait_for(lambda: _sent(base, fault, log["id"]), timeout=60, message="the new message SENT")
    recovered_in = time.monotonic() - back
    assert len(fault.smtp.handler.received) == 2
    assert worker.poll() is None  # the supervisor rode the outage out
    MEASURED["PostgreSQL stopped"] = (
        f"every request answered 503 within {slowest * 1000:.0f} ms; after PostgreSQL came back, "
        f"a new send was SENT {recovered_in:.1f} s later, nothing restarted"
    )


def _created(base, fault):
    answer = http("POST", base + "/email/send", SEND, fault.auth)
    assert answer[0] in (201, 503), answer  # a pooled connection the outage killed may cost one 503
    return answer if answer[0] == 201 else None


def _sent(base, fault, email_id):
    status, _, log = http("GET", f"{base}/email/logs/{email_id}", headers=fault.auth)
    return status == 200 and log["status"] == "SENT"
