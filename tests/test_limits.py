"""Rate limits: per key, per client address without one, exact across processes, and Redis outages."""

import concurrent.futures
import json
import logging
import re
import socket
import time
import uuid

import psycopg2
import pytest
from conftest import PYTHON, answers, free_port, http, make_key, wait_for
from redis.exceptions import RedisError

from emailsvc import create_app

SEND = {"to": "a@example.com", "subject": "s", "body": "b"}


def limited_app(settings, **limits):
    return create_app({**settings, **limits})


def log_url():
    return f"/email/logs/{uuid.uuid4()}"


def test_counted_responses_say_where_the_client_stands(client, auth):
    first, second = client.get(log_url(), headers=auth), client.get(log_url(), headers=auth)
    assert first.headers["X-RateLimit-Limit"] == "600"
    assert int(first.headers["X-RateLimit-Remaining"]) == int(second.headers["X-RateLimit-Remaining"]) + 1
    assert 0 < int(second.headers["X-RateLimit-Reset"]) - time.time() <= 61
    assert "Retry-After" not in second.headers


def test_send_limit_is_per_key_and_refused_sends_record_nothing(settings, database):
    app = limited_app(settings, RATELIMIT_SEND="2 per minute")
    client, first, second = app.test_client(), {"X-API-Key": make_key(app)}, {"X-API-Key": make_key(app)}
    statuses = [client.post("/email/send", json=SEND, headers=first).status_code for _ in range(4)]
    assert statuses == [201, 201, 429, 429]
    assert client.post("/email/send", json=SEND, headers=second).status_code == 201
    assert client.get(log_url(), headers=first).status_code == 404  # reading is not sending
    assert _count_emails(database) == 3


def test_the_default_limit_counts_every_route_together(settings):
    app = limited_app(settings, RATELIMIT_DEFAULT="3 per minute")
    client, auth = app.test_client(), {"X-API-Key": make_key(app)}
    assert client.get(log_url(), headers=auth).status_code == 404
    assert client.post("/email/send", json=SEND, headers=auth).status_code == 201
    assert client.get("/no/such/route", headers=auth).status_code == 404
    refused = client.get(log_url(), headers=auth)
    assert refused.status_code == 429 and refused.headers["X-RateLimit-Limit"] == "3"


def test_headers_describe_the_limit_closest_to_running_out(settings):
    app = limited_app(settings, RATELIMIT_DEFAULT="5 per minute", RATELIMIT_SEND="10 per minute")
    client, auth = app.test_client(), {"X-API-Key": make_key(app)}
    response = client.post("/email/send", json=SEND, headers=auth)
    assert (response.headers["X-RateLimit-Limit"], response.headers["X-RateLimit-Remaining"]) == ("5", "4")


def test_without_a_valid_key_the_count_is_per_client_address(settings):
    client = limited_app(settings, RATELIMIT_DEFAULT="2 per minute").test_client()
    here, there = {"REMOTE_ADDR": "192.0.2.1"}, {"REMOTE_ADDR": "192.0.2.2"}
    bad_key = {"X-API-Key": "esk_forged"}
    statuses = [client.post("/email/send", json=SEND, headers=bad_key, environ_base=here).status_code for _ in range(3)]
    assert statuses == [401, 401, 429]
    assert client.post("/email/send", json=SEND, environ_base=there).status_code == 401


def test_a_forged_forwarded_for_gets_no_extra_requests(settings):
    client = limited_app(settings, RATELIMIT_DEFAULT="2 per minute").test_client()
    statuses = [client.get("/nope", headers={"X-Forwarded-For": f"198.51.100.{i}"}).status_code for i in range(4)]
    assert statuses == [404, 404, 429, 429]


def test_behind_trusted_proxies_only_their_hops_are_believed(settings):
    client = limited_app(settings, RATELIMIT_DEFAULT="2 per minute", TRUSTED_PROXIES="1").test_client()
    proxy = {"REMOTE_ADDR": "10.0.0.1"}
    # The client prepends forged addresses; the proxy appends the one it saw, which is what counts.
    forged = [client.get("/nope", headers={"X-Forwarded-For": f"198.51.100.{i}, 203.0.113.7"}, environ_base=proxy)
              for i in range(3)]  # fmt: skip
    assert [r.status_code for r in forged] == [404, 404, 429]
    other = client.get("/nope", headers={"X-Forwarded-For": "203.0.113.8"}, environ_base=proxy)
    assert other.status_code == 404


def test_health_probes_are_never_limited(settings):
    client = limited_app(settings, RATELIMIT_DEFAULT="1 per minute").test_client()
    responses = [client.get(path) for path in ["/healthz", "/readyz"] * 3]
    assert all(r.status_code == 200 and "X-RateLimit-Limit" not in r.headers for r in responses)


