"""The cost of one accepted POST /email/send, in-process: round trips (PostgreSQL, Redis) and time.

    python bench/accept_cost.py [--root DIR] [--db NAME] [--redis N] [--sends N]

`--root` measures the code of another checkout (e.g. a worktree of the previous commit), so two
versions can be compared side by side on the same servers; run them alternately, a few times each.
Counting round trips in-process with the real code paths is exact where timing on a shared machine
is not; the time is the mean of `--sends` requests through Flask's test client.
"""

import argparse
import sys
import time
from collections import Counter

import psycopg2.extras
import redis.connection
from harness import ROOT, base_urls, free_port

COUNTS = Counter()
BODY = {"to": "Reader <reader@example.com>", "subject": "Your order has shipped", "body": "Hello"}


def counting(kind, method):
    def wrapper(*args, **kwargs):
        COUNTS[kind] += 1
        return method(*args, **kwargs)

    return wrapper


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--root", default=ROOT)
    parser.add_argument("--db", default="emailsvc_bench_pa")
    parser.add_argument("--redis", default="14")
    parser.add_argument("--sends", type=int, default=500)
    args = parser.parse_args()
    sys.path.insert(0, args.root)
    from emailsvc import create_app
    from emailsvc.auth import hash_key, new_key
    from emailsvc.db import init_db
    from emailsvc.queries.api_keys import insert_api_key
    from emailsvc.services import get_services

    pg, rd = base_urls()
    env = {
        "DATABASE_URL": f"{pg}/{args.db}",
        "REDIS_URL": f"{rd}/{args.redis}",
        "SMTP_PORT": str(free_port()),  # nothing is delivered here
        "RATELIMIT_DEFAULT": "10000000 per minute",
        "RATELIMIT_SEND": "10000000 per minute",
    }
    init_db(env["DATABASE_URL"])
    app = create_app(env)
    with app.app_context():
        services = get_services()
        services.redis.flushdb()
        key = new_key()
        with services.db.cursor() as cur:
            cur.execute("TRUNCATE emails, email_events CASCADE")
            insert_api_key(cur, "accept-cost", hash_key(key), key[:12], ["send"])
    psycopg2.extras.RealDictCursor.execute = counting("postgresql", psycopg2.extras.RealDictCursor.execute)
    redis.connection.AbstractConnection.send_packed_command = counting(
        "redis", redis.connection.AbstractConnection.send_packed_command
    )
    client = app.test_client()
    headers = {"Authorization": f"Bearer {key}"}
    for _ in range(20):  # connections opened and caches warm outside the count
        assert client.post("/email/send", json=BODY, headers=headers).status_code == 201
    COUNTS.clear()
    started = time.perf_counter()
    for _ in range(args.sends):
        assert client.post("/email/send", json=BODY, headers=headers).status_code == 201
    elapsed = time.perf_counter() - started
    print(
        f"{args.root}: per accepted request PostgreSQL {COUNTS['postgresql'] / args.sends:.1f}, "
        f"Redis {COUNTS['redis'] / args.sends:.1f} round trips; {elapsed / args.sends * 1000:.2f} ms"
    )


if __name__ == "__main__":
    main()
