"""SQL for projects: the applications sharing one emailsvc, each with its own keys and mail."""

COLUMNS = "id, name, created_at"


def insert_project(cur, name):
    """Create a project and return it; None when the name is taken."""
    cur.execute(f"INSERT INTO projects (name) VALUES (%s) ON CONFLICT (name) DO NOTHING RETURNING {COLUMNS}", (name,))
    return cur.fetchone()


def ensure_project(cur, name):
    """Return the project with this name, creating it if missing."""
    cur.execute(
        f"""WITH made AS (
                INSERT INTO projects (name) VALUES (%(name)s) ON CONFLICT (name) DO NOTHING RETURNING {COLUMNS}
            )
            SELECT {COLUMNS} FROM made UNION ALL SELECT {COLUMNS} FROM projects WHERE name = %(name)s""",
        {"name": name},
    )
    return cur.fetchone()


def find_project(cur, name):
    """Return the project with this name, or None."""
    cur.execute(f"SELECT {COLUMNS} FROM projects WHERE name = %s", (name,))
    return cur.fetchone()


def get_project(cur, project_id):
    """Return the project with this id, or None."""
    cur.execute(f"SELECT {COLUMNS} FROM projects WHERE id = %s", (project_id,))
    return cur.fetchone()


def list_projects(cur):
    """Return every project, oldest first, with how many active keys it has."""
    cur.execute(
        """SELECT p.id, p.name, p.created_at,
                  (SELECT count(*) FROM api_keys k WHERE k.project_id = p.id AND k.revoked_at IS NULL) AS active_keys
           FROM projects p ORDER BY p.id"""
    )
    return cur.fetchall()


def rename_project(cur, old, new):
    """Rename a project; return False when there is no project called `old`. A taken `new` raises UniqueViolation."""
    cur.execute("UPDATE projects SET name = %s WHERE name = %s RETURNING id", (new, old))
    return cur.fetchone() is not None


def list_project_ids(cur):
    """Return every project's id, oldest first."""
    cur.execute("SELECT id FROM projects ORDER BY id")
    return [row["id"] for row in cur.fetchall()]
