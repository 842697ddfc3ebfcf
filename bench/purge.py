"""How the API answers while a retention pass deletes a large log: `make bench-purge` (ROWS, default 1,000,000).

    python bench/purge.py --pg URL --redis URL [--rows N] [--seconds S] [--database NAME]

Fills its own database with ROWS messages spread over the last 90 days (bench/fill_emails.sql) and an
event each, starts gunicorn (the project's gunicorn.conf.py) on it, and times GET /email/logs (a
cursor page with today's counts) and POST /email/send one after the other for S seconds before the
purge, then while `flask --app wsgi purge` runs with LOG_RETENTION_DAYS=1 (every row but the last
day's goes, about ROWS x 89/90). Prints the purge's time and rate, the latencies of both phases, and
checks the totals after: the log's total equals a count of the rows.
"""

import argparse
import http.client
import json
import os
import subprocess
import sys
import threading
import time

import psycopg2
from logs import ROOT, start_api, stop_api

RESULTS = ROOT / "bench" / "results"


def request(port, method, path, key, body=None):
    """One request on a connection of its own; return (status, parsed body)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
    response = conn.getresponse()
    raw = response.read()
    conn.close()
    return response.status, (json.loads(raw) if raw else None)


def fill(url, rows):
    from emailsvc.db import init_db

    conn = psycopg2.connect(url.rsplit("/", 1)[0] + "/postgres")
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}"')
    conn.close()
    init_db(url)
    conn = psycopg2.connect(url)
    with conn, conn.cursor() as cur:
        cur.execute("INSERT INTO projects (name) VALUES ('default') RETURNING id")
        project_id = cur.fetchone()[0]
        cur.execute((ROOT / "bench" / "fill_emails.sql").read_text(), {"rows": rows, "project_id": project_id})
        cur.execute("INSERT INTO email_events (email_id, type, at) SELECT id, 'pending', created_at FROM emails")
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("VACUUM ANALYZE")
    conn.close()


def make_key(env):
    out = subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", "api-keys", "create", "bench"], cwd=ROOT,
                         env=env, check=True, capture_output=True, text=True)  # fmt: skip
    return out.stdout.strip().splitlines()[-1]


def load(port, key, stop, samples):
    """Alternate a log page and a send until `stop` is set; append (kind, seconds, status) to `samples`."""
    body = {"to": "reader@example.com", "subject": "During the purge", "body": "Hello"}
    while not stop.is_set():
        for kind, method, path, data in (("logs", "GET", "/email/logs?limit=10", None),
                                         ("send", "POST", "/email/send", body)):  # fmt: skip
            started = time.perf_counter()
            status = request(port, method, path, key, data)[0]
            samples.append((kind, time.perf_counter() - started, status))


def summary(samples, kind):
    times = sorted(seconds * 1000 for k, seconds, _ in samples if k == kind)
    bad = sum(1 for k, _, status in samples if k == kind and status >= 500)
    if not times:
        return f"{kind}: no requests"

    def p(q):  # nearest rank
        return times[min(len(times) - 1, int(q * len(times)))]

    return (f"{kind}: {len(times)} requests, p50 {p(0.5):.1f} ms, p95 {p(0.95):.1f} ms, p99 {p(0.99):.1f} ms, "
            f"max {times[-1]:.1f} ms, 5xx {bad}")  # fmt: skip


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--pg", required=True, help="PostgreSQL base URL, without a database")
    parser.add_argument("--redis", required=True, help="Redis URL with its db number")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--database", default="emailsvc_bench_purge", help="dropped and made again")
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    url = f"{args.pg}/{args.database}"
    os.environ["RATELIMIT_SEND"] = "1000000 per minute"  # the load sends as fast as it can
    started = time.perf_counter()
    fill(url, args.rows)
    print(f"filled {args.rows} rows in {time.perf_counter() - started:.0f} s", flush=True)
    env = {**os.environ, "DATABASE_URL": url, "REDIS_URL": args.redis, "LOG_RETENTION_DAYS": "1",
           "BODY_RETENTION_DAYS": "0"}  # fmt: skip
    key = make_key(env)
    proc, port = start_api(url, args.redis, RESULTS / "gunicorn.log")
    try:
        baseline, during = [], []
        stop = threading.Event()
        thread = threading.Thread(target=load, args=(port, key, stop, baseline))
        thread.start()
        time.sleep(args.seconds)
        stop.set()
        thread.join()
        stop = threading.Event()
        thread = threading.Thread(target=load, args=(port, key, stop, during))
        thread.start()
        started = time.perf_counter()
        purge = subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", "purge"], cwd=ROOT, env=env,
                               capture_output=True, text=True)  # fmt: skip
        took = time.perf_counter() - started
        stop.set()
        thread.join()
        print(purge.stdout.strip() or purge.stderr.strip())
        removed = int(purge.stdout.split("deleted: ")[1].split()[0]) if "deleted: " in purge.stdout else 0
        print(f"purge: {removed} rows in {took:.1f} s ({removed / took:.0f} rows/s)")
        for phase, samples in (("before", baseline), ("during", during)):
            print(f"{phase} the purge: {summary(samples, 'logs')}; {summary(samples, 'send')}")
        conn = psycopg2.connect(url)
        with conn, conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM emails")
            rows = cur.fetchone()[0]
        conn.close()
        total = request(port, "GET", "/email/logs?page=1&limit=1", key)[1]
        print(f"after: {rows} rows; the log's total says {total['pagination']['total']}")
    finally:
        stop_api(proc)


if __name__ == "__main__":
    main()
