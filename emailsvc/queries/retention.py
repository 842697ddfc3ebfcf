"""SQL for retention: deleting old message content and old log rows, a small batch per statement.

Only finished messages are touched: one still waiting to be sent keeps its body and its row, whatever
its age. Each statement takes at most `limit` rows, oldest first, so no lock is held for long and the
API keeps answering while a large backlog is purged.
"""

# The statuses after which a message is never sent again (CANCELED included, for when it exists).
FINISHED = "status IN ('SENT', 'DELIVERED', 'BOUNCED', 'COMPLAINED', 'FAILED', 'CANCELED') AND NOT retry_pending"
# The rows whose content may go: emails_content_kept_idx holds exactly these, oldest first.
CONTENT_KEPT = (
    "content_purged_at IS NULL AND status IN ('SENT', 'DELIVERED', 'BOUNCED', 'COMPLAINED', 'FAILED', 'CANCELED')"
)
RETENTION_LOCK = 0x72746E  # "rtn": one purge at a time, whoever runs it
# Follows a CTE `gone` holding the ids of messages whose content goes: drops their attachment links, and
# answers how many messages were in `gone` and which contents (SHA-256) they carried, which
# delete_unlinked_contents then deletes where no other message of the project carries them.
DROP_LINKS = """, links AS (
        DELETE FROM email_attachments WHERE email_id IN (SELECT id FROM gone) RETURNING sha256
    )
    SELECT (SELECT count(*) FROM gone) AS n, ARRAY(SELECT DISTINCT sha256 FROM links) AS contents"""


def purge_content(cur, project_id, before, limit):
    """Delete the body, html, headers and attachment links of up to `limit` of the project's finished
    messages created before `before`; return how many, and the contents they carried (for
    delete_unlinked_contents). The row (its attachments' metadata too), its events and its counts stay;
    content_purged_at says when."""
    cur.execute(
        f"""WITH gone AS (
                UPDATE emails SET body = NULL, html = NULL, headers = '{{}}', content_purged_at = now()
                WHERE id IN (SELECT id FROM emails WHERE project_id = %(project)s AND {CONTENT_KEPT}
                               AND created_at < %(before)s AND NOT retry_pending
                             ORDER BY created_at LIMIT %(limit)s)
                RETURNING id
            ){DROP_LINKS}""",
        {"project": project_id, "before": before, "limit": limit},
    )
    row = cur.fetchone()
    return row["n"], row["contents"]


def count_content(cur, project_id, before):
    """Return how many of the project's finished messages created before `before` keep their content (what
    purge_content would take)."""
    cur.execute(
        f"""SELECT count(*) AS n FROM emails
            WHERE project_id = %s AND {CONTENT_KEPT} AND created_at < %s AND NOT retry_pending""",
        (project_id, before),
    )
    return cur.fetchone()["n"]


def delete_rows(cur, project_id, before, limit):
    """Delete up to `limit` of the project's finished messages created before `before`, with their events,
    webhook deliveries and idempotency keys; return how many. The project's totals stay exact (schema.sql,
    forget_deleted_emails). Also return the attachment contents they carried (for delete_unlinked_contents)."""
    cur.execute(
        f"""WITH gone AS (
                DELETE FROM emails WHERE id IN (
                    SELECT id FROM emails WHERE project_id = %(project)s AND created_at < %(before)s AND {FINISHED}
                    ORDER BY created_at, id LIMIT %(limit)s)
                RETURNING id
            ){DROP_LINKS}""",
        {"project": project_id, "before": before, "limit": limit},
    )
    row = cur.fetchone()
    return row["n"], row["contents"]


def count_rows(cur, project_id, before):
    """Return how many of the project's finished messages were created before `before` (what delete_rows would take)."""
    cur.execute(
        f"SELECT count(*) AS n FROM emails WHERE project_id = %s AND created_at < %s AND {FINISHED}",
        (project_id, before),
    )
    return cur.fetchone()["n"]


def delete_unlinked_contents(cur, project_id, contents):
    """Delete those of the project's attachment `contents` (SHA-256s) that no message carries any more.

    In the caller's transaction, after the links went. The rows are locked first, in one order, and only
    then, in a new snapshot, are links looked for: a send linking one of them at the same time (its
    upsert locks the row, schema INSERT_EMAIL_CTE) has either committed, and its link is seen, or waits
    for this transaction and then stores the content again.
    """
    if not contents:
        return
    cur.execute(
        "SELECT FROM attachment_contents WHERE project_id = %s AND sha256 = ANY(%s) ORDER BY sha256 FOR UPDATE",
        (project_id, contents),
    )
    cur.execute(
        """DELETE FROM attachment_contents c WHERE project_id = %s AND sha256 = ANY(%s) AND NOT EXISTS (
               SELECT FROM email_attachments a WHERE a.project_id = c.project_id AND a.sha256 = c.sha256)""",
        (project_id, contents),
    )


def lock_retention(cur):
    """Take the session lock that lets one purge run at a time; False if another holds it."""
    cur.execute("SELECT pg_try_advisory_lock(%s, 0) AS locked", (RETENTION_LOCK,))
    return cur.fetchone()["locked"]


def unlock_retention(cur):
    """Release the lock taken by lock_retention."""
    cur.execute("SELECT pg_advisory_unlock(%s, 0)", (RETENTION_LOCK,))
