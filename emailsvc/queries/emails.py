"""SQL for the email log and its event history.

Every status change writes its event in the same statement, so the history never disagrees with
the log and each change costs one round trip; the same statement queues the change's webhooks.
"""

import base64
import functools
import json
from typing import NamedTuple

from psycopg2.extras import Json

from ..db import Prepared
from .rows import E_EMAIL_SQL, EMAIL_SQL
from .webhooks import QUEUE_WEBHOOK_TYPES, queue_webhooks_cte

INSERT_COLUMNS = (
    "id", "project_id", "api_key_id", "status", "from_addr", "to_addrs", "cc_addrs", "bcc_addrs", "reply_to",
    "subject", "body", "html", "headers", "metadata", "message_id", "scheduled_at", "template", "resent_from",
    "attachments",
)  # fmt: skip
INPUT_TYPES = {
    "id": "uuid", "project_id": "bigint", "api_key_id": "bigint", "status": "text", "from_addr": "text",
    "to_addrs": "text[]", "cc_addrs": "text[]", "bcc_addrs": "text[]", "reply_to": "text", "subject": "text",
    "body": "text", "html": "text", "headers": "jsonb", "metadata": "jsonb", "message_id": "text",
    "scheduled_at": "timestamptz", "template": "jsonb", "resent_from": "uuid", "attachments": "jsonb",
}  # fmt: skip
# The messages of one request as a table `input`: one element of the JSON array %(rows)s each, with
# INSERT_COLUMNS, `n` (the message's index) and `suppression_keys` (its recipients as the suppression
# list spells them). One parameter whatever the number of messages, so a batch is one statement.
INPUT_CTE = f"""input AS (
        SELECT * FROM jsonb_to_recordset(%(rows)s::jsonb)
            AS x(n integer, suppression_keys text[], {", ".join(f"{c} {INPUT_TYPES[c]}" for c in INSERT_COLUMNS)})
    )"""
# The recipients on the project's suppression list, per message: `n` and the sorted array `suppressed`,
# for the messages that have any. It opens every insert, so the check and the insert cost one round trip.
SUPPRESSED_CTE = """s AS (
        SELECT i.n, array_agg(p.address ORDER BY p.address) AS suppressed
        FROM input i JOIN suppressions p ON p.project_id = %(project_id)s AND p.address = ANY(i.suppression_keys)
        GROUP BY i.n
    )"""
NONE_SUPPRESSED = "NOT EXISTS (SELECT FROM s)"
# The insert as a CTE `e` (with each row's first event) that another statement can guard: it inserts
# every message or none, only when GUARD holds, e.g. when no recipient is suppressed and an idempotency
# key was free. The recipients' entries (docs/api.md) are derived from to, cc and bcc by a trigger (schema.sql).
# Content already stored is not written again, but its row is locked (DO UPDATE … WHERE false locks it),
# in SHA-256 order, so a purge deleting it at the same time waits, or is waited for and the content stored
# again (queries/retention.py, delete_unlinked_contents).
INSERT_EMAIL_CTE = f"""e AS (
        INSERT INTO emails ({", ".join(INSERT_COLUMNS)})
        SELECT {", ".join(INSERT_COLUMNS)} FROM input WHERE GUARD ORDER BY n RETURNING {EMAIL_SQL}
    ), ev AS (
        INSERT INTO email_events (email_id, type, at) SELECT id, lower(status), created_at FROM e
    ), contents AS (
        INSERT INTO attachment_contents (project_id, sha256, content)
        SELECT %(project_id)s, decode(c->>'sha256', 'hex'), decode(c->>'content', 'base64')
        FROM jsonb_array_elements(%(contents)s::jsonb) c WHERE EXISTS (SELECT FROM e) ORDER BY c->>'sha256'
        ON CONFLICT (project_id, sha256) DO UPDATE SET content = EXCLUDED.content WHERE false
    ), links AS (
        INSERT INTO email_attachments (email_id, position, project_id, sha256)
        SELECT e.id, a.n, e.project_id, decode(a.attachment->>'sha256', 'hex')
        FROM e, jsonb_array_elements(e.attachments) WITH ORDINALITY a (attachment, n)
    )"""
