"""`make bench-scaling`: the scaling curve: delivery mails/s by sending processes x SMTP conversations per
process x relay latency, accept req/s by gunicorn instances, and the Redis and PostgreSQL CPU share.

    python bench/scaling.py [--processes 1,2,4] [--concurrency 1,4,16,32] [--delays 0,100]
                            [--window 10] [--instances 1,2] [--accept-seconds 10] [--skip-accept]

Delivery: for each relay delay, bench/relay.py answers each DATA after that many ms; for each cell
worker.py runs with WORKER_PROCESSES=p, SMTP_CONCURRENCY=c and SMTP_MAX_CONNECTIONS=c against a
backlog queued through the real POST /email/send view, until the backlog is delivered or WINDOW
seconds have passed since its first message. mails/s is counted by the relay, from the first to
the last message it took. A cell stopped by the window leaves its backlog for the next one. A
worker that does not know SMTP_CONCURRENCY ignores it, and the concurrency columns come out flat.
Cells needing more PostgreSQL connections (p x c, the worst case of one connection per send in
flight) than the server has free are skipped, and the table says so (--no-connection-check runs
them all: today's worker holds one connection per process whatever c is).

CPU share, for every cell: utime+stime from /proc/<pid>/stat over the same window, as % of one
core and as µs per delivered message, of redis-server, of the PostgreSQL backends connected to the
bench database (pids from pg_stat_activity), of PostgreSQL's shared processes (postmaster, WAL
writer, checkpointer...: shared with every database on the server), and of worker.py's processes.
Redis and PostgreSQL serve other users' work on a shared machine too: their idle CPU, measured
for 5 s before each delay's cells, is printed beside it.

Accept: 1 and 2 gunicorn instances (the project's gunicorn.conf.py each) bound to one port with
SO_REUSEPORT (gunicorn's --reuse-port): the kernel hands each new connection to one of the
listening sockets, as two instances on one host would share a port without a balancer process.
wrk drives it at 16 and 64 connections; the access logs give each instance's share.
"""

import argparse
import math
import os
import sys
import tempfile
import time
from contextlib import ExitStack

from harness import (
    PYTHON,
    answers,
    children,
    cpu_seconds,
    descendants,
    free_port,
    gunicorn,
    listens,
    load_average,
    relay,
    relay_reset,
    relay_stats,
    rss_mb,
    started,
    tree_rss_mb,
    wait_until,
    wrk,
)
from redis import Redis
from throughput import Bench, fmt

MAX_MESSAGES = int(os.environ.get("BENCH_SCALING_MAX_MESSAGES", "3000"))


def ints(text):
    return [int(x) for x in text.split(",") if x]


class Cpu:
    """CPU seconds of Redis, the bench database's PostgreSQL backends, PostgreSQL's shared processes and
    a process tree, between two snapshots."""

    def __init__(self, bench, root_pid=None):
        self.bench, self.root_pid = bench, root_pid
        self.redis_pid = int(Redis.from_url(bench.redis_url).info("server")["process_id"])
        self.before, self.started = self.snapshot(), time.monotonic()

    def groups(self):
        rows = self.bench.sql("SELECT pid, datname, backend_type FROM pg_stat_activity WHERE pid <> pg_backend_pid()")
        db = self.bench.db_url.rsplit("/", 1)[1]
        backends = [pid for pid, datname, kind in rows if datname == db and kind == "client backend"]
        shared = [pid for pid, datname, kind in rows if datname is None]
        if backends or shared:
            shared.append(_parent((backends or shared)[0]))  # the postmaster
        found = {"redis": [self.redis_pid], "pg bench backends": backends, "pg shared": shared}
        if self.root_pid:
            found["worker.py"] = [self.root_pid, *descendants(self.root_pid)]
        return found

    def snapshot(self):
        taken = {}
        for name, pids in self.groups().items():
            for pid in pids:
                try:
                    taken[name, pid] = cpu_seconds(pid)
                except OSError:
                    pass
        return taken

    def result(self):
        """{group: CPU seconds} since the first snapshot, and the wall seconds it covers."""
        after, elapsed = self.snapshot(), time.monotonic() - self.started
        used = {}
        for (name, pid), seconds in after.items():
            used[name] = used.get(name, 0.0) + seconds - self.before.get((name, pid), 0.0)
        return used, elapsed


