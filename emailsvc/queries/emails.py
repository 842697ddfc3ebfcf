"""SQL for the email log and its event history.

Every status change writes its event in the same statement, so the history never disagrees with
the log and each change costs one round trip; the same statement queues the change's webhooks.
"""

from psycopg2.extras import Json

from .webhooks import queue_webhooks_cte

INSERT_COLUMNS = (
    "id", "project_id", "api_key_id", "status", "from_addr", "to_addrs", "cc_addrs", "bcc_addrs", "reply_to",
    "subject", "body", "html", "headers", "metadata", "message_id", "scheduled_at",
)  # fmt: skip
# The recipients on the project's suppression list, as the sorted array `s.suppressed` (empty when
# none): the CTE that opens every insert, so the check and the insert cost one round trip together.
SUPPRESSED_CTE = """s AS (
        SELECT coalesce(array_agg(address ORDER BY address), '{}') AS suppressed
        FROM suppressions WHERE project_id = %(project_id)s AND address = ANY(%(suppression_keys)s)
    )"""
NONE_SUPPRESSED = "(SELECT cardinality(suppressed) = 0 FROM s)"
# The insert as a CTE `e` (with its first event) that another statement can guard: it inserts only
# when GUARD holds, e.g. when no recipient is suppressed and an idempotency key was free.
INSERT_EMAIL_CTE = f"""e AS (
        INSERT INTO emails ({", ".join(INSERT_COLUMNS)})
        SELECT {", ".join(f"%({c})s" for c in INSERT_COLUMNS)} WHERE GUARD RETURNING *
    ), ev AS (
        INSERT INTO email_events (email_id, type, at) SELECT id, lower(status), created_at FROM e
    )"""
# Advisory lock namespace for "this message is being sent"; the second key is hashtext(id).
SENDING_LOCK = 0x656D6C  # "eml"
RECONCILER_LOCK = 0x72636E  # "rcn"


def email_parameters(email, suppression_keys):
    """Return the query parameters of SUPPRESSED_CTE and INSERT_EMAIL_CTE for the `email` dict."""
    return {
        **email,
        "headers": Json(email["headers"]),
        "metadata": Json(email["metadata"]),
        "suppression_keys": list(suppression_keys),
    }


def inserted_or_suppressed(cur):
    """Read the answer of a statement ending in SELECT_INSERTED: (the row or None, suppressed addresses)."""
    result = cur.fetchone()
    suppressed = result.pop("suppressed")
    return (result if result["id"] is not None else None), suppressed


# One answer row whatever happened: the suppressed addresses, and the inserted row's columns (NULL if none).
SELECT_INSERTED = "SELECT s.suppressed, e.* FROM s LEFT JOIN e ON true"


def insert_email(cur, email, suppression_keys):
    """Insert a log row from the `email` dict with its first event unless a recipient is suppressed.

    `suppression_keys` are the recipients as the suppression list spells them. Return (the row,
    []), or (None, the suppressed addresses, sorted).
    """
    cur.execute(
        f"WITH {SUPPRESSED_CTE}, {INSERT_EMAIL_CTE.replace('GUARD', NONE_SUPPRESSED)} {SELECT_INSERTED}",
        email_parameters(email, suppression_keys),
    )
    return inserted_or_suppressed(cur)


def get_email(cur, project_id, email_id):
    """Return one log row of the project, or None (also when it belongs to another project)."""
    cur.execute("SELECT * FROM emails WHERE id = %s AND project_id = %s", (email_id, project_id))
    return cur.fetchone()


def list_events(cur, email_id):
    """Return the events of one message, oldest first."""
    cur.execute("SELECT type, at, detail FROM email_events WHERE email_id = %s ORDER BY id", (email_id,))
    return cur.fetchall()


