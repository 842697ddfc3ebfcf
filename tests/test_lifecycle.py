"""Cancel, reschedule and resend a message; a cancel and the worker's claim never both win."""

from datetime import UTC, datetime, timedelta

import psycopg2
from conftest import PYTHON, log_of, make_key, run_jobs, run_webhooks, wait_for
from conftest import send_ok as send
from rq.scheduler import RQScheduler


def later(**delta):
    return (datetime.now(UTC) + timedelta(**delta)).isoformat()


def test_cancel_a_scheduled_message_and_it_is_never_sent(app, client, auth, smtp, receiver):
    client.post("/webhooks", json={"url": receiver.url}, headers=auth)
    email_id = send(client, auth, send_at=later(seconds=2))
    response = client.post(f"/email/logs/{email_id}/cancel", headers=auth)
    assert response.status_code == 200 and response.get_json()["status"] == "CANCELED"
    again = client.post(f"/email/logs/{email_id}/cancel", headers=auth)
    assert again.status_code == 409 and again.get_json()["error"] == {
        "code": "not_cancelable",
        "message": again.get_json()["error"]["message"],
        "details": {"status": "CANCELED"},
    }
    wait_for(lambda: datetime.now(UTC) > datetime.fromisoformat(log_of(client, auth, email_id)["scheduled_at"]))
    run_jobs(app)
    assert smtp.received == []
    log = log_of(client, auth, email_id)
    assert log["status"] == "CANCELED" and [e["type"] for e in log["events"]] == ["scheduled", "canceled"]
    listed = client.get("/email/logs?status=canceled", headers=auth).get_json()["items"]
    assert [item["id"] for item in listed] == [email_id]
    run_webhooks(app)
    assert [p["type"] for p in receiver.payloads()] == ["email.canceled"]


def test_cancel_a_pending_message_before_any_worker_takes_it(app, client, auth, smtp):
    email_id = send(client, auth)
    assert client.post(f"/email/logs/{email_id}/cancel", headers=auth).get_json()["status"] == "CANCELED"
    run_jobs(app)
    assert smtp.received == [] and log_of(client, auth, email_id)["status"] == "CANCELED"


def test_cancel_a_sent_message_is_409_and_another_projects_is_404(app, client, auth):
    email_id = send(client, auth)
    run_jobs(app)
    response = client.post(f"/email/logs/{email_id}/cancel", headers=auth)
    assert response.status_code == 409 and response.get_json()["error"]["details"] == {"status": "SENT"}
    other = {"Authorization": f"Bearer {make_key(app, project='other')}"}
    assert client.post(f"/email/logs/{email_id}/cancel", headers=other).status_code == 404
    assert client.patch(f"/email/logs/{email_id}", json={"send_at": None}, headers=other).status_code == 404
    assert client.post(f"/email/logs/{email_id}/resend", headers=other).status_code == 404
    assert client.post("/email/logs/not-an-id/cancel", headers=auth).status_code == 404
    reader = {"Authorization": f"Bearer {make_key(app, scopes=('read',))}"}
    assert client.post(f"/email/logs/{email_id}/resend", headers=reader).status_code == 403


def test_reschedule_earlier_and_later(app, client, auth, smtp, processes):
    processes.start(PYTHON, "worker.py", name="worker")
    redis = app.extensions["emailsvc"].redis
    wait_for(lambda: redis.exists(RQScheduler.get_locking_key("email")), timeout=30, message="the scheduler")
    earlier = send(client, auth, send_at=later(days=2), subject="earlier")
    moved = client.patch(f"/email/logs/{earlier}", json={"send_at": later(seconds=2)}, headers=auth)
    assert moved.status_code == 200 and moved.get_json()["status"] == "SCHEDULED"
    postponed_at = later(seconds=3)
    postponed = send(client, auth, send_at=postponed_at, subject="later")
    new_time = later(seconds=8)
    assert client.patch(f"/email/logs/{postponed}", json={"send_at": new_time}, headers=auth).status_code == 200
    wait_for(lambda: log_of(client, auth, earlier)["status"] == "SENT", timeout=30, message="the earlier one")
    # The job queued for the old time found the message not due and left it: it goes out at the new time.
    wait_for(lambda: log_of(client, auth, postponed)["status"] == "SENT", timeout=30, message="the later one")
    assert datetime.fromisoformat(log_of(client, auth, postponed)["sent_at"]) >= datetime.fromisoformat(new_time)
    now = send(client, auth, send_at=later(days=1), subject="now")
    assert client.patch(f"/email/logs/{now}", json={"send_at": None}, headers=auth).get_json()["status"] == "PENDING"
    wait_for(lambda: log_of(client, auth, now)["status"] == "SENT", timeout=30, message="the one moved to now")
    assert sorted(m["Subject"] for _, _, m in smtp.received) == ["earlier", "later", "now"]
    refused = client.patch(f"/email/logs/{now}", json={"send_at": later(hours=1)}, headers=auth)
    assert refused.status_code == 409 and refused.get_json()["error"]["code"] == "not_reschedulable"
    for bad in ({"send_at": later(days=31)}, {"send_at": "2020-01-01T00:00:00Z"}, {}, {"send_at": "soon"}):
        assert client.patch(f"/email/logs/{now}", json=bad, headers=auth).status_code == 422


