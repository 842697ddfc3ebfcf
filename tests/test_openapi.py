"""GET /openapi.json: built from the schemas, covering every route, and true to the API (schemathesis)."""

import re
from datetime import UTC, datetime, timedelta

import pytest
import schemathesis
from conftest import TEST_DATABASE_URL, TEST_REDIS_URL, make_key, run_jobs
from hypothesis import HealthCheck, settings
from marshmallow import Schema, fields
from schemathesis.core.parameters import ParameterLocation

from emailsvc import create_app, openapi
from emailsvc.auth import require_scope
from emailsvc.schemas import MAX_RECIPIENTS, send_schema

ERROR_TABLE = {"400", "401", "403", "413", "415", "422", "429", "503"}


@pytest.fixture
def document(client):
    response = client.get("/openapi.json")
    assert response.status_code == 200 and response.mimetype == "application/json"
    return response.get_json()


def test_it_is_an_openapi_3_document_of_this_service(document):
    assert document["openapi"].startswith("3.") and document["info"]["title"] == "emailsvc"
    assert set(document["components"]["securitySchemes"]) == {"bearer", "apiKey"}


def test_every_route_of_the_app_is_documented(app, document):
    # The operator's page (/ui/: HTML for a browser, signed in by cookie) is not the API: it is left out
    # of the document on purpose, so the fuzz below never reaches it either (tests/test_ui.py covers it).
    assert any(rule.rule.startswith("/ui/") for rule in app.url_map.iter_rules())
    assert not any(path.startswith("/ui") for path in document["paths"])
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith("/ui/"):
            continue
        path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            assert method.lower() in document["paths"].get(path, {}), f"{method} {rule.rule} lacks @document"


