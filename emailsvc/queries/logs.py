"""SQL for listing a project's email log: the filters, a page in either order, and counting what matches.

Every query reads one project's rows: the condition PROJECT opens every WHERE, and every index of
the log leads with project_id (schema.sql).

The filters are read from one or two sources, each an index range in the log's order (created_at, id):
`to` with `from` or a settled status (or both, as two sources) from email_recipient_addresses, `status` from
the log's status index, `from` alone from its sender index. With one source its index is the answer; with two
(`status` beside `from`, an unsettled status beside `to`, or all three), the matches are where the two ranges
meet, walked in order as a page or a capped count needs.
"""

from .rows import E_EMAIL_SQL

# One constant fragment per filter, on the source's alias `{t}`; only the values travel, as parameters. The
# address filters compare bare, lower-cased addresses, so `to=bob@example.com` finds "Bob <Bob@example.com>" in
# to, cc or bcc. email_recipient_addresses carries the message's project_id, sender, settled status, created_at and
# id under the log's names, so every fragment reads the same on it.
FILTERS = {
    "status": "{t}.status = %(status)s",
    "to": "{t}.address = email_addr_spec(%(to)s)",
    "from_addr": "{t}.sender = email_addr_spec(%(from_addr)s)",
    "created_after": "{t}.created_at >= %(created_after)s",
    "created_before": "{t}.created_at < %(created_before)s",
}
DATE_RANGE = ("created_after", "created_before")
# The filters with an index of their own, each in the log's order: the date range only narrows the one read.
INDEXED_FILTERS = ("status", "to", "from_addr")
# Statuses a message leaves within minutes: email_recipient_addresses does not follow them (schema.sql,
# email_settled_status), and they are few, so the log's status index gives them beside `to`.
UNSETTLED = ("SCHEDULED", "PENDING", "SENDING")
PROJECT = "{t}.project_id = %(project_id)s"
SINCE = "{t}.created_at >= %(since)s"
BEFORE_POSITION = "({t}.created_at, {t}.id) < (%(before_at)s, %(before_id)s)"
# Where two sources are about as large, they are walked side by side in the log's order (a merge join,
# index-only) until the page or the cap is met: about 20 entries of each per match of two filters of 5% each.
# The planner would rather hash every match of one side first whatever the LIMIT, or split the walk between
# workers that each read as far: the settings hold for the statement alone. The date range and position are
# spelled out for both sources: the planner carries an equality from one side of a join to the other, not a range.
MERGE_IN_ORDER = "SET LOCAL enable_hashjoin = off; SET LOCAL max_parallel_workers_per_gather = 0;"
MERGED = "{a} JOIN {b} ON (b.project_id, b.created_at, b.id) = (a.project_id, a.created_at, a.id)"
# The planner's estimate of the same: joined on the id alone, which it knows to be unique. On all three
# columns it multiplies their selectivities and expects a thousandth of the matches.
ESTIMATED = "{a} JOIN {b} ON b.id = a.id"
# Where one source is RARE_SIDE times smaller than the other (a rare status beside a common sender), the
# walk reads the small one alone and looks each of its entries up in the other's index (index-only, every key
# given): a rare pair costs what the rarer filter matches, not what the commoner one does. The LIMIT keeps the
# look-up inside the walk (a nested loop), whatever the planner would guess.
RARE_SIDE = 8
PROBED = """{a} CROSS JOIN LATERAL (
        SELECT FROM {b} WHERE (b.project_id, b.created_at, b.id) = (a.project_id, a.created_at, a.id) AND {probe}
        LIMIT 1
    ) b"""


def _sources(filters):
    """The (table, filter names) each filter is read from; one source when no two must meet."""
    given = [name for name in INDEXED_FILTERS if filters.get(name) is not None]
    if "to" in given:
        settled = "status" in given and filters["status"] not in UNSETTLED
        beside = [[name] for name in ("from_addr", "status") if name in given and (name != "status" or settled)]
        sources = [("email_recipient_addresses", ["to", *names]) for names in beside or [[]]]
        return sources + ([("emails", ["status"])] if "status" in given and not settled else [])
    return [("emails", [name]) for name in given] or [("emails", [])]


def two_indexes_meet(filters):
    """Whether the filters' matches are where two indexes meet: `status` beside `from`, an unsettled one beside
    `to`, or all three."""
    return len(_sources(filters)) > 1


def _conditions(alias, names, filters, *extra):
    """The source's WHERE fragments: the project, its filters, the date range, and `extra` (a position)."""
    dates = [name for name in DATE_RANGE if filters.get(name) is not None]
    return [part.format(t=alias) for part in (PROJECT, *(FILTERS[name] for name in names + dates), *extra)]


