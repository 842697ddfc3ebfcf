"""POST /email/webhooks/delivery: signed events from the relay, the status machine, suppression."""

import hashlib
import hmac
import io
import json
import time

import pytest
from conftest import log_of, run_jobs, run_webhooks

from emailsvc import create_app

SECRET, OLD_SECRET = "relay-secret-new", "relay-secret-old"
URL = "/email/webhooks/delivery"
VALID_SEND = {"to": "alice@example.com", "subject": "Hello", "body": "Hi Alice"}


@pytest.fixture
def settings(settings):
    return {**settings, "WEBHOOK_SECRET": f"{SECRET}, {OLD_SECRET}"}


def signature(raw, secret=SECRET, t=None):
    t = int(time.time()) if t is None else t
    return f"t={t},v1={hmac.new(secret.encode(), f'{t}.'.encode() + raw, hashlib.sha256).hexdigest()}"


def post_event(client, body, secret=SECRET, t=None, header=None):
    raw = json.dumps(body).encode() if not isinstance(body, bytes) else body
    headers = {"Content-Type": "application/json", "X-Webhook-Signature": header or signature(raw, secret, t)}
    return client.post(URL, data=raw, headers=headers)


def event(client, **body):
    response = post_event(client, body)
    assert response.status_code == 200, response.get_json()
    return response.get_json()["outcome"]


@pytest.fixture
def sent(client, auth, app):
    """Send a message and let the real job hand it to the SMTP server; return its log."""
    response = client.post("/email/send", json={**VALID_SEND, "cc": ["Carol <Carol@Example.com>"]}, headers=auth)
    run_jobs(app)
    return client.get(f"/email/logs/{response.get_json()['id']}", headers=auth).get_json()


def test_delivered_sets_the_status_and_delivered_at(client, auth, sent):
    assert event(client, id=sent["id"], event="delivered", detail="250 2.0.0 OK",
                 occurred_at="2026-01-02T03:04:05Z") == "applied"  # fmt: skip
    log = log_of(client, auth, sent["id"])
    assert log["status"] == "DELIVERED" and log["delivered_at"] == "2026-01-02T03:04:05+00:00"
    assert log["events"][-1] == {"type": "delivered", "at": "2026-01-02T03:04:05+00:00", "detail": "250 2.0.0 OK"}


@pytest.mark.parametrize("strip", [False, True])
def test_the_message_can_be_named_by_its_message_id(client, auth, sent, strip):
    message_id = sent["message_id"].strip("<>") if strip else sent["message_id"]
    assert event(client, message_id=message_id, event="delivered") == "applied"
    assert log_of(client, auth, sent["id"])["status"] == "DELIVERED"


def test_a_message_id_must_match_exactly(client, auth, sent):
    foreign = sent["message_id"].split("@")[0] + "@elsewhere.example>"
    assert event(client, message_id=foreign, event="delivered") == "unknown_message"
    assert log_of(client, auth, sent["id"])["status"] == "SENT"


def test_a_replayed_event_is_recorded_once(client, auth, sent):
    body = {"id": sent["id"], "event": "delivered", "occurred_at": "2026-01-02T03:04:05Z"}
    assert event(client, **body) == "applied"
    assert event(client, **body) == "duplicate"
    assert post_event(client, body, t=int(time.time()) - 60).get_json()["outcome"] == "duplicate"  # re-signed
    types = [e["type"] for e in log_of(client, auth, sent["id"])["events"]]
    assert types.count("delivered") == 1


def test_a_hard_bounce_suppresses_and_the_next_send_is_refused(client, auth, sent):
    assert event(client, id=sent["id"], event="bounced", detail="hard: 550 5.1.1 user unknown") == "applied"
    log = log_of(client, auth, sent["id"])
    assert log["status"] == "BOUNCED" and log["events"][-1]["detail"] == "hard: 550 5.1.1 user unknown"
    listed = client.get("/suppressions", headers=auth).get_json()["items"]
    assert sorted((s["address"], s["reason"]) for s in listed) == [
        ("alice@example.com", "hard_bounce"), ("carol@example.com", "hard_bounce")]  # fmt: skip
    response = client.post("/email/send", json={**VALID_SEND, "to": ["bob@example.com", "ALICE@example.com"]},
                           headers=auth)  # fmt: skip
    assert response.status_code == 422
    error = response.get_json()["error"]
    assert error["code"] == "recipient_suppressed" and error["details"] == {"addresses": ["alice@example.com"]}


