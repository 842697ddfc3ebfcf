"""SQL for the suppression lists: addresses no message of a project may be sent to; one list per project."""

COLUMNS = "address, reason, email_id, created_at"


def suppress(cur, project_id, addresses, reason, email_id=None):
    """Add addresses to the project's list; an address already on it keeps its first reason."""
    cur.execute(
        """INSERT INTO suppressions (project_id, address, reason, email_id) SELECT %s, unnest(%s::text[]), %s, %s
           ON CONFLICT (project_id, address) DO NOTHING""",
        (project_id, list(addresses), reason, email_id),
    )


def suppressed_among(cur, project_id, addresses):
    """Return those of `addresses` (as the list spells them) that are on the project's list, sorted."""
    cur.execute(
        "SELECT address FROM suppressions WHERE project_id = %s AND address = ANY(%s) ORDER BY address",
        (project_id, list(addresses)),
    )
    return [row["address"] for row in cur.fetchall()]


def add_suppression(cur, project_id, address, reason):
    """Add one address and return its row with `created`; an address already listed keeps its entry."""
    cur.execute(
        f"""INSERT INTO suppressions (project_id, address, reason) VALUES (%s, %s, %s)
            ON CONFLICT (project_id, address) DO UPDATE SET address = EXCLUDED.address  -- a no-op that returns the row
            RETURNING {COLUMNS}, (xmax = 0) AS created""",
        (project_id, address, reason),
    )
    return cur.fetchone()


def delete_suppression(cur, project_id, address):
    """Remove an address from the project's list; return False when it was not on it."""
    cur.execute(
        "DELETE FROM suppressions WHERE project_id = %s AND address = %s RETURNING address", (project_id, address)
    )
    return cur.fetchone() is not None


def list_suppressions(cur, project_id, limit, before=None):
    """Return up to `limit` entries of the project, newest first, added before the cursor `before`
    (created_at, address)."""
    cur.execute(
        f"""SELECT {COLUMNS} FROM suppressions
            WHERE project_id = %(project)s
              AND (%(at)s::timestamptz IS NULL OR (created_at, address) < (%(at)s, %(address)s))
            ORDER BY created_at DESC, address DESC LIMIT %(limit)s""",
        {"project": project_id, "at": before and before[0], "address": before and before[1], "limit": limit},
    )
    return cur.fetchall()