def _parent(pid):
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


def free_pg_connections(bench):
    ((limit, used),) = bench.sql(
        "SELECT current_setting('max_connections')::int, (SELECT count(*) FROM pg_stat_activity)"
    )
    return limit - used


def delivery_curve(bench, args):
    print("\n## delivery: mails/s (relay-counted), by relay delay, sending processes p, SMTP_CONCURRENCY c", flush=True)
    results = {}
    for delay in args.delays:
        port = free_port()
        with relay(port, delay, bench.log_dir):
            wait_until(lambda p=port: listens(p), 10, "the relay")
            idle = Cpu(bench)
            time.sleep(5)
            used, elapsed = idle.result()
            print(
                f"\nrelay {delay} ms; idle before the cells: redis {used.get('redis', 0) / elapsed:.1%} of a core, "
                f"pg shared {used.get('pg shared', 0) / elapsed:.1%}; {load_average()}",
                flush=True,
            )
            last = None
            for p in args.processes:
                for c in args.concurrency:
                    if args.connection_check and p * c + 10 > free_pg_connections(bench):
                        print(f"p={p} c={c}: skipped, needs up to {p * c} PostgreSQL connections", flush=True)
                        continue
                    results[delay, p, c] = cell(bench, port, delay, p, c, args.window, last)
                    last = (p, c, results[delay, p, c][0])
        bench.reset()
    print("\nmails/s, relay-counted (rows: relay delay, sending processes; columns: SMTP_CONCURRENCY)")
    print("delay  p  " + "".join(f"{'c=' + str(c):>9}" for c in args.concurrency))
    for delay in args.delays:
        for p in args.processes:
            row = "".join(
                f"{fmt(results[delay, p, c][0], 1):>9}" if (delay, p, c) in results else f"{'-':>9}"
                for c in args.concurrency
            )
            print(f"{delay:>5}  {p}  {row}")


def cell(bench, port, delay, p, c, window, last):
    """One cell of the curve: (mails/s, messages, RSS MiB, process count, CPU shares)."""
    estimate = p * c * 1000 / (delay + 5)
    if last:
        lp, lc, lrate = last
        estimate = min(estimate, lrate * (p * c) / (lp * lc))
    count = max(100, min(MAX_MESSAGES, math.ceil(estimate * window * 1.3)))
    backlog = Redis.from_url(bench.redis_url).llen("rq:queue:email")
    if count > backlog:
        bench.queue_messages(count - backlog)
    else:
        count = backlog
    env = {
        **bench.env,
        "SMTP_PORT": str(port),
        "WORKER_PROCESSES": str(p),
        "SMTP_CONCURRENCY": str(c),
        "SMTP_MAX_CONNECTIONS": str(c),
    }
    relay_reset(port)
    with started([PYTHON, "worker.py"], env, f"worker-{delay}ms-p{p}-c{c}", bench.log_dir) as proc:
        wait_until(lambda: relay_stats(port)["messages"] >= 1, 120, "the first message")
        cpu = Cpu(bench, proc.pid)
        deadline = time.monotonic() + window
        while time.monotonic() < deadline and relay_stats(port)["messages"] < count:
            time.sleep(0.2)
        stats = relay_stats(port)
        used, elapsed = cpu.result()
        memory, processes = tree_rss_mb(proc.pid)
        sending = [rss_mb(pid) for pid in children(proc.pid)]
    done = stats["messages"]
    rate = (done - 1) / max(stats["last"] - stats["first"], 1e-6)
    delivered_in_window = max(done - 1, 1)  # the CPU window opens at the first message
    shares = ", ".join(
        f"{name} {used.get(name, 0) / elapsed:.0%} ({used.get(name, 0) / delivered_in_window * 1e6:,.0f} µs/msg)"
        for name in ("redis", "pg bench backends", "pg shared", "worker.py")
    )
    print(
        f"delay {delay:>3} ms p={p} c={c:<2}  {fmt(rate, 1):>7} mails/s ({int(done)} msgs)  RSS {memory:.0f} MiB in "
        f"{processes} processes (supervisor's children {', '.join(f'{m:.0f}' for m in sending)})  CPU: {shares}",
        flush=True,
    )
    return rate, done, memory, processes, used, elapsed


