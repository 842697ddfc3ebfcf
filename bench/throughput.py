"""`make bench`: how fast emailsvc accepts and delivers mail, beside bare baselines, in one run.

Prints one table: accept (service vs a bare Flask app, 16 and 64 connections; batches of 100 beside
single sends), delivery
(worker.py vs a bare loop vs RQ's forking worker, against smtp-sink and against bench/relay.py
answering each DATA after 0 and 100 ms), end to end (paced at 100/s and flat out), and resident
memory. Everything runs on loopback against a database and Redis db of its own (BENCH_DB, default
emailsvc_bench; BENCH_REDIS_DB, default 10). WORKER_PROCESSES, SMTP_CONCURRENCY and
SMTP_MAX_CONNECTIONS reach worker.py when set; otherwise it runs at its defaults.

Every rate limit is raised for the run (harness.RAISED_LIMITS). An accept row that met a non-2xx
answer or a request unanswered after 10 s, or whose ratio falls below its floor (ACCEPT_FLOORS), is
marked FAILED, and the run exits with status 1 after printing the whole table. BENCH_SECTIONS (a
comma list of accept, delivery, latency, end-to-end, costs; default all) runs only some sections:
`BENCH_SECTIONS=accept,costs` takes about a minute.
"""

import os
import subprocess
import sys
import tempfile
import time

import psycopg2
from harness import (
    PYTHON,
    RAISED_LIMITS,
    ROOT,
    answers,
    base_urls,
    children,
    free_port,
    gunicorn,
    listens,
    load_average,
    log_to_file,
    relay,
    relay_reset,
    relay_stats,
    rss_mb,
    run_to_end,
    smtp_sink,
    started,
    tree_rss_mb,
    wait_until,
    wrk,
)
from redis import Redis

sys.path.insert(0, ROOT)
from emailsvc import create_app  # noqa: E402
from emailsvc.db import init_db  # noqa: E402
from emailsvc.services import get_services  # noqa: E402

SECONDS = int(os.environ.get("BENCH_SECONDS", "10"))
SECTIONS = ("accept", "delivery", "latency", "end-to-end", "costs")
# The accept path's floors (issue 13), at 16 connections: emailsvc's single sends against the bare app's,
# throughput at least, p99 at most; and messages/s through batches of BATCH_SIZE at least this many times
# emailsvc's own single-send rate.
ACCEPT_FLOORS = {"throughput": 0.45, "p99": 3.0, "batch": 5.0}
BATCH_SIZE = 100
MESSAGES = int(os.environ.get("BENCH_MESSAGES", "5000"))
FORKING_MESSAGES = int(os.environ.get("BENCH_FORKING_MESSAGES", "600"))
# Delivery at relay latency: (relay delay ms, messages for worker.py and the bare loop, for RQ's forking
# worker). Each drain also stops after LATENCY_WINDOW seconds, so a slow configuration costs a bounded
# time: at 100 ms today's 2 processes take ~18/s, and 1,000 messages would take ~55 s.
LATENCY_RUNS = ((0, 2000, 300), (100, 1000, 200))
LATENCY_WINDOW = float(os.environ.get("BENCH_LATENCY_WINDOW", "20"))
# Settings of the concurrent sending design, passed to worker.py when set, so the same rows measure it.
WORKER_SETTINGS = ("WORKER_PROCESSES", "SMTP_CONCURRENCY", "SMTP_MAX_CONNECTIONS")
BODY = {
    "to": "Reader <reader@example.com>",
    "subject": "Your order has shipped",
    "body": "Hello, your order 42 is on its way.",
    "metadata": {"order_id": "42"},
}