# The answer of an insert: the inserted rows (one row of NULLs when none), each carrying the suppressed
# recipients of every message as {"<n>": [addresses]} (NULL when none).
SELECT_INSERTED = f"""SELECT (SELECT jsonb_object_agg(n, suppressed) FROM s) AS suppressed, {E_EMAIL_SQL}
    FROM (SELECT) one LEFT JOIN e ON true"""
# Advisory lock namespace for "this message is being sent"; the second key is hashtext(id).
SENDING_LOCK = 0x656D6C  # "eml"
# This session's hold on the sending lock of message %(id)s, as pg_locks shows it (a row, or none).
HELD_LOCK = """SELECT 1 FROM pg_locks
    WHERE locktype = 'advisory' AND pid = pg_backend_pid() AND granted
      AND classid = %(lock)s AND objid = hashtext(%(id)s::text)::oid AND objsubid = 2"""
RECONCILER_LOCK = 0x72636E  # "rcn"
INSERT_TYPES = {"rows": "jsonb", "project_id": "bigint", "contents": "jsonb"}  # insert_parameters'
INSERT_EMAILS = Prepared(
    "insert_emails",
    f"WITH {INPUT_CTE}, {SUPPRESSED_CTE}, {INSERT_EMAIL_CTE.replace('GUARD', NONE_SUPPRESSED)} {SELECT_INSERTED}",
    **INSERT_TYPES,
)
# datetimes and UUIDs as PostgreSQL reads them back (str is ISO 8601 with its offset).
_dumps = functools.partial(json.dumps, default=str, separators=(",", ":"))


def insert_parameters(project_id, emails, suppression_keys):
    """Return the parameters of INPUT_CTE and SUPPRESSED_CTE: the `emails` dicts (INSERT_COLUMNS) with the
    recipients of each as the suppression list spells them (`suppression_keys`, one list per message)."""
    rows, contents = [], {}
    for n, (email, keys) in enumerate(zip(emails, suppression_keys, strict=True)):
        attachments = email.get("attachments") or []
        for attachment in attachments:  # each content once, however many messages carry it
            contents.setdefault(attachment["sha256"], attachment["content"])
        row = {column: email.get(column) for column in INSERT_COLUMNS}
        row.update(n=n, suppression_keys=list(keys), attachments=[attachment_shown(a) for a in attachments])
        rows.append(row)
    contents = [{"sha256": sha256, "content": base64.b64encode(data).decode()} for sha256, data in contents.items()]
    return {"project_id": project_id, "rows": Json(rows, dumps=_dumps), "contents": Json(contents, dumps=_dumps)}


def attachment_shown(attachment):
    """What the log keeps of a loaded attachment (emails.attachments): all but its bytes."""
    return {key: attachment[key] for key in ("filename", "content_type", "size", "content_id", "sha256")}


def attachment_contents(cur, project_id, sha256s):
    """Return {sha256 (hex): bytes} of the project's contents; only the worker reads them, to build a message."""
    cur.execute(
        """SELECT encode(sha256, 'hex') AS sha256, content FROM attachment_contents
           WHERE project_id = %s AND sha256 = ANY(%s::bytea[])""",
        (project_id, [bytes.fromhex(sha256) for sha256 in sha256s]),
    )
    return {row["sha256"]: bytes(row["content"]) for row in cur.fetchall()}


def inserted_or_suppressed(cur, emails):
    """Read the answer of a statement ending in SELECT_INSERTED: (the rows in the order of `emails`, or [] when
    none was inserted; {index: the suppressed addresses} of the messages with any)."""
    rows = cur.fetchall()
    suppressed = {int(n): addresses for n, addresses in (rows[0].pop("suppressed") or {}).items()}
    for row in rows[1:]:
        del row["suppressed"]
    if rows[0]["id"] is None:
        return [], suppressed
    by_id = {row["id"]: row for row in rows}
    return [by_id[email["id"]] for email in emails], suppressed


