"""The operator commands."""

import pytest
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


def test_keys_go_to_the_default_project_unless_told(runner, client):
    default_key = runner.invoke(args=["api-keys", "create", "first"]).stdout.strip()
    assert runner.invoke(args=["projects", "create", "shop"]).exit_code == 0
    shop_key = runner.invoke(args=["api-keys", "create", "web", "--project", "shop"]).stdout.strip()
    assert client.get("/project", headers={"X-API-Key": default_key}).get_json()["name"] == "default"
    assert client.get("/project", headers={"X-API-Key": shop_key}).get_json()["name"] == "shop"
    listing = runner.invoke(args=["api-keys", "list"]).stdout.splitlines()
    assert [line.split("\t")[-1] for line in listing] == ["default", "shop"]


def test_a_key_for_a_project_that_does_not_exist_is_refused(runner):
    result = runner.invoke(args=["api-keys", "create", "web", "--project", "shpo"])
    assert result.exit_code != 0 and "No project named 'shpo'" in result.output
    assert runner.invoke(args=["projects", "list"]).stdout == ""


def test_projects_are_created_listed_and_renamed(runner, client):
    assert runner.invoke(args=["projects", "create", "shop"]).exit_code == 0
    again = runner.invoke(args=["projects", "create", "shop"])
    assert again.exit_code != 0 and "exists already" in again.output
    key = runner.invoke(args=["api-keys", "create", "web", "--project", "shop"]).stdout.strip()
    runner.invoke(args=["projects", "create", "blog"])
    assert runner.invoke(args=["projects", "rename", "shop", "store"]).exit_code == 0
    assert client.get("/project", headers={"X-API-Key": key}).get_json()["name"] == "store"  # the key followed
    lines = [line.split("\t")[1:3] for line in runner.invoke(args=["projects", "list"]).stdout.splitlines()]
    assert lines == [["store", "1 active keys"], ["blog", "0 active keys"]]
    taken = runner.invoke(args=["projects", "rename", "store", "blog"])
    assert taken.exit_code != 0 and "exists already" in taken.output
    assert runner.invoke(args=["projects", "rename", "nope", "other"]).exit_code != 0


@pytest.mark.parametrize("name", ["", "   ", "a\nb", "x" * 101])
def test_a_project_name_must_be_printable_and_short(runner, name):
    assert runner.invoke(args=["projects", "create", name]).exit_code != 0


def test_an_operator_key_is_made_by_the_cli_alone_and_reads_no_mail(runner, client):
    mixed = runner.invoke(args=["api-keys", "create", "ops", "--scopes", "operator,read"])
    assert mixed.exit_code != 0 and "operator alone" in mixed.output
    key = runner.invoke(args=["api-keys", "create", "ops", "--scopes", "operator"]).stdout.strip()
    assert client.get("/email/logs", headers={"X-API-Key": key}).status_code == 403
