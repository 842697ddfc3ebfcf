"""POST /email/batch: many messages accepted all or none, in one statement and one queue round trip."""

from datetime import UTC, datetime, timedelta

import psycopg2
from conftest import TEST_REDIS_URL, make_key, run_jobs
from redis import Redis
from rq import Queue

from emailsvc import create_app


def message(n, **changes):
    return {"to": f"user{n}@example.com", "subject": f"Hello {n}", "body": f"Hi number {n}", **changes}


def post_batch(client, auth, messages, key=None):
    headers = {**auth, **({"Idempotency-Key": key} if key else {})}
    return client.post("/email/batch", json={"messages": messages}, headers=headers)


def rows(database):
    with psycopg2.connect(database) as conn, conn.cursor() as cur:
        cur.execute("SELECT id::text, status, subject FROM emails ORDER BY subject")
        return cur.fetchall()


def queued():
    return Queue("email", connection=Redis.from_url(TEST_REDIS_URL)).count


def test_a_batch_of_500_is_recorded_in_order_and_every_message_arrives(client, auth, app, smtp, database):
    response = post_batch(client, auth, [message(n) for n in range(500)])
    assert response.status_code == 201
    data = response.get_json()["data"]
    assert [log["subject"] for log in data] == [f"Hello {n}" for n in range(500)]
    assert {log["status"] for log in data} == {"PENDING"} and len({log["id"] for log in data}) == 500
    assert len(rows(database)) == 500 and queued() == 500
    run_jobs(app)
    assert sorted(rcpt[0] for _, rcpt, _ in smtp.received) == sorted(f"user{n}@example.com" for n in range(500))
    log = client.get(f"/email/logs/{data[321]['id']}", headers=auth).get_json()
    assert log["status"] == "SENT" and [e["type"] for e in log["events"]][0] == "pending"


def test_one_invalid_message_among_500_refuses_the_batch_naming_its_index(client, auth, database):
    messages = [message(n) for n in range(500)]
    messages[317] = message(317, to="not an address")
    response = post_batch(client, auth, messages)
    assert response.status_code == 422
    error = response.get_json()["error"]
    assert error["code"] == "validation_error" and list(error["details"]["messages"]) == ["317"]
    assert "to" in error["details"]["messages"]["317"]
    assert rows(database) == [] and queued() == 0


def test_a_suppressed_recipient_refuses_the_batch_naming_each_message(client, auth, database):
    client.post("/suppressions", json={"address": "user7@example.com"}, headers=auth)
    messages = [message(n) for n in range(10)]
    messages[3] = message(3, cc=["User7 <USER7@example.com>"])
    response = post_batch(client, auth, messages)
    assert response.status_code == 422
    error = response.get_json()["error"]
    assert error["code"] == "recipient_suppressed"
    assert error["details"] == {"messages": {"3": {"recipient_suppressed": ["user7@example.com"]},
                                             "7": {"recipient_suppressed": ["user7@example.com"]}}}  # fmt: skip
    assert rows(database) == [] and queued() == 0


def test_a_sender_outside_the_allowed_domains_refuses_the_batch(settings, database):
    app = create_app({**settings, "EMAIL_ALLOWED_FROM_DOMAINS": "shop.example"})
    auth = {"X-API-Key": make_key(app)}
    messages = [message(n, **{"from": "orders@shop.example"}) for n in range(3)]
    messages[2]["from"] = "ceo@bank.example"
    response = post_batch(app.test_client(), auth, messages)
    assert response.status_code == 422
    assert response.get_json()["error"]["details"] == {
        "messages": {"2": {"from": ["This sender domain is not allowed."]}}
    }
    assert rows(database) == []


def test_sizes_are_checked_before_any_address_is_parsed(client, auth, database):
    many = [f"user{n}@example.com" for n in range(40)]
    response = post_batch(client, auth, [message(0), message(1, cc=many, bcc=many[:11])])
    assert response.status_code == 422
    assert list(response.get_json()["error"]["details"]["messages"]) == ["1"]
    too_many = post_batch(client, auth, [message(n) for n in range(501)])
    assert too_many.status_code == 422 and "messages" in too_many.get_json()["error"]["details"]
    for body in ({"messages": []}, {"messages": "x"}, {}, {"messages": [None]}, {"messages": [{"to": 5}]}):
        refused = client.post("/email/batch", json=body, headers=auth)
        assert refused.status_code == 422 and refused.get_json()["error"]["code"] == "validation_error"
    assert rows(database) == []


def test_an_idempotency_key_covers_the_whole_batch(client, auth, app, smtp, database):
    messages = [message(n) for n in range(5)]
    first = post_batch(client, auth, messages, key="march-newsletter")
    again = post_batch(client, auth, messages, key="march-newsletter")
    assert first.status_code == again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true" and "Idempotent-Replayed" not in first.headers
    assert [log["id"] for log in again.get_json()["data"]] == [log["id"] for log in first.get_json()["data"]]
    assert len(rows(database)) == 5 and queued() == 5
    changed = post_batch(client, auth, messages[:4], key="march-newsletter")
    assert changed.status_code == 409
    # The same key on the other endpoint, even with a body that means the same first message, is another request.
    single = client.post("/email/send", json=messages[0], headers={**auth, "Idempotency-Key": "march-newsletter"})
    assert single.status_code == 409
    sent = client.post("/email/send", json=messages[0], headers={**auth, "Idempotency-Key": "one"})
    assert sent.status_code == 201
    assert post_batch(client, auth, [messages[0]], key="one").status_code == 409
    run_jobs(app)
    assert len(smtp.received) == 6


def test_a_batch_belongs_to_the_keys_project(client, auth, app):
    data = post_batch(client, auth, [message(0), message(1)]).get_json()["data"]
    other = {"X-API-Key": make_key(app, project="other")}
    assert client.get(f"/email/logs/{data[1]['id']}", headers=other).status_code == 404
    assert client.get(f"/email/logs/{data[1]['id']}", headers=auth).status_code == 200
    assert client.post("/email/batch", json={"messages": [message(0)]},
                       headers={"X-API-Key": make_key(app, scopes=("read",), name="r")}).status_code == 403  # fmt: skip


def test_redis_down_at_batch_answers_503_and_records_every_row_failed(settings, database):
    app = create_app({**settings, "REDIS_URL": "redis://127.0.0.1:1/0"})
    response = post_batch(app.test_client(), {"X-API-Key": make_key(app)}, [message(n) for n in range(3)], key="k")
    assert response.status_code == 503
    assert [status for _, status, _ in rows(database)] == ["FAILED"] * 3
    with psycopg2.connect(database) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM idempotency_keys")
        assert cur.fetchone()[0] == 0  # the client's retry with the key can succeed


def test_a_batch_may_mix_scheduled_and_immediate_messages_in_any_order(client, auth):
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    message = {"to": "alice@example.com", "subject": "Hello", "body": "Hi"}
    response = client.post("/email/batch", json={"messages": [{**message, "send_at": later}, message]}, headers=auth)
    assert response.status_code == 201, response.get_json()
    assert [log["status"] for log in response.get_json()["data"]] == ["SCHEDULED", "PENDING"]
