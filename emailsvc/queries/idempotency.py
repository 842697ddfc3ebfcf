"""SQL for Idempotency-Key: the message a key created, and keys that have expired."""

from .emails import (
    INSERT_EMAIL_CTE,
    NONE_SUPPRESSED,
    SELECT_INSERTED,
    SUPPRESSED_CTE,
    email_parameters,
    inserted_or_suppressed,
)
from .rows import E_EMAIL_SQL

KEY_TTL_HOURS = 24


def insert_email_once(cur, email, suppression_keys, key, request_hash):
    """Insert the log row and record `key` for it in one statement, unless a recipient is suppressed.

    Return (the row, []); (None, the suppressed addresses) when a recipient is suppressed, the key
    then left untouched; (None, []) when the key is taken. The primary key of idempotency_keys
    settles concurrent requests: the first insert wins, the others wait for it to commit and then
    insert nothing. An expired record is taken over.
    """
    cur.execute(
        f"""WITH {SUPPRESSED_CTE}, k AS (
                INSERT INTO idempotency_keys (project_id, api_key_id, key, request_hash, email_id)
                SELECT %(project_id)s, %(api_key_id)s, %(key)s, %(request_hash)s, %(id)s WHERE {NONE_SUPPRESSED}
                ON CONFLICT (api_key_id, key) DO UPDATE
                    SET request_hash = EXCLUDED.request_hash, email_id = EXCLUDED.email_id, created_at = now()
                    WHERE idempotency_keys.created_at <= now() - make_interval(hours => %(ttl)s)
                RETURNING email_id
            ), {INSERT_EMAIL_CTE.replace("GUARD", "EXISTS (SELECT FROM k)")}
            {SELECT_INSERTED}""",
        {**email_parameters(email, suppression_keys), "key": key, "request_hash": request_hash, "ttl": KEY_TTL_HOURS},
    )
    return inserted_or_suppressed(cur)


def find_keyed_email(cur, api_key_id, key):
    """Return the log row an unexpired key created, with the key's `request_hash`; None if there is none."""
    cur.execute(
        f"""SELECT k.request_hash, {E_EMAIL_SQL} FROM idempotency_keys k JOIN emails e ON e.id = k.email_id
           WHERE k.api_key_id = %s AND k.key = %s AND k.created_at > now() - make_interval(hours => %s)""",
        (api_key_id, key, KEY_TTL_HOURS),
    )
    return cur.fetchone()


def release_key(cur, email_id):
    """Forget the key of a message that was not queued, so the client's retry with it can succeed."""
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
