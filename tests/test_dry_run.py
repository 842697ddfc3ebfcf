"""?dry_run=true on POST /email/send and /email/batch: what would be sent and decided, with nothing recorded."""

import re
from datetime import UTC, datetime, timedelta

import psycopg2
from conftest import TEST_REDIS_URL, make_key, run_jobs
from redis import Redis
from rq import Queue

from emailsvc import create_app

SEND = {
    "to": ["Alice <alice@example.com>", "josé@exämple.com"],
    "cc": ["carol@example.com"],
    "bcc": ["dave@example.com"],
    "from": "Shop <orders@shop.example>",
    "reply_to": "help@shop.example",
    "subject": "Your order — ünïcode",
    "body": "It is on its way.\nLine two, with a long line " + "x" * 200,
    "html": "<p>It is on its way.</p>",
    "headers": {"X-Campaign": "spring", "List-Unsubscribe": "<mailto:unsub@shop.example>"},
    "metadata": {"order_id": "42"},
}


def count(database, table="emails"):
    with psycopg2.connect(database) as conn, conn.cursor() as cur:
        cur.execute(f"SELECT count(*) FROM {table}")
        return cur.fetchone()[0]


def queued():
    return Queue("email", connection=Redis.from_url(TEST_REDIS_URL)).count


def normalised(mime):
    """The message without what differs between two builds: Date, Message-ID and the MIME boundaries."""
    text = mime.decode() if isinstance(mime, bytes) else mime
    text = re.sub(r"^(Date|Message-ID): .*\r\n", "", text, flags=re.MULTILINE)
    for n, boundary in enumerate(re.findall(r'boundary="([^"]+)"', text)):
        text = text.replace(boundary, f"BOUNDARY{n}")
    return text


def test_a_dry_run_shows_the_message_as_it_is_sent_and_records_nothing(client, auth, app, smtp, database):
    dry = client.post("/email/send?dry_run=true", json=SEND, headers=auth)
    assert dry.status_code == 200
    preview = dry.get_json()
    assert count(database) == 0 and count(database, "email_events") == 0 and queued() == 0
    run_jobs(app)
    assert smtp.received == []
    assert preview["envelope"]["mail_from"] == "orders@shop.example"
    assert len(preview["envelope"]["rcpt_to"]) == 4 and preview["envelope"]["rcpt_to"][-1] == "dave@example.com"
    assert "dave@example.com" not in preview["mime"]  # Bcc is in the envelope only
    # The same request for real: what the relay receives is the preview, but for Date, Message-ID, boundaries.
    assert client.post("/email/send", json=SEND, headers=auth).status_code == 201
    run_jobs(app)
    [(mail_from, rcpt_to, _)] = smtp.received
    assert (mail_from, rcpt_to) == (preview["envelope"]["mail_from"], preview["envelope"]["rcpt_to"])
    assert normalised(smtp.raw[0]) == normalised(preview["mime"]).replace("\n", "\r\n").replace("\r\r\n", "\r\n")
    assert "multipart/alternative" in preview["mime"] and "X-Campaign: spring" in preview["mime"]


def test_decisions_are_shown_where_a_real_send_would_be_refused(settings, database):
    app = create_app({**settings, "EMAIL_ALLOWED_FROM_DOMAINS": "shop.example", "RATELIMIT_MESSAGES": "10 per minute"})
    client, auth = app.test_client(), {"X-API-Key": make_key(app)}
    client.post("/suppressions", json={"address": "carol@example.com"}, headers=auth)
    send_at = (datetime.now(UTC) + timedelta(days=1)).replace(microsecond=0)
    body = {**SEND, "from": "ceo@bank.example", "send_at": send_at.isoformat()}
    dry = client.post("/email/send?dry_run=true", json=body, headers=auth)
    assert dry.status_code == 200
    decisions = dry.get_json()["decisions"]
    assert decisions["sender_allowed"] is False and decisions["suppressed"] == ["carol@example.com"]
    assert datetime.fromisoformat(decisions["scheduled_for"]) == send_at and decisions["idempotency"] == "new"
    assert decisions["rate_limit"] == {"limit": 10, "remaining": 10}
    assert client.post("/email/send", json=body, headers=auth).status_code == 422  # the real send is refused
    assert count(database) == 0


def test_idempotency_and_the_message_limit_as_a_real_send_would_find_them(settings, database):
    app = create_app({**settings, "RATELIMIT_MESSAGES": "10 per minute", "RATELIMIT_SEND": "1 per minute"})
    client, auth = app.test_client(), {"X-API-Key": make_key(app)}
    keyed = {**auth, "Idempotency-Key": "order-42"}
    body = {"to": "bob@example.com", "subject": "Hi", "body": "Hello"}
    assert (
        client.post("/email/send?dry_run=true", json=body, headers=keyed).get_json()["decisions"]["idempotency"]
        == "new"
    )
    assert client.post("/email/send", json=body, headers=keyed).status_code == 201
    decisions = client.post("/email/send?dry_run=true", json=body, headers=keyed).get_json()["decisions"]
    assert decisions["idempotency"] == "replay" and decisions["rate_limit"] == {"limit": 10, "remaining": 9}
    changed = {**body, "subject": "Changed"}
    assert (
        client.post("/email/send?dry_run=true", json=changed, headers=keyed).get_json()["decisions"]["idempotency"]
        == "conflict"
    )
    # Dry runs took nothing from RATELIMIT_SEND (1 per minute) nor from the messages.
    for _ in range(3):
        assert client.post("/email/batch?dry_run=true", json={"messages": [body] * 3}, headers=auth).status_code == 200
    assert count(database) == 1


def test_a_batch_dry_run_previews_each_message_in_order(client, auth, database):
    messages = [{"to": f"user{n}@example.com", "subject": f"Hello {n}", "body": "Hi"} for n in range(3)]
    response = client.post("/email/batch?dry_run=true", json={"messages": messages}, headers=auth)
    assert response.status_code == 200
    data = response.get_json()["data"]
    assert [p["envelope"]["rcpt_to"] for p in data] == [[f"user{n}@example.com"] for n in range(3)]
    assert ["Subject: Hello 1" in p["mime"] for p in data] == [False, True, False]
    assert count(database) == 0 and queued() == 0


def test_an_invalid_body_or_flag_is_still_refused(client, auth, database):
    invalid = client.post("/email/send?dry_run=true", json={"to": "nobody"}, headers=auth)
    assert invalid.status_code == 422
    bad_flag = client.post(
        "/email/send?dry_run=yes", json={"to": "a@example.com", "subject": "s", "body": "b"}, headers=auth
    )
    assert bad_flag.status_code == 400 and bad_flag.get_json()["error"]["code"] == "invalid_parameter"
    assert count(database) == 0
