"""Count the network round trips of one accepted request and of one delivery job (`make bench`).

A round trip is one send to the server followed by waiting for its answer: one psycopg2 execute
in autocommit mode, one redis-py packed send (a pipeline is one). Counting them in-process with
the real code paths is exact where timing on a shared machine is not.
"""

import os
import sys
from collections import Counter

import psycopg2.extras
import redis.connection
from harness import ROOT, base_urls

sys.path.insert(0, ROOT)
from emailsvc import create_app  # noqa: E402
from emailsvc.rq_worker import LeanWorker  # noqa: E402
from emailsvc.services import get_services  # noqa: E402

COUNTS = Counter()
BODY = {"to": "reader@example.com", "subject": "Your order has shipped", "body": "Hello"}


def counting(kind, method):
    def wrapper(*args, **kwargs):
        COUNTS[kind] += 1
        return method(*args, **kwargs)

    return wrapper


def main(messages=200):
    pg, rd = base_urls()
    env = {
        "DATABASE_URL": f"{pg}/emailsvc_bench",
        "REDIS_URL": f"{rd}/10",
        "SMTP_PORT": os.environ["SINK_PORT"],
        "RATELIMIT_DEFAULT": "10000000 per minute",
        "RATELIMIT_SEND": "10000000 per minute",
    }
    app = create_app(env)

    psycopg2.extras.RealDictCursor.execute = counting("postgresql", psycopg2.extras.RealDictCursor.execute)
    redis.connection.AbstractConnection.send_packed_command = counting(
        "redis", redis.connection.AbstractConnection.send_packed_command
    )
    from emailsvc.auth import hash_key, new_key
    from emailsvc.queries.api_keys import insert_api_key

    key = new_key()
    with app.app_context(), get_services().db.cursor() as cur:
        insert_api_key(cur, "round-trips", hash_key(key), key[:12], ["send"])
    client = app.test_client()
    headers = {"Authorization": f"Bearer {key}"}
    client.post("/email/send", json=BODY, headers=headers)  # connections opened outside the count
    COUNTS.clear()
    for _ in range(messages):
        assert client.post("/email/send", json=BODY, headers=headers).status_code == 201
    accept = {k: v / messages for k, v in COUNTS.items()}
    COUNTS.clear()
    with app.app_context():
        services = get_services()
        LeanWorker([services.email_queue], connection=services.redis).work(burst=True, logging_level="WARNING")
    job = {k: v / (messages + 1) for k, v in COUNTS.items()}
    for label, counts in (("per accepted request", accept), ("per delivery job", job)):
        print(f"round trips {label}: PostgreSQL {counts.get('postgresql', 0):.1f}, Redis {counts.get('redis', 0):.1f}")


if __name__ == "__main__":
    main()
