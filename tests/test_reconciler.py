"""The reconciler: lost jobs queued again, abandoned sends settled, nothing touched that is alive."""

from datetime import UTC, datetime, timedelta

import psycopg2
from conftest import TEST_REDIS_URL, VALID_SEND, log_of, run_jobs, wait_for
from conftest import send_ok as send
from redis import Redis
from rq import Queue

from emailsvc import create_app
from emailsvc.queries.emails import claim_for_sending, lock_reconciler, unlock_for_sending, unlock_reconciler
from emailsvc.reconciler import reconcile


def run_reconciler(app, grace=0):
    with app.app_context():
        return reconcile(grace)


def queue():
    return Queue("email", connection=Redis.from_url(TEST_REDIS_URL))


def abandon_mid_send(app, email_id):
    """Claim a message as a worker does, then vanish without recording the outcome."""
    with app.app_context(), app.extensions["emailsvc"].db.cursor() as cur:
        claim_for_sending(cur, email_id)
        cur.connection.close()  # its session, and the sending lock with it, ends as a killed worker's does


def test_a_pending_message_whose_job_is_gone_is_queued_again_before_the_backlog(client, auth, app, smtp):
    email_id = send(client, auth)
    Redis.from_url(TEST_REDIS_URL).flushdb()  # Redis restarted empty
    backlog = send(client, auth)
    assert run_reconciler(app)["requeued"] == 1
    assert queue().job_ids == [email_id, backlog]  # it has waited already
    run_jobs(app)
    assert log_of(client, auth, email_id)["status"] == "SENT" and len(smtp.received) == 2


def test_a_message_younger_than_the_grace_period_is_left_alone(client, auth, app):
    send(client, auth)
    Redis.from_url(TEST_REDIS_URL).flushdb()
    assert run_reconciler(app, grace=60)["requeued"] == 0
    assert queue().count == 0


def test_queued_and_scheduled_jobs_are_not_queued_twice(client, auth, app, settings, smtp):
    later = send(client, auth, send_at=(datetime.now(UTC) + timedelta(hours=1)).isoformat())
    slow_retry = create_app({**settings, "EMAIL_RETRY_INTERVALS": "3600"})
    smtp.data_replies.append("451 4.3.0 Try again later")
    retrying = send(slow_retry.test_client(), auth)
    run_jobs(slow_retry)  # fails once and waits an hour for its retry
    queued = send(client, auth)
    assert run_reconciler(app)["requeued"] == 0
    assert queue().job_ids == [queued]
    assert [log_of(client, auth, i)["status"] for i in (later, retrying, queued)] == ["SCHEDULED", "PENDING", "PENDING"]


def test_a_retry_the_scheduler_left_overdue_is_queued(client, auth, settings, smtp, database):
    app = create_app({**settings, "EMAIL_RETRY_INTERVALS": "3600"})
    smtp.data_replies.append("451 4.3.0 Try again later")
    email_id = send(app.test_client(), auth)
    run_jobs(app)
    # As if the retry had been due five minutes ago and no scheduler had run since.
    with psycopg2.connect(database) as conn, conn.cursor() as cur:
        cur.execute("UPDATE emails SET updated_at = now() - interval '65 minutes'")
    overdue = datetime.now(UTC) - timedelta(minutes=5)
    Redis.from_url(TEST_REDIS_URL).zadd(queue().scheduled_job_registry.key, {email_id: overdue.timestamp()})
    assert run_reconciler(app, grace=60)["requeued"] == 1
    run_jobs(app)
    log = log_of(app.test_client(), auth, email_id)
    assert log["status"] == "SENT" and log["attempts"] == 2


def test_a_due_scheduled_message_whose_job_is_gone_is_queued(client, auth, app, smtp):
    send_at = datetime.now(UTC) + timedelta(seconds=1)
    email_id = send(client, auth, send_at=send_at.isoformat())
    Redis.from_url(TEST_REDIS_URL).flushdb()
    assert run_reconciler(app)["requeued"] == 0  # not due yet
    wait_for(lambda: datetime.now(UTC) > send_at, message="send_at to pass")
    assert run_reconciler(app)["requeued"] == 1
    run_jobs(app)
    assert log_of(client, auth, email_id)["status"] == "SENT"