def test_a_malformed_limit_stops_the_app_at_start(settings):
    with pytest.raises(ValueError):
        create_app({**settings, "RATELIMIT_SEND": "lots"})


def test_redis_down_counts_in_memory_and_never_fails_a_request(settings, caplog):
    app = limited_app(settings, REDIS_URL="redis://127.0.0.1:1/0", RATELIMIT_DEFAULT="2 per minute")
    client, auth = app.test_client(), {"X-API-Key": make_key(app)}
    with caplog.at_level(logging.WARNING):
        responses = [client.get(log_url(), headers=auth) for _ in range(3)]
    assert [r.status_code for r in responses] == [404, 404, 429]
    assert responses[0].headers["X-RateLimit-Remaining"] == "1"
    assert any("in-memory" in r.getMessage() for r in caplog.records)


def test_limits_are_exact_across_two_gunicorn_workers(app, processes, tmp_path):
    keys = [make_key(app), make_key(app)]
    port = free_port()
    processes.env.update(RATELIMIT_SEND="5 per hour")
    web = processes.start(PYTHON, "-m", "gunicorn", "-c", "gunicorn.conf.py", "-w", "2", "--bind",
                          f"127.0.0.1:{port}", "wsgi:app", name="web")  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    wait_for(lambda: answers(base + "/healthz"), message="gunicorn to answer")

    def send(key):
        return http("POST", base + "/email/send", SEND, {"X-API-Key": key})[0]

    # The first connection is accepted first and keeps its worker waiting for the body, so the other
    # worker serves the rest: both take part, whatever the scheduling.
    body = json.dumps(SEND).encode()
    held = socket.create_connection(("127.0.0.1", port))
    held.sendall(
        f"POST /email/send HTTP/1.1\r\nHost: 127.0.0.1\r\nX-API-Key: {keys[1]}\r\nConnection: close\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
    )
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(send, [keys[0]] * 12 + [keys[1]] * 6))
    held.sendall(body)
    with held, held.makefile("rb") as reply:
        statuses.append(int(reply.readline().split()[1]))
    assert sorted(statuses[:12]) == [201] * 5 + [429] * 7
    assert sorted(statuses[12:]) == [201] * 5 + [429] * 2
    # Both workers took part, so one shared count in Redis is what held the line.
    access = wait_for(lambda: _request_lines(tmp_path / "web.log", 19), message="19 request lines in the log")
    served_by = {re.search(r"\[(\d+)\] \[\w+\] POST /email/send", line).group(1) for line in access}
    assert len(served_by) == 2 and str(web.pid) not in served_by


def _request_lines(path, count):
    lines = [line for line in path.read_text().splitlines() if "emailsvc.request" in line and "/email/send " in line]
    return lines if len(lines) == count else None


def _count_emails(database):
    with psycopg2.connect(database) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM emails")
        return cur.fetchone()[0]


def test_the_project_limit_counts_every_key_of_the_project_together(settings):
    app = limited_app(settings, RATELIMIT_PROJECT="3 per minute")
    client = app.test_client()
    first, second = ({"X-API-Key": make_key(app, project="shop")} for _ in range(2))
    other = {"X-API-Key": make_key(app, project="blog")}
    statuses = [client.get(log_url(), headers=key).status_code for key in (first, second, first, second)]
    assert statuses == [404, 404, 404, 429]
    refused = client.get(log_url(), headers=first)
    assert refused.status_code == 429 and refused.headers["X-RateLimit-Limit"] == "3"
    assert client.get(log_url(), headers=other).status_code == 404  # another project has its own count


def test_without_a_project_limit_keys_of_one_project_count_apart(settings):
    app = limited_app(settings, RATELIMIT_DEFAULT="2 per minute")
    client = app.test_client()
    first, second = ({"X-API-Key": make_key(app, project="shop")} for _ in range(2))
    assert [client.get(log_url(), headers=key).status_code for key in (first, first, second)] == [404, 404, 404]


def _redis_round_trips(app, monkeypatch, request):
    """Send `request` (method, url, body) with a new key; return the Redis round trips it cost."""
    import redis.connection

    client, key = app.test_client(), {"X-API-Key": make_key(app)}
    method, url, body = request
    client.open(url, method=method, json=body, headers=key)  # connections opened and scripts loaded first
    calls = []
    original = redis.connection.AbstractConnection.send_packed_command
    monkeypatch.setattr(
        redis.connection.AbstractConnection,
        "send_packed_command",
        lambda self, *args, **kwargs: calls.append(1) or original(self, *args, **kwargs),
    )
    response = client.open(url, method=method, json=body, headers=key)
    monkeypatch.undo()
    assert response.status_code < 400, response.get_json()
    return len(calls)