def insert_emails(cur, project_id, emails, suppression_keys):
    """Insert a log row with its first event for each of the `emails` dicts, all of them or none: none when a
    recipient of any is suppressed.

    `suppression_keys` are each message's recipients as the suppression list spells them. Return
    (the rows in order, {}), or ([], {index of a message: its suppressed addresses, sorted}).
    """
    INSERT_EMAILS.execute(cur, insert_parameters(project_id, emails, suppression_keys))
    return inserted_or_suppressed(cur, emails)


def get_email(cur, project_id, email_id):
    """Return one log row of the project, or None (also when it belongs to another project)."""
    cur.execute(f"SELECT {EMAIL_SQL} FROM emails WHERE id = %s AND project_id = %s", (email_id, project_id))
    return cur.fetchone()


def list_events(cur, email_id):
    """Return the events of one message, oldest first."""
    cur.execute("SELECT type, at, detail FROM email_events WHERE email_id = %s ORDER BY id", (email_id,))
    return cur.fetchall()


def _transition(cur, email_id, condition, assignments, event, detail=None, params=None, release_lock=False):
    """Change one row's status and write its event; `release_lock` releases the sending lock too. Return the
    changed row's id, or None.

    The lock is released once the row is changed and still row-locked, so a reconciler that finds the
    lock free before the commit waits on the row and then sees it no longer SENDING.
    """
    # `condition` and `assignments` are always constants of this module, never input; values go as parameters.
    cur.execute(
        f"""WITH e AS (
                UPDATE emails SET {assignments}, updated_at = now()
                WHERE id = %(id)s AND {condition} RETURNING {EMAIL_SQL}
            ), ev AS (
                INSERT INTO email_events (email_id, type, detail) SELECT id, %(event)s, %(detail)s FROM e
            ){queue_webhooks_cte(event)}
            {RELEASE_AND_SELECT if release_lock else "SELECT e.id FROM e"}""",
        {**(params or {}), "id": email_id, "event": event, "detail": detail, "lock": SENDING_LOCK},
    )
    row = cur.fetchone()
    return row and row["id"]  # None when nothing changed (no row, or the LEFT JOIN's row of NULLs)


# The end of an outcome statement whose CTE `e` holds the changed row: release the sending lock after the
# UPDATE (count(*) makes it finish, row locked, before the unlock runs, whatever the join order) and
# return the row's id, NULL when nothing changed. A CTE with a volatile function runs exactly
# once, and is never re-run when PostgreSQL rechecks a concurrently updated row.
RELEASE_AND_SELECT = """, released AS (
        SELECT pg_advisory_unlock(%(lock)s, hashtext(%(id)s::text)) FROM (SELECT count(*) FROM e) changed
    )
    SELECT e.id FROM released LEFT JOIN e ON true"""
# A message that was SENT (or has moved on with delivery events) while recipients wait for a retry.
SENT_STATUSES = ("SENT", "DELIVERED", "BOUNCED", "COMPLAINED")
WAITING_FOR_RETRY = "(retry_pending AND status IN ('SENT', 'DELIVERED', 'BOUNCED', 'COMPLAINED'))"


def refuse_waiting(reason):
    """SQL for the recipients with every one still waiting (pending or deferred) refused, `reason` (a
    parameter's placeholder) as its response."""
    return f"""coalesce((
        SELECT jsonb_agg(CASE WHEN r->>'status' IN ('pending', 'deferred')
                              THEN r || jsonb_build_object('status', 'refused', 'response', {reason}::text,
                                                           'updated_at', now())
                              ELSE r END ORDER BY n)
        FROM jsonb_array_elements(recipients) WITH ORDINALITY x(r, n)), '[]')"""


def error_without_stage(reason):
    """SQL for the last_error of a failure outside the SMTP conversation (the queue, a worker that stopped)."""
    return f"""jsonb_build_object('smtp_code', NULL, 'enhanced_status', NULL, 'retryable', false,
                                  'stage', NULL, 'message', {reason}::text)"""


