"""SQL for API keys."""

# "Last used" is written by the look-up itself, and only when a minute old: at most one write a minute
# per key, and no round trip of its own.
LAST_USED_GRANULARITY = "1 minute"


def insert_api_key(cur, project_id, name, key_hash, key_prefix, scopes):
    """Store a new key's hash in a project and return its row."""
    cur.execute(
        """INSERT INTO api_keys (project_id, name, key_hash, key_prefix, scopes)
           VALUES (%s, %s, %s, %s, %s) RETURNING id, project_id, name, key_prefix, scopes, created_at""",
        (project_id, name, key_hash, key_prefix, scopes),
    )
    return cur.fetchone()


def find_active_api_key(cur, key_hash):
    """Return the unrevoked key with this hash (with its project_id), or None; note when it was last used."""
    # The UPDATE touches the row only when last_used_at is a minute old; two requests racing for it
    # both see it old, and the second one, rechecking after the first commits, writes nothing.
    cur.execute(
        f"""WITH k AS (
                SELECT id, project_id, name, key_hash, scopes, last_used_at FROM api_keys
                WHERE key_hash = %s AND revoked_at IS NULL
            ), used AS (
                UPDATE api_keys SET last_used_at = now()
                WHERE id = (SELECT id FROM k)
                  AND (last_used_at IS NULL OR last_used_at < now() - interval '{LAST_USED_GRANULARITY}')
            )
            SELECT id, project_id, name, key_hash, scopes FROM k""",
        (key_hash,),
    )
    return cur.fetchone()


def get_active_api_key(cur, key_id):
    """Return the unrevoked key with this id (with its project_id and hash), or None: the page's session
    names its key by id and checks it again on every request."""
    cur.execute(
        "SELECT id, project_id, name, key_hash, scopes FROM api_keys WHERE id = %s AND revoked_at IS NULL", (key_id,)
    )
    return cur.fetchone()


def list_api_keys(cur):
    """Return every key, oldest first, with its project's name."""
    cur.execute(
        """SELECT k.id, k.name, k.key_prefix, k.scopes, k.created_at, k.revoked_at, p.name AS project
           FROM api_keys k JOIN projects p ON p.id = k.project_id ORDER BY k.id"""
    )
    return cur.fetchall()


def list_project_keys(cur, project_id):
    """Return a project's unrevoked keys, oldest first, without their hashes."""
    cur.execute(
        """SELECT key_prefix, name, scopes, created_at, last_used_at FROM api_keys
           WHERE project_id = %s AND revoked_at IS NULL ORDER BY id""",
        (project_id,),
    )
    return cur.fetchall()


def revoke_api_key(cur, key_id):
    """Revoke a key; return False when there is no such active key."""
    cur.execute(
        "UPDATE api_keys SET revoked_at = now() WHERE id = %s AND revoked_at IS NULL RETURNING id",
        (key_id,),
    )
    return cur.fetchone() is not None
