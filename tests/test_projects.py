"""Projects: two applications sharing one emailsvc cannot see, change or be notified about each other's mail."""

import hashlib
import hmac
import json
import time
import uuid

import psycopg2
import pytest
from conftest import make_key, run_jobs, run_webhooks, send_ok

from emailsvc import key_memory

RELAY_SECRET = "relay-secret"


@pytest.fixture
def settings(settings):
    return {**settings, "WEBHOOK_SECRET": RELAY_SECRET, "WEBHOOK_RETRY_INTERVALS": "0"}


@pytest.fixture
def shop(app):
    """Two keys of the project `shop`, as request headers."""
    return [{"X-API-Key": make_key(app, name=f"shop {n}", project="shop")} for n in (1, 2)]


@pytest.fixture
def blog(app):
    """Two keys of the project `blog`, as request headers."""
    return [{"X-API-Key": make_key(app, name=f"blog {n}", project="blog")} for n in (1, 2)]


def relay_event(client, **body):
    """POST a delivery event signed as the relay signs it; return its outcome."""
    raw, t = json.dumps(body).encode(), int(time.time())
    mac = hmac.new(RELAY_SECRET.encode(), f"{t}.".encode() + raw, hashlib.sha256).hexdigest()
    headers = {"Content-Type": "application/json", "X-Webhook-Signature": f"t={t},v1={mac}"}
    response = client.post("/email/webhooks/delivery", data=raw, headers=headers)
    assert response.status_code == 200, response.get_json()
    return response.get_json()["outcome"]


def items(client, auth, url):
    response = client.get(url, headers=auth)
    assert response.status_code == 200, response.get_json()
    return response.get_json()["items"]


def test_another_projects_message_is_404_and_lists_hold_only_the_keys_project(client, shop, blog):
    shop_ids = [send_ok(client, key, subject=f"shop {n}") for n, key in enumerate(shop)]
    blog_id = send_ok(client, blog[0], subject="blog")
    for key in shop:
        assert client.get(f"/email/logs/{shop_ids[1]}", headers=key).status_code == 200  # the other key's message
        missing = client.get(f"/email/logs/{blog_id}", headers=key)
        assert missing.status_code == 404 and missing.get_json()["error"]["code"] == "not_found"
        assert blog_id not in missing.get_data(as_text=True)
    assert client.get(f"/email/logs/{shop_ids[0]}", headers=blog[1]).status_code == 404
    for mode in ({}, {"page": 1}):
        for key, wanted in ((shop[1], shop_ids), (blog[1], [blog_id])):
            body = client.get("/email/logs", query_string={**mode, "limit": 100}, headers=key).get_json()
            assert sorted(item["id"] for item in body["items"]) == sorted(wanted)
            assert body["today"]["created"] == len(wanted)
            assert body.get("pagination", {}).get("total", len(wanted)) == len(wanted)
    filtered = client.get("/email/logs", query_string={"to": "alice@example.com", "page": 1}, headers=blog[0])
    assert [item["id"] for item in filtered.get_json()["items"]] == [blog_id]


def test_todays_counts_are_per_project(client, app, shop, blog, smtp):
    for _ in range(3):
        send_ok(client, shop[0])
    send_ok(client, blog[1])
    smtp.data_replies.extend(["250 ok"] * 3)
    run_jobs(app)
    shop_today = client.get("/email/logs", headers=shop[1]).get_json()["today"]
    blog_today = client.get("/project", headers=blog[0]).get_json()["today"]
    assert (shop_today["created"], shop_today["sent"]) == (3, 3)
    assert (blog_today["created"], blog_today["sent"]) == (1, 1)


def test_a_suppression_in_one_project_does_not_refuse_a_send_in_the_other(client, app, shop, blog, smtp):
    assert client.post("/suppressions", json={"address": "alice@example.com"}, headers=shop[0]).status_code == 201
    refused = client.post("/email/send", json={"to": "alice@example.com", "subject": "s", "body": "b"}, headers=shop[1])
    assert refused.status_code == 422 and refused.get_json()["error"]["code"] == "recipient_suppressed"
    send_ok(client, blog[0])
    run_jobs(app)
    assert [rcpts for _, rcpts, _ in smtp.received] == [["alice@example.com"]]


