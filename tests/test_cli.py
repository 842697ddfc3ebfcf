"""The operator commands."""

from conftest import TEST_DATABASE_URL


def test_init_db_is_safe_to_run_twice(runner):
    for _ in range(2):
        assert runner.invoke(args=["init-db"]).exit_code == 0


def test_create_prints_only_a_working_key(runner, client):
    result = runner.invoke(args=["api-keys", "create", "shop", "--scopes", "send"])
    assert result.exit_code == 0
    key = result.stdout.strip()
    assert key.startswith("esk_") and "\n" not in key
    send = {"to": "a@example.com", "subject": "s", "body": "b"}
    assert client.post("/email/send", json=send, headers={"X-API-Key": key}).status_code == 201
    assert client.get("/email/logs/x", headers={"X-API-Key": key}).status_code == 403


def test_list_shows_id_and_name_but_never_the_key(runner):
    key = runner.invoke(args=["api-keys", "create", "billing"]).stdout.strip()
    listing = runner.invoke(args=["api-keys", "list"]).stdout
    assert listing.startswith("1\tbilling\t")
    assert key not in listing


def test_revoke_takes_effect_at_once(runner, client):
    key = runner.invoke(args=["api-keys", "create", "old"]).stdout.strip()
    assert client.get("/email/logs/x", headers={"X-API-Key": key}).status_code == 404
    assert runner.invoke(args=["api-keys", "revoke", "1"]).exit_code == 0
    assert client.get("/email/logs/x", headers={"X-API-Key": key}).status_code == 401
    assert runner.invoke(args=["api-keys", "revoke", "1"]).exit_code != 0


def test_unknown_scope_is_refused(runner):
    result = runner.invoke(args=["api-keys", "create", "x", "--scopes", "admin"])
    assert result.exit_code != 0 and TEST_DATABASE_URL
