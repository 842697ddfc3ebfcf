"""What GET /metrics answers: every process's counts (emailsvc/metrics/files.py), and the state of the queues
and the log, read from Redis and PostgreSQL at the moment of the scrape.

State is read rather than counted: a queue's depth or the oldest waiting job is a fact of Redis, not
of any one process, and the log's totals are kept by PostgreSQL's running counts (queries/log_counts.py)
exactly, through restarts, for every path a message can take, at no cost to sending. A backend that is
down leaves its figures out and says so in emailsvc_backend_up; the counts of the processes still answer.
"""

import logging
import time

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from redis.exceptions import RedisError
from rq.job import Job
from rq.utils import utcparse

from ..db import DatabaseUnavailable
from ..queries.log_counts import count_totals, fill_log_counts
from ..queries.metrics import count_waiting_messages, webhook_backlog
from ..queries.projects import list_project_ids
from . import REGISTRY
from .files import uses_files

log = logging.getLogger(__name__)
WAITING_STATUSES = ("SCHEDULED", "PENDING", "SENDING")


def render(services, metrics_dir):
    """Return the Prometheus text of every metric."""
    registry = CollectorRegistry(auto_describe=False)
    if uses_files():
        MultiProcessCollector(registry, path=metrics_dir)
    else:  # one process (tests, a development server): its own counts are all there are
        registry.register(_Counted())
    registry.register(StateCollector(services))
    return generate_latest(registry)


class _Counted:
    def collect(self):
        return REGISTRY.collect()


class StateCollector:
    """Yields what Redis and PostgreSQL say now; each scrape asks them afresh."""

    def __init__(self, services):
        self.services = services

    def collect(self):
        up = GaugeMetricFamily("emailsvc_backend_up", "Whether the scrape could read this backend (1) or not (0).",
                               labels=["backend"])  # fmt: skip
        for backend, read, errors in (
            ("redis", self._queues, RedisError),
            ("postgresql", self._log, DatabaseUnavailable),
        ):
            try:
                families = read()
            except errors as exc:
                log.warning("metrics: %s unavailable: %s", backend, exc)
                families = []
            up.add_metric([backend], 1 if families else 0)
            yield from families
        yield up

    def _queues(self):
        """Depth and oldest job's age of queue email, queue webhooks, and RQ's scheduled jobs (send_at, retries)."""
        services = self.services
        queues = {"email": services.email_queue, "webhooks": services.webhook_queue}
        scheduled = services.email_queue.scheduled_job_registry.key
        pipe = services.redis.pipeline(transaction=False)
        for queue in queues.values():
            pipe.llen(queue.key)
            pipe.lindex(queue.key, 0)  # the next job out: the one that has waited longest
        pipe.zcard(scheduled)
        pipe.zrange(scheduled, 0, 0, withscores=True)  # the earliest due
        *queued, scheduled_depth, earliest = pipe.execute()
        heads = [head for head in queued[1::2] if head is not None]
        pipe = services.redis.pipeline(transaction=False)
        for head in heads:
            pipe.hget(Job.key_for(head.decode()), "enqueued_at")
        enqueued = dict(zip(heads, pipe.execute(), strict=True)) if heads else {}
        now = time.time()
        depth = GaugeMetricFamily("emailsvc_queue_depth", "Jobs waiting in an RQ queue; `scheduled`: jobs waiting "
                                  "for their time (send_at, retries).", labels=["queue"])  # fmt: skip
        age = GaugeMetricFamily("emailsvc_queue_oldest_job_age_seconds", "How long the next job of a queue has "
                                "waited; `scheduled`: how far past its time the earliest job is (0: none late).",
                                labels=["queue"])  # fmt: skip
        for (name, _), length, head in zip(queues.items(), queued[0::2], queued[1::2], strict=True):
            depth.add_metric([name], length)
            at = enqueued.get(head)
            age.add_metric([name], max(0.0, now - utcparse(at.decode()).timestamp()) if at else 0.0)
        depth.add_metric(["scheduled"], scheduled_depth)
        age.add_metric(["scheduled"], max(0.0, now - earliest[0][1]) if earliest else 0.0)
        return [depth, age]

    def _log(self):
        """The log's totals per project, the messages waiting, and the outbound webhooks' backlog."""
        services = self.services
        with services.db.cursor() as cur:
            for project_id in list_project_ids(cur):
                fill_log_counts(cur, project_id)  # as a reader of the log does: the live part stays small
        with services.read_db.cursor() as cur:
            totals, waiting, backlog = count_totals(cur), count_waiting_messages(cur), webhook_backlog(cur)
        info = GaugeMetricFamily("emailsvc_project_info", "A project's name, to join on the `project` label "
                                 "(the id, which a rename does not change).", labels=["project", "name"])  # fmt: skip
        counters = {
            name: CounterMetricFamily(f"emailsvc_messages_{name}", help_text, labels=["project"])
            for name, help_text in (
                ("accepted", "Messages accepted (201) or scheduled, by project id."),
                ("sent", "Messages the relay accepted for at least one recipient, by project id."),
                ("failed", "Messages that ended FAILED, by project id."),
            )
        }
        for row in totals:
            project = str(row["id"])
            info.add_metric([project, row["name"]], 1)
            for name, counter in counters.items():
                counter.add_metric([project], row[{"accepted": "created"}.get(name, name)])
        waiting = {(row["project_id"], row["status"]): row["n"] for row in waiting}
        waiting_family = GaugeMetricFamily("emailsvc_messages_waiting", "Messages not yet handed to the relay, by "
                                           "project id and status.", labels=["project", "status"])  # fmt: skip
        for row in totals:
            for status in WAITING_STATUSES:
                waiting_family.add_metric([str(row["id"]), status], waiting.get((row["id"], status), 0))
        webhooks_waiting = GaugeMetricFamily("emailsvc_webhook_deliveries_waiting", "Outbound webhook deliveries "
                                             "not finished (due, queued, or waiting for a retry).",
                                             value=backlog["waiting"])  # fmt: skip
        oldest_due = GaugeMetricFamily("emailsvc_webhook_oldest_due_seconds",
                                       "How long the most overdue webhook delivery has been due without being queued.",
                                       value=backlog["oldest_due"])  # fmt: skip
        return [info, *counters.values(), waiting_family, webhooks_waiting, oldest_due]
