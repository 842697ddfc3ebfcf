"""The database's share of the log's write path under two schemas, side by side: an accepted send's insert alone,
and the insert with the message's two status changes (PENDING → SENDING → SENT).

    python bench/write_path.py DB_URL_A DB_URL_B [--messages N]

Each database must already hold its schema (`flask init-db`, or `bench/costs.py --root` of a checkout);
the log of each is emptied first. The statements alternate between the two, message by message, so both
see the same machine load: on a shared machine the per-message times are
noisy, but the difference of the medians and means is what a schema change (an index, a trigger) costs a send.
Beside them it prints the CPU time each database session spent per message (from /proc, PostgreSQL on this
host), which the machine's other work disturbs less.
"""

import argparse
import statistics
import sys
import time
import uuid
from pathlib import Path

import psycopg2
import psycopg2.extras

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness import cpu_seconds  # noqa: E402

from emailsvc.queries.emails import insert_emails  # noqa: E402
from emailsvc.queries.projects import ensure_project  # noqa: E402

STATUS_CHANGES = (
    "UPDATE emails SET status = 'SENDING', attempts = attempts + 1, updated_at = now() WHERE id = %s",
    "UPDATE emails SET status = 'SENT', sent_at = now(), updated_at = now() WHERE id = %s",
)


def prepare(url):
    """Connect in autocommit mode (each statement its own transaction, as the service runs them), empty the
    log and return (connection, project id)."""
    conn = psycopg2.connect(url, cursor_factory=psycopg2.extras.RealDictCursor)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("SET jit = off")  # as the service's connections run
        # Each commit still writes its WAL, but does not wait for the disk: the flush is one per commit under
        # either schema, and on a shared disk its wait is noise that hides what the schema costs.
        cur.execute("SET synchronous_commit = off")
        cur.execute("TRUNCATE emails, email_events CASCADE")
        return conn, ensure_project(cur, "default")["id"]


def send(conn, project_id, n):
    """Accept one message, then make its two status changes; return (insert ms, whole ms)."""
    email = {"id": uuid.uuid4(), "project_id": project_id, "status": "PENDING", "from_addr": "Shop <shop@example.com>",
             "to_addrs": [f"Reader {n} <reader{n % 5000}@example.com>"], "cc_addrs": [], "bcc_addrs": [],
             "subject": "Your order has shipped", "body": "Hello", "headers": {}, "metadata": {},
             "message_id": f"<{n}@bench.example>"}  # fmt: skip
    with conn.cursor() as cur:
        started = time.perf_counter()
        insert_emails(cur, project_id, [email], [[]])
        inserted = time.perf_counter()
        for statement in STATUS_CHANGES:
            cur.execute(statement, (email["id"],))
        finished = time.perf_counter()
    return (inserted - started) * 1000, (finished - started) * 1000


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("urls", nargs=2, metavar="DB_URL")
    parser.add_argument("--messages", type=int, default=3000)
    args = parser.parse_args()
    sides = [prepare(url) for url in args.urls]
    timings = [([], []) for _ in sides]
    pids = []
    for conn, _ in sides:
        with conn.cursor() as cur:
            cur.execute("SELECT pg_backend_pid() AS pid")
            pids.append(cur.fetchone()["pid"])
    for n in range(args.messages + 200):  # the first 200 warm caches and plans and are not kept
        if n == 200:
            cpu_before = [cpu_seconds(pid) for pid in pids]
        pairs = list(zip(sides, timings, strict=True))
        for (conn, project_id), (inserts, wholes) in pairs if n % 2 else pairs[::-1]:  # neither always goes first
            insert_ms, whole_ms = send(conn, project_id, n)
            if n >= 200:
                inserts.append(insert_ms)
                wholes.append(whole_ms)
    cpu = [(cpu_seconds(pid) - before) * 1000 / args.messages for pid, before in zip(pids, cpu_before, strict=True)]
    for url, (inserts, wholes), session_ms in zip(args.urls, timings, cpu, strict=True):
        print(f"{url}: insert {summary(inserts)}; insert + two status changes {summary(wholes)}; "
              f"its session's CPU {session_ms:.3f} ms a message")  # fmt: skip


def summary(samples):
    # The mean, too: an index may defer work to an occasional statement (GIN's pending list) that the median hides.
    return f"median {statistics.median(samples):.3f} ms, mean {statistics.fmean(samples):.3f} ms"


if __name__ == "__main__":
    main()
