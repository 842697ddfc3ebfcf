"""The API-key guard."""

import hashlib
import uuid

import psycopg2
import pytest
from conftest import make_key, revoke

from emailsvc import create_app
from emailsvc.auth import new_key

SEND = {"to": "a@example.com", "subject": "s", "body": "b"}


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer esk_unknown"}, {"X-API-Key": "esk_unknown"}, {"Authorization": "Basic abc"},
     {"Authorization": "Bearer "}, {"X-API-Key": "ключ"}],
)  # fmt: skip
def test_missing_or_unknown_key_is_401_json(client, headers):
    response = client.post("/email/send", json=SEND, headers=headers)
    assert response.status_code == 401
    assert response.get_json()["error"]["code"] == "unauthorized"


@pytest.mark.parametrize("style", ["bearer", "x-api-key"])
def test_both_header_styles_are_accepted(client, app, style):
    key = make_key(app)
    headers = {"Authorization": f"Bearer {key}"} if style == "bearer" else {"X-API-Key": key}
    assert client.post("/email/send", json=SEND, headers=headers).status_code == 201


def test_keys_are_stored_only_as_hashes(app, database):
    key = make_key(app)
    with psycopg2.connect(database) as conn, conn.cursor() as cur:
        cur.execute("SELECT key_hash, key_prefix FROM api_keys")
        stored, prefix = cur.fetchone()
    assert bytes(stored) == hashlib.sha256(key.encode()).digest()
    assert key.startswith(prefix) and len(prefix) < len(key) // 3


def test_key_without_the_scope_is_403(client, app):
    read_only = {"X-API-Key": make_key(app, scopes=["read"])}
    response = client.post("/email/send", json=SEND, headers=read_only)
    assert response.status_code == 403
    assert response.get_json()["error"]["code"] == "forbidden"


@pytest.mark.parametrize("style", ["bearer", "x-api-key"])
def test_a_revoked_key_is_refused_at_once(client, app, style):
    key = make_key(app)
    headers = {"Authorization": f"Bearer {key}"} if style == "bearer" else {"X-API-Key": key}
    assert client.get("/email/logs/x", headers=headers).status_code == 404
    revoke(app, key)
    response = client.get("/email/logs/x", headers=headers)
    assert response.status_code == 401 and response.headers["WWW-Authenticate"].startswith("Bearer")


def test_each_scope_opens_only_its_own_endpoints(client, app):
    sender, reader = {"X-API-Key": make_key(app, scopes=["send"])}, {"X-API-Key": make_key(app, scopes=["read"])}
    log = client.post("/email/send", json=SEND, headers=sender)
    assert log.status_code == 201
    assert client.get(f"/email/logs/{log.get_json()['id']}", headers=sender).status_code == 403
    assert client.get(f"/email/logs/{log.get_json()['id']}", headers=reader).status_code == 200
    assert client.post("/email/send", json=SEND, headers=reader).status_code == 403


def test_the_key_is_checked_before_the_body(client):
    response = client.post("/email/send", data="not json", content_type="text/plain")
    assert response.status_code == 401


MALFORMED = ["esk_unknown", "esk_" + "a" * 42, "esk_" + "a" * 44, "ESK_" + "a" * 43, "xyz_" + "a" * 43,
             "esk_" + "a" * 42 + "!", "esk_" + "a" * 42 + "é", "esk_" + "a" * 43 + "=", "a" * 10_000]  # fmt: skip


@pytest.mark.parametrize("key", MALFORMED)
def test_a_malformed_key_is_refused_without_a_database_query(client, look_ups, key):
    response = client.get(f"/email/logs/{uuid.uuid4()}", headers={"X-API-Key": key})
    assert response.status_code == 401 and response.get_json()["error"]["code"] == "unauthorized"
    assert look_ups == []


def test_a_malformed_key_is_401_even_while_the_database_is_down(settings):
    app = create_app({**settings, "DATABASE_URL": "postgresql://postgres@127.0.0.1:1/none"})
    response = app.test_client().get(f"/email/logs/{uuid.uuid4()}", headers={"X-API-Key": "esk_forged"})
    assert response.status_code == 401  # never asked: a well-formed unknown key would be 503 here


def test_a_flood_of_unknown_keys_is_429_without_look_ups_and_spares_other_addresses(settings, look_ups):
    app = create_app({**settings, "RATELIMIT_UNKNOWN_KEYS": "3 per minute"})
    client, valid = app.test_client(), make_key(app)
    here, there = {"REMOTE_ADDR": "192.0.2.1"}, {"REMOTE_ADDR": "192.0.2.2"}

    def get(key, environ):
        return client.get(f"/email/logs/{uuid.uuid4()}", headers={"X-API-Key": key}, environ_base=environ)

    flood = [get(new_key(), here) for _ in range(8)]
    assert [r.status_code for r in flood] == [401] * 3 + [429] * 5
    assert len(look_ups) == 3  # the five refused keys never reached the database
    refused = flood[-1]
    assert refused.get_json()["error"]["code"] == "rate_limited"
    assert 0 < int(refused.headers["Retry-After"]) <= 60
    assert (refused.headers["X-RateLimit-Limit"], refused.headers["X-RateLimit-Remaining"]) == ("3", "0")
    assert get(valid, there).status_code == 404  # another address: its valid key works (no such log)
    assert get(new_key(), there).status_code == 401  # and it has its own count
    assert get(valid, here).status_code == 429  # the flooding address waits out the window, whatever it sends
    assert client.get("/healthz", headers={"X-API-Key": new_key()}, environ_base=here).status_code == 200


def test_the_count_is_shared_by_every_process(settings, look_ups):
    first, second = (create_app({**settings, "RATELIMIT_UNKNOWN_KEYS": "2 per minute"}) for _ in range(2))
    here = {"REMOTE_ADDR": "192.0.2.9"}
    statuses = [app.test_client().get("/email/logs", headers={"X-API-Key": new_key()}, environ_base=here).status_code
                for app in (first, second, second, first, first, second)]  # fmt: skip
    assert statuses == [401, 401, 429, 401, 429, 429]  # the first learns at its next failure: one look-up more
    assert len(look_ups) == 3


def test_a_revoked_key_is_still_refused_at_once_and_a_valid_key_never_counts(client, app, look_ups):
    key = make_key(app)
    for _ in range(100):
        assert client.get(f"/email/logs/{uuid.uuid4()}", headers={"X-API-Key": key}).status_code == 404
    revoke(app, key)
    assert client.get(f"/email/logs/{uuid.uuid4()}", headers={"X-API-Key": key}).status_code == 401


def test_with_redis_down_unknown_keys_are_still_plain_401(settings):
    app = create_app({**settings, "REDIS_URL": "redis://127.0.0.1:1/0"})
    statuses = {app.test_client().get("/email/logs", headers={"X-API-Key": new_key()}).status_code for _ in range(3)}
    assert statuses == {401}  # the look-up still guards; the uncounted failure locks nobody out
