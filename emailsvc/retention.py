"""Retention: one purge pass, as `flask --app wsgi purge` and the worker's supervisor (once a day) run it.

A pass is a list of steps, each a kind of data kept for the days one setting says (0: for ever):
whole log rows with their events for LOG_RETENTION_DAYS, then message content (body, html, headers)
for BODY_RETENTION_DAYS (rows first: content about to go with its row is not purged on the way).
Attachment content goes in the same transaction as the content or row that last carried it. Every step works
a project at a time in batches of BATCH rows, oldest first, so no statement holds its locks for long,
and stops between batches when asked to.
"""

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from .queries.log_counts import fill_log_counts
from .queries.projects import list_project_ids
from .queries.retention import (
    count_content,
    count_rows,
    delete_rows,
    delete_unlinked_contents,
    lock_retention,
    purge_content,
    unlock_retention,
)
from .services import get_services

log = logging.getLogger(__name__)
BATCH = 1000


@dataclass(frozen=True)
class Step:
    """One kind of data a pass removes once it is older than the days in `setting`."""

    name: str  # what the pass reports, e.g. "message content"
    setting: str
    remove: callable  # (cursor, project_id, before, limit) -> how many it removed (at most limit), their contents
    count: callable  # (cursor, project_id, before) -> how many `remove` would take in all


STEPS = (
    Step("log rows", "LOG_RETENTION_DAYS", delete_rows, count_rows),
    Step("message content", "BODY_RETENTION_DAYS", purge_content, count_content),
)


def purge(config, dry_run=False, should_stop=lambda: False, now=None):
    """Run one pass; return [(step, cutoff or None when kept for ever, how many removed or, dry, would be)], or
    None when another pass holds the lock."""
    now = now or datetime.now(UTC)
    with get_services().db.cursor() as cur:
        if not lock_retention(cur):
            return None
        try:
            projects = list_project_ids(cur)
            for project_id in projects:
                # The running totals cover every row before deletions start: they then only subtract.
                while fill_log_counts(cur, project_id):
                    pass
            done = [_run(cur, step, projects, config, now, dry_run, should_stop) for step in STEPS]
        finally:
            if not cur.connection.closed:
                unlock_retention(cur)
    if not dry_run and any(removed for _, _, removed in done):
        log.info("purge: %s", "; ".join(f"{step.name} {removed}" for step, _, removed in done))
    return done


def _remove(cur, step, project_id, before):
    """Remove one batch of `step`, and the attachment contents it leaves unlinked, in one transaction."""
    cur.execute("BEGIN")
    try:
        removed, contents = step.remove(cur, project_id, before, BATCH)
        delete_unlinked_contents(cur, project_id, contents)
    except BaseException:
        if not cur.connection.closed:
            cur.execute("ROLLBACK")
        raise
    cur.execute("COMMIT")
    return removed


def _run(cur, step, projects, config, now, dry_run, should_stop):
    days = config[step.setting]
    if not days:
        return step, None, 0
    before, removed = now - timedelta(days=days), 0
    for project_id in projects:
        if dry_run:
            removed += step.count(cur, project_id, before)
            continue
        while not should_stop():
            batch = _remove(cur, step, project_id, before)
            removed += batch
            if batch < BATCH:
                break
    return step, before, removed
