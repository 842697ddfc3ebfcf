"""POST /email/send and GET /email/logs/<id>."""

import uuid
from datetime import UTC, datetime, timedelta, timezone
from email.utils import parsedate_to_datetime

import psycopg2
import pytest
from conftest import TEST_REDIS_URL, make_key, run_jobs, wait_for
from redis import Redis
from rq import Queue

from emailsvc import create_app
from emailsvc.auth import new_key
from emailsvc.jobs import next_whole_second

VALID = {"to": "alice@example.com", "subject": "Hello", "body": "Hi Alice"}


def send(client, auth, **changes):
    body = {**VALID, **changes}
    return client.post("/email/send", json={k: v for k, v in body.items() if v is not ...}, headers=auth)


def test_send_answers_201_with_the_pending_log(client, auth):
    response = send(client, auth, to=["Alice <alice@example.com>"], cc=["c@example.com"],
                    bcc=["b@example.com"], html="<p>Hi</p>", metadata={"order": "42"},
                    reply_to="help@example.com")  # fmt: skip
    assert response.status_code == 201
    log = response.get_json()
    assert log["status"] == "PENDING"
    assert log["to"] == ["Alice <alice@example.com>"]
    assert log["cc"] == ["c@example.com"] and log["bcc"] == ["b@example.com"]
    assert log["from"] == "no-reply@localhost"
    assert log["metadata"] == {"order": "42"}
    assert log["attempts"] == 0
    assert log["message_id"] == f"<{log['id']}@localhost>"
    assert log["created_at"].endswith("+00:00")
    assert log["sent_at"] is None and log["error_message"] is None
    assert response.headers["X-Request-ID"]


def test_send_records_the_row_and_queues_one_job_carrying_only_the_id(client, auth, database):
    log = send(client, auth).get_json()
    with psycopg2.connect(database) as conn, conn.cursor() as cur:
        cur.execute("SELECT status, to_addrs FROM emails WHERE id = %s", (log["id"],))
        assert cur.fetchone() == ("PENDING", ["alice@example.com"])
    queue = Queue("email", connection=Redis.from_url(TEST_REDIS_URL))
    assert queue.job_ids == [log["id"]]
    job = queue.fetch_job(log["id"])
    assert job.func_name == "emailsvc.jobs.deliver" and job.args == (log["id"],)
    assert job.retries_left == 3


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"to": ...}, "to"),
        ({"to": []}, "to"),
        ({"to": "not-an-address"}, "to"),
        ({"to": ["ok@example.com", "bad@"]}, "to"),
        ({"to": 42}, "to"),
        ({"to": [f"u{i}@example.com" for i in range(51)]}, "to"),
        ({"cc": ["x@example.com"] * 30, "bcc": ["y@example.com"] * 20}, "to"),
        ({"cc": "x@example.com, y@example.com"}, "cc"),
        ({"from": "nobody"}, "from"),
        ({"reply_to": "a@b@c"}, "reply_to"),
        ({"subject": ...}, "subject"),
        ({"subject": ""}, "subject"),
        ({"subject": "x" * 999}, "subject"),
        ({"subject": "Hi\r\nBcc: victim@example.com"}, "subject"),
        ({"to": "a@example.com\r\nBcc: victim@example.com"}, "to"),
        ({"body": ..., "html": ...}, "body"),
        ({"body": ""}, "body"),
        ({"headers": {"Bcc": "victim@example.com"}}, "headers"),
        ({"headers": {"X-Tag": "a\r\nBcc: victim@example.com"}}, "headers"),
        ({"headers": {"Bad Name": "v"}}, "headers"),
        ({"metadata": {"k": 1}}, "metadata"),
        ({"metadata": {f"k{i}": "v" for i in range(21)}}, "metadata"),
        ({"surprise": True}, "surprise"),
    ],
)
def test_invalid_fields_get_422_naming_the_field_and_nothing_is_recorded(client, auth, database, changes, field):
    response = send(client, auth, **changes)
    assert response.status_code == 422
    error = response.get_json()["error"]
    assert error["code"] == "validation_error"
    assert field in error["details"]
    with psycopg2.connect(database) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM emails")
        assert cur.fetchone()[0] == 0


def test_display_names_and_international_addresses_are_accepted(client, auth):
    response = send(client, auth, to=['"Doe, Jane" <jane@example.com>', "José <jose@exämple.com>"])
    assert response.status_code == 201
    assert response.get_json()["to"] == ['"Doe, Jane" <jane@example.com>', "José <jose@xn--exmple-cua.com>"]


def test_sender_outside_the_allowed_domains_is_refused(settings, auth):
    app = create_app({**settings, "EMAIL_ALLOWED_FROM_DOMAINS": "shop.example"})
    client = app.test_client()
    headers = {"X-API-Key": make_key(app)}
    assert send(client, headers, **{"from": "Shop <orders@shop.example>"}).status_code == 201
    refused = send(client, headers, **{"from": "ceo@bank.example"})
    assert refused.status_code == 422
    assert "from" in refused.get_json()["error"]["details"]


