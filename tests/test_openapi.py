"""GET /openapi.json: built from the schemas, covering every route, and true to the API (schemathesis)."""

import re

import pytest
import schemathesis
from conftest import TEST_DATABASE_URL, TEST_REDIS_URL, make_key, run_jobs
from hypothesis import HealthCheck, settings
from marshmallow import Schema, fields

from emailsvc import create_app, openapi
from emailsvc.auth import require_scope
from emailsvc.schemas import send_schema

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
    for rule in app.url_map.iter_rules():
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
                         "RATELIMIT_DEFAULT": "100000 per minute", "RATELIMIT_SEND": "100000 per minute"})  # fmt: skip
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
    return {"Authorization": f"Bearer {make_key(FUZZED_APP)}"}


ADDRESSES = ["alice@example.com", "Bob <bob@example.org>", '"Doe, Jane" <jane@example.net>', "josé@exämple.com"]


def real_addresses(context, body):
    """Swap generated address strings for real addresses (a schema cannot describe a valid one), so
    fuzzed bodies get past the address checks and reach the database and the queue."""
    if isinstance(body, dict) and isinstance(body.get("messages"), list):  # POST /email/batch
        for message in body["messages"]:
            real_addresses(context, message)
    if isinstance(body, dict):
        for key in ("to", "cc", "bcc", "from", "reply_to"):
            value = body.get(key)
            if isinstance(value, str):
                body[key] = ADDRESSES[len(value) % len(ADDRESSES)]
            elif isinstance(value, list) and all(isinstance(item, str) for item in value):
                body[key] = [ADDRESSES[len(item) % len(ADDRESSES)] for item in value]
    return body


@api.hooks.apply(real_addresses, name="map_body")
@api.parametrize()
@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
def test_fuzzed_requests_never_get_a_5xx_and_match_the_document(case, fuzz_auth):
    # Every check but "schema-valid data is accepted": a schema cannot say what a valid address is.
    case.call_and_validate(headers=fuzz_auth, excluded_checks=[schemathesis.checks.positive_data_acceptance])
