"""The OpenAPI 3 document of the API, built by apispec from the marshmallow schemas; GET /openapi.json."""

import re

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from flask import Blueprint, current_app
from marshmallow import fields

from .errors import ErrorSchema
from .limits import UNLIMITED
from .schemas import AddressField, AddressList

bp = Blueprint("openapi", __name__)

DESCRIPTION = """A self-hosted transactional email service. Authenticate with `Authorization: Bearer <key>`
or `X-API-Key: <key>`. Every error has the shape `{"error": {"code", "message", "details"?}}`, and every
response carries `X-Request-ID`. Counted responses carry `X-RateLimit-Limit`, `X-RateLimit-Remaining` and
`X-RateLimit-Reset` (Unix time); a 429 adds `Retry-After` (seconds)."""

# Status → (component name, the codes it carries and when). Mirrors the error table of the contract.
ERRORS = {
    400: ("BadRequest", "`invalid_json`: the body is not a JSON object; `invalid_parameter`: a bad query parameter."),
    401: ("Unauthorized", "`unauthorized`: missing, unknown or revoked API key."),
    403: ("Forbidden", "`forbidden`: the API key lacks the scope this operation needs."),
    404: ("NotFound", "`not_found`: no such resource."),
    409: ("Conflict", "`idempotency_conflict`: the Idempotency-Key was used with a different body; "
                      "`template_exists`, `not_cancelable`, `not_reschedulable`, `content_purged`: see the operation."),
    413: ("PayloadTooLarge", "`payload_too_large`: the body is over the size limit (default 16 MiB), or holds more "
                             "JSON values than its messages can need (360,000 a message, a key weighing 9)."),
    415: ("UnsupportedMediaType", "`unsupported_media_type`: the body is not sent as `application/json`."),
    422: ("ValidationError", "`validation_error`: `details` maps each field to its messages; or a code naming a rule."),
    429: ("RateLimited", "`rate_limited`: too many requests; retry after `Retry-After` seconds."),
    503: ("ServiceUnavailable", "`service_unavailable`: the database or the queue is unreachable; see `Retry-After`."),
}  # fmt: skip
HEADERS = {
    "X-Request-ID": "The client's own X-Request-ID when it sent a sane one, else a new one; also in every log line.",
    "X-RateLimit-Limit": "Requests allowed in the current window of the limit closest to running out.",
    "X-RateLimit-Remaining": "Requests left in that window.",
    "X-RateLimit-Reset": "When that window ends, in Unix seconds.",
    "Retry-After": "Seconds to wait before trying again.",
    "WWW-Authenticate": "The authentication scheme to use.",
}
RATE_HEADERS = ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset")
REQUIRED_HEADERS = {401: ("WWW-Authenticate",), 429: (*RATE_HEADERS, "Retry-After"), 503: ("Retry-After",)}
FLASK_PARAM = re.compile(r"<(?:[a-z]+:)?(\w+)>")


def document(*, body=None, query=None, response=None, status=200, also=None, errors=(), example=None, media_type=None):
    """Describe a view in GET /openapi.json; put it just below the route decorator.

    `body` and `query` are the input schemas the view loads (`example`, a sample body), `response`
    the output schema it dumps with `status`, `also` other successes ({status: (schema, description)},
    e.g. a dry run's), and `errors` the statuses the view itself raises; those that follow from the
    rest (401/403/503 from the scope, 400/413/415/422 from a body, 429 from the rate limits) are
    added. `media_type` names a success body that is not JSON (its schema: a string).
    """

    def decorator(view):
        view.openapi = {"body": body, "query": query, "response": response, "status": status, "also": also or {},
                        "errors": errors, "example": example, "media_type": media_type}  # fmt: skip
        return view

    return decorator


ADDRESS_DOC = ('One address (`mailbox`: RFC 5322, a display name allowed: `"Shop <shop@example.com>"`), at most '
               "320 characters; no control character in the display name, also once RFC 2047 encoded words are "
               "decoded. Domains `.invalid` are refused; other special-use names (`.local`, `.test`, `localhost`, "
               "…) unless EMAIL_REJECT_SPECIAL_USE.")  # fmt: skip


def address_fields(self, field, ret, **kwargs):
    """Addresses take display names; `to` also takes one address as a plain string."""
    if isinstance(field, AddressField):
        return {"format": "mailbox", "description": ADDRESS_DOC}
    if not (isinstance(field, AddressList) and field.single):
        return {}
    many = {key: ret.pop(key) for key in ("type", "items", "minItems", "maxItems") if key in ret}
    return {"oneOf": [many["items"], many]}


def dict_sizes(self, field, ret, **kwargs):
    """apispec writes a Length validator on a Dict as a string length; for an object it counts keys."""
    if not isinstance(field, fields.Dict):
        return {}
    sizes = {f"{end}Properties": ret.pop(f"{end}Length") for end in ("min", "max") if f"{end}Length" in ret}
    if field.key_field is not None:
        names = self.field2property(field.key_field)
        names.pop("type", None)
        if names:
            sizes["propertyNames"] = names
    return sizes