def test_redis_down_at_send_answers_503_and_records_the_row_failed(settings, database):
    app = create_app({**settings, "REDIS_URL": "redis://127.0.0.1:1/0"})
    from conftest import make_key

    response = send(app.test_client(), {"X-API-Key": make_key(app)})
    assert response.status_code == 503
    assert response.get_json()["error"]["code"] == "service_unavailable"
    assert response.headers["Retry-After"]
    with psycopg2.connect(database) as conn, conn.cursor() as cur:
        cur.execute("SELECT status, error_message FROM emails")
        status, error = cur.fetchone()
    assert status == "FAILED" and "queue was unavailable" in error


def test_database_down_at_send_answers_503_and_queues_nothing(settings):
    app = create_app({**settings, "DATABASE_URL": "postgresql://postgres@127.0.0.1:1/none"})
    response = send(app.test_client(), {"X-API-Key": new_key()})
    assert response.status_code == 503
    assert Queue("email", connection=Redis.from_url(TEST_REDIS_URL)).count == 0


def test_get_log_returns_the_log_with_its_events(client, auth, app, smtp):
    log = send(client, auth).get_json()
    run_jobs(app)
    response = client.get(f"/email/logs/{log['id']}", headers=auth)
    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "SENT" and body["attempts"] == 1
    assert [e["type"] for e in body["events"]] == ["pending", "sending", "sent"]
    assert body["events"][-1]["detail"].startswith("250")


@pytest.mark.parametrize("email_id", [str(uuid.uuid4()), "not-a-uuid"])
def test_unknown_log_is_404(client, auth, email_id):
    response = client.get(f"/email/logs/{email_id}", headers=auth)
    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "not_found"


def test_requests_reuse_database_connections(client, auth, database):
    def sessions():
        with psycopg2.connect(database) as conn, conn.cursor() as cur:
            cur.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'emailsvc'"
            )
            return {pid for (pid,) in cur.fetchall()}

    send(client, auth)
    kept = sessions()
    for _ in range(5):
        assert send(client, auth).status_code == 201
    assert kept and sessions() == kept


def iso(moment):
    return moment.isoformat().replace("+00:00", "Z")


def test_send_at_records_scheduled_and_schedules_the_job_for_that_time(client, auth):
    send_at = datetime.now(UTC).replace(microsecond=0) + timedelta(days=2)
    response = send(client, auth, send_at=iso(send_at))
    assert response.status_code == 201
    log = response.get_json()
    assert log["status"] == "SCHEDULED" and log["scheduled_at"] == send_at.isoformat()
    queue = Queue("email", connection=Redis.from_url(TEST_REDIS_URL))
    assert queue.count == 0
    assert queue.scheduled_job_registry.get_scheduled_time(log["id"]) == send_at
    events = client.get(f"/email/logs/{log['id']}", headers=auth).get_json()["events"]
    assert [e["type"] for e in events] == ["scheduled"]


@pytest.mark.parametrize(
    "send_at",
    [
        lambda now: iso(now - timedelta(minutes=1)),
        lambda now: iso(now + timedelta(days=30, minutes=1)),
        lambda now: (now + timedelta(hours=1)).replace(tzinfo=None).isoformat(),  # no offset
        lambda now: "tomorrow",
        lambda now: 1767225600,
    ],
)
def test_send_at_in_the_past_too_far_ahead_or_malformed_is_422(client, auth, database, send_at):
    response = send(client, auth, send_at=send_at(datetime.now(UTC)))
    assert response.status_code == 422
    assert "send_at" in response.get_json()["error"]["details"]
    with psycopg2.connect(database) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM emails")
        assert cur.fetchone()[0] == 0


def test_send_at_within_30_days_with_an_offset_is_accepted(client, auth):
    send_at = datetime.now(UTC) + timedelta(days=29, hours=23)
    response = send(client, auth, send_at=send_at.astimezone(timezone(timedelta(hours=-5))).isoformat())
    assert response.status_code == 201
    assert datetime.fromisoformat(response.get_json()["scheduled_at"]) == send_at


def test_a_scheduled_message_is_sent_once_due(client, auth, app, smtp):
    send_at = datetime.now(UTC) + timedelta(seconds=1)
    log = send(client, auth, send_at=iso(send_at)).get_json()
    run_jobs(app)
    assert smtp.received == []
    # RQ's scheduler counts whole seconds: the job is scheduled for the first one not before send_at.
    wait_for(lambda: datetime.now(UTC) >= next_whole_second(send_at), message="send_at to pass")
    run_jobs(app)  # its scheduler moves the due job to the queue, then the worker sends it
    assert len(smtp.received) == 1
    dated = parsedate_to_datetime(smtp.received[0][2]["Date"])
    assert dated == datetime.fromisoformat(log["scheduled_at"]).replace(microsecond=0)  # dated when due
    body = client.get(f"/email/logs/{log['id']}", headers=auth).get_json()
    assert body["status"] == "SENT" and [e["type"] for e in body["events"]] == ["scheduled", "sending", "sent"]


