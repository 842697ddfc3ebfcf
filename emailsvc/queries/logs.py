"""SQL for listing a project's email log: the filters, a page in either order, and counting what matches.

Every query reads one project's rows: the condition PROJECT opens every WHERE, and every index of
the log leads with project_id (schema.sql).
"""

from .rows import E_EMAIL_SQL

# One constant fragment per filter; only the values travel, as parameters. The address filters compare
# bare, lower-cased addresses, so `to=bob@example.com` finds "Bob <Bob@example.com>" in to, cc or bcc.
# `to` reads email_recipient_addresses (schema.sql), which carries the message's project_id, created_at
# and id under the log's names, so every other fragment and the order read the same on it.
FILTERS = {
    "status": "status = %(status)s",
    "to": "address = email_addr_spec(%(to)s)",
    "from_addr": "email_addr_spec(from_addr) = email_addr_spec(%(from_addr)s)",
    "created_after": "created_at >= %(created_after)s",
    "created_before": "created_at < %(created_before)s",
}
# The filters only the log's own rows can answer.
LOG_COLUMN_FILTERS = ("status", "from_addr")
DATE_RANGE = ("created_after", "created_before")
# The filters with an index of their own, each in the log's order: the date range only narrows the one read,
# while two of these together match where two indexes meet (an intersection).
INDEXED_FILTERS = ("status", "to", "from_addr")
# `to` beside one of those: the project's recipients' rows joined to their messages by id alone. Joined on
# created_at too, the planner would multiply both selectivities, expect no match, and hash both sides (0.3 s
# at 5M rows) instead of walking the recipients' index in order until the page is full (2 ms).
TO_AND_LOG_COLUMNS = """(
        SELECT r.project_id, r.address, r.created_at, r.id, e.status, e.from_addr
        FROM email_recipient_addresses r JOIN emails e ON e.project_id = r.project_id AND e.id = r.id
    ) matching"""
# Counting that join: with `status`, the recipients' index and the status index are walked side by side in the
# log's order (a merge join on created_at and id, index-only) until the cap is met, about 20 entries of each per
# match of two filters of 5% (11 ms for 1,001 at 5M rows); `from` is then checked on the messages met alone,
# by id. Left to itself the planner hashes every match of the status first whatever the cap (0.1 s at 5M), checks
# `from` on every message of that status, or splits the walk between workers that each read as far: the
# settings hold for the count's statement alone. The date range is spelled out for both indexes: the planner
# carries an equality from one side of a join to the other, not a range.
TO_COUNTED = (
    "(SELECT r.project_id, r.address, r.created_at, r.id{columns} FROM email_recipient_addresses r{joins}) matching"
)
COUNTED_JOINS = {
    "status": (
        ", s.status",
        " JOIN emails s ON (s.project_id, s.created_at, s.id) = (r.project_id, r.created_at, r.id){range}",
    ),
    "from_addr": (", f.from_addr", " JOIN emails f ON f.project_id = r.project_id AND f.id = r.id"),
}
MERGE_IN_ORDER = "SET LOCAL enable_hashjoin = off; SET LOCAL max_parallel_workers_per_gather = 0;"
PROJECT = "project_id = %(project_id)s"
SINCE = "created_at >= %(since)s"
BEFORE_POSITION = "(created_at, id) < (%(before_at)s, %(before_id)s)"


def _joined(filters):
    return filters.get("to") is not None and any(filters.get(name) is not None for name in LOG_COLUMN_FILTERS)


def _matching(filters):
    """The table the filters read: the log; with `to`, the recipients' table alone when it answers every
    filter (its index then pages and counts without reading a log row), else joined to the log."""
    if filters.get("to") is None:
        return "emails"
    if _joined(filters):
        return TO_AND_LOG_COLUMNS
    return "email_recipient_addresses"


def _counted(filters):
    """The table the filters' count reads: as _matching, but `to` beside the log's columns joined for counting."""
    if not _joined(filters):
        return _matching(filters)
    given = [COUNTED_JOINS[name] for name in LOG_COLUMN_FILTERS if filters.get(name) is not None]
    date_range = "".join(f" AND s.{FILTERS[name]}" for name in DATE_RANGE if filters.get(name) is not None)
    joins = "".join(join for _, join in given).format(range=date_range)
    return TO_COUNTED.format(columns="".join(column for column, _ in given), joins=joins)


def _where(filters, *conditions):
    parts = [FILTERS[name] for name, value in filters.items() if value is not None]
    return " AND ".join([PROJECT] + parts + [c for c in conditions if c])


def select_oldest_first(cur, project_id, filters, offset, limit, since=None):
    """Return `limit` of the project's rows after skipping `offset`, oldest first, from created_at `since` if given."""
    # The inner query skips rows on the index alone; only the page itself is read from the log.
    cur.execute(
        f"""SELECT {E_EMAIL_SQL} FROM emails e JOIN (
                SELECT id FROM {_matching(filters)} WHERE {_where(filters, since and SINCE)}
                ORDER BY created_at, id OFFSET %(offset)s LIMIT %(limit)s
            ) page USING (id)
            ORDER BY e.created_at, e.id""",
        {**filters, "project_id": project_id, "since": since, "offset": offset, "limit": limit},
    )
    return cur.fetchall()


def select_newest_first(cur, project_id, filters, before, limit):
    """Return up to `limit` of the project's rows, newest first, from just past the position (created_at, id)
    `before` in that order."""
    before_at, before_id = before or (None, None)
    cur.execute(
        f"""SELECT {E_EMAIL_SQL} FROM emails e JOIN (
                SELECT id FROM {_matching(filters)} WHERE {_where(filters, before and BEFORE_POSITION)}
                ORDER BY created_at DESC, id DESC LIMIT %(limit)s
            ) page USING (id)
            ORDER BY e.created_at DESC, e.id DESC""",
        {**filters, "project_id": project_id, "before_at": before_at, "before_id": before_id, "limit": limit},
    )
    return cur.fetchall()


def count_matching_up_to(cur, project_id, filters, cap):
    """Return how many of the project's rows match, counting no further than `cap` + 1 so the cost stays bounded."""
    settings = MERGE_IN_ORDER if _joined(filters) else ""
    cur.execute(
        f"""{settings} SELECT count(*) AS n FROM (
                SELECT 1 FROM {_counted(filters)} WHERE {_where(filters)} LIMIT %(cap)s + 1
            ) m""",
        {**filters, "project_id": project_id, "cap": cap},
    )
    return cur.fetchone()["n"]


def estimate_matching(cur, project_id, filters):
    """Return the planner's estimate of how many of the project's rows match: instant at any size, roughly right."""
    cur.execute(
        f"EXPLAIN (FORMAT JSON) SELECT 1 FROM {_matching(filters)} WHERE {_where(filters)}",
        {**filters, "project_id": project_id},
    )
    return int(cur.fetchone()["QUERY PLAN"][0]["Plan"]["Plan Rows"])