class Bench:
    def __init__(self, log_dir, db=None, redis_db=None):
        pg, redis = base_urls()
        db = db or os.environ.get("BENCH_DB", "emailsvc_bench")
        redis_db = redis_db or os.environ.get("BENCH_REDIS_DB", "10")
        self.db_url, self.redis_url = f"{pg}/{db}", f"{redis}/{redis_db}"
        self.log_dir = log_dir
        log_to_file(log_dir)  # the requests that queue the messages log a line each
        self.sink_port = free_port()
        self.env = {
            **os.environ,
            "DATABASE_URL": self.db_url,
            "REDIS_URL": self.redis_url,
            "SMTP_PORT": str(self.sink_port),
            **RAISED_LIMITS,
            "PYTHONPATH": ROOT,
        }
        for name in ("WORKER_PROCESSES", "SMTP_CONCURRENCY", "SMTP_MAX_CONNECTIONS"):
            # The defaults unless asked for in the environment; never a stray value from .env.
            if not os.environ.get(name):
                self.env.pop(name, None)
        init_db(self.db_url)
        self.sql(
            "CREATE TABLE IF NOT EXISTS bench_baseline (id bigserial PRIMARY KEY, payload jsonb, "
            "created_at timestamptz DEFAULT now())"
        )
        self.app = create_app({k: v for k, v in self.env.items() if k.isupper()})
        self.reset()
        self.key = self.make_key()
        self.rows = []
        self.failures = []

    def sql(self, query, params=None):
        conn = psycopg2.connect(self.db_url)
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(query, params)
            result = cur.fetchall() if cur.description else None
        conn.close()
        return result

    def reset(self):
        self.sql("TRUNCATE emails, email_events, bench_baseline CASCADE")
        Redis.from_url(self.redis_url).flushdb()

    def make_key(self):
        from emailsvc.auth import hash_key, new_key
        from emailsvc.queries.api_keys import insert_api_key
        from emailsvc.queries.projects import ensure_project

        key = new_key()
        with self.app.app_context(), get_services().db.cursor() as cur:
            project_id = ensure_project(cur, "default")["id"]
            insert_api_key(cur, project_id, "bench", hash_key(key), key[:12], ["send", "read"])
        return key

    def queue_messages(self, count):
        """Queue `count` messages through the real view: validation, the row, the enqueue."""
        client = self.app.test_client()
        headers = {"Authorization": f"Bearer {self.key}"}
        for _ in range(count):
            assert client.post("/email/send", json=BODY, headers=headers).status_code == 201

    def delivery_rate(self, count):
        """Mails/s from the first claim to the last SENT, read from the log itself."""
        wait_until(lambda: self.sent() >= count, 900, f"{count} messages SENT")
        ((first, last),) = self.sql("SELECT min(sent_at), max(sent_at) FROM emails")
        return (count - 1) / max((last - first).total_seconds(), 1e-6)

    def sent(self):
        return self.sql("SELECT count(*) FROM emails WHERE status = 'SENT'")[0][0]

    def depth(self):
        queued = Redis.from_url(self.redis_url).llen("rq:queue:email")
        waiting = self.sql("SELECT count(*) FROM emails WHERE status IN ('PENDING', 'SENDING')")[0][0]
        return queued, waiting

    def drain(self, args, env, name, relay_port, count, window):
        """Run `args` until the relay has taken `count` messages or `window` seconds have passed since the
        first; return (mails/s from the first to the last message the relay took, messages, RSS MiB of
        the process tree at the end, its process count)."""
        relay_reset(relay_port)
        with started(args, env, name, self.log_dir) as proc:
            wait_until(lambda: relay_stats(relay_port)["messages"] >= 1, 120, f"{name}'s first message")
            deadline = time.monotonic() + window
            while time.monotonic() < deadline and relay_stats(relay_port)["messages"] < count:
                if proc.poll() is not None:
                    break
                time.sleep(0.2)
            stats = relay_stats(relay_port)
            memory, processes = tree_rss_mb(proc.pid) if proc.poll() is None else (0.0, 0)
        rate = (stats["messages"] - 1) / max(stats["last"] - stats["first"], 1e-6)
        return rate, int(stats["messages"]), memory, processes

    def add(self, *row, failures=()):
        """Print a row of the table; each of `failures` marks it FAILED, and the run's exit status with it."""
        if failures:
            row = (*row, "FAILED: " + "; ".join(failures))
            self.failures.append(row[0])
        self.rows.append(row)
        print("  ".join(str(c) for c in row), flush=True)


def fmt(value, digits=0):
    return f"{value:,.{digits}f}"