@pytest.mark.parametrize("to", ["user@corp.local", "ops@localhost", "qa@staging.test", "svc@db.internal"])
def test_intranet_addresses_are_accepted_by_default_and_sent(client, auth, app, smtp, to):
    assert send(client, auth, to=to, **{"from": "Ops <ops@localhost>"}).status_code == 201
    run_jobs(app)
    [(mail_from, recipients, _)] = smtp.received
    assert (mail_from, recipients) == ("ops@localhost", [to])


def test_special_use_names_are_refused_when_the_setting_says_so(settings):
    app = create_app({**settings, "EMAIL_REJECT_SPECIAL_USE": "true"})
    client, headers = app.test_client(), {"X-API-Key": make_key(app)}
    refused = send(client, headers, to="user@corp.local", cc=["partner@shop.co"], bcc=["b@x.test"],
                   reply_to="help@localhost", **{"from": "shop@shop.internal"})  # fmt: skip
    assert refused.status_code == 422
    assert set(refused.get_json()["error"]["details"]) == {"to", "bcc", "reply_to", "from"}
    # The default sender (no-reply@localhost) is the operator's choice, not the request's.
    assert send(client, headers, to="someone@mail.shop.co").status_code == 201


def test_the_invalid_domain_is_refused_whatever_the_setting(client, auth):
    response = send(client, auth, to="someone@nowhere.invalid")
    assert response.status_code == 422 and "to" in response.get_json()["error"]["details"]


@pytest.mark.parametrize(("allowed", "sender"), [("bücher.example", "Shop <shop@xn--bcher-kva.example>"),
                                                 ("xn--bcher-kva.example", "shop@bücher.example"),
                                                 ("BÜCHER.example", "shop@Bücher.Example")])  # fmt: skip
def test_allowed_sender_domains_match_in_either_idna_form(settings, allowed, sender):
    app = create_app({**settings, "EMAIL_ALLOWED_FROM_DOMAINS": f"other.example, {allowed}"})
    client, headers = app.test_client(), {"X-API-Key": make_key(app)}
    assert send(client, headers, **{"from": sender}).status_code == 201
    assert send(client, headers, **{"from": "shop@buecher.example"}).status_code == 422


def test_51_custom_headers_are_422(client, auth):
    headers = {f"X-H{i}": "v" for i in range(51)}
    response = send(client, auth, headers=headers)
    assert response.status_code == 422 and "headers" in response.get_json()["error"]["details"]
    assert send(client, auth, headers=dict(list(headers.items())[:50])).status_code == 201


def test_8_kib_of_encoded_header_values_beside_8_kib_of_plain_ones_are_accepted(client, auth):
    encoded = {f"X-E{i:02d}": "=?utf-8?q?Caf=C3=A9?= " * 14 for i in range(25)}  # 7,700 characters
    plain = {f"X-P{i:02d}": "p" * 300 for i in range(25)}
    response = send(client, auth, headers={**encoded, **plain})
    assert response.status_code == 201, response.get_json()


def test_header_names_differing_only_in_case_are_422(client, auth):
    response = send(client, auth, headers={"X-Campaign": "a", "x-campaign": "b"})
    assert response.status_code == 422
    assert "x-campaign" in response.get_json()["error"]["details"]["headers"]


def test_a_10_mib_recipient_list_is_422_before_any_address_is_parsed(auth, client, database):
    to = ["someone.with.a.long.name@example.com"] * ((10 * 1024 * 1024 - 1024) // 40)  # just under the 413
    response = send(client, auth, to=to)
    assert response.status_code == 422
    assert response.get_json()["error"]["details"] == {"to": ["At most 50 recipients over to, cc and bcc."]}
    with psycopg2.connect(database) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM emails")
        assert cur.fetchone()[0] == 0


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"to": "x" * 10_000_000 + "@example.com"}, "to"),
        ({"cc": ["N" * 400 + " <a@example.com>"]}, "cc"),
        ({"to": [("N" * 150 + f" <a{i}@example.com>") for i in range(50)]}, "to"),  # 8 KiB over to/cc/bcc
        ({"headers": {f"X-H{i}": "v" * 900 for i in range(20)}}, "headers"),  # 16 KiB over all headers
        ({"headers": {f"X-H{i}": "=?utf-8?q?a?=" + "b" * 300 for i in range(30)}}, "headers"),  # 8 KiB encoded
        ({"metadata": {f"k{i}": "v" for i in range(30_000)}}, "metadata"),
        ({"headers": {f"X-H{i}": "v" for i in range(30_000)}}, "headers"),
        ({f"field{i}": 1 for i in range(30_000)}, "field0"),
    ],
)
def test_oversized_fields_are_refused_before_they_are_parsed(client, auth, changes, field):
    response = send(client, auth, **changes)
    assert response.status_code == 422
    details = response.get_json()["error"]["details"]
    assert field in details and len(details) <= 11  # a bounded answer, not one entry per item