def test_a_bounce_naming_its_recipient_suppresses_only_that_one(client, auth, sent):
    event(client, id=sent["id"], event="bounced", detail="550 5.1.1 unknown", recipient="carol@example.com")
    assert [s["address"] for s in client.get("/suppressions", headers=auth).get_json()["items"]] == [
        "carol@example.com"]  # fmt: skip


@pytest.mark.parametrize("detail", ["soft: mailbox full", "452 4.2.2 Mailbox full", "4.4.7 expired"])
def test_a_soft_bounce_bounces_without_suppressing(client, auth, sent, detail):
    assert event(client, id=sent["id"], event="bounced", detail=detail) == "applied"
    assert log_of(client, auth, sent["id"])["status"] == "BOUNCED"
    assert client.get("/suppressions", headers=auth).get_json()["items"] == []


def test_a_complaint_after_delivery_suppresses(client, auth, sent):
    event(client, id=sent["id"], event="delivered")
    assert event(client, id=sent["id"], event="complained", detail="abuse report") == "applied"
    assert log_of(client, auth, sent["id"])["status"] == "COMPLAINED"
    reasons = {s["reason"] for s in client.get("/suppressions", headers=auth).get_json()["items"]}
    assert reasons == {"complaint"}


def test_deferred_after_delivered_is_recorded_not_applied(client, auth, sent):
    event(client, id=sent["id"], event="delivered")
    assert event(client, id=sent["id"], event="deferred", detail="421 try later") == "recorded"
    log = log_of(client, auth, sent["id"])
    assert log["status"] == "DELIVERED"
    assert [e["type"] for e in log["events"]][-2:] == ["delivered", "deferred"]


@pytest.mark.parametrize(
    "first, late, final",
    [("bounced", "delivered", "BOUNCED"), ("complained", "bounced", "COMPLAINED"), ("delivered", "delivered", None)],
)
def test_a_late_event_never_moves_the_status_backwards(client, auth, sent, first, late, final):
    event(client, id=sent["id"], event=first, detail="first")
    assert event(client, id=sent["id"], event=late, detail="late") == "recorded"
    log = log_of(client, auth, sent["id"])
    assert log["status"] == (final or first.upper())
    assert [e["type"] for e in log["events"]][-2:] == [first, late]


def test_a_late_bounce_after_delivery_is_applied(client, auth, sent):
    event(client, id=sent["id"], event="delivered")
    assert event(client, id=sent["id"], event="bounced", detail="hard: 550 mailbox gone") == "applied"
    log = log_of(client, auth, sent["id"])
    assert log["status"] == "BOUNCED" and log["delivered_at"]


def test_an_event_for_a_message_not_yet_sent_is_recorded_only(client, auth):
    email_id = client.post("/email/send", json=VALID_SEND, headers=auth).get_json()["id"]
    assert event(client, id=email_id, event="delivered") == "recorded"
    log = log_of(client, auth, email_id)
    assert log["status"] == "PENDING" and log["events"][-1]["type"] == "delivered"


@pytest.mark.parametrize(
    "body",
    [
        {"id": "00000000-0000-0000-0000-000000000000", "event": "delivered"},
        {"id": "not-one-of-ours", "event": "bounced"},
        {"message_id": "<nobody@example.com>", "event": "complained"},
    ],
)
def test_an_unknown_message_is_acknowledged_and_ignored(client, body):
    assert event(client, **body) == "unknown_message"


def test_status_changes_are_sent_as_webhooks(client, auth, app, sent, receiver):
    client.post("/webhooks", json={"url": receiver.url}, headers=auth)
    event(client, id=sent["id"], event="deferred", detail="421 greylisted")
    event(client, id=sent["id"], event="delivered")
    event(client, id=sent["id"], event="deferred", detail="late")  # recorded: deferred is an event, so sent too
    event(client, id=sent["id"], event="delivered")  # a replay: nothing
    run_webhooks(app)
    events = sorted(receiver.payloads(), key=lambda e: e["created_at"])
    assert [(e["type"], e["data"]["status"]) for e in events] == [
        ("email.deferred", "SENT"), ("email.delivered", "DELIVERED"), ("email.deferred", "DELIVERED")]  # fmt: skip


