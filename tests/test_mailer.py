"""The SMTP conversation against relays that misbehave: a connection dropped before or after DATA, a
timeout after the message was sent, a bad greeting, STARTTLS or AUTH missing, a claim lost mid-send."""

import re
import socket
import threading
from datetime import UTC, datetime
from email import policy

import psycopg2
import pytest
from aiosmtpd.smtp import AuthResult
from conftest import PYTHON, log_of, make_key, run_jobs, wait_for
from conftest import send_ok as send

from emailsvc import create_app, mailer
from emailsvc.jobs import ClaimLost, deliver
from emailsvc.mailer import message_content
from emailsvc.queries.emails import SENDING_LOCK
from emailsvc.reconciler import reconcile


def app_for(settings, **changes):
    """An app and an authorised client for it, with the test settings changed."""
    app = create_app({**settings, **changes})
    return app, app.test_client(), {"Authorization": f"Bearer {make_key(app)}"}


def test_a_drop_after_the_message_was_sent_is_an_unknown_outcome_sent_again_once(client, auth, app, smtp):
    smtp.drops.append("after_data")
    email_id = send(client, auth)
    run_jobs(app)
    assert len(smtp.received) == 2  # the relay kept the first copy, but its answer never came
    log = log_of(client, auth, email_id)
    assert {msg["Message-ID"] for _, _, msg in smtp.received} == {log["message_id"]}
    assert log["status"] == "SENT" and log["attempts"] == 2
    [failed] = [e for e in log["events"] if e["type"] == "attempt_failed"]
    assert "the relay may have accepted it" in failed["detail"] and "same Message-ID" in failed["detail"]


def test_a_timeout_after_the_message_was_sent_is_an_unknown_outcome(settings, smtp):
    app, client, auth = app_for(settings, SMTP_TIMEOUT="1")
    smtp.data_delays.append(3)  # longer than SMTP_TIMEOUT, after the relay kept the message
    email_id = send(client, auth)
    run_jobs(app)
    assert len(smtp.received) == 2
    log = log_of(client, auth, email_id)
    assert log["status"] == "SENT" and log["attempts"] == 2
    [failed] = [e for e in log["events"] if e["type"] == "attempt_failed"]
    assert "TimeoutError" in failed["detail"] and "may have accepted it" in failed["detail"]
    app.extensions["emailsvc"].mailers.close()


@pytest.mark.parametrize("reused", [False, True])
def test_a_drop_before_data_sends_exactly_one_copy(client, auth, app, smtp, reused):
    if reused:  # a connection kept open from an earlier message is opened again in place
        send(client, auth)
        run_jobs(app)
        smtp.received.clear()
    smtp.drops.append("rcpt")
    email_id = send(client, auth)
    run_jobs(app)
    assert len(smtp.received) == 1
    log = log_of(client, auth, email_id)
    assert log["status"] == "SENT" and log["attempts"] == (1 if reused else 2)


def test_starttls_not_offered_is_retried_named_and_shown_by_readyz(settings, smtp):
    app, client, auth = app_for(settings, SMTP_SECURITY="starttls")
    email_id = send(client, auth)
    run_jobs(app)
    log = log_of(client, auth, email_id)
    assert log["status"] == "FAILED" and log["attempts"] == 4  # retried, not failed at once
    error = log["last_error"]
    assert (error["stage"], error["retryable"], error["smtp_code"]) == ("starttls", True, None)
    assert "STARTTLS" in error["message"]
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.get_json()["smtp"]["ok"] is False and "STARTTLS" in ready.get_json()["smtp"]["reason"]
    assert smtp.received == []


@pytest.mark.parametrize("greeting, retryable, status", [("421 4.3.2 Busy", True, "FAILED"),
                                                         ("554 5.7.1 Go away", False, "FAILED")])  # fmt: skip
def test_a_bad_greeting_is_classified(settings, greeting, retryable, status):
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def greet_and_close():
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            conn.sendall(greeting.encode() + b"\r\n")
            conn.close()

    thread = threading.Thread(target=greet_and_close, daemon=True)
    thread.start()
    try:
        app, client, auth = app_for(settings, SMTP_PORT=str(server.getsockname()[1]))
        email_id = send(client, auth)
        run_jobs(app)
    finally:
        stop.set()
        thread.join()
        server.close()
    log = log_of(client, auth, email_id)
    assert log["status"] == status and log["attempts"] == (4 if retryable else 1)
    code, text = greeting.split(" ", 1)
    assert log["last_error"] == {"smtp_code": int(code), "enhanced_status": text[:5], "retryable": retryable,
                                 "stage": "greeting", "message": greeting}  # fmt: skip


