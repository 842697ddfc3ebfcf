"""Outbound webhooks: registering endpoints, signed deliveries to a real receiver, retries, disabling."""

import re
from pathlib import Path

import psycopg2
import pytest
from conftest import PYTHON, free_port, make_key, run_jobs, run_webhooks, wait_for

from emailsvc import create_app
from emailsvc.signing import sign_webhook

VALID = {"to": "alice@example.com", "subject": "Hello", "body": "Hi Alice", "metadata": {"order": "42"}}
DOCS = Path(__file__).resolve().parent.parent / "docs" / "webhooks.md"


@pytest.fixture
def settings(settings):
    return {**settings, "WEBHOOK_RETRY_INTERVALS": "0,0", "WEBHOOK_TIMEOUT": "2"}


def register(client, auth, url, **changes):
    response = client.post("/webhooks", json={"url": url, **changes}, headers=auth)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def send(client, auth, **changes):
    response = client.post("/email/send", json={**VALID, **changes}, headers=auth)
    assert response.status_code == 201, response.get_json()
    return response.get_json()["id"]


def deliveries(client, auth, endpoint_id, **params):
    response = client.get(f"/webhooks/{endpoint_id}/deliveries", query_string=params, headers=auth)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def documented_verify():
    """Return the `verify` function of the Python recipe in docs/webhooks.md, run as written."""
    recipe = re.search(r"```python\n(.*?)```", DOCS.read_text(), re.S).group(1)
    namespace = {}
    exec(recipe, namespace)  # noqa: S102 — the point is to run the documented code itself
    return namespace["verify"]


def test_signing_matches_the_standard_webhooks_test_vector():
    signature = sign_webhook(
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek", "1614265330", b'{"test": 2432232314}'
    )
    assert signature == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_the_secret_is_shown_once_and_never_listed(client, auth, receiver):
    created = register(client, auth, receiver.url)
    assert created["secret"].startswith("whsec_") and created["status"] == "enabled"
    assert created["events"] == ["email.sent", "email.failed", "email.delivered", "email.bounced",
                                 "email.complained", "email.deferred", "email.recipient_failed",
                                 "email.canceled"]  # fmt: skip
    [listed] = client.get("/webhooks", headers=auth).get_json()["items"]
    assert listed["id"] == created["id"] and "secret" not in listed
    assert created["secret"] not in client.get(f"/webhooks/{created['id']}/deliveries", headers=auth).get_data(True)


def test_a_sent_mail_arrives_signed_and_verifies_with_the_documented_recipe(client, auth, app, receiver):
    endpoint = register(client, auth, receiver.url)
    email_id = send(client, auth, html="<p>secret html</p>")
    run_jobs(app)
    run_webhooks(app)
    [(headers, body)] = receiver.requests
    event = documented_verify()(endpoint["secret"], headers, body)
    assert event["id"] == headers["webhook-id"] and event["id"].startswith("msg_")
    assert event["type"] == "email.sent" and event["created_at"]
    data = event["data"]
    assert data["id"] == email_id and data["status"] == "SENT" and data["sent_at"]
    assert data["metadata"] == {"order": "42"} and data["to"] == ["alice@example.com"]
    assert "body" not in data and "html" not in data and b"secret html" not in body
    with pytest.raises(ValueError):
        documented_verify()(endpoint["secret"], headers, body.replace(b"SENT", b"DELIVERED"))


def test_500_then_200_redelivers_with_the_same_webhook_id_and_lists_both_attempts(client, auth, app, receiver):
    endpoint = register(client, auth, receiver.url, events=["email.sent"])
    receiver.replies.append(500)
    send(client, auth)
    run_jobs(app)
    run_webhooks(app)
    first, second = receiver.requests
    assert first[0]["webhook-id"] == second[0]["webhook-id"]
    assert first[1] == second[1]  # the same event, byte for byte
    [delivery] = deliveries(client, auth, endpoint["id"])["items"]
    assert delivery["id"] == first[0]["webhook-id"] and delivery["status"] == "succeeded"
    assert [a["status_code"] for a in delivery["attempts"]] == [500, 200]
    assert "500" in delivery["attempts"][0]["error"] and delivery["attempts"][1]["error"] is None


def test_retries_end_after_the_schedule(client, auth, app, receiver):
    endpoint = register(client, auth, receiver.url)
    receiver.default_status = 503
    send(client, auth)
    run_jobs(app)
    run_webhooks(app)
    assert len(receiver.requests) == 3  # the first attempt and two retries (WEBHOOK_RETRY_INTERVALS=0,0)
    [delivery] = deliveries(client, auth, endpoint["id"])["items"]
    assert delivery["status"] == "failed" and len(delivery["attempts"]) == 3
    assert client.get("/webhooks", headers=auth).get_json()["items"][0]["failing_since"]


