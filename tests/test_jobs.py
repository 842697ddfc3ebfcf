"""The delivery job: what the SMTP server receives, and how each outcome is recorded."""

import socket
from datetime import UTC, datetime, timedelta

import psycopg2
import pytest
from conftest import PYTHON, log_of, run_jobs, wait_for
from conftest import send_ok as send
from rq.scheduler import RQScheduler

from emailsvc.jobs import enqueue_delivery
from emailsvc.queries.emails import SENDING_LOCK, unlock_for_sending


def test_text_message_arrives_with_the_contract_headers(client, auth, app, smtp):
    email_id = send(client, auth, **{"from": "Shop <shop@example.com>"}, cc=["c@example.com"],
                    bcc=["hidden@example.com"], reply_to="help@example.com",
                    headers={"X-Campaign": "nov", "List-Unsubscribe": "<mailto:u@example.com>"})  # fmt: skip
    run_jobs(app)
    [(mail_from, rcpt_tos, msg)] = smtp.received
    assert mail_from == "shop@example.com"
    assert rcpt_tos == ["alice@example.com", "c@example.com", "hidden@example.com"]
    assert msg["From"] == "Shop <shop@example.com>"
    assert msg["To"] == "alice@example.com" and msg["Cc"] == "c@example.com"
    assert msg["Bcc"] is None
    assert msg["Reply-To"] == "help@example.com"
    assert msg["Message-ID"] == f"<{email_id}@example.com>"
    assert msg["Date"] and msg["X-Campaign"] == "nov"
    assert msg["List-Unsubscribe"] == "<mailto:u@example.com>"
    assert msg.get_content_type() == "text/plain"
    assert msg.get_content().strip() == "Hi Alice"


def test_html_and_text_become_multipart_alternative_with_rfc2047_subject(client, auth, app, smtp):
    send(client, auth, subject="Grüße — 你好", html="<p>Hallo</p>")
    run_jobs(app)
    [(_, _, msg)] = smtp.received
    raw_subject = msg.as_bytes().split(b"\nSubject: ", 1)[1].split(b"\n", 1)[0]
    assert raw_subject.startswith(b"=?utf-8?")  # encoded on the wire, ASCII only
    assert msg["Subject"] == "Grüße — 你好"
    assert msg.get_content_type() == "multipart/alternative"
    parts = [(p.get_content_type(), p.get_content().strip()) for p in msg.iter_parts()]
    assert parts == [("text/plain", "Hi Alice"), ("text/html", "<p>Hallo</p>")]


def test_html_only_message(client, auth, app, smtp):
    send(client, auth, body=None, html="<b>only</b>")
    run_jobs(app)
    [(_, _, msg)] = smtp.received
    assert msg.get_content_type() == "text/html"


def test_success_records_sent_with_the_server_reply(client, auth, app, smtp):
    email_id = send(client, auth)
    run_jobs(app)
    log = log_of(client, auth, email_id)
    assert log["status"] == "SENT" and log["attempts"] == 1
    assert log["sent_at"] and log["failed_at"] is None
    assert log["events"][-1] == {**log["events"][-1], "type": "sent", "detail": "250 2.0.0 Ok: queued"}


def test_451_is_retried_then_sent(client, auth, app, smtp):
    smtp.data_replies.extend(["451 4.3.0 Try again later"] * 2)
    email_id = send(client, auth)
    run_jobs(app)
    log = log_of(client, auth, email_id)
    assert log["status"] == "SENT" and log["attempts"] == 3
    assert len(smtp.received) == 1
    types = [e["type"] for e in log["events"]]
    assert types == ["pending", "sending", "attempt_failed", "sending", "attempt_failed", "sending", "sent"]
    assert log["events"][2]["detail"] == "451 4.3.0 Try again later"


def test_always_451_fails_after_one_attempt_and_three_retries(client, auth, app, smtp):
    smtp.default_reply = "451 4.3.0 Mailbox busy"
    email_id = send(client, auth)
    run_jobs(app)
    log = log_of(client, auth, email_id)
    assert log["status"] == "FAILED" and log["attempts"] == 4
    assert log["failed_at"] and "451 4.3.0 Mailbox busy" in log["error_message"]
    assert smtp.received == []


@pytest.mark.parametrize("where", ["rcpt", "data"])
def test_550_fails_at_once_with_the_server_reply(client, auth, app, smtp, where):
    if where == "rcpt":
        smtp.refused_recipients["nobody@example.com"] = "550 5.1.1 No such user"
    else:
        smtp.data_replies.append("550 5.7.1 Message rejected")
    email_id = send(client, auth, to="nobody@example.com")
    run_jobs(app)
    log = log_of(client, auth, email_id)
    assert log["status"] == "FAILED" and log["attempts"] == 1
    assert ("550 5.1.1 No such user" if where == "rcpt" else "550 5.7.1 Message rejected") in log["error_message"]


def test_smtp_server_unreachable_is_transient_and_ends_failed(settings, auth):
    from conftest import make_key

    from emailsvc import create_app

    app = create_app({**settings, "SMTP_PORT": "1"})
    client = app.test_client()
    headers = {"X-API-Key": make_key(app)}
    email_id = send(client, headers)
    run_jobs(app)
    log = log_of(client, headers, email_id)
    assert log["status"] == "FAILED" and log["attempts"] == 4
    assert "ConnectionRefusedError" in log["error_message"]


