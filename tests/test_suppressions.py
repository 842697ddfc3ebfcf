"""The suppression list: GET, POST, DELETE /suppressions, and sends to suppressed recipients."""

import pytest
from conftest import make_key, run_jobs, send_ok

VALID = {"to": "alice@example.com", "subject": "Hello", "body": "Hi Alice"}


def suppress(client, auth, address, **body):
    return client.post("/suppressions", json={"address": address, **body}, headers=auth)


def send(client, auth, **changes):
    return client.post("/email/send", json={**VALID, **changes}, headers=auth)


def test_added_addresses_are_normalised_and_listed(client, auth):
    response = suppress(client, auth, "Bob Example <Bob@EXAMPLE.com>", reason="unsubscribed")
    assert response.status_code == 201
    entry = response.get_json()
    assert entry["address"] == "bob@example.com" and entry["reason"] == "unsubscribed" and entry["created_at"]
    assert entry["email_id"] is None
    assert client.get("/suppressions", headers=auth).get_json()["items"] == [entry]


def test_adding_an_address_again_keeps_the_first_entry(client, auth):
    first = suppress(client, auth, "bob@example.com", reason="bounced at our old provider").get_json()
    again = suppress(client, auth, "BOB@example.com")
    assert again.status_code == 200 and again.get_json() == first


def test_reason_defaults_to_manual(client, auth):
    assert suppress(client, auth, "bob@example.com").get_json()["reason"] == "manual"


@pytest.mark.parametrize("field", ["to", "cc", "bcc"])
def test_a_send_to_a_suppressed_recipient_is_refused_and_nothing_is_sent(client, auth, app, smtp, field):
    suppress(client, auth, "bob@example.com")
    suppress(client, auth, "carol@example.com")
    recipients = ["Bob <BOB@example.com>", "carol@example.com"]
    response = send(client, auth, **{field: recipients})
    assert response.status_code == 422
    error = response.get_json()["error"]
    assert error["code"] == "recipient_suppressed"
    assert error["details"] == {"addresses": ["bob@example.com", "carol@example.com"]}
    run_jobs(app)
    assert smtp.received == []


def test_deleting_an_entry_lets_mail_through_again(client, auth, app, smtp):
    suppress(client, auth, "alice@example.com")
    assert send(client, auth).status_code == 422
    assert client.delete("/suppressions/Alice@Example.com", headers=auth).status_code == 204
    assert send(client, auth).status_code == 201
    run_jobs(app)
    assert len(smtp.received) == 1
    assert client.delete("/suppressions/alice@example.com", headers=auth).status_code == 404


@pytest.mark.parametrize("address", ["not-an-address", "a@b@c", "%00@example.com"])
def test_deleting_something_that_is_not_listed_is_404(client, auth, address):
    response = client.delete(f"/suppressions/{address}", headers=auth)
    assert response.status_code == 404 and response.get_json()["error"]["code"] == "not_found"


def test_the_list_is_paged_newest_first_by_cursor(client, auth):
    addresses = [f"user{i}@example.com" for i in range(5)]
    for address in addresses:
        suppress(client, auth, address)
    seen, cursor = [], None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        body = client.get("/suppressions", query_string=params, headers=auth).get_json()
        assert len(body["items"]) <= 2 and body["pagination"]["limit"] == 2
        seen += [item["address"] for item in body["items"]]
        cursor = body["pagination"]["next_cursor"]
        if cursor is None:
            break
    assert seen == addresses[::-1]


def test_empty_paging_parameters_are_read_as_absent(client, auth):
    suppress(client, auth, "user@example.com")
    response = client.get("/suppressions?limit=&cursor=", headers=auth)
    assert response.status_code == 200
    body = response.get_json()
    assert [item["address"] for item in body["items"]] == ["user@example.com"]
    assert body["pagination"] == {"limit": 10, "next_cursor": None}


def test_an_empty_address_is_refused_as_the_document_says(client, auth):
    assert suppress(client, auth, "").status_code == 422
    schema = client.get("/openapi.json").get_json()["components"]["schemas"]["NewSuppression"]["properties"]["address"]
    assert schema["minLength"] == 1