def _header(name, required=False):
    kind = "string" if name in ("X-Request-ID", "WWW-Authenticate") else "integer"
    return {"description": HEADERS[name], "required": required, "schema": {"type": kind}}


def _operation(endpoint, view, path):
    doc = view.openapi
    summary, _, more = (view.__doc__ or "").strip().partition("\n")
    statuses, scopes, limited = set(doc["errors"]), getattr(view, "required_scopes", None), endpoint not in UNLIMITED
    names = " and ".join(f"`{scope}`" for scope in scopes or ())
    needs = f"Needs an API key with the {names} scope{'s' if len(scopes) > 1 else ''}." if scopes else ""
    if scopes == ():
        needs = "Needs a project's API key, with any scope."
    operation = {"operationId": endpoint.replace(".", "_"), "summary": summary.strip(), "security": []}
    if needs or more.strip():
        operation["description"] = " ".join(filter(None, [needs, more.strip()]))
    if scopes is not None:
        operation["security"] = [{"bearer": []}, {"apiKey": []}]
        statuses |= {401, 403, 503}  # 503: the key is looked up in the database
    if doc["body"] is not None:
        content = {"schema": doc["body"], **({"example": doc["example"]} if doc["example"] else {})}
        operation["requestBody"] = {"required": True, "content": {"application/json": content}}
        statuses |= {400, 413, 415, 422}
    parameters = [{"in": "path", "name": name, "required": True, "schema": {"type": "string"}}
                  for name in FLASK_PARAM.findall(path)]  # fmt: skip
    if doc["query"] is not None:
        parameters.append({"in": "query", "schema": doc["query"]})
        statuses.add(400)
    if parameters:
        operation["parameters"] = parameters
    if limited:
        statuses.add(429)
    success = {"description": summary.strip() or "Success.", "headers": {"X-Request-ID": "X-Request-ID"}}
    if doc["media_type"]:
        success["content"] = {doc["media_type"]: {"schema": {"type": "string"}}}
    elif doc["status"] != 204:
        success["content"] = {"application/json": {"schema": doc["response"] or {"type": "object"}}}
    if limited:
        success["headers"].update({name: name for name in RATE_HEADERS})
    operation["responses"] = {str(doc["status"]): success}
    for status, (schema, description) in doc["also"].items():
        other = {**success, "description": description, "content": {"application/json": {"schema": schema}}}
        operation["responses"][str(status)] = other
    operation["responses"].update({str(s): ERRORS[s][0] for s in sorted(statuses)})
    return operation


def build_spec(app):
    """Return the OpenAPI document (a dict) of every view of `app` that carries @document."""
    plugin = MarshmallowPlugin()
    spec = APISpec("emailsvc", "1.0", "3.1.0", plugins=[plugin], info={"description": DESCRIPTION})
    plugin.converter.add_attribute_function(address_fields)
    plugin.converter.add_attribute_function(dict_sizes)
    spec.components.security_scheme("bearer", {"type": "http", "scheme": "bearer"})
    spec.components.security_scheme("apiKey", {"type": "apiKey", "in": "header", "name": "X-API-Key"})
    for name in HEADERS:
        spec.components.header(name, _header(name))
    spec.components.schema("Error", schema=ErrorSchema)
    for status, (name, description) in ERRORS.items():
        headers = {"X-Request-ID": "X-Request-ID"}
        headers.update({h: _header(h, required=True) for h in REQUIRED_HEADERS.get(status, ())})
        spec.components.response(
            name, {"description": description, "headers": headers, "content": {"application/json": {"schema": "Error"}}}
        )
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        view = app.view_functions[rule.endpoint]
        if not hasattr(view, "openapi"):
            continue
        operations = {m.lower(): _operation(rule.endpoint, view, rule.rule) for m in rule.methods - {"HEAD", "OPTIONS"}}
        spec.path(path=FLASK_PARAM.sub(r"{\1}", rule.rule), operations=operations)
    document = spec.to_dict()
    for operation in (op for path in document["paths"].values() for op in path.values()):
        for parameter in operation.get("parameters", ()):
            if parameter.get("in") == "query":
                # list_args: an empty parameter (`cursor=`) is read as absent, whatever its rules.
                parameter["schema"] = {"anyOf": [parameter["schema"], {"type": "string", "maxLength": 0}]}
                parameter["allowEmptyValue"] = True
    for schema_key, name in plugin.converter.refs.items():
        # A whole-object rule no field can carry (SendSchema: body or html), from the schema class.
        document["components"]["schemas"][name].update(getattr(schema_key[0], "OPENAPI_EXTRA", {}))
    return document


@bp.get("/openapi.json")
@document()
def openapi_json():
    """The OpenAPI 3 document of this API."""
    if "openapi" not in current_app.extensions:
        current_app.extensions["openapi"] = build_spec(current_app)
    return current_app.extensions["openapi"]
