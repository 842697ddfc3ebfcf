"""Retention: old content and old rows go, in small batches, and the log's totals and today's counts stay exact."""

import threading
import uuid
from datetime import UTC, datetime, time, timedelta
from time import monotonic

import psycopg2
import psycopg2.extras
import pytest
from conftest import PYTHON, make_key, wait_for

from emailsvc import retention
from emailsvc.queries.retention import lock_retention, unlock_retention

NOW = datetime.now(UTC)
DAY = timedelta(days=1)


def sql(database, statement, params=None):
    conn = psycopg2.connect(database, cursor_factory=psycopg2.extras.RealDictCursor)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(statement, params)
            return cur.fetchall() if cur.description else None
    finally:
        conn.close()


def add(database, project="default", status="SENT", created=NOW, sent=None, failed=None, retry_pending=False):
    """Insert one message with a body, html, a header and an event, as the API and the worker would leave it."""
    email_id = str(uuid.uuid4())
    sql(database, "INSERT INTO projects (name) VALUES (%s) ON CONFLICT (name) DO NOTHING", (project,))
    sql(
        database,
        """WITH e AS (
               INSERT INTO emails (id, project_id, status, from_addr, to_addrs, subject, body, html, headers,
                                   message_id, created_at, sent_at, failed_at, retry_pending)
               VALUES (%(id)s, (SELECT id FROM projects WHERE name = %(project)s), %(status)s, 'shop@example.com',
                       '{alice@example.com}', 'Hello', 'the body', '<p>the html</p>', '{"X-Campaign": "nov"}',
                       %(message_id)s, %(created)s, %(sent)s, %(failed)s, %(retry)s)
               RETURNING id, created_at)
           INSERT INTO email_events (email_id, type, at) SELECT id, 'pending', created_at FROM e""",
        {"id": email_id, "project": project, "status": status, "message_id": f"<{email_id}@example.com>",
         "created": created, "sent": sent, "failed": failed, "retry": retry_pending},
    )  # fmt: skip
    return email_id


def today_counts(database, project="default"):
    """Today's created, sent and failed in UTC, counted from the rows themselves."""
    start = datetime.combine(NOW.date(), time(), UTC)
    [row] = sql(
        database,
        """SELECT count(*) FILTER (WHERE created_at >= %(s)s AND created_at < %(e)s) AS created,
                  count(*) FILTER (WHERE sent_at >= %(s)s AND sent_at < %(e)s) AS sent,
                  count(*) FILTER (WHERE failed_at >= %(s)s AND failed_at < %(e)s) AS failed
           FROM emails WHERE project_id = (SELECT id FROM projects WHERE name = %(p)s)""",
        {"s": start, "e": start + DAY, "p": project},
    )
    return dict(row)


def page(client, headers, **params):
    response = client.get("/email/logs", query_string={"tz": "UTC", **params}, headers=headers)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def run_purge(app, **kwargs):
    with app.app_context():
        return {step.name: removed for step, _, removed in retention.purge(app.config, **kwargs)}


@pytest.fixture
def shop(app):
    return {"Authorization": f"Bearer {make_key(app, project='shop')}"}


def test_content_past_its_days_goes_and_the_row_its_events_and_its_counts_stay(client, app, auth, database):
    old = add(database, created=NOW - 40 * DAY, sent=NOW - 40 * DAY)
    failed = add(database, status="FAILED", created=NOW - 31 * DAY, failed=NOW - 31 * DAY)
    waiting = add(database, status="SCHEDULED", created=NOW - 40 * DAY)  # its send_at is still to come
    retrying = add(database, created=NOW - 40 * DAY, sent=NOW - 40 * DAY, retry_pending=True)
    recent = add(database, created=NOW - 29 * DAY, sent=NOW - 29 * DAY)
    today = add(database, sent=NOW)
    before = page(client, auth, page=1)
    assert run_purge(app) == {"log rows": 0, "message content": 2}
    purged = client.get(f"/email/logs/{old}", headers=auth).get_json()
    assert (purged["body"], purged["html"], purged["subject"]) == (None, None, "Hello")
    assert datetime.fromisoformat(purged["content_purged_at"]) >= NOW and purged["events"]
    rows = {r["id"]: r for r in sql(database, "SELECT id::text, body, headers, content_purged_at FROM emails")}
    assert rows[failed]["body"] is None and rows[failed]["headers"] == {}
    for kept in (waiting, retrying, recent, today):
        assert rows[kept]["body"] == "the body" and rows[kept]["content_purged_at"] is None
    after = page(client, auth, page=1)
    assert after["pagination"]["total"] == before["pagination"]["total"] == 6
    assert after["today"] == before["today"]
    assert run_purge(app) == {"log rows": 0, "message content": 0}  # nothing twice


