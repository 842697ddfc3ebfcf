"""The cost of one accepted POST /email/send and of one delivery job, in-process: round trips and time.

    python bench/costs.py --sink-port PORT [--db NAME] [--redis N] [--messages N] [--root DIR] [--profile]
                          [--metrics-dir DIR] [--distinct] [--batch N]

A round trip is one send to a server followed by waiting for its answer: one psycopg2 execute in
autocommit mode, one redis-py packed send (a pipeline is one). Counting them with the real code
paths is exact where timing on a shared machine is not. `--root` measures another checkout (a
worktree of an earlier commit) on the same servers; `--profile` prints where a send's and a job's
time goes (pyinstrument). Beside the wall time it prints the CPU time of the process and of its PostgreSQL
sessions (read from /proc, when PostgreSQL runs on this host): on a shared machine, the steadier
measure. `--distinct` gives every send a new recipient, so no address is one the process already
knows (emailsvc/addresses.py remembers recent ones). `--metrics-dir` counts metrics into files as
gunicorn's workers do (prometheus_client's multiprocess mode) instead of in memory. `--batch N`
accepts the messages through POST /email/batch, N a request, and reports the cost per message. `make bench`
runs it against its own database and smtp-sink.
"""

import argparse
import sys
import time
from collections import Counter

import psycopg2.extras
import redis.connection
from harness import ROOT, app_with_key, cpu_seconds

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
    parser.add_argument("--distinct", action="store_true", help="a new recipient address for every send")
    parser.add_argument("--batch", type=int, help="send through POST /email/batch, this many messages a request")
    parser.add_argument("--metrics-dir", help="count metrics into files in DIR, as a gunicorn worker does")
    args = parser.parse_args()
    if args.metrics_dir:
        sys.path.insert(0, args.root)
        from emailsvc.metrics.files import use_files

        use_files(args.metrics_dir, "web")
    app, key = app_with_key(args.root, args.db, args.redis, SMTP_PORT=str(args.sink_port))
    from emailsvc import db
    from emailsvc.rq_worker import LeanWorker
    from emailsvc.services import get_services

    cursor = getattr(db, "DictCursor", psycopg2.extras.RealDictCursor)  # what the checkout's cursors are
    cursor.execute = counting("postgresql", cursor.execute)
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
    sessions = Sessions(app.config["DATABASE_URL"])

    def message(i):
        return {**BODY, "to": f"Reader {i} <reader{i}@example.com>"} if args.distinct else BODY

    def send_all():
        if args.batch:
            for start in range(0, args.messages, args.batch):
                batch = {"messages": [message(i) for i in range(start, min(start + args.batch, args.messages))]}
                assert client.post("/email/batch", json=batch, headers=headers).status_code == 201
            return
        for i in range(args.messages):
            assert client.post("/email/send", json=message(i), headers=headers).status_code == 201

    accept = measure(send_all, args.messages, sessions)
    if args.profile:
        profiler.stop()
        print(profiler.output_text(show_all=False, color=False, time="percent_of_total"))

    def work():
        with app.app_context():
            services = get_services()
            LeanWorker([services.email_queue], connection=services.redis).work(burst=True, logging_level="WARNING")

    if args.profile:
        profiler = Profiler(interval=0.0002)
        profiler.start()
    job = measure(work, args.messages + 20, sessions)
    if args.profile:
        profiler.stop()
        print(profiler.output_text(show_all=False, color=False, time="percent_of_total"))
    accepted = f"per message accepted in batches of {args.batch}" if args.batch else "per accepted request"
    for label, (counts, seconds, cpu, pg_cpu) in ((accepted, accept), ("per delivery job", job)):
        pg_cpu = "unknown" if pg_cpu is None else f"{pg_cpu * 1000:.2f} ms"
        print(f"{label}: PostgreSQL {counts.get('postgresql', 0):.1f}, Redis {counts.get('redis', 0):.1f} round trips;"
              f" {seconds * 1000:.2f} ms in one process (CPU: its own {cpu * 1000:.2f} ms,"
              f" its PostgreSQL sessions' {pg_cpu})")  # fmt: skip


def measure(action, units, sessions):
    """Run `action`; return per unit: (round trips by kind, wall seconds, this process's CPU seconds, the CPU
    seconds of the database's other sessions, or None when their processes cannot be read)."""
    COUNTS.clear()
    pg_before, cpu_before, started = sessions.cpu(), time.process_time(), time.perf_counter()
    action()
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu_before
    counts = {kind: count / units for kind, count in COUNTS.items()}
    pg_after = sessions.cpu()
    pg_cpu = None if pg_after is None else sum(t - pg_before.get(pid, 0) for pid, t in pg_after.items())
    return counts, seconds / units, cpu / units, pg_cpu and pg_cpu / units


class Sessions:
    """The server processes of the database's sessions (other than its own), read from /proc: PostgreSQL on
    this host, as the benchmarks run it."""

    def __init__(self, url):
        self.conn = psycopg2.connect(url)
        self.conn.autocommit = True

    def cpu(self):
        """{backend pid: CPU seconds so far} of every other session of the database, or None if unreadable."""
        with self.conn.cursor() as cur:
            cur.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            pids = [pid for (pid,) in cur.fetchall()]
        try:
            return {pid: cpu_seconds(pid) for pid in pids}
        except OSError:  # another host's, or another user's
            return None


if __name__ == "__main__":
    main()