def test_any_configured_secret_and_any_v1_value_is_accepted(client, sent):
    raw = json.dumps({"id": sent["id"], "event": "deferred"}).encode()
    t = int(time.time())
    assert post_event(client, raw, header=signature(raw, OLD_SECRET, t)).status_code == 200
    wrong, right = signature(raw, "not-ours", t), signature(raw, SECRET, t)
    header = f"{wrong},{right.split(',')[1]}"  # t=…,v1=<wrong>,v1=<right>
    assert post_event(client, raw, header=header).status_code == 200


@pytest.mark.parametrize(
    "case",
    ["wrong secret", "stale", "future", "tampered", "no header", "no v1", "no t", "huge t", "non-ascii", "garbage"],
)
def test_bad_signatures_are_401(client, sent, case):
    raw = json.dumps({"id": sent["id"], "event": "bounced"}).encode()
    now = int(time.time())
    header = {
        "wrong secret": signature(raw, "not-ours"),
        "stale": signature(raw, t=now - 301),
        "future": signature(raw, t=now + 301),
        "tampered": signature(raw.replace(b"bounced", b"delivered")),
        "no header": "",
        "no v1": f"t={now}",
        "no t": signature(raw).split(",")[1],
        "huge t": "t=" + "9" * 5000 + ",v1=00",
        "non-ascii": f"t={now},v1=é",
        "garbage": ",,,==,t,v1",
    }[case]
    headers = {"Content-Type": "application/json"} | ({"X-Webhook-Signature": header} if header else {})
    response = client.post(URL, data=raw, headers=headers)
    assert response.status_code == 401 and response.get_json()["error"]["code"] == "unauthorized"


@pytest.mark.parametrize(
    "raw, status",
    [
        (b"not json", 400),
        (b"[1, 2]", 400),
        (b"[" * 60_000, 400),  # nested far past the recursion limit, within the 64 KiB cap
        (b'{"id": "x"}', 422),
        (b'{"event": "delivered"}', 422),
        (b'{"id": "x", "event": "opened"}', 422),
        (b'{"id": 7, "event": "delivered"}', 422),
        (b'{"id": "x", "event": "delivered", "detail": "nul \\u0000 byte"}', 422),
        (b'{"id": "x", "event": "delivered", "occurred_at": "yesterday"}', 422),
        (b'{"id": "x", "event": "delivered", "occurred_at": "0001-01-01T00:00:00+14:00"}', 422),
        (b'{"id": "x", "event": "bounced", "recipient": "not an address"}', 422),
        (b'{"message_id": "<a\\r\\nb>", "event": "delivered"}', 422),
    ],
)
def test_malformed_signed_events_are_4xx_never_500(client, raw, status):
    response = post_event(client, raw)
    assert response.status_code == status and response.is_json


def test_extra_fields_and_long_details_are_accepted(client, auth, sent):
    assert event(client, id=sent["id"], event="bounced", detail="x" * 5000, provider={"name": "relay"}) == "applied"
    assert len(log_of(client, auth, sent["id"])["events"][-1]["detail"]) == 2000


def test_the_endpoint_does_not_exist_without_a_secret(settings):
    client = create_app({**settings, "WEBHOOK_SECRET": ""}).test_client()
    raw = b'{"id": "x", "event": "delivered"}'
    response = client.post(URL, data=raw, headers={"Content-Type": "application/json",
                                                   "X-Webhook-Signature": signature(raw)})  # fmt: skip
    assert response.status_code == 404 and response.get_json()["error"]["code"] == "not_found"


def test_an_event_naming_someone_else_is_recorded_but_suppresses_no_one(client, auth, sent):
    body = {"id": sent["id"], "event": "bounced", "detail": "550 5.1.1 unknown", "recipient": "ceo@example.com"}
    response = post_event(client, body)
    assert response.status_code == 200
    assert response.get_json() == {"received": True, "outcome": "recorded", "ignored": "not_a_recipient"}
    log = log_of(client, auth, sent["id"])
    assert log["status"] == "SENT" and log["events"][-1]["type"] == "bounced"  # kept for the record
    assert client.get("/suppressions", headers=auth).get_json()["items"] == []
    assert client.post("/email/send", json={**VALID_SEND, "to": "ceo@example.com"}, headers=auth).status_code == 201


def test_a_recipient_is_matched_whatever_its_case_and_display_name(client, auth, sent):
    body = {"id": sent["id"], "event": "complained", "recipient": "Carol Q <CAROL@example.COM>"}
    assert post_event(client, body).get_json() == {"received": True, "outcome": "applied"}
    [entry] = client.get("/suppressions", headers=auth).get_json()["items"]
    assert entry["address"] == "carol@example.com"


