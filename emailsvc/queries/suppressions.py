"""SQL for the suppression list: addresses no message may be sent to."""

COLUMNS = "address, reason, email_id, created_at"


def suppress(cur, addresses, reason, email_id=None):
    """Add addresses to the list; an address already on it keeps its first reason."""
    cur.execute(
        """INSERT INTO suppressions (address, reason, email_id) SELECT unnest(%s::text[]), %s, %s
           ON CONFLICT (address) DO NOTHING""",
        (list(addresses), reason, email_id),
    )


def add_suppression(cur, address, reason):
    """Add one address and return its row with `created`; an address already listed keeps its entry."""
    cur.execute(
        f"""INSERT INTO suppressions (address, reason) VALUES (%s, %s)
            ON CONFLICT (address) DO UPDATE SET address = EXCLUDED.address  -- a no-op that returns the row
            RETURNING {COLUMNS}, (xmax = 0) AS created""",
        (address, reason),
    )
    return cur.fetchone()


def delete_suppression(cur, address):
    """Remove an address; return False when it was not on the list."""
    cur.execute("DELETE FROM suppressions WHERE address = %s RETURNING address", (address,))
    return cur.fetchone() is not None


def list_suppressions(cur, limit, before=None):
    """Return up to `limit` entries, newest first, added before the cursor `before` (created_at, address)."""
    cur.execute(
        f"""SELECT {COLUMNS} FROM suppressions
            WHERE %(at)s::timestamptz IS NULL OR (created_at, address) < (%(at)s, %(address)s)
            ORDER BY created_at DESC, address DESC LIMIT %(limit)s""",
        {"at": before and before[0], "address": before and before[1], "limit": limit},
    )
    return cur.fetchall()