class Claim(NamedTuple):
    """The answer of claim_for_sending."""

    locked: bool  # the statement took the sending lock (release it with unlock_for_sending if `row` is None)
    row: dict | None  # the claimed row; None when the lock was busy or the message not waiting
    due_in: float | None  # seconds until a SCHEDULED message not claimed is due (<= 0: due), else None


# The claim (claim_for_sending): every message runs it, so PostgreSQL plans it once per session.
CLAIM = Prepared(
    "emailsvc_claim",
    f"""WITH l AS (SELECT pg_try_advisory_lock(%(lock)s, hashtext(%(id)s::text)) AS locked), e AS (
        UPDATE emails SET attempts = attempts + 1, updated_at = now(),
            status = CASE WHEN status IN ('PENDING', 'SCHEDULED') THEN 'SENDING' ELSE status END
        WHERE id = %(id)s AND (SELECT locked FROM l) AND (
            status = 'PENDING' OR (status = 'SCHEDULED' AND scheduled_at <= now()) OR {WAITING_FOR_RETRY}
        ) RETURNING {EMAIL_SQL}
    ), ev AS (
        INSERT INTO email_events (email_id, type) SELECT id, 'sending' FROM e
    )
    SELECT l.locked,
           (SELECT extract(epoch FROM scheduled_at - now())::float FROM emails
            WHERE id = %(id)s AND status = 'SCHEDULED') AS due_in,
           {E_EMAIL_SQL}
    FROM l LEFT JOIN e ON true""",
    id="uuid",
    lock="integer",
)


def claim_for_sending(cur, email_id):
    """Take the sending lock and claim a message waiting to be sent, counting the attempt, in one statement.

    Waiting: PENDING, SCHEDULED and due (both become SENDING), or a SENT message with recipients waiting
    for a retry (its status stays). The lock is a session lock: it lives as long as the connection, so a
    worker killed mid-send loses it at once, which is how the reconciler tells an abandoned attempt
    from one a live worker is making. `due_in` lets a job that RQ started early wait for the time.
    """
    CLAIM.execute(cur, {"id": email_id, "lock": SENDING_LOCK})
    row = cur.fetchone()
    locked, due_in = row.pop("locked"), row.pop("due_in")
    return Claim(locked, row if row["id"] is not None else None, due_in)


def unlock_for_sending(cur, email_id):
    """Release the sending lock taken by claim_for_sending, when no outcome statement released it."""
    cur.execute("SELECT pg_advisory_unlock(%s, hashtext(%s::text))", (SENDING_LOCK, str(email_id)))


def release_if_held(cur, email_id):
    """Release the sending lock if this session still holds it, without PostgreSQL's warning when it does not.

    For the error path: an outcome statement that failed may or may not have released it already.
    """
    cur.execute(
        f"SELECT pg_advisory_unlock(%(lock)s, hashtext(%(id)s::text)) FROM ({HELD_LOCK}) held",
        {"lock": SENDING_LOCK, "id": str(email_id)},
    )


def holds_sending_lock(cur, email_id):
    """Return True when this session holds the message's sending lock (its claim still stands)."""
    cur.execute(f"SELECT EXISTS ({HELD_LOCK}) AS held", {"lock": SENDING_LOCK, "id": str(email_id)})
    return cur.fetchone()["held"]


