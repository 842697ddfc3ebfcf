"""Per-recipient outcomes against a relay that answers each RCPT as a test scripts it: nobody dropped,
nobody sent twice, refusals suppressed, and what the log, its events and the webhooks say."""

import pytest
from conftest import log_of, run_jobs, run_webhooks
from conftest import send_ok as send

from emailsvc.mailer import Reply

A, B = "alice@example.com", "bob@example.com"


def recipients(log):
    return {r["address"]: r for r in log["recipients"]}


@pytest.fixture
def hooks(client, auth, receiver):
    """A webhook endpoint subscribed to every event; returns a function that lists what it received."""
    assert client.post("/webhooks", json={"url": receiver.url}, headers=auth).status_code == 201

    def received(app):
        run_webhooks(app)
        return [(p["type"], p["data"]) for p in receiver.payloads()]

    return received


def test_a_new_message_lists_every_recipient_pending(client, auth):
    email_id = send(client, auth, to=["Alice <alice@example.com>"], cc=[B], bcc=["c@example.com"])
    log = log_of(client, auth, email_id)
    assert [(r["address"], r["field"], r["status"], r["attempts"]) for r in log["recipients"]] == [
        (A, "to", "pending", 0), (B, "cc", "pending", 0), ("c@example.com", "bcc", "pending", 0)
    ]  # fmt: skip
    assert log["last_error"] is None


def test_a_recipient_deferred_once_gets_one_copy_on_the_retry(client, auth, app, smtp, hooks):
    smtp.rcpt_replies[B] = ["451 4.3.0 Greylisted, try again"]
    email_id = send(client, auth, to=[A, B])
    run_jobs(app)
    assert smtp.copies_for(A) == 1 and smtp.copies_for(B) == 1
    log = log_of(client, auth, email_id)
    assert log["status"] == "SENT" and log["attempts"] == 2
    alice, bob = recipients(log)[A], recipients(log)[B]
    assert (alice["status"], alice["attempts"], alice["smtp_code"]) == ("accepted", 1, 250)
    assert (bob["status"], bob["attempts"], bob["smtp_code"]) == ("accepted", 2, 250)
    assert [e["type"] for e in log["events"]] == ["pending", "sending", "sent", "sending", "recipient_accepted"]
    assert log["events"][2]["detail"] == f"250 2.0.0 Ok: queued; {B}: 451 4.3.0 Greylisted, try again"
    assert log["events"][-1]["detail"] == f"{B}: 250 2.0.0 Ok: queued"
    assert log["last_error"] is None  # the latest attempt had no failure
    [(kind, data)] = hooks(app)
    assert kind == "email.sent"  # once: the message was SENT by the first attempt
    assert [(r["address"], r["status"], r["enhanced_status"]) for r in data["recipients"]] == [
        (A, "accepted", "2.0.0"), (B, "deferred", "4.3.0")
    ]  # fmt: skip


def test_a_recipient_refused_with_5_1_1_is_suppressed_and_the_others_get_the_mail(client, auth, app, smtp, hooks):
    smtp.refused_recipients[B] = "550 5.1.1 No such user"
    email_id = send(client, auth, to=[A, B])
    run_jobs(app)
    log = log_of(client, auth, email_id)
    assert log["status"] == "SENT" and log["attempts"] == 1
    assert smtp.copies_for(A) == 1 and smtp.copies_for(B) == 0
    bob = recipients(log)[B]
    assert (bob["status"], bob["smtp_code"], bob["enhanced_status"]) == ("refused", 550, "5.1.1")
    assert bob["response"] == "550 5.1.1 No such user"
    assert log["last_error"] == {"smtp_code": 550, "enhanced_status": "5.1.1", "retryable": False, "stage": "rcpt",
                                 "message": f"{B}: 550 5.1.1 No such user"}  # fmt: skip
    [entry] = client.get("/suppressions", headers=auth).get_json()["items"]
    assert (entry["address"], entry["reason"], entry["email_id"]) == (B, "hard_bounce", email_id)
    again = client.post("/email/send", json={"to": B, "subject": "Hi", "body": "again"}, headers=auth)
    assert again.status_code == 422 and again.get_json()["error"]["code"] == "recipient_suppressed"
    assert [kind for kind, _ in hooks(app)] == ["email.sent", "email.recipient_failed"]


