"""SQL for templates: the versions of each name in a project, the latest live one, and deletion."""

import psycopg2.errors

COLUMNS = "name, version, subject, body, html, variables, created_at"
# The version a new one of the name gets: one more than any, deleted ones included (see schema.sql).
NEXT_VERSION = """(SELECT coalesce(max(version), 0) + 1 FROM mail_templates
                   WHERE project_id = %(project)s AND name = %(name)s)"""
LIVE = "EXISTS (SELECT FROM mail_templates WHERE project_id = %(project)s AND name = %(name)s AND deleted_at IS NULL)"


def _insert_version(cur, project_id, name, parts, variables, guard):
    """Insert the next version of `name` when `guard` holds; return it, or None. Two writers racing for
    the same number: the primary key refuses the second, which tries again with the next."""
    params = {"project": project_id, "name": name, "variables": variables, **parts}
    for _ in range(5):
        try:
            cur.execute(
                f"""INSERT INTO mail_templates (project_id, name, version, subject, body, html, variables)
                    SELECT %(project)s, %(name)s, {NEXT_VERSION}, %(subject)s, %(body)s, %(html)s, %(variables)s
                    WHERE {guard} RETURNING {COLUMNS}""",
                params,
            )
        except psycopg2.errors.UniqueViolation:
            continue
        return cur.fetchone()
    raise psycopg2.errors.UniqueViolation("the version number stayed taken")


def create_template(cur, project_id, name, parts, variables):
    """Insert version 1 (or the next after a deleted history) of a new name; None when the name is live."""
    return _insert_version(cur, project_id, name, parts, variables, f"NOT {LIVE}")


def add_version(cur, project_id, name, parts, variables):
    """Insert the next version of a live template; None when the project has no live template of the name."""
    return _insert_version(cur, project_id, name, parts, variables, LIVE)


def get_template(cur, project_id, name, version=None):
    """Return a live version of the project's template, the latest when `version` is None; else None."""
    cur.execute(
        f"""SELECT {COLUMNS} FROM mail_templates
            WHERE project_id = %(project)s AND name = %(name)s AND deleted_at IS NULL
              AND (%(version)s::integer IS NULL OR version = %(version)s)
            ORDER BY version DESC LIMIT 1""",
        {"project": project_id, "name": name, "version": version},
    )
    return cur.fetchone()


def delete_template(cur, project_id, name):
    """Mark every version of the name deleted; return False when it had no live one."""
    cur.execute(
        "UPDATE mail_templates SET deleted_at = now() WHERE project_id = %s AND name = %s AND deleted_at IS NULL",
        (project_id, name),
    )
    return cur.rowcount > 0


def list_templates(cur, project_id, limit, before=None):
    """Return up to `limit` of the project's live templates, each at its latest version with `since` (when
    its first live version was made), newest template first, made before the cursor `before` (since, name)."""
    cur.execute(
        f"""WITH live AS (
                SELECT name, max(version) AS version, min(created_at) AS since FROM mail_templates
                WHERE project_id = %(project)s AND deleted_at IS NULL GROUP BY name
            )
            SELECT {", ".join(f"t.{c}" for c in COLUMNS.split(", "))}, live.since
            FROM live JOIN mail_templates t
              ON t.project_id = %(project)s AND t.name = live.name AND t.version = live.version
            WHERE %(at)s::timestamptz IS NULL OR (live.since, live.name) < (%(at)s, %(name)s)
            ORDER BY live.since DESC, live.name DESC LIMIT %(limit)s""",
        {"project": project_id, "at": before and before[0], "name": before and before[1], "limit": limit},
    )
    return cur.fetchall()
