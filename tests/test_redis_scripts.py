"""The accept path's scripts on connections of their own (emailsvc/redis_scripts.py): a send still counts and
queues after Redis dropped its connections or forgot its scripts, and processes never share a connection."""

import os

from conftest import TEST_REDIS_URL, send_ok
from redis import Redis

from emailsvc.redis_scripts import run_script
from emailsvc.services import get_services


def drop_connections_to_test_db():
    """Close every client connection of the test database, as a Redis restart or an idle timeout does."""
    admin = Redis.from_url(TEST_REDIS_URL)
    me = admin.client_id()
    db = int(TEST_REDIS_URL.rsplit("/", 1)[1])
    for entry in admin.client_list():
        if int(entry["db"]) == db and int(entry["id"]) != me:
            admin.client_kill_filter(_id=entry["id"])
    return admin


def queued(app):
    with app.app_context():
        return get_services().email_queue.get_job_ids()


def test_a_send_after_redis_closed_its_connections_is_counted_and_queued(app, client, auth):
    first = send_ok(client, auth)
    admin = drop_connections_to_test_db()

    response = client.post("/email/send", json={"to": "bob@example.com", "subject": "Hi", "body": "B"}, headers=auth)

    assert response.status_code == 201, response.get_json()
    assert queued(app) == [first, response.get_json()["id"]]
    assert counted_in_redis_twice(admin)


def test_a_send_after_redis_forgot_its_scripts_is_counted_and_queued(app, client, auth):
    first = send_ok(client, auth)
    admin = Redis.from_url(TEST_REDIS_URL)
    admin.script_flush()

    second = send_ok(client, auth)

    assert queued(app) == [first, second]
    assert counted_in_redis_twice(admin)


def counted_in_redis_twice(admin):
    """Counted in Redis, where every process sees it, not in one process's fallback: each window holds both sends."""
    windows = admin.keys("LIMITS:*")
    return windows and all(admin.get(window) == b"2" for window in windows)


def test_a_forked_process_opens_a_connection_of_its_own(app):
    with app.app_context():
        echo = get_services().redis.register_script("return ARGV[1]")
        assert run_script(echo, [], ["parent"]) == b"parent"  # the parent's connection is open
        pid = os.fork()
        if pid == 0:  # the child: on a shared socket, its answers and the parent's would cross
            ok = all(run_script(echo, [], [f"child {i}"]) == f"child {i}".encode() for i in range(300))
            os._exit(0 if ok else 1)
        parent_ok = all(run_script(echo, [], [f"parent {i}"]) == f"parent {i}".encode() for i in range(300))
        _, status = os.waitpid(pid, 0)
    assert parent_ok
    assert os.waitstatus_to_exitcode(status) == 0