# The outcome (record_attempt): every attempt runs it, so PostgreSQL plans it once per session.
RECORD = Prepared(
    "emailsvc_record_attempt",
    f"""WITH e AS (
        UPDATE emails SET
            status = coalesce(%(status)s, status),
            recipients = (
                SELECT jsonb_agg(CASE WHEN %(changes)s::jsonb ? (n - 1)::text
                                      THEN r || (%(changes)s::jsonb -> (n - 1)::text)
                                             || jsonb_build_object('updated_at', now())
                                      ELSE r END ORDER BY n)
                FROM jsonb_array_elements(recipients) WITH ORDINALITY x(r, n)),
            retry_pending = %(retry_pending)s,
            last_error = %(last_error)s,
            error_message = %(error_message)s,
            smtp_response = coalesce(%(smtp_response)s, smtp_response),
            sent_at = CASE WHEN %(status)s = 'SENT' THEN now() ELSE sent_at END,
            failed_at = CASE WHEN %(status)s = 'FAILED' THEN now() ELSE failed_at END,
            updated_at = now()
        WHERE id = %(id)s AND CASE WHEN %(was_sending)s THEN status = 'SENDING' ELSE {WAITING_FOR_RETRY} END
        RETURNING {EMAIL_SQL}
    ), ev AS (
        INSERT INTO email_events (email_id, type, detail)
        SELECT e.id, x.ev->>'type', x.ev->>'detail'
        FROM e, jsonb_array_elements(%(events)s::jsonb) WITH ORDINALITY x(ev, n) ORDER BY x.n
    ), suppressed AS (
        INSERT INTO suppressions (project_id, address, reason, email_id)
        SELECT e.project_id, unnest(%(suppress)s::text[]), 'hard_bounce', e.id FROM e
        ON CONFLICT (project_id, address) DO NOTHING
    ), {QUEUE_WEBHOOK_TYPES}{RELEASE_AND_SELECT}""",
    id="uuid", lock="integer", was_sending="boolean", status="text", changes="jsonb", retry_pending="boolean",
    last_error="jsonb", error_message="text", smtp_response="text", events="jsonb", suppress="text[]",
    webhook_types="text[]",
)  # fmt: skip


def record_attempt(cur, email_id, record, was_sending):
    """Record an attempt's AttemptRecord (emailsvc/recipients.py) in one statement, and release the sending lock.

    The recipients that changed are merged into the row's entries (a delivery event may have moved
    another one meanwhile); the events, webhooks and suppressions are written in the same statement.
    `was_sending`: the claim made the row SENDING; else it was a SENT message's background retry.
    Return the row's id, or None when it had been taken away from this attempt.
    """
    RECORD.execute(
        cur,
        {
            "id": email_id,
            "lock": SENDING_LOCK,
            "was_sending": was_sending,
            "status": record.status,
            "changes": Json(record.changes),
            "retry_pending": record.retry_pending,
            "last_error": Json(record.last_error) if record.last_error else None,
            "error_message": record.error_message,
            "smtp_response": record.smtp_response,
            "events": Json([{"type": t, "detail": d} for t, d in record.events]),
            "suppress": record.suppress,
            "webhook_types": record.webhooks,
        },
    )
    return cur.fetchone()["id"]


def mark_failed(cur, email_id, error, from_statuses=("SENDING",), release_lock=True):
    """Record that the message will not be sent (its waiting recipients refused); from SENDING, release the
    sending lock too. `release_lock=False` for a message this session is not sending (e.g. one the queue refused).
    Return the message's id, or None when it was not in one of `from_statuses`.
    """
    return _transition(
        cur, email_id, "status = ANY(%(from)s)",
        f"""status = 'FAILED', failed_at = now(), error_message = %(detail)s, retry_pending = false,
            recipients = {refuse_waiting("%(detail)s")}, last_error = {error_without_stage("%(detail)s")}""",
        "failed", error, {"from": list(from_statuses)}, release_lock=release_lock,
    )  # fmt: skip


def cancel_email(cur, project_id, email_id):
    """Cancel a message of the project that is SCHEDULED, or PENDING with no sender holding it; return the row,
    or None when it was not cancelable (or is not the project's).

    Serialised with the worker's claim twice over: both change the row only from these statuses, so one
    UPDATE waits for the other and then finds the status moved on; and the cancel needs the sending lock
    free, so a claim that has taken it (and is about to change the row) wins.
    """
    return _transition(
        cur, email_id,
        """project_id = %(project)s AND status IN ('SCHEDULED', 'PENDING')
           AND pg_try_advisory_xact_lock(%(lock)s, hashtext(%(id)s::text))""",
        "status = 'CANCELED', retry_pending = false", "canceled", params={"project": project_id},
    )  # fmt: skip


