"""The error contract: every row of the SPEC error table, one JSON shape, X-Request-ID everywhere."""

import logging
import uuid

import pytest
from conftest import make_key

from emailsvc import create_app
from emailsvc.auth import new_key
from emailsvc.errors import IdempotencyConflict, InvalidParameter

SEND = {"to": "a@example.com", "subject": "s", "body": "b"}


def assert_error(response, status, code):
    """The response is the one error shape, as JSON, with the status and code the contract names."""
    assert response.status_code == status
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert set(body) == {"error"} and set(body["error"]) <= {"code", "message", "details"}
    assert body["error"]["code"] == code and body["error"]["message"]
    assert response.headers["X-Request-ID"]
    return body["error"]


@pytest.mark.parametrize(
    "data",
    [b"{", b'{"to": "a@example.com",}', b"[1, 2]", b'"text"', b"null", b"42", b"", b"\xff\xfe", b"[" * 100_000,
     b'{"a": ' * 50_000],
)  # fmt: skip
def test_body_that_is_not_a_json_object_is_400_invalid_json(client, auth, data):
    response = client.post("/email/send", data=data, content_type="application/json", headers=auth)
    assert_error(response, 400, "invalid_json")


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded", "text/json"])
def test_post_without_a_json_content_type_is_415(client, auth, content_type):
    headers = {**auth, **({"Content-Type": content_type} if content_type else {})}
    response = client.post("/email/send", data=b'{"to": "a@example.com"}', headers=headers)
    assert_error(response, 415, "unsupported_media_type")


def test_missing_key_is_401_naming_the_scheme(client):
    response = client.post("/email/send", json=SEND)
    assert_error(response, 401, "unauthorized")
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_key_without_the_scope_is_403(client, app):
    response = client.post("/email/send", json=SEND, headers={"X-API-Key": make_key(app, scopes=["read"])})
    assert_error(response, 403, "forbidden")


@pytest.mark.parametrize("path", ["/nope", "/email", "/email/send/", "/email/logs/", f"/email/logs/{uuid.uuid4()}"])
def test_unknown_route_or_id_is_404_json(client, auth, path):
    assert_error(client.get(path, headers=auth), 404, "not_found")


@pytest.mark.parametrize("method, path", [("GET", "/email/send"), ("DELETE", "/email/send"), ("POST", "/healthz"),
                                          ("PUT", "/email/logs/x")])  # fmt: skip
def test_wrong_method_is_405_with_allow(client, auth, method, path):
    response = client.open(path, method=method, headers=auth)
    assert_error(response, 405, "method_not_allowed")
    assert response.headers["Allow"]


def test_body_over_16_mib_is_413(client, auth):
    body = b'{"to": "a@example.com", "subject": "s", "body": "' + b"x" * (16 * 1024 * 1024) + b'"}'
    response = client.post("/email/send", data=body, content_type="application/json", headers=auth)
    assert_error(response, 413, "payload_too_large")


def test_well_formed_but_invalid_body_is_422_naming_the_fields(client, auth):
    error = assert_error(client.post("/email/send", json={"to": "nobody"}, headers=auth), 422, "validation_error")
    assert set(error["details"]) == {"to", "subject"}


@pytest.mark.parametrize(
    "raw, field",
    [(b'"body": "a\\u0000b"', "body"), (b'"html": "\\u0000"', "html"),
     (b'"metadata": {"k\\u0000": "v"}', "metadata"), (b'"metadata": {"k": "\\ud83d"}', "metadata"),
     (b'"body": "\\udfff"', "body"), (b'"subject": "s\\ud800"', "subject")],
)  # fmt: skip
def test_text_the_database_cannot_store_is_422_not_500(client, auth, raw, field):
    data = b'{"to": "a@example.com", "subject": "s", "body": "b", ' + raw + b"}"
    error = assert_error(client.post("/email/send", data=data, content_type="application/json", headers=auth),
                         422, "validation_error")  # fmt: skip
    assert field in error["details"]


@pytest.mark.parametrize("encoding", ["utf-16-le", "utf-16-be", "utf-32-le", "utf-8-sig"])
def test_nul_is_found_in_every_encoding_json_reads(client, auth, encoding):
    text = '{"to": "a@example.com", "subject": "s", "body": "a\\u0000b"}'
    response = client.post("/email/send", data=text.encode(encoding), content_type="application/json", headers=auth)
    assert "body" in assert_error(response, 422, "validation_error")["details"]


def test_a_query_parameter_holding_nul_is_400_invalid_parameter(client, auth):
    assert_error(client.get("/email/logs/x?to=a%00b", headers=auth), 400, "invalid_parameter")


def test_too_many_requests_is_429_with_retry_after_and_limit_headers(settings):
    app = create_app({**settings, "RATELIMIT_SEND": "1 per minute"})
    client, auth = app.test_client(), {"X-API-Key": make_key(app)}
    assert client.post("/email/send", json=SEND, headers=auth).status_code == 201
    response = client.post("/email/send", json=SEND, headers=auth)
    assert_error(response, 429, "rate_limited")
    assert 0 < int(response.headers["Retry-After"]) <= 60
    assert response.headers["X-RateLimit-Limit"] == "1" and response.headers["X-RateLimit-Remaining"] == "0"


def test_database_down_is_503_with_retry_after(settings):
    app = create_app({**settings, "DATABASE_URL": "postgresql://postgres@127.0.0.1:1/none"})
    response = app.test_client().get(f"/email/logs/{uuid.uuid4()}", headers={"X-API-Key": new_key()})
    assert_error(response, 503, "service_unavailable")
    assert int(response.headers["Retry-After"]) > 0


@pytest.mark.parametrize("exc, status, code", [(InvalidParameter("Bad cursor."), 400, "invalid_parameter"),
                                               (IdempotencyConflict(), 409, "idempotency_conflict")])  # fmt: skip
def test_errors_of_later_endpoints_render_in_the_same_shape(app, exc, status, code):
    # The query-string and idempotency rows of the table belong to endpoints that raise these.
    app.add_url_rule("/raise", "raise", lambda: (_ for _ in ()).throw(exc))
    assert_error(app.test_client().get("/raise"), status, code)


def test_a_bug_is_a_json_500_logged_with_the_request_id(app, caplog):
    app.add_url_rule("/bug", "bug", lambda: 1 / 0)
    response = app.test_client().get("/bug", headers={"X-Request-ID": "trace-42"})
    assert_error(response, 500, "internal_error")
    assert response.headers["X-Request-ID"] == "trace-42"
    [record] = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert record.request_id == "trace-42" and record.exc_info


@pytest.mark.parametrize("given, echoed", [("abc-123_X.y:z", True), ("x" * 129, False), ("a b", False), ("", False)])
def test_a_sane_request_id_is_echoed_and_others_replaced(client, given, echoed):
    response = client.get("/healthz", headers={"X-Request-ID": given})
    assert (response.headers["X-Request-ID"] == given) is echoed
    assert response.headers["X-Request-ID"]


def test_every_response_carries_a_request_id(client, auth):
    responses = [client.get("/healthz"), client.get("/nope"), client.post("/email/send", json=SEND),
                 client.post("/email/send", data="{", content_type="application/json", headers=auth),
                 client.post("/email/send", json=SEND, headers=auth), client.get("/openapi.json")]  # fmt: skip
    ids = [r.headers.get("X-Request-ID") for r in responses]
    assert all(ids) and len(set(ids)) == len(ids)