@pytest.mark.parametrize("request_", [("GET", "/project", None), ("POST", "/email/send", SEND)], ids=["read", "send"])
def test_the_project_limit_costs_no_redis_round_trip_of_its_own(settings, monkeypatch, request_):
    without = _redis_round_trips(limited_app(settings), monkeypatch, request_)
    with_project = _redis_round_trips(limited_app(settings, RATELIMIT_PROJECT="1000 per minute"), monkeypatch, request_)
    assert with_project == without
    assert without == (1 if request_[0] == "GET" else 2)  # one for every limit together; the send adds its enqueue


def _batch(n):
    return {"messages": [{**SEND, "to": f"user{i}@example.com"} for i in range(n)]}


def test_the_message_limit_takes_a_batch_only_when_all_of_it_fits(settings, database):
    app = limited_app(settings, RATELIMIT_MESSAGES="10 per minute")
    client, auth = app.test_client(), {"X-API-Key": make_key(app)}
    assert client.post("/email/batch", json=_batch(6), headers=auth).status_code == 201
    refused = client.post("/email/batch", json=_batch(5), headers=auth)
    assert refused.status_code == 429 and refused.get_json()["error"]["code"] == "rate_limited"
    # The refusal took nothing, and says what is left.
    assert (refused.headers["X-RateLimit-Limit"], refused.headers["X-RateLimit-Remaining"]) == ("10", "4")
    assert int(refused.headers["Retry-After"]) >= 1
    assert client.post("/email/batch", json=_batch(3), headers=auth).status_code == 201
    assert client.post("/email/send", json=SEND, headers=auth).status_code == 201  # a send is one message
    last = client.post("/email/send", json=SEND, headers=auth)
    assert last.status_code == 429 and last.headers["X-RateLimit-Remaining"] == "0"
    assert _count_emails(database) == 10
    other = {"X-API-Key": make_key(app, name="other")}  # per key
    assert client.post("/email/batch", json=_batch(10), headers=other).status_code == 201


def test_a_refused_batch_gives_its_messages_back(settings, database):
    app = limited_app(settings, RATELIMIT_MESSAGES="10 per minute")
    client, auth = app.test_client(), {"X-API-Key": make_key(app)}
    invalid = _batch(8)
    invalid["messages"][5]["to"] = "nobody"
    assert client.post("/email/batch", json=invalid, headers=auth).status_code == 422
    accepted = client.post("/email/batch", json=_batch(10), headers=auth)
    assert accepted.status_code == 201 and _count_emails(database) == 10


def test_a_batch_is_one_request_of_the_send_limit(settings, database):
    app = limited_app(settings, RATELIMIT_SEND="2 per minute")
    client, auth = app.test_client(), {"X-API-Key": make_key(app)}
    assert client.post("/email/batch", json=_batch(50), headers=auth).status_code == 201
    assert client.post("/email/send", json=SEND, headers=auth).status_code == 201
    refused = client.post("/email/batch", json=_batch(1), headers=auth)
    assert refused.status_code == 429 and refused.headers["X-RateLimit-Limit"] == "2"
    assert _count_emails(database) == 51


def test_a_request_refused_by_another_limit_takes_no_messages(settings, database):
    app = limited_app(settings, RATELIMIT_SEND="1 per minute", RATELIMIT_MESSAGES="3 per minute")
    client, auth = app.test_client(), {"X-API-Key": make_key(app)}
    assert client.post("/email/send", json=SEND, headers=auth).status_code == 201
    assert client.post("/email/batch", json=_batch(2), headers=auth).status_code == 429  # the send limit
    app_later = limited_app(settings, RATELIMIT_SEND="100 per minute", RATELIMIT_MESSAGES="3 per minute")
    # Same Redis counts under a looser send limit: the refused batch took none of the 3 messages.
    assert app_later.test_client().post("/email/batch", json=_batch(2), headers=auth).status_code == 201


def test_the_request_that_finds_redis_again_counts_every_window_as_before(settings, database, monkeypatch):
    # flask-limiter's own check counts that request (one window at a time, through WindowRedisStorage.incr).
    app = limited_app(settings, RATELIMIT_MESSAGES="3 per minute")
    limiter, client, auth = app.extensions["emailsvc.limiter"], app.test_client(), {"X-API-Key": make_key(app)}
    assert client.post("/email/batch", json=_batch(2), headers=auth).status_code == 201
    with monkeypatch.context() as away:
        away.setattr(limiter.storage, "lua_incr_with_ttl", lambda *args: (_ for _ in ()).throw(RedisError("away")))
        assert client.get(log_url(), headers=auth).status_code == 404  # counted in memory
    assert limiter._storage_dead
    limiter._Limiter__last_check_backend = 0  # look for Redis at the next request, not a second later
    refused = client.post("/email/batch", json=_batch(2), headers=auth)
    assert not limiter._storage_dead
    assert refused.status_code == 429 and refused.headers["X-RateLimit-Remaining"] == "1"  # and took none
    assert client.post("/email/batch", json=_batch(1), headers=auth).status_code == 201
    assert _count_emails(database) == 3