class Endless:
    """A request body that never ends, counting what the server reads of it."""

    def __init__(self):
        self.read_bytes = 0

    def read(self, size=-1):
        size = 8192 if size is None or size < 0 else size
        self.read_bytes += size
        return b" " * size

    def readline(self, size=-1):
        return self.read(size)


def call_wsgi(app, body, signed=b"", content_length=None):
    """POST `body` (a stream) straight through the WSGI app; without a length, as gunicorn hands on a
    chunked body. Return (status, JSON answer)."""
    from werkzeug.test import EnvironBuilder

    headers = {"X-Webhook-Signature": signature(signed)}
    environ = EnvironBuilder(path=URL, method="POST", content_type="application/json", headers=headers).get_environ()
    environ["wsgi.input"] = body
    environ.pop("CONTENT_LENGTH", None)
    if content_length is None:
        environ["wsgi.input_terminated"] = True
    else:
        environ["CONTENT_LENGTH"] = str(content_length)
    status = []
    chunks = app(environ, lambda s, headers, exc_info=None: status.append(s))
    return int(status[0][:3]), json.loads(b"".join(chunks))


def padded_event(sent, size):
    raw = json.dumps({"id": sent["id"], "event": "delivered", "pad": ""}).encode()
    return raw[:-2] + b"x" * (size - len(raw)) + raw[-2:]


def test_a_body_over_64_kib_is_refused_before_it_is_read(app):
    body = Endless()
    status, answer = call_wsgi(app, body, content_length=10 * 1024 * 1024)
    assert status == 413 and body.read_bytes == 0
    assert answer["error"]["code"] == "payload_too_large" and "65536 bytes" in answer["error"]["message"]


def test_a_chunked_body_is_read_no_further_than_64_kib(app):
    body = Endless()
    status, answer = call_wsgi(app, body)
    assert (
        status == 413 and answer["error"]["code"] == "payload_too_large" and "65536 bytes" in answer["error"]["message"]
    )
    assert body.read_bytes <= 64 * 1024 + 8192


@pytest.mark.parametrize("chunked", [False, True])
def test_64_kib_is_still_accepted(app, sent, chunked):
    raw = padded_event(sent, 64 * 1024)
    status, answer = call_wsgi(app, io.BytesIO(raw), raw, content_length=None if chunked else len(raw))
    assert (status, answer["outcome"]) == (200, "applied")


@pytest.mark.parametrize("chunked", [False, True])
def test_one_byte_more_is_413(app, sent, chunked):
    raw = padded_event(sent, 64 * 1024 + 1)
    status, _ = call_wsgi(app, io.BytesIO(raw), raw, content_length=None if chunked else len(raw))
    assert status == 413


def test_events_are_limited_per_client_address_by_their_own_setting(settings, sent):
    app = create_app({**settings, "RATELIMIT_DELIVERY_EVENTS": "3 per minute", "RATELIMIT_DEFAULT": "1 per minute"})
    client, body = app.test_client(), {"id": sent["id"], "event": "deferred"}
    here, there = {"REMOTE_ADDR": "192.0.2.1"}, {"REMOTE_ADDR": "192.0.2.2"}

    def post_from(environ):
        raw = json.dumps(body).encode()
        headers = {"Content-Type": "application/json", "X-Webhook-Signature": signature(raw)}
        return client.post(URL, data=raw, headers=headers, environ_base=environ)

    responses = [post_from(here) for _ in range(4)]
    assert [r.status_code for r in responses] == [200, 200, 200, 429]  # RATELIMIT_DEFAULT does not count them
    assert responses[3].get_json()["error"]["code"] == "rate_limited" and int(responses[3].headers["Retry-After"]) > 0
    assert responses[0].headers["X-RateLimit-Limit"] == "3"
    assert post_from(there).status_code == 200


def test_an_event_naming_a_recipient_moves_that_recipient_only_and_never_back(client, auth, sent):
    assert event(client, id=sent["id"], event="delivered", recipient="carol@example.com") == "applied"
    assert event(client, id=sent["id"], event="bounced", recipient="Carol <carol@example.com>",
                 detail="hard: 550 5.1.1 gone") == "applied"  # fmt: skip
    assert event(client, id=sent["id"], event="delivered", recipient="carol@example.com", detail="late") == "recorded"
    log = log_of(client, auth, sent["id"])
    assert {r["address"].lower(): r["status"] for r in log["recipients"]} == {
        "alice@example.com": "accepted", "carol@example.com": "bounced"
    }  # fmt: skip
