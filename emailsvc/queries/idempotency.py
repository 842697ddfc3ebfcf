"""SQL for Idempotency-Key: the message a key created, and keys that have expired."""

from ..db import Prepared
from .emails import (
    INPUT_CTE,
    INSERT_EMAIL_CTE,
    INSERT_TYPES,
    NONE_SUPPRESSED,
    SELECT_INSERTED,
    SUPPRESSED_CTE,
    insert_parameters,
    inserted_or_suppressed,
)
from .rows import E_EMAIL_SQL

KEY_TTL_HOURS = 24
# The key is recorded only when no recipient is suppressed; the messages only when the key was recorded.
INSERT_EMAILS_ONCE = Prepared("insert_emails_once", f"""WITH {INPUT_CTE}, {SUPPRESSED_CTE}, k AS (
        INSERT INTO idempotency_keys (project_id, api_key_id, key, request_hash, email_id, email_ids)
        SELECT %(project_id)s, %(api_key_id)s, %(key)s, %(request_hash)s, (%(ids)s)[1], %(ids)s WHERE {NONE_SUPPRESSED}
        ON CONFLICT (api_key_id, key) DO UPDATE
            SET request_hash = EXCLUDED.request_hash, email_id = EXCLUDED.email_id, email_ids = EXCLUDED.email_ids,
                created_at = now()
            WHERE idempotency_keys.created_at <= now() - make_interval(hours => %(ttl)s)
        RETURNING email_id
    ), {INSERT_EMAIL_CTE.replace("GUARD", "EXISTS (SELECT FROM k)")}
    {SELECT_INSERTED}""", **INSERT_TYPES, api_key_id="bigint", key="text", request_hash="bytea", ids="uuid[]",
                           ttl="integer")  # fmt: skip


def insert_emails_once(cur, project_id, emails, suppression_keys, api_key_id, key, request_hash):
    """Insert the log rows (see insert_emails) and record `key` for them in one statement, unless a recipient
    is suppressed.

    Return (the rows, {}); ([], {index: suppressed addresses}) when a recipient is suppressed, the key
    then left untouched; ([], {}) when the key is taken. The primary key of idempotency_keys settles
    concurrent requests: the first insert wins, the others wait for it to commit and then insert
    nothing. An expired record is taken over.
    """
    INSERT_EMAILS_ONCE.execute(
        cur,
        {
            **insert_parameters(project_id, emails, suppression_keys),
            "api_key_id": api_key_id,
            "key": key,
            "request_hash": request_hash,
            "ids": [email["id"] for email in emails],
            "ttl": KEY_TTL_HOURS,
        },
    )
    return inserted_or_suppressed(cur, emails)


def find_keyed_emails(cur, api_key_id, key):
    """Return (the `request_hash` of an unexpired key, the log rows it created in their order); (None, []) if none."""
    cur.execute(
        f"""SELECT k.request_hash, {E_EMAIL_SQL} FROM idempotency_keys k
            CROSS JOIN unnest(coalesce(k.email_ids, ARRAY[k.email_id])) WITH ORDINALITY m (id, n)
            JOIN emails e ON e.id = m.id
            WHERE k.api_key_id = %s AND k.key = %s AND k.created_at > now() - make_interval(hours => %s)
            ORDER BY m.n""",
        (api_key_id, key, KEY_TTL_HOURS),
    )
    rows = cur.fetchall()
    if not rows:
        return None, []
    request_hash = bytes(rows[0]["request_hash"])
    for row in rows:
        del row["request_hash"]
    return request_hash, rows


def release_key(cur, email_id):
    """Forget the key of messages that were not queued (`email_id`: the first), so the client's retry can succeed."""
    cur.execute("DELETE FROM idempotency_keys WHERE email_id = %s", (email_id,))


def purge_expired_keys(cur, limit=10000):
    """Delete up to `limit` keys older than 24 h; return how many."""
    cur.execute(
        """DELETE FROM idempotency_keys WHERE (api_key_id, key) IN (
               SELECT api_key_id, key FROM idempotency_keys
               WHERE created_at <= now() - make_interval(hours => %s) LIMIT %s)""",
        (KEY_TTL_HOURS, limit),
    )
    return cur.rowcount
