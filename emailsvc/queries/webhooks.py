"""SQL for outbound webhooks: endpoints, the deliveries of each status change, and their attempts."""

from itertools import groupby

from ..schemas import WEBHOOK_EVENTS
from .rows import EMAIL_SQL, qualified


def _queue_webhooks(types):
    """A CTE for a statement whose CTE `e` holds the emails rows a change left: one pending delivery per
    enabled endpoint of the message's project subscribed to each of the event `types` (an SQL text
    array). It runs in the statement that makes the change, so no crash can lose a notification; the
    dispatcher sends it."""
    return f"""webhooks AS (
    INSERT INTO webhook_deliveries (endpoint_id, email_id, type, snapshot)
    SELECT w.id, e.id, t.type, to_jsonb(e) - 'body' - 'html'
    FROM e CROSS JOIN unnest({types}) t(type)
    JOIN webhook_endpoints w ON w.project_id = e.project_id AND w.disabled_at IS NULL AND t.type = ANY(w.events)
)"""


# The change named by %(event)s notifies "email.<event>".
QUEUE_WEBHOOKS = _queue_webhooks("ARRAY['email.' || %(event)s]")
# The same for a change that causes several events (e.g. email.sent and email.recipient_failed):
# their full names in the text array %(webhook_types)s.
QUEUE_WEBHOOK_TYPES = _queue_webhooks("%(webhook_types)s::text[]")


def queue_webhooks_cte(event):
    """Return `, <QUEUE_WEBHOOKS>` for a change endpoints can subscribe to, else "" (e.g. `sending` costs nothing)."""
    return f", {QUEUE_WEBHOOKS}" if f"email.{event}" in WEBHOOK_EVENTS else ""


ENDPOINT_COLUMNS = "id, url, events, created_at, failing_since, disabled_at"


def insert_endpoint(cur, project_id, url, events, secret):
    """Register an endpoint of the project and return it, secret included."""
    cur.execute(
        f"""INSERT INTO webhook_endpoints (project_id, url, events, secret) VALUES (%s, %s, %s, %s)
            RETURNING {ENDPOINT_COLUMNS}, secret""",
        (project_id, url, events, secret),
    )
    return cur.fetchone()


def list_endpoints(cur, project_id):
    """Return the project's endpoints, oldest first, without secrets."""
    cur.execute(
        f"SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE project_id = %s ORDER BY created_at, id", (project_id,)
    )
    return cur.fetchall()


def endpoint_exists(cur, project_id, endpoint_id):
    """Return True when the endpoint exists in the project."""
    cur.execute("SELECT 1 FROM webhook_endpoints WHERE id = %s AND project_id = %s", (endpoint_id, project_id))
    return cur.fetchone() is not None


def delete_endpoint(cur, project_id, endpoint_id):
    """Delete an endpoint of the project with its deliveries; return False when the project has none with this id."""
    cur.execute(
        "DELETE FROM webhook_endpoints WHERE id = %s AND project_id = %s RETURNING id", (endpoint_id, project_id)
    )
    return cur.fetchone() is not None


def queue_webhooks(cur, email_id, event):
    """Queue deliveries of "email.<event>" for a message whose status did not change (e.g. deferred)."""
    cur.execute(
        f"WITH e AS (SELECT {EMAIL_SQL} FROM emails WHERE id = %(id)s), {QUEUE_WEBHOOKS} SELECT 1",
        {"id": email_id, "event": event},
    )


def claim_due_deliveries(cur, limit, lease):
    """Mark up to `limit` due deliveries queued for `lease` seconds and return their ids.

    Deliveries left queued or sending past their lease (a lost job, a killed worker) are due again.
    """
    cur.execute(
        """UPDATE webhook_deliveries SET state = 'queued', next_attempt_at = now() + make_interval(secs => %s)
           WHERE id IN (SELECT id FROM webhook_deliveries
                        WHERE state IN ('pending', 'queued', 'sending') AND next_attempt_at <= now()
                        ORDER BY next_attempt_at LIMIT %s FOR UPDATE SKIP LOCKED)
           RETURNING id""",
        (lease, limit),
    )
    return [row["id"] for row in cur.fetchall()]