def test_only_subscribed_events_are_sent(client, auth, app, receiver, smtp):
    register(client, auth, receiver.url, events=["email.failed"])
    smtp.data_replies.append("550 5.7.1 Rejected")  # the first message is refused, the second sent
    failed_id = send(client, auth)
    send(client, auth)
    run_jobs(app)
    run_webhooks(app)
    [event] = receiver.payloads()
    assert event["type"] == "email.failed" and event["data"]["id"] == failed_id
    assert "550 5.7.1 Rejected" in event["data"]["error_message"]


def test_every_endpoint_gets_its_own_signature(client, auth, app, receiver):
    one, two = register(client, auth, receiver.url), register(client, auth, receiver.url + "?second")
    send(client, auth)
    run_jobs(app)
    run_webhooks(app)
    assert len(receiver.requests) == 2
    secrets = {one["secret"], two["secret"]}
    for headers, body in receiver.requests:
        verified = [s for s in secrets if _verifies(s, headers, body)]
        assert len(verified) == 1


def test_a_redirect_is_a_failure_not_followed(client, auth, app, receiver):
    endpoint = register(client, auth, receiver.url)
    receiver.replies.extend([302, 302, 302])
    send(client, auth)
    run_jobs(app)
    run_webhooks(app)
    [delivery] = deliveries(client, auth, endpoint["id"])["items"]
    assert [a["status_code"] for a in delivery["attempts"]] == [302, 302, 302]


def test_an_unreachable_receiver_is_recorded_as_an_error(client, auth, app):
    endpoint = register(client, auth, f"http://127.0.0.1:{free_port()}/nobody")
    send(client, auth)
    run_jobs(app)
    run_webhooks(app)
    [delivery] = deliveries(client, auth, endpoint["id"])["items"]
    assert delivery["status"] == "failed"
    assert all(a["status_code"] is None and "ConnectionRefused" in a["error"] for a in delivery["attempts"])


def test_an_endpoint_failing_for_a_day_is_disabled(client, auth, app, receiver, database):
    endpoint = register(client, auth, receiver.url)
    receiver.default_status = 500
    send(client, auth)
    run_jobs(app)
    run_webhooks(app)
    _sql(database, "UPDATE webhook_endpoints SET failing_since = now() - interval '25 hours'")  # the fake clock
    waiting = send(client, auth)
    run_jobs(app)
    _sql(database, "UPDATE webhook_deliveries SET next_attempt_at = now() + interval '1 hour' WHERE state = 'pending'")
    receiver.requests.clear()
    send(client, auth)
    run_jobs(app)
    run_webhooks(app)
    assert len(receiver.requests) == 1  # this failure disables it, and the waiting delivery is given up unsent
    [listed] = client.get("/webhooks", headers=auth).get_json()["items"]
    assert listed["status"] == "disabled" and listed["disabled_at"]
    items = deliveries(client, auth, endpoint["id"])["items"]
    assert all(d["status"] == "failed" for d in items)
    assert [d["attempts"] for d in items if d["email_id"] == waiting] == [[]]
    send(client, auth)
    run_jobs(app)
    run_webhooks(app)
    assert len(receiver.requests) == 1 and len(deliveries(client, auth, endpoint["id"])["items"]) == 3


def test_a_success_ends_the_run_of_failures(client, auth, app, receiver):
    register(client, auth, receiver.url)
    receiver.replies.append(500)
    send(client, auth)
    run_jobs(app)
    run_webhooks(app)
    [listed] = client.get("/webhooks", headers=auth).get_json()["items"]
    assert listed["failing_since"] is None and listed["status"] == "enabled"


def test_deliveries_are_paged_newest_first(client, auth, app, receiver):
    endpoint = register(client, auth, receiver.url)
    ids = [send(client, auth, subject=f"n{i}") for i in range(3)]
    run_jobs(app)
    run_webhooks(app)
    first = deliveries(client, auth, endpoint["id"], limit=2)
    second = deliveries(client, auth, endpoint["id"], limit=2, cursor=first["pagination"]["next_cursor"])
    assert second["pagination"]["next_cursor"] is None
    seen = [d["email_id"] for d in first["items"] + second["items"]]
    assert sorted(seen) == sorted(ids) and len(set(seen)) == 3


