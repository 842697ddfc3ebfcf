"""The cost of one accepted POST /email/send and of one delivery job, in-process: round trips and time.

    python bench/costs.py --sink-port PORT [--db NAME] [--redis N] [--messages N] [--root DIR] [--profile]
                          [--metrics-dir DIR]

A round trip is one send to a server followed by waiting for its answer: one psycopg2 execute in
autocommit mode, one redis-py packed send (a pipeline is one). Counting them with the real code
paths is exact where timing on a shared machine is not; the process's own CPU per request and per
job is printed beside the wall time. `--root` measures another checkout (a worktree of an earlier
commit) on the same servers; `--profile` prints where a send's and a job's time goes
(pyinstrument). `--metrics-dir` counts metrics into files as gunicorn's workers do
(prometheus_client's multiprocess mode) instead of in memory. `make bench` runs it against its own
database and smtp-sink.
"""

import argparse
import sys
import time
from collections import Counter

import psycopg2.extras
import redis.connection
from harness import ROOT, base_urls

COUNTS = Counter()
BODY = {"to": "Reader <reader@example.com>", "subject": "Your order has shipped", "body": "Hello"}


def counting(kind, method):
    def wrapper(*args, **kwargs):
        COUNTS[kind] += 1
        return method(*args, **kwargs)

    return wrapper


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--sink-port", required=True, help="an SMTP server the jobs deliver to (smtp-sink)")
    parser.add_argument("--db", default="emailsvc_bench")
    parser.add_argument("--redis", default="10")
    parser.add_argument("--messages", type=int, default=500)
    parser.add_argument("--root", default=ROOT)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--metrics-dir", help="count metrics into files in DIR, as a gunicorn worker does")
    args = parser.parse_args()
    sys.path.insert(0, args.root)
    if args.metrics_dir:
        from emailsvc.metrics.files import use_files

        use_files(args.metrics_dir, "web")
    from emailsvc import create_app
    from emailsvc.auth import hash_key, new_key
    from emailsvc.db import init_db
    from emailsvc.queries.api_keys import insert_api_key
    from emailsvc.queries.projects import ensure_project
    from emailsvc.rq_worker import LeanWorker
    from emailsvc.services import get_services

    pg, rd = base_urls()
    env = {"DATABASE_URL": f"{pg}/{args.db}", "REDIS_URL": f"{rd}/{args.redis}", "SMTP_PORT": str(args.sink_port),
           "RATELIMIT_DEFAULT": "10000000 per minute", "RATELIMIT_SEND": "10000000 per minute"}  # fmt: skip
    init_db(env["DATABASE_URL"])
    app = create_app(env)
    with app.app_context():
        services = get_services()
        services.redis.flushdb()
        key = new_key()
        with services.db.cursor() as cur:
            cur.execute("TRUNCATE emails, email_events CASCADE")
            insert_api_key(cur, ensure_project(cur, "default")["id"], "costs", hash_key(key), key[:12], ["send"])
    psycopg2.extras.RealDictCursor.execute = counting("postgresql", psycopg2.extras.RealDictCursor.execute)
    redis.connection.AbstractConnection.send_packed_command = counting(
        "redis", redis.connection.AbstractConnection.send_packed_command
    )
    client, headers = app.test_client(), {"Authorization": f"Bearer {key}"}
    for _ in range(20):  # connections opened and caches warm outside the count
        assert client.post("/email/send", json=BODY, headers=headers).status_code == 201
    if args.profile:
        from pyinstrument import Profiler

        profiler = Profiler(interval=0.0002)
        profiler.start()
    COUNTS.clear()
    started, cpu = time.perf_counter(), time.process_time()
    for _ in range(args.messages):
        assert client.post("/email/send", json=BODY, headers=headers).status_code == 201
    accept_time = (time.perf_counter() - started) / args.messages
    accept_cpu = (time.process_time() - cpu) / args.messages
    accept = {kind: count / args.messages for kind, count in COUNTS.items()}
    if args.profile:
        profiler.stop()
        print(profiler.output_text(show_all=False, color=False, time="percent_of_total"))
    COUNTS.clear()
    jobs = args.messages + 20
    if args.profile:
        profiler = Profiler(interval=0.0002)
        profiler.start()
    started, cpu = time.perf_counter(), time.process_time()
    with app.app_context():
        services = get_services()
        LeanWorker([services.email_queue], connection=services.redis).work(burst=True, logging_level="WARNING")
    job_time, job_cpu = (time.perf_counter() - started) / jobs, (time.process_time() - cpu) / jobs
    if args.profile:
        profiler.stop()
        print(profiler.output_text(show_all=False, color=False, time="percent_of_total"))
    job = {kind: count / jobs for kind, count in COUNTS.items()}
    for label, counts, seconds, cpu in (
        ("per accepted request", accept, accept_time, accept_cpu),
        ("per delivery job", job, job_time, job_cpu),
    ):
        print(f"{label}: PostgreSQL {counts.get('postgresql', 0):.1f}, Redis {counts.get('redis', 0):.1f} round trips;"
              f" {seconds * 1000:.2f} ms in one process ({cpu * 1000:.2f} ms of its CPU)")  # fmt: skip


if __name__ == "__main__":
    main()
