"""Upgrading a database made before projects: init-db moves every key and row into the project `default`.
Upgrading one made before the log kept the sender as a column: the `from` filter finds the mail it had.

tests/fixtures/schema_before_projects.sql is schema.sql as it was just before projects (commit 253c063);
tests/fixtures/schema_before_sender.sql as it was just before emails.sender (commit 5995c2e).
"""

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg2
import psycopg2.extensions
import pytest
from conftest import TEST_DATABASE_URL

from emailsvc import create_app
from emailsvc.auth import hash_key, new_key
from emailsvc.db import create_database, init_db
from emailsvc.idempotency import fingerprint

BEFORE_PROJECTS = Path(__file__).resolve().parent / "fixtures" / "schema_before_projects.sql"
BEFORE_SENDER = Path(__file__).resolve().parent / "fixtures" / "schema_before_sender.sql"
UPGRADED_URL = psycopg2.extensions.make_dsn(
    TEST_DATABASE_URL, dbname=psycopg2.extensions.parse_dsn(TEST_DATABASE_URL)["dbname"] + "_upgrade"
)
# email_recipient_addresses is made by the upgrade too, from the rows of emails, so its rows move as theirs do.
TABLES = ("api_keys", "emails", "suppressions", "webhook_endpoints", "idempotency_keys", "email_log_counts",
          "email_recipient_addresses")  # fmt: skip
# Tables made after projects existed, so an upgraded database has no rows of theirs to move.
LATER_TABLES = ("attachment_contents", "email_attachments")
# Two days ago, inside one 15-minute bucket: the running totals written before the upgrade are exact.
BUCKET = (datetime.now(UTC) - timedelta(days=2)).replace(minute=0, second=0, microsecond=0)
KEYED_BODY = {"to": "dave@example.com", "subject": "Order 42", "body": "Shipped."}


def sql(query, params=None, url=UPGRADED_URL):
    conn = psycopg2.connect(url)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(query, params)
            return cur.fetchall() if cur.description else None
    finally:
        conn.close()


def on_server(statement):
    conn = psycopg2.connect(psycopg2.extensions.make_dsn(UPGRADED_URL, dbname="postgres"))
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(statement)
    conn.close()


def fill_before_projects():
    """A database made and used by the previous release; return the key it had and the ids of its rows."""
    key, old_key, emails = new_key(), new_key(), [uuid.uuid4() for _ in range(5)]
    sql(BEFORE_PROJECTS.read_text())
    sql(
        """INSERT INTO api_keys (name, key_hash, key_prefix, scopes, revoked_at) VALUES
               ('shop', %s, %s, '{send,read}', NULL), ('retired', %s, %s, '{read}', now())""",
        (hash_key(key), key[:12], hash_key(old_key), old_key[:12]),
    )
    for n, email_id in enumerate(emails):
        failed = n == 4
        sql(
            """INSERT INTO emails (id, api_key_id, status, from_addr, to_addrs, subject, body, message_id, attempts,
                                   created_at, sent_at, failed_at, updated_at)
               VALUES (%(id)s, 1, %(status)s, 'shop@example.com', %(to)s, 'Hello', 'Hi', %(mid)s, 1,
                       %(at)s, %(sent)s, %(failed)s, %(at)s);
               INSERT INTO email_events (email_id, type, at) VALUES (%(id)s, 'pending', %(at)s)""",
            {"id": str(email_id), "status": "FAILED" if failed else "SENT", "to": [f"user{n}@example.com"],
             "mid": f"<{email_id}@example.com>", "at": BUCKET + timedelta(minutes=n),
             "sent": None if failed else BUCKET + timedelta(minutes=n, seconds=1),
             "failed": BUCKET + timedelta(minutes=n, seconds=1) if failed else None},
        )  # fmt: skip
    sql(
        """INSERT INTO email_log_counts (bucket_start, created, sent, failed) VALUES (%s, 5, 4, 1);
           INSERT INTO suppressions (address, reason, email_id) VALUES ('user4@example.com', 'hard_bounce', %s),
                                                                      ('carol@example.com', 'manual', NULL);
           INSERT INTO webhook_endpoints (url, events, secret)
               VALUES ('https://hooks.example.com/a', '{email.sent}', 's');
           INSERT INTO webhook_deliveries (endpoint_id, email_id, type, snapshot, state)
               SELECT id, %s, 'email.sent', '{}', 'succeeded' FROM webhook_endpoints;
           INSERT INTO idempotency_keys (api_key_id, key, request_hash, email_id) VALUES (1, 'order-42', %s, %s)""",
        (BUCKET, str(emails[4]), str(emails[0]), fingerprint(KEYED_BODY), str(emails[0])),
    )
    return key, emails