def test_suppression_lists_are_per_project(client, shop, blog):
    client.post("/suppressions", json={"address": "bob@example.com", "reason": "shop's"}, headers=shop[0])
    assert items(client, blog[0], "/suppressions") == []
    # The same address in the other project is a new entry of its own, not the first project's.
    added = client.post("/suppressions", json={"address": "bob@example.com", "reason": "blog's"}, headers=blog[0])
    assert added.status_code == 201 and added.get_json()["reason"] == "blog's"
    assert client.delete("/suppressions/bob@example.com", headers=blog[1]).status_code == 204
    assert client.delete("/suppressions/bob@example.com", headers=blog[1]).status_code == 404
    assert [entry["reason"] for entry in items(client, shop[1], "/suppressions")] == ["shop's"]


def test_a_hard_bounce_suppresses_the_address_in_the_messages_project_only(client, app, shop, blog):
    email_id = send_ok(client, shop[0])
    run_jobs(app)
    assert relay_event(client, id=email_id, event="bounced", detail="550 5.1.1 unknown user") == "applied"
    assert [entry["address"] for entry in items(client, shop[1], "/suppressions")] == ["alice@example.com"]
    assert items(client, blog[0], "/suppressions") == []
    send_ok(client, blog[1])


def test_webhook_endpoints_are_per_project_and_get_only_their_projects_events(client, app, shop, blog, receiver):
    shop_hook = client.post("/webhooks", json={"url": receiver.url + "?shop"}, headers=shop[0]).get_json()
    blog_hook = client.post("/webhooks", json={"url": receiver.url + "?blog"}, headers=blog[0]).get_json()
    shop_id, blog_id = send_ok(client, shop[1]), send_ok(client, blog[1])
    run_jobs(app)
    relay_event(client, id=shop_id, event="delivered")
    relay_event(client, id=blog_id, event="deferred", detail="451 try later")
    run_webhooks(app)
    received = sorted((payload["data"]["id"], payload["type"]) for payload in receiver.payloads())
    # Each change once, to its own project's endpoint (the deliveries lists below say which).
    assert received == sorted([(shop_id, "email.sent"), (shop_id, "email.delivered"),
                               (blog_id, "email.sent"), (blog_id, "email.deferred")])  # fmt: skip
    for key, own, other in ((shop[1], shop_hook, blog_hook), (blog[1], blog_hook, shop_hook)):
        assert [hook["id"] for hook in items(client, key, "/webhooks")] == [own["id"]]
        assert [d["email_id"] for d in items(client, key, f"/webhooks/{own['id']}/deliveries")] in (
            [shop_id, shop_id],
            [blog_id, blog_id],
        )
        assert client.get(f"/webhooks/{other['id']}/deliveries", headers=key).status_code == 404
        assert client.delete(f"/webhooks/{other['id']}", headers=key).status_code == 404
    assert len(items(client, shop[0], "/webhooks")) == 1  # the other project's delete took nothing
    assert client.delete(f"/webhooks/{shop_hook['id']}", headers=shop[1]).status_code == 204


def test_an_event_for_a_message_names_its_project_not_the_endpoint_url(client, app, shop, blog, receiver):
    # Both projects register the same URL: each registration still hears only its own project.
    for key in (shop[0], blog[0]):
        client.post("/webhooks", json={"url": receiver.url, "events": ["email.sent"]}, headers=key)
    shop_id = send_ok(client, shop[0])
    run_jobs(app)
    run_webhooks(app)
    assert [payload["data"]["id"] for payload in receiver.payloads()] == [shop_id]


def test_idempotency_keys_stay_per_api_key(client, shop, blog):
    keyed = [{**key, "Idempotency-Key": "order-42"} for key in (shop[0], shop[1], blog[0])]
    body = {"to": "alice@example.com", "subject": "s", "body": "b"}
    ids = [client.post("/email/send", json=body, headers=key).get_json()["id"] for key in keyed]
    assert len(set(ids)) == 3
    replay = client.post("/email/send", json=body, headers=keyed[2])
    assert replay.headers["Idempotent-Replayed"] == "true" and replay.get_json()["id"] == ids[2]