def test_send_is_described_by_its_own_schema_with_every_error_it_can_answer(document):
    operation = document["paths"]["/email/send"]["post"]
    assert set(operation["responses"]) == {"201", "200"} | ERROR_TABLE  # 200: a dry run
    assert operation["requestBody"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Send"}
    send = document["components"]["schemas"]["Send"]
    assert set(send["properties"]) == {field.data_key or name for name, field in send_schema.fields.items()}
    # `subject` is required unless `template` is given (issue 14), which the schema says in its validator.
    assert set(send["required"]) == {"to"} and send["additionalProperties"] is False
    assert {"type": "string"} in [{"type": s["type"]} for s in send["properties"]["to"]["oneOf"]]


def test_errors_and_limits_are_described_with_their_headers(document):
    responses = document["components"]["responses"]
    assert responses["RateLimited"]["headers"]["Retry-After"]["required"] is True
    assert responses["ServiceUnavailable"]["headers"]["Retry-After"]["required"] is True
    assert document["components"]["schemas"]["Error"]["required"] == ["error"]
    health = document["paths"]["/healthz"]["get"]
    assert health["security"] == [] and "429" not in health["responses"]


# The document is built as GET /openapi.json builds it (test_the_served_document_is_the_one_fuzzed
# checks they agree), at import because pytest collects one test per operation; the app it is run
# against has generous limits, as the run sends a few hundred requests with one key. Nothing
# connects to anything until the first request.
FUZZED_APP = create_app({"DATABASE_URL": TEST_DATABASE_URL, "REDIS_URL": TEST_REDIS_URL,
                         "RATELIMIT_DEFAULT": "100000 per minute", "RATELIMIT_SEND": "100000 per minute",
                         "WEBHOOK_ALLOW_PRIVATE": "true"})  # fmt: skip
api = schemathesis.openapi.from_dict(openapi.build_spec(FUZZED_APP))
api.app = FUZZED_APP


def test_the_served_document_is_the_one_fuzzed(document):
    assert document == api.raw_schema


CONFORMANCE = [schemathesis.checks.not_a_server_error, schemathesis.checks.status_code_conformance,
               schemathesis.checks.content_type_conformance, schemathesis.checks.response_schema_conformance,
               schemathesis.checks.response_headers_conformance]  # fmt: skip


def test_real_answers_of_every_kind_match_the_document(settings, smtp):
    app = create_app({**settings, "RATELIMIT_SEND": "2 per minute"})
    auth = {"Authorization": f"Bearer {make_key(app)}"}
    send, get_log = api["/email/send"]["POST"], api["/email/logs/{email_id}"]["GET"]
    body = {"to": "Bob <bob@example.com>", "subject": "Hi", "body": "Hello", "reply_to": "help@example.com"}
    created = send.Case(body=body, media_type="application/json").call_and_validate(app=app, headers=auth,
                                                                                     checks=CONFORMANCE)  # fmt: skip
    assert created.status_code == 201
    run_jobs(app)
    cases = [(get_log.Case(path_parameters={"email_id": created.json()["id"]}), 200),
             (get_log.Case(path_parameters={"email_id": "nope"}), 404),
             (send.Case(body={"to": "nobody"}, media_type="application/json"), 422),
             (send.Case(body=body, media_type="application/json"), 429)]  # fmt: skip
    for case, status in cases:
        assert case.call_and_validate(app=app, headers=auth, checks=CONFORMANCE).status_code == status
    ready = api["/readyz"]["GET"].Case()
    down = create_app({**settings, "REDIS_URL": "redis://127.0.0.1:1/0"})
    assert ready.call_and_validate(app=down, checks=CONFORMANCE[1:]).status_code == 503  # a 503 is the point here


def test_one_decorator_documents_a_new_endpoint_with_its_query_and_errors(app):
    class PageSchema(Schema):
        limit = fields.Integer(metadata={"description": "Items per page."})

    @app.get("/things/<thing_id>")
    @openapi.document(query=PageSchema(), response=PageSchema(), errors=[404])
    @require_scope("read")
    def list_things(thing_id):
        """List things.

        Newest first."""

    operation = openapi.build_spec(app)["paths"]["/things/{thing_id}"]["get"]
    assert [(p["in"], p["name"]) for p in operation["parameters"]] == [("path", "thing_id"), ("query", "limit")]
    assert set(operation["responses"]) == {"200", "400", "401", "403", "404", "429", "503"}
    assert operation["description"] == "Needs an API key with the `read` scope. Newest first."


@pytest.fixture
def fuzz_auth(database):
    headers = {"Authorization": f"Bearer {make_key(FUZZED_APP)}"}
    template = {"name": "welcome", "subject": "Welcome", "body": "Hello."}  # what real_values sends by name
    assert FUZZED_APP.test_client().post("/templates", json=template, headers=headers).status_code == 201
    return headers


ADDRESSES = ["alice@example.com", "Bob <bob@example.org>", '"Doe, Jane" <jane@example.net>', "josé@exämple.com",
             "ops@localhost", "qa@staging.test", "=?utf-8?q?Caf=C3=A9?= <cafe@corp.local>"]  # fmt: skip
ADDRESS_FIELDS = ("to", "cc", "bcc", "from", "reply_to", "address")


def _real_address(value):
    if isinstance(value, list):
        return [_real_address(item) for item in value]
    return ADDRESSES[len(value) % len(ADDRESSES)] if isinstance(value, str) else value


def real_values(case):
    """Give a schema-valid case the values the document names but no JSON Schema can define, in every
    phase (hooks reach only generated cases): addresses (format `mailbox`), IANA zones (`time-zone`),
    a future `send_at` (`future-date-time`), a cursor (checksummed: valid only as a page handed it
    out), a webhook URL that resolves, header names unique ignoring case, and the sizes counted over several
    fields together (50 recipients over three fields, 16 KiB over all custom headers), a template that
    exists, and variables free of NUL at any depth."""
    if case.meta is None or not case.meta.generation.mode.is_positive:
        return
    query, body = case.query if isinstance(case.query, dict) else {}, case.body if isinstance(case.body, dict) else {}
    query.pop("cursor", None)
    for field in ("to", "from"):
        if query.get(field):
            query[field] = _real_address(query[field])
    if query.get("tz"):
        query["tz"] = "Asia/Dhaka"
    if isinstance(body.get("messages"), list):  # POST /email/batch: each message as a send body
        for message in body["messages"]:
            if isinstance(message, dict):
                _real_body(message)
    _real_body(body)


def _real_body(body):
    for field in ADDRESS_FIELDS:
        if body.get(field):
            body[field] = _real_address(body[field])
    if isinstance(body.get("send_at"), str):
        body["send_at"] = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    if body.get("url"):
        body["url"] = "http://127.0.0.1:9/hooks"
    if isinstance(body.get("headers"), dict):  # names unique ignoring case, and a size over all of them
        body["headers"] = {name.lower(): value[:200] for name, value in body["headers"].items()}
    if isinstance(body.get("attachments"), list):  # a name no pattern can vouch for (bytes, extensions)
        for n, attachment in enumerate(body["attachments"]):
            if isinstance(attachment, dict) and isinstance(attachment.get("filename"), str):
                attachment["filename"] = f"file-{n}.txt"
    if "variables" in body:  # any JSON object; strings in it, at any depth, may not hold NUL
        body["variables"] = {}
    if body.get("template") is not None:  # a template that exists, instead of texts of its own
        body.update(template="welcome", template_version=None)
        for field in ("subject", "body", "html"):
            body.pop(field, None)
    else:  # no template: nothing of one either
        body.pop("template_version", None)
    if "subject" in body or "template" in body:
        room = MAX_RECIPIENTS - (1 if isinstance(body.get("to"), str) else len(body.get("to") or []))
        for field in ("cc", "bcc"):
            if isinstance(body.get(field), list):
                body[field] = body[field][: max(room, 0)]
                room -= len(body[field])


@api.parametrize()
@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
def test_fuzzed_requests_never_get_a_5xx_and_match_the_document(case, fuzz_auth):
    # Every check, "schema-valid data is accepted" included: the document states what validation refuses.
    real_values(case)
    case.call_and_validate(headers=valid_key_unless_headers_are_the_fault(case, fuzz_auth))


def valid_key_unless_headers_are_the_fault(case, fuzz_auth):
    """The fuzz's valid key; but when the case's negative part is its headers (a malformed Authorization),
    sending the valid key instead would turn it into a valid request the check expects to be refused."""
    headers = case.meta and case.meta.components.get(ParameterLocation.HEADER)
    return {} if headers is not None and not headers.mode.is_positive else fuzz_auth
