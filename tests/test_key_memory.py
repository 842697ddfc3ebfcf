"""Keys remembered by each process: no look-up per request, and a revoked key refused at once by every process."""

import time
import uuid

from conftest import TEST_REDIS_URL, make_key, revoke
from redis import Redis

import emailsvc.key_memory
from emailsvc import create_app
from emailsvc.key_memory import REVOCATIONS, TRUST_SECONDS


def get(app, key):
    return app.test_client().get(f"/email/logs/{uuid.uuid4()}", headers={"X-API-Key": key}).status_code


def test_a_busy_key_is_looked_up_once_per_process(app, look_ups):
    key = make_key(app)
    assert [get(app, key) for _ in range(50)] == [404] * 50
    # The first look-up is remembered before this process has read any revocation token, so it is
    # confirmed by a second; from then on the key costs none.
    assert len(look_ups) == 2


def test_a_key_revoked_by_the_cli_is_refused_at_once_by_every_process(settings, look_ups):
    first, second, operator = (create_app(settings) for _ in range(3))
    key, other = make_key(first), make_key(first)
    for app in (first, second):
        assert [get(app, key) for _ in range(3)] == [404] * 3
        assert get(app, other) == 404
    revoke(operator, key)
    assert [get(first, key), get(second, key)] == [401, 401]
    assert [get(first, other), get(second, other)] == [404, 404]  # looked up again, still valid


def test_a_key_is_looked_up_again_after_a_minute_which_notes_its_use(app, look_ups, monkeypatch, database):
    key = make_key(app)
    assert [get(app, key) for _ in range(3)] == [404] * 3
    seen = len(look_ups)
    with app.app_context():
        db = app.extensions["emailsvc"].db
        with db.cursor() as cur:
            cur.execute("UPDATE api_keys SET last_used_at = now() - interval '2 minutes'")
    later = time.monotonic() + TRUST_SECONDS
    monkeypatch.setattr(emailsvc.key_memory.time, "monotonic", lambda: later)
    assert get(app, key) == 404
    assert len(look_ups) == seen + 1
    with app.app_context(), app.extensions["emailsvc"].db.cursor() as cur:
        cur.execute("SELECT now() - last_used_at < interval '10 seconds' AS fresh FROM api_keys")
        assert cur.fetchone()["fresh"]


def test_a_redis_emptied_under_remembered_keys_makes_every_process_look_them_up_again(app, look_ups):
    key = make_key(app)
    assert [get(app, key) for _ in range(3)] == [404] * 3
    seen = len(look_ups)
    Redis.from_url(TEST_REDIS_URL).flushdb()  # a restart without persistence: the token is gone
    assert get(app, key) == 404
    assert len(look_ups) == seen + 1
    assert Redis.from_url(TEST_REDIS_URL).get(REVOCATIONS)  # a new token, read by the next counts


def test_revoke_without_redis_returns_once_no_process_trusts_what_it_remembers(settings, monkeypatch):
    monkeypatch.setattr(emailsvc.key_memory, "TRUST_SECONDS", 0.5)
    app = create_app({**settings, "REDIS_URL": "redis://127.0.0.1:1/0"})
    make_key(app)
    started = time.monotonic()
    result = app.test_cli_runner().invoke(args=["api-keys", "revoke", "1"])
    assert result.exit_code == 0 and "Redis did not answer" in result.output
    assert time.monotonic() - started >= 0.5