def claim_delivery(cur, delivery_id, lease):
    """Move a queued delivery to sending and return it with its endpoint; None if it is not queued."""
    cur.execute(
        """UPDATE webhook_deliveries d SET state = 'sending', next_attempt_at = now() + make_interval(secs => %s)
           FROM webhook_endpoints w
           WHERE d.id = %s AND d.state = 'queued' AND w.id = d.endpoint_id
           RETURNING d.id, d.type, d.attempts, d.created_at, w.url, w.secret, w.disabled_at""",
        (lease, delivery_id),
    )
    return cur.fetchone()


def get_delivery_log(cur, delivery_id):
    """Return the log row a delivery carries, as it was when the change happened."""
    cur.execute(
        f"""SELECT {qualified("r")}
            FROM webhook_deliveries d, jsonb_populate_record(NULL::emails, d.snapshot) r WHERE d.id = %s""",
        (delivery_id,),
    )
    return cur.fetchone()


def abandon_delivery(cur, delivery_id):
    """Give up a delivery without trying (its endpoint is disabled)."""
    cur.execute("UPDATE webhook_deliveries SET state = 'failed' WHERE id = %s", (delivery_id,))


def abandon_waiting_deliveries(cur, endpoint_id):
    """Give up every delivery of an endpoint that waits for a retry (the endpoint was disabled)."""
    cur.execute(
        "UPDATE webhook_deliveries SET state = 'failed' WHERE endpoint_id = %s AND state = 'pending'", (endpoint_id,)
    )


def record_attempt(cur, delivery_id, attempt, retry_in, disable_after):
    """Record one attempt and its outcome in one statement; return the endpoint's id and disabled_at.

    `attempt` holds status_code, error, response, duration_ms and ok. A failure waits `retry_in`
    seconds for the next try (None: give up) and disables the endpoint once it has failed without a
    success for `disable_after` seconds; a success clears the endpoint's run of failures.
    """
    cur.execute(
        """WITH a AS (
               INSERT INTO webhook_attempts (delivery_id, status_code, error, response, duration_ms)
               VALUES (%(id)s, %(status_code)s, %(error)s, %(response)s, %(duration_ms)s)
           ), d AS (
               UPDATE webhook_deliveries SET attempts = attempts + 1,
                   state = CASE WHEN %(ok)s THEN 'succeeded' WHEN %(retry_in)s IS NULL THEN 'failed' ELSE 'pending' END,
                   next_attempt_at = now() + make_interval(secs => coalesce(%(retry_in)s, 0))
               WHERE id = %(id)s RETURNING endpoint_id
           )
           UPDATE webhook_endpoints SET
               failing_since = CASE WHEN %(ok)s THEN NULL ELSE coalesce(failing_since, now()) END,
               disabled_at = CASE WHEN NOT %(ok)s AND failing_since <= now() - make_interval(secs => %(disable_after)s)
                                  THEN coalesce(disabled_at, now()) ELSE disabled_at END
           WHERE id = (SELECT endpoint_id FROM d)
           RETURNING id, disabled_at""",
        {**attempt, "id": delivery_id, "retry_in": retry_in, "disable_after": disable_after},
    )
    return cur.fetchone()


def list_deliveries(cur, endpoint_id, limit, before=None):
    """Return up to `limit` deliveries of an endpoint, newest first, created before the cursor `before`."""
    cur.execute(
        """SELECT id, type, email_id, state, attempts, next_attempt_at, created_at FROM webhook_deliveries
           WHERE endpoint_id = %(endpoint)s AND (%(at)s::timestamptz IS NULL OR (created_at, id) < (%(at)s, %(id)s))
           ORDER BY created_at DESC, id DESC LIMIT %(limit)s""",
        {"endpoint": endpoint_id, "at": before and before[0], "id": before and before[1], "limit": limit},
    )
    return cur.fetchall()


def list_attempts(cur, delivery_ids):
    """Return the attempts of the given deliveries, oldest first."""
    cur.execute(
        """SELECT delivery_id, at, status_code, error, response, duration_ms FROM webhook_attempts
           WHERE delivery_id = ANY(%s) ORDER BY delivery_id, id""",
        (list(delivery_ids),),
    )
    return cur.fetchall()


def attach_attempts(cur, deliveries):
    """Give each delivery row its `attempts`, oldest first, all read in one query; return the rows."""
    attempts = {key: list(group) for key, group in groupby(list_attempts(cur, [d["id"] for d in deliveries]),
                                                           key=lambda a: a["delivery_id"])}  # fmt: skip
    for delivery in deliveries:
        delivery["attempts"] = attempts.get(delivery["id"], [])
    return deliveries
