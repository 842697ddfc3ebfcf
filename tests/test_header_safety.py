"""Header injection: hostile addresses, subjects and headers are refused and never reach the SMTP server."""

import psycopg2
import pytest
from conftest import TEST_REDIS_URL, run_jobs
from redis import Redis
from rq import Queue

VALID = {"to": "alice@example.com", "subject": "Hello", "body": "Hi"}
INJECTED = "x@evil.test"


ATTEMPTS = [
    {"subject": f"hi\r\nBcc: {INJECTED}"},
    {"subject": f"hi\nBcc: {INJECTED}"},
    {"subject": f"hi\rBcc: {INJECTED}"},
    {"subject": "hi\x00there"},
    {"subject": f"hi\u2028Bcc: {INJECTED}"},
    {"subject": f"hi\x85Bcc: {INJECTED}"},
    {"to": f"alice@example.com\r\nBcc: {INJECTED}"},
    {"to": [f"Alice\r\nBcc: {INJECTED} <alice@example.com>"]},
    {"to": f"alice@example.com, {INJECTED}"},
    {"to": f"alice@example.com\x00{INJECTED}"},
    {"cc": [f"c@example.com\nBcc: {INJECTED}"]},
    {"bcc": [f"b@example.com\r\n{INJECTED}"]},
    {"from": f"shop@example.com\r\nBcc: {INJECTED}"},
    {"from": f'"Shop\r\nBcc: {INJECTED}" <shop@example.com>'},
    {"reply_to": f"help@example.com\nBcc: {INJECTED}"},
    {"headers": {"X-Tag": f"a\r\nBcc: {INJECTED}"}},
    {"headers": {"X-Tag": f"a\u2029Bcc: {INJECTED}"}},
    {"headers": {f"X-Tag: a\r\nBcc: {INJECTED}\r\nX-B": "v"}},
    {"headers": {"X-Tag\x00": "v"}},
    {"headers": {"Bcc": INJECTED}},
    {"headers": {"bcc": INJECTED}},
    {"headers": {"To": INJECTED}},
    {"headers": {"From": INJECTED}},
    {"headers": {"Sender": INJECTED}},
    {"headers": {"Return-Path": INJECTED}},
    {"headers": {"Content-Type": "text/html"}},
    {"headers": {"Content-Transfer-Encoding": "8bit"}},
    {"headers": {"MIME-Version": "2.0"}},
    {"headers": {"Message-ID": "<spoofed@example.com>"}},
    {"headers": {"DKIM-Signature": "v=1"}},
]


@pytest.mark.parametrize("changes", ATTEMPTS)
def test_injection_attempts_are_refused_and_nothing_is_recorded_or_queued(client, auth, database, changes):
    response = client.post("/email/send", json={**VALID, **changes}, headers=auth)
    assert response.status_code == 422
    assert response.get_json()["error"]["code"] == "validation_error"
    with psycopg2.connect(database) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM emails")
        assert cur.fetchone()[0] == 0
    assert Queue("email", connection=Redis.from_url(TEST_REDIS_URL)).count == 0


def test_no_injection_attempt_reaches_the_smtp_server(client, auth, app, smtp):
    for changes in ATTEMPTS:
        assert client.post("/email/send", json={**VALID, **changes}, headers=auth).status_code == 422
    run_jobs(app)
    assert smtp.received == []


def test_an_accepted_message_reaches_exactly_its_recipients_with_only_its_headers(client, auth, app, smtp):
    body = {**VALID, "to": ['"Doe, Jane" <jane@example.com>'], "bcc": ["hidden@example.com"],
            "subject": "Ünïcode: Bcc: not-a-header@evil.test",
            "headers": {"X-Campaign": "nov; Bcc: y@evil.test"}}  # fmt: skip
    assert client.post("/email/send", json=body, headers=auth).status_code == 201
    run_jobs(app)
    [(_, recipients, msg)] = smtp.received
    assert sorted(recipients) == ["hidden@example.com", "jane@example.com"]
    assert msg["Subject"] == body["subject"] and msg["X-Campaign"] == "nov; Bcc: y@evil.test"
    assert msg["Bcc"] is None and msg["To"] == '"Doe, Jane" <jane@example.com>'
    assert "evil.test" not in " ".join(str(msg[h]) for h in ("To", "Cc", "From", "Reply-To"))