def _estimates(cur, project_id, filters, sources):
    """The planner's estimate of each source's matches, in one round trip: instant, roughly right."""
    parts = [f"SELECT 1 FROM {table} a WHERE {' AND '.join(_conditions('a', names, filters))}"
             for table, names in sources]  # fmt: skip
    cur.execute(f"EXPLAIN (FORMAT JSON) {' UNION ALL '.join(parts)}", {**filters, "project_id": project_id})
    plan = cur.fetchone()["QUERY PLAN"][0]["Plan"]
    return [child["Plan Rows"] for child in plan.get("Plans", [plan])]


def _matching(cur, project_id, filters, position=None, estimate=False):
    """(settings, FROM … WHERE …) of the project's rows matching `filters`, from `position` (a condition on the
    alias `{t}`) on, with the columns a.created_at and a.id. `estimate`: the plain join, for the planner's count."""
    sources = _sources(filters)
    extra = [position] if position else []
    if len(sources) == 1:
        (table, names), *_ = sources
        return "", f"{table} a WHERE {' AND '.join(_conditions('a', names, filters, *extra))}"
    if not estimate:
        sizes = _estimates(cur, project_id, filters, sources)
        if max(sizes) >= RARE_SIDE * min(sizes):
            (rare, rare_names), (other, other_names) = sources if sizes[0] <= sizes[1] else sources[::-1]
            probe = " AND ".join(FILTERS[name].format(t="b") for name in other_names)
            where = " AND ".join(_conditions("a", rare_names, filters, *extra))
            return "", PROBED.format(a=f"{rare} a", b=f"{other} b", probe=probe) + f" WHERE {where}"
    (table_a, names_a), (table_b, names_b) = sources
    where = _conditions("a", names_a, filters, *extra) + _conditions("b", names_b, filters, *extra)
    joined = (ESTIMATED if estimate else MERGED).format(a=f"{table_a} a", b=f"{table_b} b")
    return MERGE_IN_ORDER, f"{joined} WHERE {' AND '.join(where)}"


def select_oldest_first(cur, project_id, filters, offset, limit, since=None):
    """Return `limit` of the project's rows after skipping `offset`, oldest first, from created_at `since` if given."""
    # The inner query skips rows on the indexes alone; only the page itself is read from the log.
    settings, matching = _matching(cur, project_id, filters, since and SINCE)
    cur.execute(
        f"""{settings} SELECT {E_EMAIL_SQL} FROM emails e JOIN (
                SELECT a.created_at, a.id FROM {matching}
                ORDER BY a.created_at, a.id OFFSET %(offset)s LIMIT %(limit)s
            ) page USING (id)
            ORDER BY e.created_at, e.id""",
        {**filters, "project_id": project_id, "since": since, "offset": offset, "limit": limit},
    )
    return cur.fetchall()


def select_newest_first(cur, project_id, filters, before, limit):
    """Return up to `limit` of the project's rows, newest first, from just past the position (created_at, id)
    `before` in that order."""
    before_at, before_id = before or (None, None)
    settings, matching = _matching(cur, project_id, filters, before and BEFORE_POSITION)
    cur.execute(
        f"""{settings} SELECT {E_EMAIL_SQL} FROM emails e JOIN (
                SELECT a.created_at, a.id FROM {matching}
                ORDER BY a.created_at DESC, a.id DESC LIMIT %(limit)s
            ) page USING (id)
            ORDER BY e.created_at DESC, e.id DESC""",
        {**filters, "project_id": project_id, "before_at": before_at, "before_id": before_id, "limit": limit},
    )
    return cur.fetchall()


def count_matching_up_to(cur, project_id, filters, cap):
    """Return how many of the project's rows match, counting no further than `cap` + 1 so the cost stays bounded."""
    settings, matching = _matching(cur, project_id, filters)
    cur.execute(
        f"{settings} SELECT count(*) AS n FROM (SELECT 1 FROM {matching} LIMIT %(cap)s + 1) m",
        {**filters, "project_id": project_id, "cap": cap},
    )
    return cur.fetchone()["n"]


def estimate_matching(cur, project_id, filters):
    """Return the planner's estimate of how many of the project's rows match: instant at any size, roughly right."""
    _, matching = _matching(cur, project_id, filters, estimate=True)
    cur.execute(f"EXPLAIN (FORMAT JSON) SELECT 1 FROM {matching}", {**filters, "project_id": project_id})
    return int(cur.fetchone()["QUERY PLAN"][0]["Plan"]["Plan Rows"])
