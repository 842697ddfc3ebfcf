"""SQL for email_log_counts: a project's running totals per settled 15-minute bucket, and the counts built on them.

Every count here is a running total read at the edge of the settled buckets plus a live count of
the rows after that edge, which are at most a few buckets' worth: the cost does not grow with the log.
Each query reads the edge first and passes it on as a value, so the planner sees how few rows the
live count touches (a subquery it cannot see through makes it guess a third of the table). Each
project has its own series of buckets, filled by its own readers, from its first row on.
"""

from datetime import UTC, datetime, timedelta

# A bucket is settled, and filled, once its end is SETTLE in the past: by then every row stamped
# inside it has committed. One fill covers about FILL_ROWS rows (never less than one bucket), so
# catching up on a big log is many short steps, whatever the mail volume.
BUCKET = timedelta(minutes=15)
SETTLE = timedelta(minutes=10)
FILL_ROWS = 100_000
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)  # buckets are aligned on it, as date_bin(..., 'epoch') does

FILL = """
    WITH base AS (
        SELECT created, sent, failed FROM email_log_counts WHERE project_id = %(project)s AND bucket_start < %(lo)s
        ORDER BY bucket_start DESC LIMIT 1
    ),
    buckets AS (
        SELECT generate_series(%(lo)s, %(hi)s - interval '15 minutes', interval '15 minutes') AS bucket_start
    ),
    created AS (
        SELECT date_bin('15 minutes', created_at, 'epoch') AS bucket_start, count(*) AS n FROM emails
        WHERE project_id = %(project)s AND created_at >= %(lo)s AND created_at < %(hi)s GROUP BY 1
    ),
    sent AS (
        SELECT date_bin('15 minutes', sent_at, 'epoch') AS bucket_start, count(*) AS n FROM emails
        WHERE project_id = %(project)s AND sent_at >= %(lo)s AND sent_at < %(hi)s GROUP BY 1
    ),
    failed AS (
        SELECT date_bin('15 minutes', failed_at, 'epoch') AS bucket_start, count(*) AS n FROM emails
        WHERE project_id = %(project)s AND failed_at >= %(lo)s AND failed_at < %(hi)s GROUP BY 1
    )
    INSERT INTO email_log_counts (project_id, bucket_start, created, sent, failed)
    SELECT %(project)s, bucket_start,
           coalesce((SELECT created FROM base), 0) + sum(coalesce(c.n, 0)) OVER running,
           coalesce((SELECT sent FROM base), 0) + sum(coalesce(s.n, 0)) OVER running,
           coalesce((SELECT failed FROM base), 0) + sum(coalesce(f.n, 0)) OVER running
    FROM buckets LEFT JOIN created c USING (bucket_start) LEFT JOIN sent s USING (bucket_start)
         LEFT JOIN failed f USING (bucket_start)
    WINDOW running AS (ORDER BY bucket_start)
    ON CONFLICT (project_id, bucket_start) DO NOTHING"""


def _bucket_start(moment):
    return EPOCH + (moment - EPOCH) // BUCKET * BUCKET


def fill_log_counts(cur, project_id):
    """Add the project's buckets settled since its last fill, covering about FILL_ROWS rows; return how many."""
    cur.execute(
        """SELECT coalesce((SELECT max(bucket_start) + interval '15 minutes' FROM email_log_counts
                            WHERE project_id = %(project)s),
                           (SELECT date_bin('15 minutes', min(created_at), 'epoch') FROM emails
                            WHERE project_id = %(project)s)) AS lo,
                  date_bin('15 minutes', now() - %(settle)s, 'epoch') AS settled""",
        {"project": project_id, "settle": SETTLE},
    )
    lo, settled = cur.fetchone().values()
    if lo is None or lo >= settled:
        return 0
    cur.execute(
        """SELECT created_at FROM emails WHERE project_id = %s AND created_at >= %s
           ORDER BY created_at OFFSET %s LIMIT 1""",
        (project_id, lo, FILL_ROWS),
    )
    far = cur.fetchone()
    hi = min(settled, max(lo + BUCKET, _bucket_start(far["created_at"]))) if far else settled
    # Two fills at once compute the same rows from the same base; the second one's are skipped.
    cur.execute(FILL, {"project": project_id, "lo": lo, "hi": hi})
    return cur.rowcount


# What the project's deleted rows had added to its totals (schema.sql, email_log_removed), as `r`.
REMOVED = """r AS (
        SELECT coalesce(max(created), 0) AS created, coalesce(max(sent), 0) AS sent, coalesce(max(failed), 0) AS failed,
               coalesce(max(counts_from), '-infinity') AS counts_from
        FROM email_log_removed WHERE project_id = %(project)s
    )"""


def _running_totals_before(cur, project_id, *moments):
    """For each moment, return the project's running totals (less its deleted rows) and the end of its last bucket
    starting before it, or None when there is none; `usable` is False when a row deleted since that bucket was
    filled cannot be placed in it (then only the rows themselves can answer)."""
    cur.execute(
        f"""WITH {REMOVED}
           SELECT b.bucket_end, b.created - r.created AS created, b.sent - r.sent AS sent,
                  b.failed - r.failed AS failed, b.bucket_start >= r.counts_from AS usable
           FROM r, unnest(%(moments)s::timestamptz[]) WITH ORDINALITY AS m (moment, n)
           LEFT JOIN LATERAL (
               SELECT bucket_start, bucket_start + interval '15 minutes' AS bucket_end, created, sent, failed
               FROM email_log_counts WHERE project_id = %(project)s AND bucket_start < m.moment
               ORDER BY bucket_start DESC LIMIT 1
           ) b ON TRUE
           ORDER BY m.n""",
        {"project": project_id, "moments": list(moments)},
    )
    return [row if row["bucket_end"] else None for row in cur.fetchall()]


