"""SQL for delivery events reported by the relay: find the message, record the event, apply its status.

The status machine never moves backwards: a message is SENT before any delivery event can change it;
DELIVERED may still become BOUNCED (a late asynchronous bounce) or COMPLAINED; BOUNCED and COMPLAINED
are final. `deferred` changes no status.
"""

from .rows import EMAIL_SQL
from .webhooks import QUEUE_WEBHOOKS

# event -> (the status it sets, the statuses it may leave)
TRANSITIONS = {
    "delivered": ("DELIVERED", ["SENT"]),
    "bounced": ("BOUNCED", ["SENT", "DELIVERED"]),
    "complained": ("COMPLAINED", ["SENT", "DELIVERED"]),
}

# event -> (the status it sets on the recipient it names, the recipient statuses it may leave)
RECIPIENT_TRANSITIONS = {
    "delivered": ("delivered", ["accepted"]),
    "bounced": ("bounced", ["accepted", "delivered"]),
    "complained": ("complained", ["accepted", "delivered"]),
}

LOCK_COLUMNS = "id, project_id, status, to_addrs, cc_addrs, bcc_addrs"  # the project: whose suppression list


def lock_email(cur, email_id, message_id=None):
    """Return (and lock until the transaction ends) the message with this id and, if given, Message-ID; or None."""
    cur.execute(
        f"SELECT {LOCK_COLUMNS} FROM emails WHERE id = %s AND (%s::text IS NULL OR message_id = %s) FOR UPDATE",
        (email_id, message_id, message_id),
    )
    return cur.fetchone()


def insert_delivery_event(cur, email_id, event, detail, at, dedupe_key):
    """Record the event unless the same one was recorded before; return False for a replay."""
    cur.execute(
        """INSERT INTO email_events (email_id, type, detail, at, dedupe_key)
           VALUES (%s, %s, %s, coalesce(%s, now()), %s) ON CONFLICT DO NOTHING RETURNING id""",
        (email_id, event, detail, at, dedupe_key),
    )
    return cur.fetchone() is not None


def apply_delivery_status(cur, email_id, event, at):
    """Apply the event's status if the machine allows it, queueing its webhooks; return the new status or None."""
    if event not in TRANSITIONS:
        return None
    status, from_statuses = TRANSITIONS[event]
    cur.execute(
        f"""WITH e AS (
                UPDATE emails SET status = %(status)s, updated_at = now(),
                    delivered_at = CASE WHEN %(status)s = 'DELIVERED' THEN coalesce(%(at)s, now()) ELSE delivered_at END
                WHERE id = %(id)s AND status = ANY(%(from)s) RETURNING {EMAIL_SQL}
            ), {QUEUE_WEBHOOKS}
            SELECT status FROM e""",
        {"id": email_id, "status": status, "from": from_statuses, "at": at, "event": event},
    )
    row = cur.fetchone()
    return row and row["status"]


def apply_recipient_status(cur, email_id, address, event, at):
    """Move the status of the recipient `address` (bare, lower-cased) as the event says, never backwards."""
    if event not in RECIPIENT_TRANSITIONS:
        return
    status, from_statuses = RECIPIENT_TRANSITIONS[event]
    cur.execute(
        """UPDATE emails SET recipients = (
               SELECT jsonb_agg(CASE WHEN lower(r->>'address') = %(address)s AND r->>'status' = ANY(%(from)s)
                                     THEN r || jsonb_build_object('status', %(status)s::text,
                                                                  'updated_at', coalesce(%(at)s, now()))
                                     ELSE r END ORDER BY n)
               FROM jsonb_array_elements(recipients) WITH ORDINALITY x(r, n))
           WHERE id = %(id)s""",
        {"id": email_id, "address": address, "status": status, "from": from_statuses, "at": at},
    )