def fill_before_sender():
    """A database made by the schema before emails.sender, with mail in it; return its key and the mail's ids."""
    key, emails = new_key(), [uuid.uuid4() for _ in range(3)]
    sql(BEFORE_SENDER.read_text())
    sql(
        """INSERT INTO projects (name) VALUES ('default');
           INSERT INTO api_keys (project_id, name, key_hash, key_prefix, scopes)
               VALUES (1, 'shop', %s, %s, '{read}')""",
        (hash_key(key), key[:12]),
    )
    senders = ("Shop <Shop@example.com>", "billing@example.com", "shop@example.com")
    for n, (email_id, sender, status) in enumerate(zip(emails, senders, ("SENT", "FAILED", "FAILED"), strict=True)):
        sql(
            """INSERT INTO emails (id, project_id, status, from_addr, to_addrs, cc_addrs, subject, message_id,
                                   created_at)
               VALUES (%s, 1, %s, %s, '{dave@example.com}', '{audit@example.com}', 'Hi', %s, %s)""",
            (str(email_id), status, sender, f"<{email_id}@example.com>", BUCKET + timedelta(minutes=n)),
        )
    return key, emails


def upgrade(fill):
    """A new database filled by `fill` (a previous schema), then upgraded by init-db; return the key and ids."""
    on_server(f'DROP DATABASE IF EXISTS "{psycopg2.extensions.parse_dsn(UPGRADED_URL)["dbname"]}"')
    create_database(UPGRADED_URL)
    key, emails = fill()
    init_db(UPGRADED_URL)
    return key, emails


@pytest.fixture(params=[fill_before_projects])
def upgraded(request, settings):
    """A database filled by a previous schema, then upgraded by init-db; yields (app, its key, email ids)."""
    key, emails = upgrade(request.param)
    app = create_app({**settings, "DATABASE_URL": UPGRADED_URL})
    yield app, {"X-API-Key": key}, emails
    app.extensions["emailsvc"].mailers.close()
    services = app.extensions["emailsvc"]
    for database in {id(db): db for db in (services.db, services.read_db)}.values():
        if database._pool:  # so the database can be dropped
            database._pool.closeall()
    on_server(f'DROP DATABASE IF EXISTS "{psycopg2.extensions.parse_dsn(UPGRADED_URL)["dbname"]}"')


def project_of_every_row():
    return {table: sql(f"SELECT DISTINCT project_id FROM {table}") for table in TABLES}


def test_every_key_and_row_moves_to_the_project_default(upgraded):
    assert sql("SELECT id, name FROM projects") == [(1, "default")]
    assert project_of_every_row() == {table: [(1,)] for table in TABLES}
    columns = sql(
        """SELECT table_name, is_nullable, column_default FROM information_schema.columns
           WHERE column_name = 'project_id' AND table_schema = 'public' ORDER BY table_name"""
    )
    # New rows must name their project; tables made after projects carry the column from the start,
    # and email_log_removed, which an upgrade leaves empty.
    later = (*LATER_TABLES, "mail_templates", "email_log_removed")
    assert columns == [(table, "NO", None) for table in sorted((*TABLES, *later))]
    primary_keys = dict(
        sql(
            """SELECT conrelid::regclass::text, pg_get_constraintdef(oid) FROM pg_constraint
               WHERE contype = 'p' AND conrelid::regclass::text IN ('suppressions', 'email_log_counts')"""
        )
    )
    assert primary_keys == {
        "suppressions": "PRIMARY KEY (project_id, address)",
        "email_log_counts": "PRIMARY KEY (project_id, bucket_start)",
    }
    fresh = sql("SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'", url=TEST_DATABASE_URL)
    assert sorted(sql("SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'")) == sorted(fresh)


