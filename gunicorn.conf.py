"""gunicorn settings for `gunicorn wsgi:app` (Procfile) and `make run`; each with why."""

import os

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
# Logs on stdout/stderr for the process manager to collect.
accesslog = "-"
errorlog = "-"
# The default format plus the time taken, the worker's pid and the X-Request-ID, so an access line
# can be matched with the application's own log lines of the same request.
access_log_format = '%(h)s %(t)s "%(r)s" %(s)s %(b)s %(M)sms %(p)s request_id=%({x-request-id}o)s "%(a)s"'
# The runtime control socket is one per user by default: several instances on one host (tests,
# benchmarks) would fight over it, and signals already cover reloads and stops.
control_socket_disable = True
