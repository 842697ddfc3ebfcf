"""gunicorn settings for `gunicorn wsgi:app` (Procfile) and `make run`; each with why."""

import os

from emailsvc.config import load_config
from emailsvc.metrics.files import clear_files, mark_dead, use_files

# The settings the app reads: where the processes keep their metrics, and the log format.
settings = load_config()
METRICS_DIR = settings["PROMETHEUS_MULTIPROC_DIR"]

# Overridable so a platform can choose the port; loopback by default, a proxy fronts it in production.
bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")
# Sync workers: a send is short CPU work plus a few round trips, never a wait on a slow client. On
# 2 cores (docs/performance.md) cores + 1 sync workers gave the best throughput and p99: 2 workers
# left a core idle while one waited on PostgreSQL, 5 and 8 only added switching, and gthread
# (3 x 4 threads) matched the throughput with a worse p99 at 16 connections.
workers = int(os.environ.get("WEB_CONCURRENCY", (os.cpu_count() or 1) + 1))
worker_class = "sync"
# Under the 30 s default: a request that stalls on a dead backend is cut before a client gives up.
timeout = 20
# SIGTERM: in-flight requests get this long to finish before workers are stopped.
graceful_timeout = 20
# Keep-alive lets a load balancer or client reuse connections between sends.
keepalive = 5
# Logs on stderr for the process manager to collect. No access log: the app writes one line per request
# itself (emailsvc/request_log.py) with the route template instead of the path, whose query string or
# last segment can name a recipient, and with the request ID and the key's project and id.
accesslog = None
errorlog = "-"
if settings["LOG_FORMAT"] == "json":
    # gunicorn's own lines (start, worker boot and exit, timeouts) as JSON objects, like the app's.
    logconfig_dict = {
        "root": {"level": "INFO", "handlers": ["json"]},
        "loggers": {"gunicorn.error": {"level": "INFO", "handlers": [], "propagate": True}},
        "handlers": {"json": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}},
        "formatters": {"json": {"()": "emailsvc.logging_config.json_formatter"}},
    }
# The runtime control socket is one per user by default: several instances on one host (tests,
# benchmarks) would fight over it, and signals already cover reloads and stops.
control_socket_disable = True


def on_starting(server):
    # What an earlier run's workers counted must not be summed into this run's (worker.py's files stay).
    clear_files(METRICS_DIR, "web")


def post_fork(server, worker):
    # Each worker counts into files of its own, before the app is loaded, so GET /metrics sums them all.
    use_files(METRICS_DIR, "web")


def child_exit(server, worker):
    mark_dead(METRICS_DIR, "web", worker.pid)
