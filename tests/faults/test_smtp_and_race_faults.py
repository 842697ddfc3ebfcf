"""The SMTP relay down for a while, and twenty identical requests racing with one Idempotency-Key."""

import threading
import time

import pytest
from conftest import http, wait_for

from .conftest import MEASURED

pytestmark = pytest.mark.slow
SEND = {"to": "alice@example.com", "subject": "Hello", "body": "Hi Alice"}


def test_smtp_down_longer_than_the_first_retry_then_up_the_mail_is_sent(fault):
    fault.smtp.stop()
    fault.start_worker()
    email_id = fault.post()[1]["id"]
    # Down past the first retry interval (1 s): wait for the retry to fail as well.
    wait_for(lambda: len(_events(fault, email_id, "attempt_failed")) >= 2, timeout=30, message="two failed attempts")
    fault.smtp.start()
    up = time.monotonic()
    wait_for(lambda: _events(fault, email_id, "sent"), timeout=30, message="the message SENT")
    sent_in = time.monotonic() - up

    [row] = fault.query("SELECT status, attempts, message_id FROM emails")
    failed = _events(fault, email_id, "attempt_failed")
    assert row["status"] == "SENT" and row["attempts"] == len(failed) + 1
    assert all("ConnectionRefusedError" in e["detail"] for e in failed)
    assert fault.smtp.message_ids() == [row["message_id"]]
    MEASURED["SMTP down"] = f"SENT on attempt {row['attempts']}, {sent_in:.1f} s after the relay came back"


def test_twenty_identical_requests_racing_make_one_message_and_one_mail(fault):
    base = fault.start_api(workers=4)
    fault.start_worker()
    headers, barrier, answers = {**fault.auth, "Idempotency-Key": "order-42"}, threading.Barrier(20), []

    def post():
        barrier.wait()
        answers.append(http("POST", base + "/email/send", SEND, headers, timeout=25))

    threads = [threading.Thread(target=post) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert [status for status, _, _ in answers] == [201] * 20
    assert len({log["id"] for _, _, log in answers}) == 1
    replays = sum(head.get("Idempotent-Replayed") == "true" for _, head, _ in answers)
    assert replays == 19
    fault.wait_until_settled(timeout=30)
    assert fault.statuses() == {"SENT": 1}
    assert len(fault.smtp.handler.received) == 1
    MEASURED["Idempotency race"] = f"20 concurrent requests, one key: 1 row, 1 mail, {replays} replays"


def _events(fault, email_id, kind):
    return fault.query("SELECT detail FROM email_events WHERE email_id = %s AND type = %s", (email_id, kind))