def reschedule_email(cur, project_id, email_id, at):
    """Move a SCHEDULED message of the project to `at` (None: now, as PENDING); return the row, or None when it
    was not SCHEDULED (or is not the project's). The claim takes a SCHEDULED row only once it is due, at the
    time this sets, so a job queued for the old time finds it not due and leaves it."""
    return _transition(
        cur, email_id, "project_id = %(project)s AND status = 'SCHEDULED'",
        "scheduled_at = %(at)s, status = CASE WHEN %(at)s::timestamptz IS NULL THEN 'PENDING' ELSE 'SCHEDULED' END",
        "rescheduled", "now" if at is None else at.isoformat(), params={"project": project_id, "at": at},
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
                    recipients = CASE WHEN attempts < %(max)s THEN recipients
                                      ELSE {refuse_waiting("%(failed)s")} END,
                    last_error = CASE WHEN attempts < %(max)s THEN last_error
                                      ELSE {error_without_stage("%(failed)s")} END,
                    retry_pending = attempts < %(max)s AND retry_pending,
                    updated_at = now()
                WHERE id IN (SELECT id FROM abandoned) AND status = 'SENDING'
                RETURNING {EMAIL_SQL}
            ), ev AS (
                INSERT INTO email_events (email_id, type, detail)
                SELECT id, CASE status WHEN 'PENDING' THEN 'attempt_abandoned' ELSE 'failed' END,
                       CASE status WHEN 'PENDING' THEN %(retry)s ELSE %(failed)s END
                FROM settled
            ), e AS (
                SELECT {EMAIL_SQL} FROM settled WHERE status = 'FAILED'  -- those that failed notify their webhooks
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


def settle_abandoned_retries(cur, max_attempts, note, limit=500):
    """Refuse for good the recipients still deferred on SENT messages whose last attempt no live sender holds.

    Such a row has used its attempts, yet says a retry is pending: its worker stopped before recording
    the outcome of the last attempt (an outcome recorded on the last attempt clears retry_pending).
    Return the settled rows' ids; each notifies `email.recipient_failed`.
    """
    cur.execute(
        f"""WITH abandoned AS (
                SELECT id, (SELECT string_agg(r->>'address', ', ') FROM jsonb_array_elements(recipients) r
                            WHERE r->>'status' IN ('pending', 'deferred')) AS addresses
                FROM (
                    SELECT id, recipients FROM emails
                    WHERE {WAITING_FOR_RETRY} AND attempts >= %(max)s ORDER BY updated_at, id LIMIT %(limit)s
                ) retrying
                WHERE pg_try_advisory_xact_lock(%(lock)s, hashtext(id::text))
            ), e AS (
                UPDATE emails SET recipients = {refuse_waiting("%(note)s")}, retry_pending = false,
                    last_error = {error_without_stage("%(note)s")}, updated_at = now()
                WHERE id IN (SELECT id FROM abandoned) AND {WAITING_FOR_RETRY} AND attempts >= %(max)s
                RETURNING {EMAIL_SQL}
            ), ev AS (
                INSERT INTO email_events (email_id, type, detail)
                SELECT id, 'recipient_refused', a.addresses || ': ' || %(note)s FROM e JOIN abandoned a USING (id)
            ){queue_webhooks_cte("recipient_failed")}
            SELECT id FROM e""",
        {"limit": limit, "lock": SENDING_LOCK, "max": max_attempts, "note": note, "event": "recipient_failed"},
    )
    return [row["id"] for row in cur.fetchall()]


def list_waiting(cur, older_than, after=None, limit=500):
    """Return a page of (id, updated_at) of rows waiting for a job: PENDING, SCHEDULED and due, or SENT with
    recipients waiting for a retry.

    Only rows unchanged for `older_than` seconds, so a request between its insert and its enqueue is
    never mistaken for a lost job. Keyset pages: pass the last row's (updated_at, id) as `after`.
    """
    cur.execute(
        f"""SELECT id, updated_at FROM emails
           WHERE (status IN ('SCHEDULED', 'PENDING', 'SENDING') OR retry_pending)
             AND (status = 'PENDING' OR (status = 'SCHEDULED' AND scheduled_at <= now()) OR {WAITING_FOR_RETRY})
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