def _transition(cur, email_id, condition, assignments, event, detail=None, params=None, lock=None):
    """Change one row's status and write its event; `lock` "take" or "release" does the sending lock too.

    "take": the statement first tries the sending lock and changes the row only if it got it; it returns
    the row with a `locked` column (the row's other columns are NULL when it did not change: the caller
    must release a lock taken for nothing). "release": the lock is released once the row is changed and
    still row-locked, so a reconciler that finds the lock free before the commit waits on the row and
    then sees it no longer SENDING. The lock is tried or released exactly once: a CTE with a volatile
    function is evaluated once, and never re-run when PostgreSQL rechecks a concurrently updated row.
    """
    # `condition` and `assignments` are always constants of this module, never input; values go as parameters.
    head, select = "", "SELECT * FROM e"
    if lock == "take":
        head = "l AS (SELECT pg_try_advisory_lock(%(lock)s, hashtext(%(id)s::text)) AS locked), "
        condition = f"({condition}) AND (SELECT locked FROM l)"
        select = "SELECT l.locked, e.* FROM l LEFT JOIN e ON true"
    elif lock == "release":
        # count(*) makes the UPDATE finish (row locked) before the unlock runs, whatever the join order.
        select = """, released AS (
                SELECT pg_advisory_unlock(%(lock)s, hashtext(%(id)s::text)) FROM (SELECT count(*) FROM e) changed
            )
            SELECT e.* FROM released LEFT JOIN e ON true"""
    cur.execute(
        f"""WITH {head}e AS (
                UPDATE emails SET {assignments}, updated_at = now()
                WHERE id = %(id)s AND {condition} RETURNING *
            ), ev AS (
                INSERT INTO email_events (email_id, type, detail) SELECT id, %(event)s, %(detail)s FROM e
            ){queue_webhooks_cte(event)}
            {select}""",
        {**(params or {}), "id": email_id, "event": event, "detail": detail, "lock": SENDING_LOCK},
    )
    row = cur.fetchone()
    if lock == "release" and row["id"] is None:
        return None  # the LEFT JOIN's row when nothing changed
    return row


def claim_for_sending(cur, email_id):
    """Take the sending lock and move a waiting message (PENDING, or SCHEDULED and due) to SENDING, counting the
    attempt, in one statement. Return (locked, row): row None when the lock was busy or the message not waiting.

    The lock is a session lock: it lives as long as the connection, so a worker killed mid-send loses it
    at once, which is how the reconciler tells an abandoned SENDING row from one a live worker is
    sending. When `locked` is True and `row` None, the caller releases it with unlock_for_sending.
    """
    row = _transition(
        cur, email_id, "(status = 'PENDING' OR (status = 'SCHEDULED' AND scheduled_at <= now()))",
        "status = 'SENDING', attempts = attempts + 1", "sending", lock="take",
    )  # fmt: skip
    locked = row.pop("locked")
    return locked, (row if row["id"] is not None else None)


def unlock_for_sending(cur, email_id):
    """Release the sending lock taken by claim_for_sending, when no outcome statement released it."""
    cur.execute("SELECT pg_advisory_unlock(%s, hashtext(%s::text))", (SENDING_LOCK, str(email_id)))


def release_if_held(cur, email_id):
    """Release the sending lock if this session still holds it, without PostgreSQL's warning when it does not.

    For the error path: an outcome statement that failed may or may not have released it already.
    """
    cur.execute(
        """SELECT pg_advisory_unlock(%(lock)s, hashtext(%(id)s::text)) FROM pg_locks
           WHERE locktype = 'advisory' AND pid = pg_backend_pid() AND granted
             AND classid = %(lock)s AND objid = hashtext(%(id)s::text)::oid AND objsubid = 2""",
        {"lock": SENDING_LOCK, "id": str(email_id)},
    )


def mark_sent(cur, email_id, smtp_response):
    """Record a successful hand-over to the SMTP server and release the sending lock."""
    return _transition(
        cur, email_id, "status = 'SENDING'",
        "status = 'SENT', sent_at = now(), smtp_response = %(detail)s, error_message = NULL",
        "sent", smtp_response, lock="release",
    )  # fmt: skip


def mark_retrying(cur, email_id, error):
    """Record a transient failure, put the message back to wait for its retry, and release the sending lock."""
    return _transition(
        cur, email_id, "status = 'SENDING'", "status = 'PENDING', error_message = %(detail)s",
        "attempt_failed", error, lock="release",
    )  # fmt: skip


