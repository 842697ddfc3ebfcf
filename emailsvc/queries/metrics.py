"""SQL read when GET /metrics is scraped: what is waiting now, across projects (the totals are in log_counts.py)."""


def count_waiting_messages(cur):
    """Return (project_id, status, n) of the messages not yet handed to the relay: SCHEDULED, PENDING, SENDING."""
    # Answered from emails_waiting_idx, whose rows are only the unfinished ones, whatever the log's size.
    cur.execute(
        """SELECT project_id, status, count(*) AS n FROM emails
           WHERE status IN ('SCHEDULED', 'PENDING', 'SENDING') GROUP BY project_id, status ORDER BY 1, 2"""
    )
    return cur.fetchall()


def webhook_backlog(cur):
    """Return {waiting, oldest_due}: unfinished outbound deliveries, and how many seconds the most overdue one
    that is due and not yet queued has waited (0 when none)."""
    cur.execute(
        """SELECT count(*) AS waiting,
                  coalesce(extract(epoch FROM now() - min(next_attempt_at) FILTER (
                      WHERE state = 'pending' AND next_attempt_at <= now()))::float, 0) AS oldest_due
           FROM webhook_deliveries WHERE state IN ('pending', 'queued', 'sending')"""
    )
    return cur.fetchone()
