"""The API-key guard."""

import hashlib

import psycopg2
import pytest
from conftest import make_key

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
def test_a_revoked_key_is_refused_at_once(client, app, database, style):
    key = make_key(app)
    headers = {"Authorization": f"Bearer {key}"} if style == "bearer" else {"X-API-Key": key}
    assert client.get("/email/logs/x", headers=headers).status_code == 404
    with psycopg2.connect(database) as conn, conn.cursor() as cur:
        cur.execute("UPDATE api_keys SET revoked_at = now()")
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
