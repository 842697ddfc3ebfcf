"""Idempotency-Key on POST /email/send: replays, conflicts, scope, expiry and races."""

import threading

import psycopg2
import pytest
from conftest import TEST_REDIS_URL, make_key, run_jobs
from redis import Redis
from rq import Queue

from emailsvc import create_app

VALID = {"to": "alice@example.com", "subject": "Hello", "body": "Hi Alice"}


def send(client, auth, key, body=VALID, **kwargs):
    return client.post("/email/send", json=body, headers={**auth, "Idempotency-Key": key}, **kwargs)


def count_rows(database, table="emails"):
    with psycopg2.connect(database) as conn, conn.cursor() as cur:
        cur.execute(f"SELECT count(*) FROM {table}")
        return cur.fetchone()[0]


def test_same_key_and_body_returns_the_first_message_and_sends_once(client, auth, app, smtp, database):
    first = send(client, auth, "order-42")
    again = send(client, auth, "order-42")
    assert first.status_code == again.status_code == 201
    assert "Idempotent-Replayed" not in first.headers
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.get_json()["id"] == first.get_json()["id"]
    assert count_rows(database) == 1
    assert Queue("email", connection=Redis.from_url(TEST_REDIS_URL)).count == 1
    run_jobs(app)
    replay = send(client, auth, "order-42")
    assert replay.get_json()["id"] == first.get_json()["id"] and replay.get_json()["status"] == "SENT"
    run_jobs(app)
    assert len(smtp.received) == 1


def test_key_order_and_spacing_of_the_body_do_not_matter(client, auth, database):
    first = send(client, auth, "k", {"subject": "Hello", "body": "Hi Alice", "to": "alice@example.com"})
    raw = '{ "to" : "alice@example.com", "body": "Hi Alice", "subject": "Hello" }'
    headers = {**auth, "Idempotency-Key": "k"}
    again = client.post("/email/send", data=raw, content_type="application/json", headers=headers)
    assert again.status_code == 201 and again.get_json()["id"] == first.get_json()["id"]
    assert count_rows(database) == 1


def test_same_key_with_a_different_body_is_409(client, auth, database):
    send(client, auth, "k")
    response = send(client, auth, "k", {**VALID, "subject": "Changed"})
    assert response.status_code == 409
    assert response.get_json()["error"]["code"] == "idempotency_conflict"
    assert count_rows(database) == 1


def test_keys_belong_to_one_api_key(client, auth, app, database):
    other = {"X-API-Key": make_key(app, name="other")}
    assert send(client, auth, "k").get_json()["id"] != send(client, other, "k").get_json()["id"]
    assert count_rows(database) == 2


@pytest.mark.parametrize("key, status", [("x" * 255, 201), ("x" * 256, 400), ("", 400), ("a\tb", 400)])
def test_key_length_and_characters_are_checked(client, auth, key, status):
    response = send(client, auth, key)
    assert response.status_code == status
    if status == 400:
        error = response.get_json()["error"]
        assert error["code"] == "invalid_parameter" and "Idempotency-Key" in error["details"]


def test_an_invalid_body_does_not_use_up_the_key(client, auth):
    assert send(client, auth, "k", {**VALID, "to": "nobody"}).status_code == 422
    assert send(client, auth, "k").status_code == 201


def test_a_key_older_than_24_hours_is_free_again(client, auth, database):
    first = send(client, auth, "k").get_json()
    with psycopg2.connect(database) as conn, conn.cursor() as cur:
        cur.execute("UPDATE idempotency_keys SET created_at = now() - interval '25 hours'")
    again = send(client, auth, "k", {**VALID, "subject": "A new one"})
    assert again.status_code == 201 and "Idempotent-Replayed" not in again.headers
    assert again.get_json()["id"] != first["id"]
    assert count_rows(database) == 2 and count_rows(database, "idempotency_keys") == 1


def test_a_send_that_could_not_be_queued_releases_its_key(settings, database):
    down = create_app({**settings, "REDIS_URL": "redis://127.0.0.1:1/0"})
    headers = {"X-API-Key": make_key(down)}
    assert send(down.test_client(), headers, "k").status_code == 503
    retried = send(create_app(settings).test_client(), headers, "k")
    assert retried.status_code == 201 and "Idempotent-Replayed" not in retried.headers
    with psycopg2.connect(database) as conn, conn.cursor() as cur:
        cur.execute("SELECT status FROM emails ORDER BY created_at")
        assert [status for (status,) in cur.fetchall()] == ["FAILED", "PENDING"]


def test_concurrent_identical_requests_make_one_message(app, auth, database):
    # Eight at once: as many as the app's connection pool holds, so none is refused for lack of one.
    barrier, responses = threading.Barrier(8), []

    def post():
        client = app.test_client()
        barrier.wait()
        responses.append(send(client, auth, "race"))

    threads = [threading.Thread(target=post) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [r.status_code for r in responses] == [201] * 8
    assert len({r.get_json()["id"] for r in responses}) == 1
    assert sum("Idempotent-Replayed" not in r.headers for r in responses) == 1
    assert count_rows(database) == 1