def test_resend_a_failed_message(app, client, auth, smtp, database):
    smtp.data_replies.append("550 5.7.1 Refused")
    pdf = {"filename": "invoice.pdf", "content": "JVBERi0xLjQK", "content_type": "application/pdf"}
    first = send(client, auth, headers={"X-Tag": "t"}, metadata={"order": "42"}, cc=["carol@example.com"],
                 attachments=[pdf])  # fmt: skip
    run_jobs(app)
    assert log_of(client, auth, first)["status"] == "FAILED"
    response = client.post(f"/email/logs/{first}/resend", headers={**auth, "Idempotency-Key": "r1"})
    assert response.status_code == 201, response.get_json()
    second = response.get_json()
    assert second["id"] != first and second["resent_from"] == first and second["status"] == "PENDING"
    assert (second["metadata"], second["cc"], second["subject"]) == ({"order": "42"}, ["carol@example.com"], "Hello")
    replay = client.post(f"/email/logs/{first}/resend", headers={**auth, "Idempotency-Key": "r1"})
    assert replay.get_json()["id"] == second["id"] and replay.headers["Idempotent-Replayed"] == "true"
    run_jobs(app)
    assert log_of(client, auth, second["id"])["status"] == "SENT"
    [(_, rcpt, message)] = smtp.received
    assert message["X-Tag"] == "t" and sorted(rcpt) == ["alice@example.com", "carol@example.com"]
    [attached] = list(message.iter_attachments())
    assert attached.get_filename() == "invoice.pdf" and attached.get_content() == b"%PDF-1.4\n"
    with psycopg2.connect(database) as conn, conn.cursor() as cur:
        cur.execute("UPDATE emails SET content_purged_at = now() WHERE id = %s", (first,))
    purged = client.post(f"/email/logs/{first}/resend", headers=auth)
    assert purged.status_code == 409 and purged.get_json()["error"]["code"] == "content_purged"


def test_resend_of_an_unfinished_or_suppressed_message_is_refused(app, client, auth):
    waiting = send(client, auth, send_at=later(hours=1))
    response = client.post(f"/email/logs/{waiting}/resend", headers=auth)
    assert response.status_code == 409 and response.get_json()["error"]["details"] == {"status": "SCHEDULED"}
    client.post(f"/email/logs/{waiting}/cancel", headers=auth)
    client.post("/suppressions", json={"address": "alice@example.com"}, headers=auth)
    suppressed = client.post(f"/email/logs/{waiting}/resend", headers=auth)
    assert suppressed.status_code == 422 and suppressed.get_json()["error"]["code"] == "recipient_suppressed"


def test_a_message_is_either_canceled_or_sent_never_both(app, client, auth, smtp, processes):
    # A worker with 16 sending loops takes messages while each is canceled at a different point of its
    # life: just accepted, queued behind a few others, or likely being claimed.
    processes.start(PYTHON, "worker.py", name="worker")
    redis = app.extensions["emailsvc"].redis
    wait_for(lambda: redis.exists(RQScheduler.get_locking_key("email")), timeout=30, message="the worker")
    ids, answers = [], {}
    for i in range(50):
        ids.append(send(client, auth, subject=f"m{i}"))
        lag = i % 5  # cancel the message sent `lag` sends ago
        if len(ids) > lag and ids[-1 - lag] not in answers:  # each message is canceled once
            target = ids[-1 - lag]
            answers[target] = client.post(f"/email/logs/{target}/cancel", headers=auth).status_code
    for target in ids:
        answers.setdefault(target, client.post(f"/email/logs/{target}/cancel", headers=auth).status_code)
    finished = ("SENT", "CANCELED")
    wait_for(lambda: all(log_of(client, auth, i)["status"] in finished for i in ids), timeout=60, message="all done")
    received = {message["Message-ID"]: message for _, _, message in smtp.received}
    for email_id in ids:
        log = log_of(client, auth, email_id)
        if answers[email_id] == 200:
            assert log["status"] == "CANCELED" and log["message_id"] not in received, email_id
        else:
            assert answers[email_id] == 409 and log["status"] == "SENT", email_id
            assert log["message_id"] in received
    assert len(smtp.received) == len(received) == sum(code == 409 for code in answers.values())