def test_an_abandoned_send_is_sent_again_with_the_same_message_id(client, auth, app, smtp):
    email_id = send(client, auth)
    abandon_mid_send(app, email_id)
    Redis.from_url(TEST_REDIS_URL).flushdb()
    assert run_reconciler(app)["abandoned"] == 1
    run_jobs(app)
    log = log_of(client, auth, email_id)
    assert log["status"] == "SENT" and log["attempts"] == 2
    assert [e["type"] for e in log["events"]] == ["pending", "sending", "attempt_abandoned", "sending", "sent"]
    [(_, _, msg)] = smtp.received
    assert msg["Message-ID"] == log["message_id"]


def test_a_send_a_live_worker_holds_is_left_alone(client, auth, app):
    email_id = send(client, auth)
    with app.app_context(), app.extensions["emailsvc"].db.cursor() as worker:
        claim_for_sending(worker, email_id)
        assert run_reconciler(app) == {"abandoned": 0, "failed": 0, "requeued": 0, "expired_keys": 0}
        unlock_for_sending(worker, email_id)
    assert log_of(client, auth, email_id)["status"] == "SENDING"


def test_an_abandoned_last_attempt_ends_failed(client, auth, app, database, smtp):
    hook = client.post("/webhooks", json={"url": "http://127.0.0.1:9/hook", "events": ["email.failed"]}, headers=auth)
    assert hook.status_code == 201
    email_id = send(client, auth)
    with psycopg2.connect(database) as conn, conn.cursor() as cur:
        cur.execute("UPDATE emails SET attempts = 3 WHERE id = %s", (email_id,))
    abandon_mid_send(app, email_id)
    assert run_reconciler(app)["failed"] == 1
    log = log_of(client, auth, email_id)
    assert log["status"] == "FAILED" and log["failed_at"] and "stopped before recording" in log["error_message"]
    run_jobs(app)
    assert smtp.received == []
    with psycopg2.connect(database) as conn, conn.cursor() as cur:  # the subscribed endpoint will hear of it
        cur.execute("SELECT type, snapshot->>'status' FROM webhook_deliveries WHERE email_id = %s", (email_id,))
        assert cur.fetchall() == [("email.failed", "FAILED")]


def test_expired_idempotency_keys_are_deleted(client, auth, app, database):
    for key in ("old", "new"):
        client.post("/email/send", json=VALID_SEND, headers={**auth, "Idempotency-Key": key})
    with psycopg2.connect(database) as conn, conn.cursor() as cur:
        cur.execute("UPDATE idempotency_keys SET created_at = now() - interval '25 hours' WHERE key = 'old'")
    assert run_reconciler(app, grace=60)["expired_keys"] == 1
    with psycopg2.connect(database) as conn, conn.cursor() as cur:
        cur.execute("SELECT key FROM idempotency_keys")
        assert cur.fetchall() == [("new",)]


def test_one_pass_at_a_time(app, runner):
    with app.app_context(), app.extensions["emailsvc"].db.cursor() as other:
        assert lock_reconciler(other)
        try:
            assert run_reconciler(app) is None
            result = runner.invoke(args=["reconcile"])
            assert result.exit_code != 0 and "Another reconciler pass is running" in result.output
        finally:
            unlock_reconciler(other)  # a session lock: it would outlive the test on the pooled connection
    assert run_reconciler(app) is not None  # the next pass runs


def test_reconcile_command_reports_what_it_did(client, auth, runner):
    send(client, auth)
    Redis.from_url(TEST_REDIS_URL).flushdb()
    result = runner.invoke(args=["reconcile", "--grace", "0"])
    assert result.exit_code == 0
    assert "lost jobs queued again: 1" in result.output