def test_get_project_shows_the_project_its_keys_and_never_a_secret(client, app, shop, blog):
    send_ok(client, shop[0])
    response = client.get("/project", headers=shop[1])
    assert response.status_code == 200
    project = response.get_json()
    assert project["name"] == "shop" and project["created_at"]
    assert [key["name"] for key in project["keys"]] == ["shop 1", "shop 2"]
    for key, headers in zip(project["keys"], shop, strict=True):
        assert headers["X-API-Key"].startswith(key["prefix"]) and key["scopes"] == ["send", "read"]
        assert key["last_used_at"] is not None and key["created_at"]
    text = response.get_data(as_text=True)
    assert all(headers["X-API-Key"] not in text for headers in shop + blog)
    assert "key_hash" not in text and "blog" not in text
    assert project["today"]["created"] == 1 and project["today"]["timezone"] == "UTC"
    dhaka = client.get("/project", query_string={"tz": "Asia/Dhaka"}, headers=blog[0]).get_json()
    assert dhaka["name"] == "blog" and dhaka["today"]["timezone"] == "Asia/Dhaka" and dhaka["today"]["created"] == 0
    bad = client.get("/project", query_string={"tz": "Mars/Olympus"}, headers=blog[0])
    assert bad.status_code == 400 and bad.get_json()["error"]["code"] == "invalid_parameter"


@pytest.mark.parametrize("scopes", [["send"], ["read"]])
def test_get_project_answers_any_project_key(client, app, scopes):
    assert client.get("/project", headers={"X-API-Key": make_key(app, scopes=scopes)}).status_code == 200
    assert client.get("/project").status_code == 401


def test_last_used_is_written_at_most_once_a_minute(client, database, shop, monkeypatch):
    def last_used():
        """The key's last_used_at and its row version, which any write changes."""
        with psycopg2.connect(database) as conn, conn.cursor() as cur:
            cur.execute("SELECT last_used_at, xmin::text FROM api_keys WHERE name = 'shop 1'")
            return cur.fetchone()

    assert last_used()[0] is None
    client.get("/project", headers=shop[0])
    first = last_used()
    assert first[0] is not None
    for _ in range(3):
        client.get("/project", headers=shop[0])
    assert last_used() == first  # the same time and the same row version: not written again
    with psycopg2.connect(database) as conn, conn.cursor() as cur:
        cur.execute("UPDATE api_keys SET last_used_at = last_used_at - interval '61 seconds' WHERE name = 'shop 1'")
    backdated = last_used()[0]
    # The process looks a key it remembers up again a minute later (emailsvc/key_memory.py): that writes it.
    later = time.monotonic() + key_memory.TRUST_SECONDS
    monkeypatch.setattr(key_memory.time, "monotonic", lambda: later)
    client.get("/project", headers=shop[0])
    assert last_used()[0] > backdated


OPERATOR_REFUSED = [
    ("POST", "/email/send", {"to": "a@example.com", "subject": "s", "body": "b"}),
    ("GET", "/email/logs", None),
    ("GET", f"/email/logs/{uuid.uuid4()}", None),
    ("GET", "/suppressions", None),
    ("POST", "/suppressions", {"address": "a@example.com"}),
    ("DELETE", "/suppressions/a@example.com", None),
    ("GET", "/webhooks", None),
    ("POST", "/webhooks", {"url": "http://127.0.0.1:9/hooks"}),
    ("DELETE", f"/webhooks/{uuid.uuid4()}", None),
    ("GET", f"/webhooks/{uuid.uuid4()}/deliveries", None),
    ("GET", "/project", None),
]


@pytest.mark.parametrize("method, url, body", OPERATOR_REFUSED)
def test_an_operator_key_reads_no_projects_mail(client, app, method, url, body):
    send_ok(client, {"X-API-Key": make_key(app)})
    operator = {"X-API-Key": make_key(app, scopes=["operator"])}
    response = client.open(url, method=method, json=body, headers=operator)
    assert response.status_code == 403 and response.get_json()["error"]["code"] == "forbidden"