def test_rows_past_their_days_go_with_their_events_and_totals_and_today_stay_exact(client, app, auth, shop, database):
    old = [add(database, created=NOW - (400 + n) * DAY, sent=NOW - (400 + n) * DAY) for n in range(5)]
    old_failed = add(database, status="FAILED", created=NOW - 370 * DAY, failed=NOW - 370 * DAY)
    # Created long ago, sent today: its removal must take today's `sent` down by one, exactly.
    late = add(database, created=NOW - 366 * DAY, sent=NOW - timedelta(minutes=30))
    stuck = add(database, status="PENDING", created=NOW - 400 * DAY)  # never finished: kept
    kept = [add(database, created=NOW - n * DAY, sent=NOW - n * DAY) for n in range(0, 60, 6)]
    add(database, status="FAILED", failed=NOW)
    shop_old = [add(database, "shop", created=NOW - 500 * DAY, sent=NOW - 500 * DAY) for _ in range(3)]
    shop_new = add(database, "shop", sent=NOW)
    page(client, auth, page=1), page(client, shop, page=1)  # readers have filled the running totals
    before_shop = page(client, shop, page=1)

    assert run_purge(app) == {"log rows": 7 + 3, "message content": 5}  # kept rows 30 days old or more

    for email_id in [*old, old_failed, late, *shop_old]:
        assert client.get(f"/email/logs/{email_id}", headers=auth).status_code == 404
    assert sql(database, "SELECT count(*) AS n FROM email_events WHERE email_id = ANY(%s::uuid[])",
               ([*old, old_failed, late, *shop_old],))[0]["n"] == 0  # fmt: skip
    mine = page(client, auth, page=1, limit=100)
    assert mine["pagination"]["total"] == len(kept) + 2 and {stuck, *kept} <= {item["id"] for item in mine["items"]}
    # The `to` filter's rows went with their messages: its exact total counts them (schema.sql).
    assert page(client, auth, page=1, to="alice@example.com")["pagination"]["total"] == len(kept) + 2
    assert sql(database, "SELECT count(*) AS n FROM email_recipient_addresses WHERE id = ANY(%s::uuid[])",
               ([*old, old_failed, late, *shop_old],))[0]["n"] == 0  # fmt: skip
    assert {k: mine["today"][k] for k in ("created", "sent", "failed")} == today_counts(database)
    theirs = page(client, shop, page=1)
    assert theirs["pagination"]["total"] == 1 and theirs["items"][0]["id"] == shop_new
    assert theirs["today"] == before_shop["today"]
    # Deep pages read from the running totals land on the same rows as a walk from the first row.
    mine_sql = "SELECT id::text FROM emails WHERE project_id = (SELECT id FROM projects WHERE name = 'default')"
    ids = [r["id"] for r in sql(database, mine_sql + " ORDER BY created_at, id")]
    walked = [item["id"] for n in range(1, 5) for item in page(client, auth, page=n, limit=3)["items"]]
    assert walked == ids
    cursor = page(client, auth, limit=100)
    assert [item["id"] for item in cursor["items"]] == ids[::-1]


def test_the_metrics_totals_never_go_down_when_rows_go(client, app, auth, database, settings):
    operator = {"Authorization": f"Bearer {make_key(app, scopes=('operator',))}"}
    for n in range(4):
        add(database, created=NOW - (400 + n) * DAY, sent=NOW - (400 + n) * DAY)
    add(database, sent=NOW)

    def totals():
        text = client.get("/metrics", headers=operator).get_data(as_text=True)
        return [line for line in text.splitlines() if line.startswith(("emailsvc_messages_accepted_total",
                                                                       "emailsvc_messages_sent_total"))]  # fmt: skip

    before = totals()
    assert run_purge(app)["log rows"] == 4
    assert totals() == before and any(line.endswith(" 5.0") for line in before)