def test_delete_stops_deliveries(client, auth, app, receiver):
    endpoint = register(client, auth, receiver.url)
    assert client.delete(f"/webhooks/{endpoint['id']}", headers=auth).status_code == 204
    assert client.delete(f"/webhooks/{endpoint['id']}", headers=auth).status_code == 404
    send(client, auth)
    run_jobs(app)
    run_webhooks(app)
    assert receiver.requests == []
    assert client.get("/webhooks", headers=auth).get_json()["items"] == []


@pytest.mark.parametrize(
    "body, field",
    [
        ({}, "url"),
        ({"url": "ftp://example.com/x"}, "url"),
        ({"url": "not a url"}, "url"),
        ({"url": "https://example.com/\r\nx"}, "url"),
        ({"url": "https://example.com/x", "events": []}, "events"),
        ({"url": "https://example.com/x", "events": ["email.opened"]}, "events"),
        ({"url": "https://example.com/x", "events": "email.sent"}, "events"),
        ({"url": "https://example.com/x", "secret": "mine"}, "secret"),
    ],
)
def test_invalid_registrations_are_refused(client, auth, body, field):
    response = client.post("/webhooks", json=body, headers=auth)
    assert response.status_code == 422 and field in response.get_json()["error"]["details"]


@pytest.mark.parametrize("endpoint_id", ["not-a-uuid", "00000000-0000-0000-0000-000000000000"])
def test_unknown_endpoints_are_404(client, auth, endpoint_id):
    assert client.get(f"/webhooks/{endpoint_id}/deliveries", headers=auth).status_code == 404
    assert client.delete(f"/webhooks/{endpoint_id}", headers=auth).status_code == 404


def test_bad_paging_parameters_are_400(client, auth, receiver):
    endpoint = register(client, auth, receiver.url)
    for params in ({"limit": "ten"}, {"cursor": "garbage"}, {"cursor": "WyJ4IiwgInkiXQ"}):
        response = client.get(f"/webhooks/{endpoint['id']}/deliveries", query_string=params, headers=auth)
        assert response.status_code == 400 and response.get_json()["error"]["code"] == "invalid_parameter"


def test_scopes(client, app, receiver):
    read_only = {"X-API-Key": make_key(app, scopes=["read"])}
    send_only = {"X-API-Key": make_key(app, scopes=["send"])}
    assert client.post("/webhooks", json={"url": receiver.url}, headers=read_only).status_code == 403
    assert client.post("/webhooks", json={"url": receiver.url}, headers=send_only).status_code == 403
    assert client.get("/webhooks", headers=send_only).status_code == 403
    assert client.get("/webhooks", headers=read_only).status_code == 200
    assert client.get("/webhooks").status_code == 401


def test_a_receiver_that_never_answers_does_not_delay_other_mail(app, client, auth, processes, receiver):
    register(client, auth, receiver.url, events=["email.sent"])
    receiver.replies.extend(["hang"] * 5)
    processes.env.update(WEBHOOK_TIMEOUT="60")
    processes.start(PYTHON, "worker.py", name="worker")
    send(client, auth)
    wait_for(lambda: receiver.requests, message="the first webhook to reach the receiver")
    others = [send(client, auth) for _ in range(3)]
    wait_for(lambda: all(_status(client, auth, i) == "SENT" for i in others), message="the other mail to be SENT")
    assert len(receiver.requests) == 1 and not receiver.released.is_set()  # the first webhook is still unanswered


def _status(client, auth, email_id):
    return client.get(f"/email/logs/{email_id}", headers=auth).get_json()["status"]


def _verifies(secret, headers, body):
    try:
        documented_verify()(secret, headers, body)
        return True
    except ValueError:
        return False


def _sql(database, statement):
    conn = psycopg2.connect(database)
    with conn, conn.cursor() as cur:
        cur.execute(statement)
    conn.close()


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8080/hook", "http://localhost/hook", "http://10.0.0.7/hook", "http://169.254.169.254/x",
            "http://[::1]/hook", "http://0.0.0.0/hook"],
)  # fmt: skip
def test_private_targets_are_refused_by_default(settings, url):
    app = create_app({**settings, "WEBHOOK_ALLOW_PRIVATE": "false"})
    response = app.test_client().post("/webhooks", json={"url": url}, headers={"X-API-Key": make_key(app)})
    assert response.status_code == 422
    assert "non-public address" in response.get_json()["error"]["details"]["url"][0]


def test_a_target_that_turned_private_is_not_contacted(receiver):
    from emailsvc.notify import post

    attempt = post(receiver.url, {}, b"{}", timeout=2, allow_private=False)
    assert not attempt["ok"] and "non-public address 127.0.0.1" in attempt["error"]
    assert receiver.requests == []