@pytest.mark.parametrize("limit, expected", [("0", 1), ("-3", 1), ("1000", 100), ("7", 7)])
def test_limits_are_clamped(client, auth, limit, expected):
    body = client.get("/suppressions", query_string={"limit": limit}, headers=auth).get_json()
    assert body["pagination"]["limit"] == expected


@pytest.mark.parametrize(
    "params", [{"limit": "ten"}, {"limit": "1e3"}, {"cursor": "%%%"}, {"cursor": "WyJ4Il0"}, {"cursor": "WzEsMl0"}]
)
def test_malformed_paging_parameters_are_400(client, auth, params):
    response = client.get("/suppressions", query_string=params, headers=auth)
    assert response.status_code == 400 and response.get_json()["error"]["code"] == "invalid_parameter"


@pytest.mark.parametrize(
    "body, field",
    [
        ({}, "address"),
        ({"address": "nope"}, "address"),
        ({"address": "a@example.com\r\nBcc: x@example.com"}, "address"),
        ({"address": "a@example.com", "reason": ""}, "reason"),
        ({"address": "a@example.com", "reason": "x" * 201}, "reason"),
        ({"address": "a@example.com", "reason": "line\nbreak"}, "reason"),
        ({"address": "a@example.com", "extra": 1}, "extra"),
    ],
)
def test_invalid_entries_are_422(client, auth, body, field):
    response = client.post("/suppressions", json=body, headers=auth)
    assert response.status_code == 422 and field in response.get_json()["error"]["details"]


def test_the_list_needs_the_send_scope(client, app):
    read_only = {"X-API-Key": make_key(app, scopes=["read"])}
    assert client.get("/suppressions", headers=read_only).status_code == 403
    assert client.post("/suppressions", json={"address": "a@example.com"}, headers=read_only).status_code == 403
    assert client.delete("/suppressions/a@example.com", headers=read_only).status_code == 403
    assert client.get("/suppressions").status_code == 401


def test_a_refused_send_leaves_its_idempotency_key_free(client, auth, app, smtp):
    keyed = {**auth, "Idempotency-Key": "welcome-alice"}
    suppress(client, auth, "alice@example.com")
    refused = client.post("/email/send", json=VALID, headers=keyed)
    assert refused.status_code == 422 and refused.get_json()["error"]["code"] == "recipient_suppressed"
    client.delete("/suppressions/alice@example.com", headers=auth)
    accepted = client.post("/email/send", json=VALID, headers=keyed)
    assert accepted.status_code == 201 and "Idempotent-Replayed" not in accepted.headers
    run_jobs(app)
    assert len(smtp.received) == 1


def test_a_replay_to_a_recipient_suppressed_since_is_refused(client, auth, app):
    keyed = {**auth, "Idempotency-Key": "welcome-alice"}
    assert client.post("/email/send", json=VALID, headers=keyed).status_code == 201
    suppress(client, auth, "alice@example.com")
    replay = client.post("/email/send", json=VALID, headers=keyed)
    assert replay.status_code == 422 and replay.get_json()["error"]["details"] == {"addresses": ["alice@example.com"]}


def test_a_cursor_of_another_list_is_400_not_a_server_error(client, auth, database):
    for address in ("a@example.com", "b@example.com"):
        client.post("/suppressions", json={"address": address}, headers=auth)
    for _ in range(2):
        send_ok(client, auth)
    suppressions_cursor = client.get("/suppressions?limit=1", headers=auth).get_json()["pagination"]["next_cursor"]
    logs_cursor = client.get("/email/logs?limit=1", headers=auth).get_json()["pagination"]["next_cursor"]
    for url in (f"/email/logs?cursor={suppressions_cursor}", f"/suppressions?cursor={logs_cursor}"):
        response = client.get(url, headers=auth)
        assert response.status_code == 400, url
        assert response.get_json()["error"]["code"] == "invalid_parameter"