def test_a_dry_run_counts_and_removes_nothing(app, runner, database):
    add(database, created=NOW - 400 * DAY, sent=NOW - 400 * DAY)
    add(database, created=NOW - 40 * DAY, sent=NOW - 40 * DAY)
    result = runner.invoke(args=["purge", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "Log rows would be deleted: 1 messages" in result.output
    assert "Message content would be deleted: 2 messages" in result.output  # the old row's content too
    assert sql(database, "SELECT count(*) AS n FROM emails WHERE content_purged_at IS NULL")[0]["n"] == 2
    result = runner.invoke(args=["purge"])
    assert "Log rows deleted: 1 messages" in result.output and "Message content deleted: 1 messages" in result.output


def test_zero_days_keeps_for_ever(settings, database):
    from emailsvc import create_app

    app = create_app({**settings, "BODY_RETENTION_DAYS": "0", "LOG_RETENTION_DAYS": "0"})
    add(database, created=NOW - 4000 * DAY, sent=NOW - 4000 * DAY)
    result = app.test_cli_runner().invoke(args=["purge"])
    assert "Log rows: kept for ever (LOG_RETENTION_DAYS=0)." in result.output
    assert sql(database, "SELECT count(*) AS n FROM emails WHERE body IS NOT NULL")[0]["n"] == 1


def test_one_pass_at_a_time_and_a_stop_between_batches(app, runner, database, monkeypatch):
    with app.app_context(), app.extensions["emailsvc"].db.cursor() as cur:
        assert lock_retention(cur)
        try:
            result = runner.invoke(args=["purge"])
            assert result.exit_code != 0 and "Another purge is running" in result.output
        finally:
            unlock_retention(cur)
    monkeypatch.setattr(retention, "BATCH", 2)
    for n in range(5):
        add(database, created=NOW - (400 + n) * DAY, sent=NOW - (400 + n) * DAY)
    asked = []

    def stop_after_one_batch():
        asked.append(True)
        return len(asked) > 1

    assert run_purge(app, should_stop=stop_after_one_batch)["log rows"] == 2
    assert run_purge(app)["log rows"] == 3


def test_the_workers_supervisor_purges_when_it_starts(app, processes, database):
    old = add(database, created=NOW - 400 * DAY, sent=NOW - 400 * DAY)
    body = add(database, created=NOW - 40 * DAY, sent=NOW - 40 * DAY)
    processes.start(PYTHON, "worker.py", name="worker")
    wait_for(lambda: not sql(database, "SELECT 1 FROM emails WHERE id = %s", (old,)), timeout=30,
             message="the old row to be deleted")  # fmt: skip
    purged = "SELECT content_purged_at AS at FROM emails WHERE id = %s"
    wait_for(lambda: sql(database, purged, (body,))[0]["at"], timeout=30, message="the old body to be purged")


def test_attachment_content_goes_with_the_last_message_that_carries_it(client, app, auth, database):
    pdf = {"filename": "invoice.pdf", "content": "JVBERi0xLjQK"}  # the same bytes in both messages: stored once
    sent = [client.post("/email/send", headers=auth, json={"to": "alice@example.com", "subject": "Invoice",
                                                           "body": "Attached.", "attachments": [pdf]})
            for _ in range(2)]  # fmt: skip
    first, second = (response.get_json()["id"] for response in sent)

    def age(email_id):
        sql(database, "UPDATE emails SET status = 'SENT', sent_at = %s, created_at = %s WHERE id = %s",
            (NOW - 40 * DAY, NOW - 40 * DAY, email_id))  # fmt: skip

    def contents():
        return sql(database, "SELECT count(*) AS n FROM attachment_contents")[0]["n"]

    assert contents() == 1
    age(first)
    assert run_purge(app)["message content"] == 1
    assert contents() == 1  # the second message still carries it
    log = client.get(f"/email/logs/{first}", headers=auth).get_json()
    assert log["content_purged_at"] and log["attachments"][0]["filename"] == "invoice.pdf"  # what it carried
    age(second)
    assert run_purge(app)["message content"] == 1
    assert contents() == 0


def test_a_send_racing_the_purge_of_the_same_attachment_keeps_its_content(app, auth, database):
    # The purge deletes content its last carrier loses, while a send links the same content (same
    # project and SHA-256): whichever wins, every link must have its content, and the send its 201.
    pdf = {"filename": "invoice.pdf", "content": "JVBERi0xLjQK"}
    body = {"to": "alice@example.com", "subject": "Invoice", "body": "Attached.", "attachments": [pdf]}
    answers, deadline, rounds = [], monotonic() + 20, 0
    assert app.test_client().post("/email/send", headers=auth, json=body).status_code == 201

    def send(start):
        start.wait()
        answers.append(app.test_client().post("/email/send", headers=auth, json=body).status_code)

    def purge(start):
        start.wait()
        run_purge(app)

    while rounds < 40 and monotonic() < deadline:
        rounds += 1
        old = {"at": NOW - 40 * DAY}
        sql(database, "UPDATE emails SET status = 'SENT', sent_at = %(at)s, created_at = %(at)s", old)
        start = threading.Barrier(2)
        threads = [threading.Thread(target=task, args=(start,)) for task in (send, purge)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        [dangling] = sql(
            database,
            """SELECT count(*) AS n FROM email_attachments a WHERE NOT EXISTS (
            SELECT FROM attachment_contents c WHERE c.project_id = a.project_id AND c.sha256 = a.sha256)""",
        )
        assert dangling["n"] == 0, f"round {rounds}: a link to purged content"
    assert set(answers) == {201} and rounds >= 5