def accept(bench):
    """Section 1: requests/s and latency of POST /email/send, beside the bare app; then POST /email/batch."""
    svc_port, base_port = free_port(), free_port()
    wrk_env = {**os.environ, "BENCH_KEY": bench.key}
    with (
        gunicorn("wsgi:app", svc_port, bench.env, "web", bench.log_dir),
        gunicorn("bench.baseline_app:app", base_port, bench.env, "baseline", bench.log_dir),
    ):
        for port in (svc_port, base_port):
            wait_until(lambda p=port: listens(p), 30, "gunicorn")
        wait_until(lambda: answers(f"http://127.0.0.1:{svc_port}/readyz"), 30, "the API")
        results = {}
        for conns in (16, 64):
            for name, port in (("emailsvc", svc_port), ("baseline", base_port)):
                url = f"http://127.0.0.1:{port}/email/send"
                wrk(url, conns, 2, wrk_env)  # warm up connections and caches
                results[name, conns] = wrk(url, conns, SECONDS, wrk_env)
        batch_url, batch_env = f"http://127.0.0.1:{svc_port}/email/batch", {**wrk_env, "BENCH_BATCH": str(BATCH_SIZE)}
        wrk(batch_url, 16, 2, batch_env)
        batches = wrk(batch_url, 16, SECONDS, batch_env)
    for conns in (16, 64):
        (s_rate, s_p50, s_p99, s_bad), (b_rate, b_p50, b_p99, b_bad) = (
            results["emailsvc", conns],
            results["baseline", conns],
        )
        ratio, p99_ratio = s_rate / b_rate, s_p99 / b_p99
        unanswered = (("emailsvc", s_bad), ("the bare app", b_bad))
        failures = [f"{bad} non-2xx or unanswered from {name}" for name, bad in unanswered if bad]
        if conns == 16 and ratio < ACCEPT_FLOORS["throughput"]:
            failures.append(f"throughput below the floor of {ACCEPT_FLOORS['throughput']}x")
        if conns == 16 and p99_ratio > ACCEPT_FLOORS["p99"]:
            failures.append(f"p99 above the ceiling of {ACCEPT_FLOORS['p99']}x")
        bench.add(
            f"accept c={conns}",
            f"emailsvc {fmt(s_rate)} req/s p50 {s_p50:.1f} ms p99 {s_p99:.1f} ms",
            f"baseline {fmt(b_rate)} req/s p50 {b_p50:.1f} ms p99 {b_p99:.1f} ms",
            f"ratio {ratio:.2f}x throughput, {p99_ratio:.2f}x p99",
            failures=failures,
        )
    rate, p50, p99, bad = batches
    messages, single = rate * BATCH_SIZE, results["emailsvc", 16][0]
    failures = [f"{bad} non-2xx or unanswered"] if bad else []
    if messages / single < ACCEPT_FLOORS["batch"]:
        failures.append(f"below the floor of {ACCEPT_FLOORS['batch']}x the single-send rate")
    bench.add(
        f"accept batches of {BATCH_SIZE} c=16",
        f"emailsvc {fmt(rate, 1)} req/s = {fmt(messages)} messages/s p50 {p50:.1f} ms p99 {p99:.1f} ms",
        f"single sends {fmt(single)} messages/s",
        f"ratio {messages / single:.1f}x single sends",
        failures=failures,
    )
    bench.reset()


def delivery(bench):
    """Section 2: mails/s draining a queue: worker.py, a bare loop, and RQ's forking worker."""
    bench.queue_messages(MESSAGES)
    with started([PYTHON, "worker.py"], bench.env, "worker", bench.log_dir) as worker:
        rate = bench.delivery_rate(MESSAGES)
        memory = {"worker supervisor": rss_mb(worker.pid)}
        for i, pid in enumerate(children(worker.pid)):
            memory[f"worker process {i + 1}"] = rss_mb(pid)
    bench.sql("UPDATE emails SET status = 'PENDING', sent_at = NULL")
    run_to_end([PYTHON, "bench/bare_delivery.py", bench.db_url, str(bench.sink_port)], None, "bare", bench.log_dir)
    bare = bench.delivery_rate(MESSAGES)
    bench.reset()
    bench.queue_messages(FORKING_MESSAGES)
    run_to_end([PYTHON, "bench/forking_worker.py"], bench.env, "forking", bench.log_dir)
    forking = bench.delivery_rate(FORKING_MESSAGES)
    bench.add(
        "delivery",
        f"worker.py {fmt(rate)} mails/s",
        f"bare loop {fmt(bare)} mails/s",
        f"RQ forking worker {fmt(forking)} mails/s",
        f"ratio {rate / bare:.2f}x bare, {rate / forking:.1f}x forking",
    )
    bench.reset()
    return memory


def delivery_at_latency(bench):
    """Section 2b: the same three drains against bench/relay.py answering each DATA after 0 and 100 ms."""
    for delay, count, forking_count in LATENCY_RUNS:
        port = free_port()
        env = {**bench.env, "SMTP_PORT": str(port)}
        with relay(port, delay, bench.log_dir):
            wait_until(lambda p=port: listens(p), 10, "the relay")
            bench.queue_messages(count)
            rate, done, memory, processes = bench.drain(
                [PYTHON, "worker.py"], env, f"worker-{delay}ms", port, count, LATENCY_WINDOW
            )
            bench.sql("UPDATE emails SET status = 'PENDING', sent_at = NULL")
            bare, bare_done, _, _ = bench.drain(
                [PYTHON, "bench/bare_delivery.py", bench.db_url, str(port)], env, f"bare-{delay}ms", port, count,
                LATENCY_WINDOW,
            )  # fmt: skip
            bench.reset()
            bench.queue_messages(forking_count)
            forking, forking_done, _, _ = bench.drain(
                [PYTHON, "bench/forking_worker.py"], env, f"forking-{delay}ms", port, forking_count, LATENCY_WINDOW
            )
            bench.reset()
        bench.add(
            f"delivery, relay {delay} ms",
            f"worker.py {fmt(rate, 1)} mails/s ({done} msgs), RSS {memory:.0f} MiB in {processes} processes",
            f"bare loop {fmt(bare, 1)} mails/s ({bare_done})",
            f"RQ forking worker {fmt(forking, 1)} mails/s ({forking_done})",
            f"ratio {rate / bare:.2f}x bare, {rate / forking:.1f}x forking",
        )


