"""SQL for API keys."""


def insert_api_key(cur, name, key_hash, key_prefix, scopes):
    """Store a new key's hash and return its row."""
    cur.execute(
        """INSERT INTO api_keys (name, key_hash, key_prefix, scopes)
           VALUES (%s, %s, %s, %s) RETURNING id, name, key_prefix, scopes, created_at""",
        (name, key_hash, key_prefix, scopes),
    )
    return cur.fetchone()


def find_active_api_key(cur, key_hash):
    """Return the unrevoked key with this hash, or None."""
    cur.execute(
        "SELECT id, name, key_hash, scopes FROM api_keys WHERE key_hash = %s AND revoked_at IS NULL",
        (key_hash,),
    )
    return cur.fetchone()


def list_api_keys(cur):
    """Return every key, oldest first."""
    cur.execute("SELECT id, name, key_prefix, scopes, created_at, revoked_at FROM api_keys ORDER BY id")
    return cur.fetchall()


def revoke_api_key(cur, key_id):
    """Revoke a key; return False when there is no such active key."""
    cur.execute(
        "UPDATE api_keys SET revoked_at = now() WHERE id = %s AND revoked_at IS NULL RETURNING id",
        (key_id,),
    )
    return cur.fetchone() is not None
