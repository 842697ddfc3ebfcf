"""Redis stopped under the API and the worker, and Redis restarted empty under waiting messages."""

import time
import uuid
from collections import Counter

import pytest
from conftest import http, wait_for

from .conftest import MEASURED

pytestmark = pytest.mark.slow
SEND = {"to": "alice@example.com", "subject": "Hello", "body": "Hi Alice"}


def test_redis_down_answers_503_and_sending_resumes_when_it_is_back(fault):
    base = fault.start_api()
    worker = fault.start_worker()
    status, _, first = http("POST", base + "/email/send", SEND, fault.auth)
    wait_for(lambda: _status_of(fault, first["id"]) == "SENT", timeout=30, message="a first message SENT")
    fault.redis.stop()

    asked = time.monotonic()
    status, headers, body = http("POST", base + "/email/send", SEND, fault.auth, timeout=25)
    answered_in = time.monotonic() - asked
    assert status == 503 and body["error"]["code"] == "service_unavailable" and headers["Retry-After"]
    [row] = fault.query("SELECT status, error_message FROM emails WHERE id <> %s", (first["id"],))
    assert row["status"] == "FAILED" and "queue was unavailable" in row["error_message"]
    status, _, body = http("GET", base + "/readyz", timeout=25)
    assert status == 503 and body["error"]["details"] == {"database": True, "redis": False}

    wait_for(lambda: "ConnectionError" in fault.log_of(worker), timeout=30, message="the worker to lose Redis")
    fault.redis.start()  # empty, as after a crash without persistence
    back = time.monotonic()
    wait_for(lambda: http("GET", base + "/readyz")[0] == 200, timeout=30, message="/readyz to recover")
    status, _, log = http("POST", base + "/email/send", SEND, fault.auth)
    assert status == 201
    wait_for(lambda: _status_of(fault, log["id"]) == "SENT", timeout=60, message="the new message SENT")
    recovered_in = time.monotonic() - back
    assert len(fault.smtp.handler.received) == 2
    assert worker.poll() is None
    MEASURED["Redis stopped"] = (
        f"send answered 503 in {answered_in * 1000:.0f} ms (row FAILED); after Redis came back, "
        f"a new send was SENT {recovered_in:.1f} s later, nothing restarted"
    )


def test_redis_restarted_empty_the_reconciler_requeues_every_waiting_message(fault):
    ids = [fault.post()[1]["id"] for _ in range(100)]
    fault.redis.stop()
    fault.redis.start()  # every job is gone
    started = time.monotonic()
    fault.start_worker()
    fault.wait_until_settled(timeout=60)
    settled_in = time.monotonic() - started
    assert fault.statuses() == {"SENT": 100}
    seen = Counter(fault.smtp.message_ids())
    assert sorted(seen.values()) == [1] * 100
    assert {r["id"] for r in fault.query("SELECT id::text FROM emails")} == set(ids)
    MEASURED["Redis restarted empty"] = (
        f"100 waiting messages all SENT once, {settled_in:.1f} s after the worker started "
        f"(RECONCILE_GRACE {fault.settings['RECONCILE_GRACE']} s)"
    )


def test_with_redis_down_no_remembered_key_is_trusted_and_a_revoked_one_stays_refused(fault, look_ups):
    client = fault.app.test_client()

    def get():
        return client.get(f"/email/logs/{uuid.uuid4()}", headers=fault.auth).status_code

    assert [get() for _ in range(3)] == [404] * 3  # remembered, and confirmed by the rate-limit count
    seen = len(look_ups)
    fault.redis.stop()
    assert [get() for _ in range(3)] == [404] * 3  # counted in memory: each request looks its key up
    assert len(look_ups) == seen + 3
    fault.query("UPDATE api_keys SET revoked_at = now() RETURNING id")  # what `api-keys revoke` commits first
    assert get() == 401
    fault.redis.start()  # empty: whatever a process remembers is looked up again
    assert [get() for _ in range(3)] == [401] * 3


def _status_of(fault, email_id):
    rows = fault.query("SELECT status FROM emails WHERE id = %s", (email_id,))
    return rows[0]["status"] if rows else None