def accept_curve(bench, args):
    print(f"\n## accept: POST /email/send, wrk, gunicorn instances on one port (SO_REUSEPORT); {load_average()}")
    wrk_env = {**os.environ, "BENCH_KEY": bench.key}
    for instances in args.instances:
        port = free_port()
        with ExitStack() as stack:
            webs = [
                stack.enter_context(
                    gunicorn("wsgi:app", port, bench.env, f"web-{instances}-{i}", bench.log_dir, ["--reuse-port"])
                )
                for i in range(instances)
            ]
            wait_until(lambda p=port: listens(p), 30, "gunicorn")
            wait_until(lambda p=port: answers(f"http://127.0.0.1:{p}/readyz"), 30, "the API")
            time.sleep(2)  # every instance's workers booted
            url = f"http://127.0.0.1:{port}/email/send"
            for conns in (16, 64):
                wrk(url, conns, 2, wrk_env)
                before = [_requests(bench, instances, i) for i in range(instances)]
                cpu = Cpu(bench)
                rate, p50, p99, bad = wrk(url, conns, args.accept_seconds, wrk_env)
                used, elapsed = cpu.result()
                split = [_requests(bench, instances, i) - before[i] for i in range(instances)]
                gunicorn_cpu = sum(_tree_cpu(w.pid) for w in webs)
                pg_share = used.get("pg bench backends", 0) / elapsed
                print(
                    f"instances={instances} c={conns:<2}  {fmt(rate)} req/s p50 {p50:.1f} ms p99 {p99:.1f} ms"
                    f"{f' ({bad} non-2xx)' if bad else ''}  split {'/'.join(str(s) for s in split)}  "
                    f"CPU: redis {used.get('redis', 0) / elapsed:.0%}, pg bench backends {pg_share:.0%}, "
                    f"pg shared {used.get('pg shared', 0) / elapsed:.0%}"
                    f"; gunicorn total so far {gunicorn_cpu:.0f} s",
                    flush=True,
                )
        bench.reset()


def _requests(bench, instances, i):
    with open(os.path.join(bench.log_dir, f"web-{instances}-{i}.log"), errors="replace") as log:
        return sum(1 for line in log if '"POST /email/send' in line)


def _tree_cpu(pid):
    total = 0.0
    for p in [pid, *descendants(pid)]:
        try:
            total += cpu_seconds(p)
        except OSError:
            pass
    return total


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--processes", type=ints, default=[1, 2, 4])
    parser.add_argument("--concurrency", type=ints, default=[1, 4, 16, 32])
    parser.add_argument("--delays", type=ints, default=[0, 100])
    parser.add_argument("--window", type=float, default=10)
    parser.add_argument("--instances", type=ints, default=[1, 2])
    parser.add_argument("--accept-seconds", type=int, default=10)
    parser.add_argument("--skip-accept", action="store_true")
    parser.add_argument("--skip-delivery", action="store_true")
    parser.add_argument(
        "--no-connection-check",
        dest="connection_check",
        action="store_false",
        help="run every cell, for a worker that does not hold a PostgreSQL connection per send in flight",
    )
    args = parser.parse_args()
    log_dir = tempfile.mkdtemp(prefix="emailsvc-scaling-")
    started_at = time.monotonic()
    print(f"emailsvc scaling curve — {os.cpu_count()} cores, {load_average()}, logs in {log_dir}", flush=True)
    bench = Bench(log_dir)  # make bench's database and Redis db (BENCH_DB, BENCH_REDIS_DB): one runs at a time
    if not args.skip_delivery:
        delivery_curve(bench, args)
    if not args.skip_accept:
        accept_curve(bench, args)
    print(f"\n(ran {time.monotonic() - started_at:.0f} s; at the end, {load_average()})")


if __name__ == "__main__":
    sys.exit(main())