def _count_live(cur, project_id, since, end):
    """Return {created, sent, failed}: the project's rows whose created_at, sent_at, failed_at fall in [since, end)."""
    cur.execute(
        """SELECT (SELECT count(*) FROM emails WHERE project_id = %(project)s
                   AND created_at >= %(since)s AND created_at < %(end)s) AS created,
                  (SELECT count(*) FROM emails WHERE project_id = %(project)s
                   AND sent_at >= %(since)s AND sent_at < %(end)s) AS sent,
                  (SELECT count(*) FROM emails WHERE project_id = %(project)s
                   AND failed_at >= %(since)s AND failed_at < %(end)s) AS failed""",
        {"project": project_id, "since": since, "end": end},
    )
    return cur.fetchone()


def _count_created_since(cur, project_id, since):
    """Return how many of the project's rows were created at `since` or later."""
    cur.execute("SELECT count(*) AS n FROM emails WHERE project_id = %s AND created_at >= %s", (project_id, since))
    return cur.fetchone()["n"]


def count_all_logs(cur, project_id):
    """Return the exact number of rows in the project's log."""
    (edge,) = _running_totals_before(cur, project_id, "infinity")
    return (
        edge["created"] + _count_created_since(cur, project_id, edge["bucket_end"])
        if edge and edge["usable"]
        else _count_created_since(cur, project_id, "-infinity")
    )


def count_day(cur, project_id, start, end):
    """Return {created, sent, failed}: the project's rows whose created_at, sent_at, failed_at fall in [start, end)."""
    # Running totals serve a day that begins and ends on bucket edges, as it does in every zone in use
    # today; any other is counted live.
    on_edges = all((moment - EPOCH) % BUCKET == timedelta(0) for moment in (start, end))
    at_start, at_end = _running_totals_before(cur, project_id, start, end) if on_edges else (None, None)
    if not all(edge is None or edge["usable"] for edge in (at_start, at_end)):
        at_start = at_end = None  # a day as old as deleted rows: counted from its rows
    live = _count_live(cur, project_id, max(start, at_end["bucket_end"]) if at_end else start, end)
    return {name: live[name] + (at_end[name] if at_end else 0) - (at_start[name] if at_start else 0) for name in live}


def locate_offset(cur, project_id, offset):
    """Return (since, skip): row `offset` of the project's log, oldest first, is row `skip` of those created since
    `since` (None: since the first row)."""
    # Over the buckets usable after deletions only, with the deleted rows taken off their totals (the last
    # bucket is always usable). Before the first usable bucket, rows the purge kept may remain that no
    # total places: an offset among them is counted from the first row.
    cur.execute(
        f"""WITH {REMOVED},
                hit AS (SELECT bucket_start FROM email_log_counts
                        WHERE project_id = %(project)s AND created > %(offset)s + (SELECT created FROM r)
                          AND bucket_start >= (SELECT counts_from FROM r)
                        ORDER BY created, bucket_start LIMIT 1),
                before_hit AS (SELECT created - (SELECT created FROM r) AS created FROM email_log_counts
                               WHERE project_id = %(project)s AND bucket_start < (SELECT bucket_start FROM hit)
                                 AND bucket_start >= (SELECT counts_from FROM r)
                               ORDER BY bucket_start DESC LIMIT 1),
                last AS (SELECT bucket_start, created - (SELECT created FROM r) AS created FROM email_log_counts
                         WHERE project_id = %(project)s ORDER BY bucket_start DESC LIMIT 1)
           SELECT CASE WHEN EXISTS (SELECT FROM before_hit) OR (SELECT counts_from FROM r) = '-infinity'
                       THEN bucket_start END AS since,
                  %(offset)s - coalesce((SELECT created FROM before_hit), 0) AS skip
           FROM hit
           UNION ALL
           SELECT bucket_start + interval '15 minutes', %(offset)s - created FROM last
           WHERE NOT EXISTS (SELECT 1 FROM hit)""",
        {"project": project_id, "offset": offset},
    )
    row = cur.fetchone()
    if row is None or row["since"] is None:
        return None, offset
    return row["since"], row["skip"]


def count_totals(cur):
    """Return, per project, (id, name, created, sent, failed): its rows ever created, sent and failed.

    The running totals of the last filled bucket plus the rows after it. Totals are never lowered when
    rows are deleted (see remove_counted_rows), so these only grow: Prometheus counters.
    """
    cur.execute(
        """SELECT p.id, p.name,
                  coalesce(b.created, 0) + (SELECT count(*) FROM emails e WHERE e.project_id = p.id
                                            AND e.created_at >= coalesce(b.bucket_end, '-infinity')) AS created,
                  coalesce(b.sent, 0) + (SELECT count(*) FROM emails e WHERE e.project_id = p.id
                                         AND e.sent_at >= coalesce(b.bucket_end, '-infinity')) AS sent,
                  coalesce(b.failed, 0) + (SELECT count(*) FROM emails e WHERE e.project_id = p.id
                                           AND e.failed_at >= coalesce(b.bucket_end, '-infinity')) AS failed
           FROM projects p LEFT JOIN LATERAL (
               SELECT bucket_start + interval '15 minutes' AS bucket_end, created, sent, failed
               FROM email_log_counts c WHERE c.project_id = p.id ORDER BY bucket_start DESC LIMIT 1
           ) b ON TRUE
           ORDER BY p.id"""
    )
    return cur.fetchall()