def test_auth_not_offered_is_retried_and_mail_flows_once_the_relay_is_fixed(settings, processes, relay):
    server = relay()
    settings = {**settings, "SMTP_PORT": str(server.port), "SMTP_USERNAME": "app", "SMTP_PASSWORD": "secret",
                "EMAIL_RETRY_INTERVALS": "1,2,30"}  # fmt: skip
    app, client, auth = app_for(settings)
    processes.env.update(settings)
    processes.start(PYTHON, "worker.py", name="worker")
    email_id = send(client, auth)
    wait_for(lambda: log_of(client, auth, email_id)["last_error"], message="the first attempt to fail")
    log = log_of(client, auth, email_id)
    assert log["status"] == "PENDING" and log["last_error"]["stage"] == "auth" and log["last_error"]["retryable"]
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.get_json()["smtp"]["stage"] == "auth"

    logins = []

    def authenticator(server, session, envelope, mechanism, auth_data):
        logins.append((auth_data.login, auth_data.password))
        return AuthResult(success=True)

    server.restart(authenticator=authenticator, auth_require_tls=False)  # the relay is fixed; no restart of ours
    sent = wait_for(lambda: log_of(client, auth, email_id)["status"] == "SENT", timeout=30, message="SENT")
    assert sent and len(server.received) == 1 and logins == [(b"app", b"secret")]
    assert log_of(client, auth, email_id)["last_error"] is None
    assert wait_for(lambda: client.get("/readyz").get_json()["smtp"]["ok"], message="readyz to show the relay ok")


def test_a_worker_that_lost_its_claim_before_data_sends_nothing(settings, smtp, database):
    # The relay holds RCPT until the reconciler has taken the message back: a wait the test's own deadlines
    # bound (two wait_for), which must not also run into the worker's SMTP timeout, however slow the machine.
    app, client, auth = app_for(settings, SMTP_TIMEOUT="120")
    smtp.rcpt_gate = gate = threading.Event()
    email_id = send(client, auth)
    raised = []

    def worker_job():  # the job's own code, as a worker runs it, in a thread the test can wait on
        with app.app_context():
            try:
                deliver(email_id)
            except ClaimLost as exc:
                raised.append(exc)

    worker = threading.Thread(target=worker_job)
    worker.start()
    conn = psycopg2.connect(database)
    conn.autocommit = True  # each look sees what the worker committed
    with conn.cursor() as cur:
        holder = wait_for(lambda: _lock_holder(cur), message="the worker to claim the message")
        cur.execute("SELECT pg_terminate_backend(%s)", (holder,))  # its database session dies mid-send
    conn.close()
    wait_for(lambda: _reconcile(app)["abandoned"], message="the reconciler to take the message back")
    gate.set()  # only now does the relay answer RCPT: the worker must see its claim is gone
    worker.join(timeout=60)
    assert raised and smtp.received == []  # it stopped before DATA
    run_jobs(app)
    assert len(smtp.received) == 1  # the reconciler's job sent it; the worker that lost its claim did not
    log = log_of(client, auth, email_id)
    assert log["status"] == "SENT"
    assert [e["type"] for e in log["events"]] == ["pending", "sending", "attempt_abandoned", "sending", "sent"]


def _lock_holder(cur):
    """The backend of the worker that claimed the message (once the claim is committed)."""
    cur.execute(
        """SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND classid = %s AND granted
           AND EXISTS (SELECT FROM emails WHERE status = 'SENDING')""",
        (SENDING_LOCK,),
    )
    row = cur.fetchone()
    return row and row[0]


def _reconcile(app):
    with app.app_context():
        return reconcile(0)


ROW = {"from_addr": "Shop <shop@example.com>", "to_addrs": ["Reader <reader@example.com>"], "cc_addrs": [],
       "reply_to": None, "subject": "Your order has shipped", "scheduled_at": None,
       "created_at": datetime(2026, 12, 3, 9, 30, tzinfo=UTC), "message_id": "<42@example.com>", "headers": {},
       "body": "Hello", "html": None}  # fmt: skip


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"subject": "Ihre Bestellung ist unterwegs — Grüße", "from_addr": "Café Müller <cafe@example.com>"},
        {
            "subject": "A subject long enough to be folded " * 5,
            "to_addrs": [f"R{i} <r{i}@example.com>" for i in range(9)],
        },
        {"html": "<p>Hello</p>", "cc_addrs": ["c@example.com"], "reply_to": "Help <help@example.com>"},
        {"body": None, "html": "<p>é</p>" * 200, "headers": {"X-Campaign": "nov", "List-Unsubscribe": "<mailto:u@x>"}},
        {"to_addrs": ["用户@例子.广告"], "subject": "国际"},
    ],
)
def test_a_message_is_the_same_bytes_the_email_packages_own_policy_makes(monkeypatch, changes):
    row, recipients = {**ROW, **changes}, ["reader@example.com"]
    ours = message_content(row, recipients)
    monkeypatch.setattr(mailer, "POLICY", policy.default)  # EmailMessage() as the email package builds it
    theirs = message_content(row, recipients)
    boundary = re.compile(rb"={15}\d+==")  # multipart boundaries are random
    assert boundary.sub(b"B", ours[0]) == boundary.sub(b"B", theirs[0]) and ours[1] == theirs[1]
