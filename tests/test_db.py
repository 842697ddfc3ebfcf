"""schema.sql: applying it again upgrades a database written by an earlier version, and changes nothing else."""

import psycopg2
import psycopg2.extensions
import psycopg2.extras
from conftest import wait_for

from emailsvc.db import Database, Prepared, init_db


def test_applying_the_schema_again_gives_older_rows_their_recipients(database):
    url = database + "_upgrade"
    init_db(url)
    conn = psycopg2.connect(url, cursor_factory=psycopg2.extras.RealDictCursor)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            # The emails table as it was before per-recipient outcomes, with a sent and a pending row.
            cur.execute("TRUNCATE emails CASCADE")
            cur.execute("ALTER TABLE emails DROP COLUMN recipients CASCADE, DROP COLUMN last_error, "
                        "DROP COLUMN retry_pending CASCADE")  # fmt: skip
            cur.execute("DROP TRIGGER emails_fill_recipients ON emails; DROP TABLE email_recipient_addresses")
            cur.execute("INSERT INTO projects (name) VALUES ('default') ON CONFLICT (name) DO NOTHING")
            cur.execute(
                """INSERT INTO emails (id, project_id, status, from_addr, to_addrs, cc_addrs, subject, message_id,
                                       attempts)
                   SELECT gen_random_uuid(), p.id, v.* FROM projects p, (VALUES
                       ('SENT', 'a@example.com', '{"Bob <Bob@example.com>"}'::text[], '{c@example.com}'::text[],
                        's', '<1@example.com>', 2),
                       ('PENDING', 'a@example.com', '{d@example.com}', '{}', 's', '<2@example.com>', 1)) v
                   WHERE p.name = 'default'"""
            )
        init_db(url)
        init_db(url)  # and again: nothing changes
        with conn.cursor() as cur:
            cur.execute("SELECT status, recipients, last_error, retry_pending FROM emails ORDER BY status DESC")
            sent, pending = cur.fetchall()
    finally:
        conn.close()
        _drop_database(url)
    assert [(r["address"], r["field"], r["status"], r["attempts"]) for r in sent["recipients"]] == [
        ("Bob@example.com", "to", "accepted", 2), ("c@example.com", "cc", "accepted", 2)
    ]  # fmt: skip
    assert [(r["address"], r["status"], r["attempts"]) for r in pending["recipients"]] == [
        ("d@example.com", "pending", 0)
    ]
    assert (sent["last_error"], sent["retry_pending"]) == (None, False)


def _drop_database(url):
    params = psycopg2.extensions.parse_dsn(url)
    name = params.pop("dbname")
    admin = psycopg2.connect(**{**params, "dbname": "postgres"})
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}"')
    admin.close()


def test_a_prepared_statement_runs_again_on_its_connection_after_it_failed(database):
    divide = Prepared("test_divide", "SELECT 12 / %(by)s AS quotient, %(by)s AS by", by="integer")
    db = Database(database, max_connections=1)
    answers = []
    for by in (3, 0, 4):
        try:
            with db.cursor() as cur:
                divide.execute(cur, {"by": by})
                answers.append(cur.fetchone()["quotient"])
        except psycopg2.errors.DivisionByZero:
            answers.append("refused")
    with db.cursor() as cur:
        cur.execute("SELECT count(*) AS n FROM pg_prepared_statements WHERE name = 'test_divide'")
        assert cur.fetchone()["n"] == 1  # prepared once on the one connection, the failure included
    assert answers == [4, "refused", 3]


def test_closing_the_database_ends_its_sessions_and_their_locks(database):
    db = Database(database)
    with db.cursor() as cur:
        cur.execute("SELECT pg_advisory_lock(4242, 1), pg_backend_pid() AS pid")
        pid = cur.fetchone()["pid"]
    db.close()
    conn = psycopg2.connect(database)
    conn.autocommit = True
    with conn.cursor() as cur:

        def lock_taken():  # the server ends the session once it reads the closed socket, soon but not at once
            cur.execute("SELECT pg_try_advisory_lock(4242, 1)")
            return cur.fetchone()[0]

        wait_for(lock_taken, message="the closed session's lock to be released")
        cur.execute("SELECT pg_advisory_unlock(4242, 1)")
    conn.close()
    with db.cursor() as cur:  # the next cursor opens a connection anew
        cur.execute("SELECT pg_backend_pid() AS pid")
        assert cur.fetchone()["pid"] != pid
    db.close()


def test_a_prepared_statement_is_prepared_once_per_session_and_answers_like_the_plain_one(database):
    statement = Prepared("test_prepared", "SELECT %(id)s::text AS text, %(id)s = %(other)s AS same", id="uuid",
                         other="uuid")  # fmt: skip
    ids = {"id": "6f1c3e1e-0b5a-4bb1-9a43-2a4cc1b1e0a1", "other": "6f1c3e1e-0b5a-4bb1-9a43-2a4cc1b1e0a1"}
    db = Database(database, max_connections=1)
    with db.cursor() as cur:
        for _ in range(3):
            statement.execute(cur, ids)
            assert cur.fetchone() == {"text": ids["id"], "same": True}
        cur.execute("SELECT count(*) AS n FROM pg_prepared_statements WHERE name = 'test_prepared'")
        assert cur.fetchone()["n"] == 1
    db.close()
    with psycopg2.connect(database) as conn, conn.cursor() as cur:  # not a pool's connection: plain SQL
        statement.execute(cur, ids)
        assert cur.fetchone() == (ids["id"], True)


def test_rows_come_back_as_dicts_of_their_columns_in_order_however_they_are_read(database):
    db = Database(database)
    try:
        with db.cursor() as cur:
            query = "SELECT n, 'row ' || n AS label, NULL::jsonb AS extra FROM generate_series(1, 3) n"
            cur.execute(query + " WHERE false")
            assert cur.fetchone() is None and cur.fetchall() == [] and cur.fetchmany(2) == []
            cur.execute(query)
            first = cur.fetchone()
            assert type(first) is dict and list(first) == ["n", "label", "extra"]
            assert first == {"n": 1, "label": "row 1", "extra": None}
            assert cur.fetchmany(1) == [{"n": 2, "label": "row 2", "extra": None}]
            assert [row["n"] for row in cur] == [3]
            cur.execute(query)
            assert [row["label"] for row in cur.fetchall()] == ["row 1", "row 2", "row 3"]
    finally:
        db.close()
