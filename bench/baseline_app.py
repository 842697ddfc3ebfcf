"""The bare baseline for `make bench`: parse JSON, INSERT one row, LPUSH its id — nothing else.

It runs under the same gunicorn settings as the service, so the ratio between the two is the
cost of everything emailsvc adds: authentication, validation, rate limiting, the log row, RQ.
"""

import json
import os

import psycopg2
from flask import Flask, request
from redis import Redis

app = Flask(__name__)
_connections = {}


def connections():
    # One database connection and one Redis client per worker process, made after gunicorn forks.
    if os.getpid() not in _connections:
        conn = psycopg2.connect(os.environ["DATABASE_URL"])
        conn.autocommit = True
        _connections[os.getpid()] = (conn, Redis.from_url(os.environ["REDIS_URL"]))
    return _connections[os.getpid()]


@app.post("/email/send")
def send():
    payload = request.get_json()
    conn, redis = connections()
    with conn.cursor() as cur:
        cur.execute("INSERT INTO bench_baseline (payload) VALUES (%s) RETURNING id", (json.dumps(payload),))
        row_id = cur.fetchone()[0]
    redis.lpush("bench:baseline", row_id)
    return {"id": row_id, "status": "PENDING"}, 201