def mark_failed(cur, email_id, error, from_statuses=("SENDING",), release_lock=True):
    """Record that the message will not be sent; from SENDING, release the sending lock too.

    `release_lock=False` for a message this session is not sending (e.g. one the queue refused).
    """
    return _transition(
        cur, email_id, "status = ANY(%(from)s)",
        "status = 'FAILED', failed_at = now(), error_message = %(detail)s",
        "failed", error, {"from": list(from_statuses)}, lock="release" if release_lock else None,
    )  # fmt: skip


def settle_abandoned(cur, max_attempts, retry_note, failed_note, limit=500):
    """Move SENDING rows that no live sender holds back to PENDING, or to FAILED once attempts are used up.

    Return the settled rows' (id, status). Only rows whose sending lock is free are touched; the
    lock is tried on SENDING rows alone (the LIMIT keeps the planner from trying it on others).
    """
    cur.execute(
        f"""WITH abandoned AS (
                SELECT id FROM (
                    SELECT id FROM emails WHERE status = 'SENDING' ORDER BY updated_at, id LIMIT %(limit)s
                ) sending
                WHERE pg_try_advisory_xact_lock(%(lock)s, hashtext(id::text))
            ), settled AS (
                UPDATE emails SET
                    status = CASE WHEN attempts < %(max)s THEN 'PENDING' ELSE 'FAILED' END,
                    failed_at = CASE WHEN attempts < %(max)s THEN failed_at ELSE now() END,
                    error_message = CASE WHEN attempts < %(max)s THEN error_message ELSE %(failed)s END,
                    updated_at = now()
                WHERE id IN (SELECT id FROM abandoned) AND status = 'SENDING'
                RETURNING *
            ), ev AS (
                INSERT INTO email_events (email_id, type, detail)
                SELECT id, CASE status WHEN 'PENDING' THEN 'attempt_abandoned' ELSE 'failed' END,
                       CASE status WHEN 'PENDING' THEN %(retry)s ELSE %(failed)s END
                FROM settled
            ), e AS (
                SELECT * FROM settled WHERE status = 'FAILED'  -- those that failed notify their webhooks
            ){queue_webhooks_cte("failed")}
            SELECT id, status FROM settled""",
        {
            "limit": limit,
            "lock": SENDING_LOCK,
            "max": max_attempts,
            "retry": retry_note,
            "failed": failed_note,
            "event": "failed",
        },
    )
    return cur.fetchall()


def list_waiting(cur, older_than, after=None, limit=500):
    """Return a page of (id, updated_at) of rows waiting for a job: PENDING, or SCHEDULED and due.

    Only rows unchanged for `older_than` seconds, so a request between its insert and its enqueue is
    never mistaken for a lost job. Keyset pages: pass the last row's (updated_at, id) as `after`.
    """
    cur.execute(
        """SELECT id, updated_at FROM emails
           WHERE status IN ('SCHEDULED', 'PENDING', 'SENDING')
             AND (status = 'PENDING' OR (status = 'SCHEDULED' AND scheduled_at <= now()))
             AND updated_at < now() - make_interval(secs => %(older_than)s)
             AND (%(after_at)s::timestamptz IS NULL OR (updated_at, id) > (%(after_at)s, %(after_id)s::uuid))
           ORDER BY updated_at, id LIMIT %(limit)s""",
        {"older_than": older_than, "after_at": after and after[0], "after_id": after and after[1], "limit": limit},
    )
    return cur.fetchall()


def lock_reconciler(cur):
    """Take the session lock that lets one reconciler pass run at a time; False if another holds it."""
    cur.execute("SELECT pg_try_advisory_lock(%s, 0) AS locked", (RECONCILER_LOCK,))
    return cur.fetchone()["locked"]


def unlock_reconciler(cur):
    """Release the lock taken by lock_reconciler."""
    cur.execute("SELECT pg_advisory_unlock(%s, 0)", (RECONCILER_LOCK,))
