"""SQL for the email log and its event history.

Every status change writes its event in the same statement, so the history never disagrees with
the log and each change costs one round trip; the same statement queues the change's webhooks.
"""

from psycopg2.extras import Json

from .webhooks import queue_webhooks_cte

INSERT_COLUMNS = (
    "id", "api_key_id", "status", "from_addr", "to_addrs", "cc_addrs", "bcc_addrs", "reply_to",
    "subject", "body", "html", "headers", "metadata", "message_id", "scheduled_at",
)  # fmt: skip


def insert_email(cur, email):
    """Insert a log row from the `email` dict with its first event, and return the row."""
    values = {**email, "headers": Json(email["headers"]), "metadata": Json(email["metadata"])}
    cur.execute(
        f"""WITH e AS (
                INSERT INTO emails ({", ".join(INSERT_COLUMNS)})
                VALUES ({", ".join(f"%({c})s" for c in INSERT_COLUMNS)}) RETURNING *
            ), ev AS (
                INSERT INTO email_events (email_id, type, at) SELECT id, lower(status), created_at FROM e
            )
            SELECT * FROM e""",
        values,
    )
    return cur.fetchone()


def get_email(cur, email_id):
    """Return one log row, or None."""
    cur.execute("SELECT * FROM emails WHERE id = %s", (email_id,))
    return cur.fetchone()


def list_events(cur, email_id):
    """Return the events of one message, oldest first."""
    cur.execute("SELECT type, at, detail FROM email_events WHERE email_id = %s ORDER BY id", (email_id,))
    return cur.fetchall()


def _transition(cur, email_id, from_statuses, assignments, event, detail=None):
    # `assignments` is always a constant of this module, never input; values go as parameters.
    cur.execute(
        f"""WITH e AS (
                UPDATE emails SET {assignments}, updated_at = now()
                WHERE id = %(id)s AND status = ANY(%(from)s) RETURNING *
            ), ev AS (
                INSERT INTO email_events (email_id, type, detail) SELECT id, %(event)s, %(detail)s FROM e
            ){queue_webhooks_cte(event)}
            SELECT * FROM e""",
        {"id": email_id, "from": list(from_statuses), "event": event, "detail": detail},
    )
    return cur.fetchone()


def claim_for_sending(cur, email_id):
    """Move a waiting message to SENDING and count the attempt; None if it is not waiting."""
    return _transition(cur, email_id, ["PENDING"], "status = 'SENDING', attempts = attempts + 1", "sending")


def mark_sent(cur, email_id, smtp_response):
    """Record a successful hand-over to the SMTP server."""
    return _transition(
        cur, email_id, ["SENDING"],
        "status = 'SENT', sent_at = now(), smtp_response = %(detail)s, error_message = NULL",
        "sent", smtp_response,
    )  # fmt: skip


def mark_retrying(cur, email_id, error):
    """Record a transient failure and put the message back to wait for its retry."""
    return _transition(
        cur, email_id, ["SENDING"], "status = 'PENDING', error_message = %(detail)s",
        "attempt_failed", error,
    )  # fmt: skip


def mark_failed(cur, email_id, error, from_statuses=("SENDING",)):
    """Record that the message will not be sent."""
    return _transition(
        cur, email_id, from_statuses,
        "status = 'FAILED', failed_at = now(), error_message = %(detail)s",
        "failed", error,
    )  # fmt: skip