def test_the_upgraded_service_works_with_the_keys_and_mail_it_had(upgraded):
    app, key, emails = upgraded
    client = app.test_client()
    logs = client.get("/email/logs", query_string={"page": 1, "limit": 100}, headers=key).get_json()
    assert [item["id"] for item in logs["items"]] == [str(email_id) for email_id in emails]
    assert logs["pagination"]["total"] == 5
    one = client.get(f"/email/logs/{emails[1]}", headers=key).get_json()
    assert one["status"] == "SENT" and [event["type"] for event in one["events"]] == ["pending"]
    project = client.get("/project", headers=key).get_json()
    assert project["name"] == "default" and [k["name"] for k in project["keys"]] == ["shop"]
    suppressed = client.post("/email/send", json={**KEYED_BODY, "to": "carol@example.com"}, headers=key)
    assert suppressed.status_code == 422 and suppressed.get_json()["error"]["code"] == "recipient_suppressed"
    replay = client.post("/email/send", json=KEYED_BODY, headers={**key, "Idempotency-Key": "order-42"})
    assert replay.headers.get("Idempotent-Replayed") == "true" and replay.get_json()["id"] == str(emails[0])
    assert [hook["url"] for hook in client.get("/webhooks", headers=key).get_json()["items"]] == [
        "https://hooks.example.com/a"
    ]
    new = client.post("/email/send", json={**KEYED_BODY, "to": "erin@example.com"}, headers=key)
    assert new.status_code == 201
    assert client.get("/email/logs", query_string={"page": 1}, headers=key).get_json()["pagination"]["total"] == 6


def test_the_to_filter_finds_the_mail_from_before_the_upgrade_and_after(upgraded):
    app, key, emails = upgraded
    client = app.test_client()
    new = client.post("/email/send", json={**KEYED_BODY, "to": "User1 <User1@example.com>"}, headers=key)
    for mode in ({"page": 1}, {}):
        found = client.get("/email/logs", query_string={**mode, "to": "user1@example.com"}, headers=key).get_json()
        assert sorted(item["id"] for item in found["items"]) == sorted([str(emails[1]), new.get_json()["id"]])
    offset = client.get("/email/logs", query_string={"page": 1, "to": "user3@example.com"}, headers=key).get_json()
    assert [item["id"] for item in offset["items"]] == [str(emails[3])] and offset["pagination"]["total"] == 1


def test_init_db_twice_changes_nothing(upgraded):
    app, key, _ = upgraded
    state = "SELECT * FROM email_log_counts ORDER BY 1, 2", "SELECT * FROM email_recipient_addresses ORDER BY 2, 4"
    before = (project_of_every_row(), *map(sql, state))
    init_db(UPGRADED_URL)
    init_db(UPGRADED_URL)
    assert (project_of_every_row(), *map(sql, state)) == before
    assert sql("SELECT name FROM projects") == [("default",)]
    assert app.test_client().get("/email/logs", headers=key).status_code == 200


def test_a_fresh_database_has_no_project_until_a_key_needs_one(settings):
    assert sql("SELECT count(*) FROM projects", url=TEST_DATABASE_URL) == [(0,)]
    init_db(TEST_DATABASE_URL)
    assert sql("SELECT count(*) FROM projects", url=TEST_DATABASE_URL) == [(0,)]


@pytest.mark.parametrize("upgraded", [fill_before_sender], indirect=True)
def test_the_from_filter_finds_the_mail_from_before_the_sender_column(upgraded):
    app, key, emails = upgraded
    assert sql("SELECT sender FROM emails ORDER BY created_at") == [("shop@example.com",), ("billing@example.com",),
                                                                    ("shop@example.com",)]  # fmt: skip
    assert sql("SELECT sender, status, count(*) FROM email_recipient_addresses GROUP BY 1, 2 ORDER BY 1, 2") == [
        ("billing@example.com", "FAILED", 2), ("shop@example.com", "FAILED", 2), ("shop@example.com", "SENT", 2)
    ]  # fmt: skip
    fresh = sql("SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'", url=TEST_DATABASE_URL)
    assert sorted(sql("SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'")) == sorted(fresh)
    client = app.test_client()
    for params, expected in (
        ({"from": "shop@example.com"}, [0, 2]),
        ({"from": "shop@example.com", "to": "audit@example.com"}, [0, 2]),
        ({"from": "shop@example.com", "status": "FAILED"}, [2]),
        ({"to": "audit@example.com", "status": "FAILED"}, [1, 2]),
        ({"from": "billing@example.com", "to": "dave@example.com", "status": "FAILED"}, [1]),
        ({"from": "billing@example.com", "to": "audit@example.com", "status": "SENT"}, []),
    ):
        found = client.get("/email/logs", query_string={"page": 1, **params}, headers=key).get_json()
        assert [item["id"] for item in found["items"]] == [str(emails[n]) for n in expected], params
    state = "SELECT * FROM email_recipient_addresses ORDER BY 2, 5"
    before = sql(state)
    init_db(UPGRADED_URL)
    assert sql(state) == before