def test_a_duplicate_job_sends_nothing(client, auth, app, smtp):
    email_id = send(client, auth)
    run_jobs(app)
    with app.app_context():
        enqueue_delivery(email_id)
    run_jobs(app)
    assert len(smtp.received) == 1


def test_no_outcome_leaves_a_sending_lock_held(client, auth, app, smtp, database):
    # A lock left held would keep the reconciler from ever settling that row after a later crash.
    smtp.data_replies.append("451 4.3.0 Try again later")
    sent = send(client, auth)
    run_jobs(app)  # an attempt_failed, then sent
    smtp.data_replies.append("550 5.7.1 Message rejected")
    failed = send(client, auth)
    run_jobs(app)
    with app.app_context():
        enqueue_delivery(sent)  # a duplicate job, for a message no longer waiting
    run_jobs(app)
    assert [log_of(client, auth, i)["status"] for i in (sent, failed)] == ["SENT", "FAILED"]
    with psycopg2.connect(database) as conn, conn.cursor() as cur:
        cur.execute(
            """SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = %s
               AND database = (SELECT oid FROM pg_database WHERE datname = current_database())""",
            (SENDING_LOCK,),
        )
        assert cur.fetchone()[0] == 0


def test_connection_is_reused_between_messages_and_reopened_after_a_drop(client, auth, app, smtp):
    for _ in range(3):
        send(client, auth)
    run_jobs(app)
    with app.extensions["emailsvc"].mailers.lease() as mailer:  # the one connection the three messages took
        first = mailer._smtp
    assert first is not None and len(smtp.received) == 3
    first.sock.shutdown(socket.SHUT_RDWR)  # the connection dies while idle
    email_id = send(client, auth)
    run_jobs(app)
    assert len(smtp.received) == 4 and mailer._smtp is not first
    assert log_of(client, auth, email_id)["attempts"] == 1  # reconnected in place, not a failed attempt


def test_a_job_for_a_scheduled_message_sends_nothing_before_its_time(client, auth, app, smtp):
    email_id = send(client, auth, send_at=(datetime.now(UTC) + timedelta(hours=1)).isoformat())
    with app.app_context():
        enqueue_delivery(email_id)
    run_jobs(app)
    assert smtp.received == []
    assert log_of(client, auth, email_id)["status"] == "SCHEDULED"


def test_a_job_for_a_message_another_worker_is_sending_sends_nothing(client, auth, app, smtp):
    email_id = send(client, auth)
    db = app.extensions["emailsvc"].db
    with app.app_context(), db.cursor() as other_worker:
        other_worker.execute("SELECT pg_advisory_lock(%s, hashtext(%s))", (SENDING_LOCK, email_id))
        run_jobs(app)
        unlock_for_sending(other_worker, email_id)
    assert smtp.received == []
    assert log_of(client, auth, email_id)["status"] == "PENDING"


def test_attempts_are_capped_by_the_log_not_by_the_job(client, auth, app, smtp, database):
    smtp.default_reply = "451 4.3.0 Mailbox busy"
    email_id = send(client, auth)
    with psycopg2.connect(database) as conn, conn.cursor() as cur:  # three attempts made by an earlier job
        cur.execute("UPDATE emails SET attempts = 3 WHERE id = %s", (email_id,))
    run_jobs(app)
    log = log_of(client, auth, email_id)
    assert log["status"] == "FAILED" and log["attempts"] == 4


def test_scheduled_messages_go_out_within_seconds_of_their_time_whatever_its_fraction(client, auth, app, processes):
    # RQ's scheduler keeps whole seconds: a job it started up to a second early used to find its message
    # not yet due and end, leaving it to the reconciler a minute later. A worker and its scheduler run
    # throughout, as in production.
    processes.start(PYTHON, "worker.py", name="worker")
    redis = app.extensions["emailsvc"].redis
    wait_for(lambda: redis.exists(RQScheduler.get_locking_key("email")), timeout=30, message="the scheduler")
    # Fractions .099 to .999 in each of two seconds: whatever the phase of the scheduler's once-a-second
    # check, some jobs fall in the second before their time.
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=3)
    times = [start + timedelta(seconds=i // 10, microseconds=(i % 10) * 100_000 + 99_000) for i in range(20)]
    ids = [send(client, auth, send_at=at.isoformat()) for at in times]
    wait_for(lambda: all(log_of(client, auth, i)["status"] == "SENT" for i in ids), timeout=30, message="all SENT")
    for email_id in ids:
        log = log_of(client, auth, email_id)
        late = datetime.fromisoformat(log["sent_at"]) - datetime.fromisoformat(log["scheduled_at"])
        assert timedelta(0) <= late <= timedelta(seconds=3), (email_id, late)


def test_a_job_started_shortly_before_its_message_is_due_waits_and_sends_it(client, auth, app, smtp):
    # As when the worker's clock runs ahead of PostgreSQL's: the job must not end with the message unsent.
    send_at = datetime.now(UTC) + timedelta(seconds=1.5)
    email_id = send(client, auth, send_at=send_at.isoformat())
    with app.app_context():
        enqueue_delivery(email_id)  # now, before its time
    run_jobs(app)
    log = log_of(client, auth, email_id)
    assert log["status"] == "SENT" and len(smtp.received) == 1
    assert datetime.fromisoformat(log["sent_at"]) >= datetime.fromisoformat(log["scheduled_at"])