def end_to_end(bench):
    """Section 3: HTTP load and workers together: paced at 100/s, then flat out with 16 connections."""
    port = free_port()
    with (
        gunicorn("wsgi:app", port, bench.env, "web-e2e", bench.log_dir) as web,
        started([PYTHON, "worker.py"], bench.env, "worker-e2e", bench.log_dir),
    ):
        wait_until(lambda: answers(f"http://127.0.0.1:{port}/readyz"), 30, "the API")
        memory = {"gunicorn master": rss_mb(web.pid)}
        for i, pid in enumerate(children(web.pid)):
            memory[f"gunicorn worker {i + 1}"] = rss_mb(pid)
        for label, args in (("paced 100/s", ["--rate", "100"]), ("flat out c=16", ["--connections", "16"])):
            before = bench.sent()
            out = subprocess.run(
                [PYTHON, "bench/pacer.py", f"http://127.0.0.1:{port}/email/send", bench.key, "--seconds", "20", *args],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            accepted, elapsed = (float(x) for x in out.split())
            delivered = bench.sent() - before
            queued, waiting = bench.depth()
            bench.add(
                f"end to end {label}",
                f"accepted {fmt(accepted / elapsed)}/s",
                f"delivered {fmt(delivered / elapsed)}/s",
                f"at the end: {queued} jobs queued, {waiting} rows waiting",
            )
            wait_until(lambda: bench.depth() == (0, 0), 300, "the queue to drain")
    bench.reset()
    return memory


def costs(bench, log_dir):
    """Section 4: round trips and time of one accepted request and one delivery job (bench/costs.py)."""
    db, redis_db = bench.db_url.rsplit("/", 1)[1], bench.redis_url.rsplit("/", 1)[1]
    with open(os.path.join(log_dir, "costs.log"), "ab") as log:  # its app's and worker's lines
        counted = subprocess.run(
            [PYTHON, "bench/costs.py", "--sink-port", str(bench.sink_port), "--db", db, "--redis", redis_db],
            cwd=ROOT, check=True, stdout=subprocess.PIPE, stderr=log, text=True,
        ).stdout  # fmt: skip
    for line in counted.splitlines():
        bench.add(*line.split(": ", 1))
    bench.reset()


def main():
    sections = [s.strip() for s in os.environ.get("BENCH_SECTIONS", ",".join(SECTIONS)).split(",") if s.strip()]
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        sys.exit(f"BENCH_SECTIONS: unknown {', '.join(sorted(unknown))} (known: {', '.join(SECTIONS)})")
    log_dir = tempfile.mkdtemp(prefix="emailsvc-bench-")
    settings = ", ".join(f"{name}={os.environ.get(name) or 'default'}" for name in WORKER_SETTINGS)
    print(f"emailsvc throughput benchmark — {os.cpu_count()} cores, {load_average()}, logs in {log_dir}", flush=True)
    print(f"worker.py settings: {settings}\n", flush=True)
    bench = Bench(log_dir)
    with smtp_sink(bench.sink_port, log_dir):
        wait_until(lambda: listens(bench.sink_port), 10, "smtp-sink")
        started_at = time.monotonic()
        memory = {}
        if "accept" in sections:
            accept(bench)
        if "delivery" in sections:
            memory.update(delivery(bench))
        if "latency" in sections:
            delivery_at_latency(bench)
        if "end-to-end" in sections:
            memory.update(end_to_end(bench))
        if "costs" in sections:
            costs(bench, log_dir)
    if memory:
        bench.add("memory (RSS)", ", ".join(f"{name} {mb:.0f} MiB" for name, mb in memory.items()))
    print(f"\n(ran {time.monotonic() - started_at:.0f} s; at the end, {load_average()})")
    if bench.failures:
        print(f"FAILED: {', '.join(bench.failures)}")
        sys.exit(1)


if __name__ == "__main__":
    main()
