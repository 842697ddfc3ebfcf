"""The parser's budget: a body of more values than its messages can need is refused (413) before it is
parsed, and every legitimate body, however large, is accepted whole."""

import base64
import json

import psycopg2
import pytest
from conftest import VALID_SEND, log_of

from emailsvc.json_budget import VALUES_PER_MESSAGE, TooManyValues, check_values

MiB = 1024 * 1024
# 5 MiB of text (under MAX_MESSAGE_BYTES once built) made of what the count looks at: commas, colons,
# brackets, and quotes and backslashes that JSON escapes (`\"`, `\\`, and `\\` before a closing quote).
PUNCTUATED = 'He said: "a, b", [c], {d: e}; C:\\dir\\, ' * (5 * MiB // 40) + "C:\\"
# The most values a template's variables can hold (64 KiB as compact JSON), in the densest shapes.
DENSE_VARIABLES = [{"list": [[]] * 21_800}, {f"{i:x}": 0 for i in range(6_500)}]

HOSTILE = [
    pytest.param({**VALID_SEND, **{f"f{i:06d}": 0 for i in range(200_000)}}, id="200k unknown fields"),
    pytest.param({**VALID_SEND, "metadata": {f"k{i}": "v" for i in range(200_000)}}, id="200k metadata keys"),
    pytest.param({**VALID_SEND, "bcc": [0] * 1_000_000}, id="a list of 1M zeros"),
    pytest.param({**VALID_SEND, "to": [{}] * 1_000_000}, id="a list of 1M empty objects"),
    pytest.param({**VALID_SEND, "variables": {"x": [[[0]]] * 200_000}}, id="nested lists"),
    # Backslashes and quotes in the keys must not hide the punctuation after them.
    pytest.param({**VALID_SEND, **{f'k\\"{i}\\': 0 for i in range(200_000)}}, id="keys ending in escapes"),
]


def post(client, auth, path, data, content_type="application/json"):
    return client.post(path, data=data, headers={**auth, "Content-Type": content_type})


def stored_count(database):
    with psycopg2.connect(database) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM emails")
        return cur.fetchone()[0]


@pytest.mark.parametrize("body", HOSTILE)
def test_a_body_of_more_values_than_a_message_needs_is_413_unparsed(client, auth, database, body):
    response = post(client, auth, "/email/send", json.dumps(body).encode())
    assert response.status_code == 413
    error = response.get_json()["error"]
    assert error["code"] == "payload_too_large" and "JSON values" in error["message"]
    assert stored_count(database) == 0


def test_utf16_is_counted_as_the_parser_reads_it(client, auth):
    body = json.dumps({**VALID_SEND, "bcc": [0] * 1_000_000}).encode("utf-16")
    assert post(client, auth, "/email/send", body).status_code == 413
    small = json.dumps({**VALID_SEND, "subject": "ütf-16"}).encode("utf-16")
    assert post(client, auth, "/email/send", small).status_code == 201


def test_a_text_full_of_commas_quotes_and_backslashes_is_accepted_whole(client, auth):
    response = post(client, auth, "/email/send", json.dumps({**VALID_SEND, "body": PUNCTUATED}).encode())
    assert response.status_code == 201, response.get_json()
    assert log_of(client, auth, response.get_json()["id"])["body"] == PUNCTUATED


def test_a_large_attachment_is_accepted_whole(client, auth):
    content = bytes(range(256)) * (6 * MiB // 256)
    attachment = {"filename": "data.bin", "content": base64.b64encode(content).decode()}
    response = post(client, auth, "/email/send", json.dumps({**VALID_SEND, "attachments": [attachment]}).encode())
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["attachments"][0]["size"] == len(content)


@pytest.mark.parametrize("variables", DENSE_VARIABLES, ids=["empty lists", "keys"])
def test_the_densest_variables_a_template_takes_are_rendered(client, auth, variables):
    assert len(json.dumps(variables, separators=(",", ":"))) <= 64 * 1024
    created = client.post("/templates", json={"name": "dense", "subject": "Hi", "body": "Hi"}, headers=auth)
    assert created.status_code == 201
    response = post(client, auth, "/templates/dense/render", json.dumps({"variables": variables}).encode())
    assert response.status_code == 200, response.get_json()


def test_a_batch_of_500_full_messages_is_accepted(client, auth):
    message = {
        "to": [f"r{i}@example.com" for i in range(50)], "subject": "Hi", "body": "x, y: [z]" * 100,
        "headers": {f"X-H{i}": "v" * 100 for i in range(50)}, "metadata": {f"k{i}": "v" * 50 for i in range(20)},
    }  # fmt: skip
    response = post(client, auth, "/email/batch", json.dumps({"messages": [message] * 500}).encode())
    assert response.status_code == 201, response.get_json()
    assert len(response.get_json()["data"]) == 500


def test_a_batch_may_hold_what_its_messages_can_need(client, auth):
    # 20 messages' worth of values, more than one message may hold: counted in the batch's budget, then
    # refused by validation for what they are.
    body = {"messages": [{**VALID_SEND, "variables": {"x": [0] * (VALUES_PER_MESSAGE // 2)}}] * 20}
    response = post(client, auth, "/email/batch", json.dumps(body).encode())
    assert response.status_code == 422
    assert "template" in response.get_json()["error"]["details"]["messages"]["0"]


def test_the_count_needs_no_server():
    check_values(json.dumps({"body": PUNCTUATED}).encode())
    check_values(json.dumps({"body": "," * (2 * VALUES_PER_MESSAGE)}).encode())  # one long string
    check_values(json.dumps(["a, b: c, [d], {e}" * 4] * 20_000).encode())  # many strings holding punctuation
    with pytest.raises(TooManyValues):
        check_values(json.dumps([0] * (VALUES_PER_MESSAGE + 1)).encode())
    with pytest.raises(TooManyValues):  # strings alone, counted before anything is split
        check_values(json.dumps([""] * (VALUES_PER_MESSAGE + 1)).encode())
    check_values(json.dumps([0] * (VALUES_PER_MESSAGE - 10)).encode())
    with pytest.raises(TooManyValues):  # keys weigh more than their bytes
        check_values(b"{" + b'"":0,' * (VALUES_PER_MESSAGE // 4) + b'"":0}')
    check_values(json.dumps([0] * (3 * VALUES_PER_MESSAGE)).encode(), messages=3)


def test_a_batch_is_parsed_once_and_without_a_key_not_at_all(client, auth, monkeypatch):
    # The rate limiter counts a batch's messages before its view runs: both read the one parse.
    parsed, loads = [], json.loads
    monkeypatch.setattr(json, "loads", lambda data, **kwargs: parsed.append(data) or loads(data, **kwargs))
    data = json.dumps({"messages": [VALID_SEND] * 3}).encode()
    assert post(client, auth, "/email/batch", data).status_code == 201
    assert parsed.count(data) == 1
    assert post(client, {"Authorization": "Bearer esk_" + "x" * 43}, "/email/batch", data).status_code == 401
    assert parsed.count(data) == 1