def test_a_refusal_without_a_mailbox_status_is_not_suppressed(client, auth, app, smtp):
    smtp.refused_recipients[B] = "550 5.7.1 Relaying denied"
    send(client, auth, to=[A, B])
    run_jobs(app)
    assert client.get("/suppressions", headers=auth).get_json()["items"] == []


def test_all_refused_fails_at_once_with_the_error_classified(client, auth, app, smtp, hooks):
    smtp.refused_recipients.update({A: "550 5.1.1 No such user", B: "553 5.1.3 Bad address syntax"})
    email_id = send(client, auth, to=[A, B])
    run_jobs(app)
    log = log_of(client, auth, email_id)
    assert log["status"] == "FAILED" and log["attempts"] == 1 and log["failed_at"]
    assert [r["status"] for r in log["recipients"]] == ["refused", "refused"]
    error = log["last_error"]
    classified = (error["smtp_code"], error["enhanced_status"], error["retryable"], error["stage"])
    assert classified == (550, "5.1.1", False, "rcpt")
    assert "553 5.1.3 Bad address syntax" in error["message"] and "553 5.1.3" in log["error_message"]
    assert [kind for kind, _ in hooks(app)] == ["email.failed"]
    assert smtp.received == []


def test_all_deferred_until_the_retries_run_out_fails_after_four_attempts(client, auth, app, smtp):
    smtp.rcpt_replies.update({A: ["452 4.2.2 Mailbox full"] * 9, B: ["451 4.3.0 Try later"] * 9})
    email_id = send(client, auth, to=[A, B])
    run_jobs(app)
    log = log_of(client, auth, email_id)
    assert log["status"] == "FAILED" and log["attempts"] == 4
    assert [(r["status"], r["attempts"], r["response"]) for r in log["recipients"]] == [
        ("refused", 4, "452 4.2.2 Mailbox full"), ("refused", 4, "451 4.3.0 Try later")
    ]  # fmt: skip
    assert log["error_message"].startswith("Retries exhausted.")
    assert (log["last_error"]["stage"], log["last_error"]["enhanced_status"]) == ("rcpt", "4.2.2")
    assert smtp.received == []


def test_a_recipient_deferred_past_the_retries_of_a_sent_message_is_refused_with_the_last_reply(
    client, auth, app, smtp, hooks
):
    smtp.rcpt_replies[B] = ["451 4.3.0 Try later"] * 9
    email_id = send(client, auth, to=[A, B])
    run_jobs(app)
    log = log_of(client, auth, email_id)
    assert log["status"] == "SENT" and log["attempts"] == 4 and smtp.copies_for(A) == 1
    bob = recipients(log)[B]
    assert (bob["status"], bob["attempts"], bob["response"]) == ("refused", 4, "451 4.3.0 Try later")
    types = [e["type"] for e in log["events"]]
    assert types == ["pending", "sending", "sent"] + ["sending", "attempt_failed"] * 2 + [
        "sending",
        "recipient_refused",
    ]
    assert [kind for kind, _ in hooks(app)] == ["email.sent", "email.recipient_failed"]


def test_the_mail_and_data_stages_are_classified(client, auth, app, smtp):
    smtp.mail_replies.append("553 5.7.1 Sender rejected")
    refused = send(client, auth)
    run_jobs(app)
    smtp.data_replies.append("554 5.6.0 Message content rejected")
    rejected = send(client, auth)
    run_jobs(app)
    assert log_of(client, auth, refused)["last_error"] == {
        "smtp_code": 553, "enhanced_status": "5.7.1", "retryable": False, "stage": "mail",
        "message": "553 5.7.1 Sender rejected",
    }  # fmt: skip
    log = log_of(client, auth, rejected)
    assert log["status"] == "FAILED" and log["last_error"]["stage"] == "data"
    assert recipients(log)[A]["status"] == "refused"


@pytest.mark.parametrize(
    "text, enhanced",
    [("5.1.1 No such user", "5.1.1"), ("4.7.0 Try later", "4.7.0"), ("5.1.10 Null MX", "5.1.10"),
     ("2.0.0 Ok", "2.0.0"), ("Ok queued as 5.1.1", None), ("5.1.1000 nope", None), ("", None)],
)  # fmt: skip
def test_enhanced_status_codes_are_read_from_the_start_of_the_reply(text, enhanced):
    assert Reply(550, text).enhanced_status == enhanced
