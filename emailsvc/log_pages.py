"""Read a project's email log for the API and the page: a page of it, its total and today's counts (concurrently on
the read pool), or one message with its events."""

import math
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, time, timedelta

from .cursors import split_page
from .errors import NotFound
from .queries.emails import get_email, list_events
from .queries.log_counts import count_all_logs, count_day, fill_log_counts, locate_offset
from .queries.logs import (
    FILTERS,
    count_matching_up_to,
    estimate_matching,
    select_newest_first,
    select_oldest_first,
    two_indexes_meet,
)

# Above this many matches a filtered total is the planner's estimate, flagged `total_exact: false`.
EXACT_TOTAL_LIMIT = 10_000
# The same for `status` beside `to` or `from`, which match where two indexes meet: counting n matches of two
# filters that each match 5% of a project (1 message in 400 matches both) reads about 20 n entries of each
# index: 11 ms for 1,001 at 5M rows, 0.12 s for 10,001 (docs/performance.md).
COMBINED_EXACT_TOTAL_LIMIT = 1_000


def exact_total_limit(filters):
    """How many matches of `filters` the total counts exactly before it becomes the planner's estimate."""
    return COMBINED_EXACT_TOTAL_LIMIT if two_indexes_meet(filters) else EXACT_TOTAL_LIMIT


def run_concurrently(*calls):
    """Run each (database, query, *args) on a pooled connection of its own, all at once; return the results."""

    def run(database, query, *args):
        with database.cursor() as cur:
            return query(cur, *args)

    with ThreadPoolExecutor(max_workers=len(calls) - 1) as pool:
        futures = [pool.submit(run, *call) for call in calls[1:]]
        first = run(*calls[0])  # the request's own thread takes one share of the work
        return [first] + [future.result() for future in futures]


def today_window(tz, now=None):
    """Return (date, start, end): the current calendar day in `tz` and the instants it begins and ends."""
    day = (now or datetime.now(tz)).astimezone(tz).date()
    return day, datetime.combine(day, time(), tz), datetime.combine(day + timedelta(days=1), time(), tz)


def _today(day, tz, counts):
    return {"date": day.isoformat(), "timezone": str(tz), **counts}


def _oldest_first(cur, project_id, filters, offset, limit):
    if any(filters.values()):
        return select_oldest_first(cur, project_id, filters, offset, limit)
    since, skip = locate_offset(cur, project_id, offset)  # jumps to the right bucket instead of skipping row by row
    return select_oldest_first(cur, project_id, filters, skip, limit, since)


def _total(cur, project_id, filters):
    if not any(filters.values()):
        return count_all_logs(cur, project_id), True
    limit = exact_total_limit(filters)
    matching = count_matching_up_to(cur, project_id, filters, limit)
    if matching <= limit:
        return matching, True
    return max(estimate_matching(cur, project_id, filters), matching), False


def read_offset_page(services, project_id, args):
    """Offset mode: page `page` of the project's matching rows, oldest first, with the total."""
    filters = {name: args[name] for name in FILTERS}
    page, limit = args["page"], args["limit"]
    day, start, end = today_window(args["tz"])
    rows, (total, exact), counts, _ = run_concurrently(
        (services.read_db, _oldest_first, project_id, filters, (page - 1) * limit, limit),
        (services.read_db, _total, project_id, filters),
        (services.read_db, count_day, project_id, start, end),
        (services.db, fill_log_counts, project_id),
    )
    pagination = {"page": page, "limit": limit, "total": total, "total_pages": math.ceil(total / limit)}
    return rows, {**pagination, "total_exact": exact}, _today(day, args["tz"], counts)


def read_cursor_page(services, project_id, args):
    """Cursor mode: the project's matching rows just older than the cursor's (or the newest), newest first."""
    filters = {name: args[name] for name in FILTERS}
    limit = args["limit"]
    day, start, end = today_window(args["tz"])
    rows, counts, _ = run_concurrently(
        # One more than the page: whether another page follows.
        (services.read_db, select_newest_first, project_id, filters, args["cursor"], limit + 1),
        (services.read_db, count_day, project_id, start, end),
        (services.db, fill_log_counts, project_id),
    )
    rows, next_cursor = split_page(rows, limit, lambda row: (row["created_at"], row["id"]))
    return rows, {"limit": limit, "next_cursor": next_cursor}, _today(day, args["tz"], counts)


def read_today(services, project_id, tz):
    """Today's counts of the project in `tz` alone, as the log pages report them (for GET /project)."""
    day, start, end = today_window(tz)
    counts, _ = run_concurrently(
        (services.read_db, count_day, project_id, start, end),
        (services.db, fill_log_counts, project_id),
    )
    return _today(day, tz, counts)


def read_message(services, project_id, email_id):
    """One message of the project (its id as text) with its events, oldest first; NotFound when it is not
    the project's: another project's id is an unknown one."""
    try:
        email_id = uuid.UUID(email_id)
    except ValueError as exc:
        raise NotFound("No email with this id.") from exc
    with services.read_db.cursor() as cur:
        row = get_email(cur, project_id, email_id)
        if row is None:
            raise NotFound("No email with this id.")
        row["events"] = list_events(cur, email_id)
    return row
