"""The one JSON error shape of the API, and the exceptions views raise to produce it."""

import logging

from flask import current_app, jsonify, request
from marshmallow import Schema, ValidationError, fields
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)

# Flask's and werkzeug's own errors (unknown route, wrong method, body too large, rate limited):
# the stable code clients branch on, and a message that says what to do.
HTTP_ERRORS = {
    400: ("bad_request", "The request could not be understood."),
    401: ("unauthorized", "A valid API key is required."),
    403: ("forbidden", "This API key may not do that."),
    404: ("not_found", "There is nothing at this path."),
    405: ("method_not_allowed", "This method is not allowed here; the Allow header lists those that are."),
    409: ("conflict", "The request conflicts with the current state."),
    413: ("payload_too_large", "The request body is larger than the limit of {limit} bytes."),
    415: ("unsupported_media_type", "Send the body as application/json."),
    422: ("validation_error", "Invalid request body."),
    429: ("rate_limited", "Too many requests ({limit}); retry after the number of seconds in Retry-After."),
    503: ("service_unavailable", "The service is temporarily unavailable."),
}


class ErrorDetailSchema(Schema):
    """The inside of every error response."""

    code = fields.String(required=True, metadata={"description": "Stable, machine-readable; branch on this."})
    message = fields.String(required=True, metadata={"description": "For people; may change."})
    details = fields.Raw(metadata={"description": "Present on some errors, e.g. field → messages on a 422."})


class ErrorSchema(Schema):
    """`{"error": {"code", "message", "details"?}}`: the body of every 4xx and 5xx."""

    error = fields.Nested(ErrorDetailSchema, required=True)


error_schema = ErrorSchema()


class ApiError(Exception):
    """An error the client should see, with its HTTP status and stable code."""

    status = 400
    code = "bad_request"
    message = "Bad request."

    def __init__(self, message=None, details=None, headers=None):
        super().__init__(message or self.message)
        self.message = message or self.message
        self.details = details
        self.headers = headers or {}


class InvalidJson(ApiError):
    """The body is not a JSON object."""

    code, message = "invalid_json", "The request body is not a valid JSON object."


class InvalidParameter(ApiError):
    """A query parameter is malformed."""

    code, message = "invalid_parameter", "A query parameter is invalid."


class Unauthorized(ApiError):
    """No valid API key."""

    status, code, message = 401, "unauthorized", "A valid API key is required."

    def __init__(self, message=None, details=None):
        # RFC 6750: a 401 names the scheme that would have worked.
        super().__init__(message, details, {"WWW-Authenticate": 'Bearer realm="emailsvc"'})


class Forbidden(ApiError):
    """The key lacks the scope."""

    status, code, message = 403, "forbidden", "This API key may not do that."


class NotFound(ApiError):
    """No such resource."""

    status, code, message = 404, "not_found", "Not found."


class IdempotencyConflict(ApiError):
    """The Idempotency-Key was used before with a different body."""

    status, code = 409, "idempotency_conflict"
    message = "This Idempotency-Key was already used with a different request body."


class TemplateExists(ApiError):
    """The project has a template of this name already."""

    status, code, message = 409, "template_exists", "A template with this name exists; PUT a new version instead."


class NotCancelable(ApiError):
    """The message is past the point where it can be canceled; `details` carries its status."""

    status, code = 409, "not_cancelable"
    message = "Only a SCHEDULED message, or a PENDING one no worker has taken, can be canceled."


class NotReschedulable(ApiError):
    """The message is not SCHEDULED; `details` carries its status."""

    status, code, message = 409, "not_reschedulable", "Only a SCHEDULED message can be moved."


class NotResendable(ApiError):
    """The message has not finished yet; `details` carries its status."""

    status, code = 409, "not_resendable"
    message = "Only a finished message (sent, delivered, bounced, complained, failed or canceled) can be resent."


class ContentPurged(ApiError):
    """The message's content was removed by the retention purge."""

    status, code, message = 409, "content_purged", "This message's content has been purged, so it cannot be resent."


class UnsupportedMediaType(ApiError):
    """The body is not declared as JSON."""

    status, code, message = 415, "unsupported_media_type", "Send the body as application/json."


class ValidationFailed(ApiError):
    """Well-formed but invalid input; `details` maps field to messages."""

    status, code, message = 422, "validation_error", "Invalid request body."


class RecipientSuppressed(ApiError):
    """A recipient is on the suppression list; `details` names the addresses."""

    status, code = 422, "recipient_suppressed"
    message = "Some recipients are on the suppression list (an earlier hard bounce, complaint or request)."


class RateLimited(ApiError):
    """Too many requests; `headers` carry Retry-After and the X-RateLimit-* of the limit."""

    status, code = 429, "rate_limited"
    message = "Too many requests; retry after the number of seconds in Retry-After."


class ServiceUnavailable(ApiError):
    """A backing service (PostgreSQL or Redis) cannot be reached."""

    status, code, message = 503, "service_unavailable", "The service is temporarily unavailable."

    def __init__(self, message=None, details=None, retry_after=5):
        super().__init__(message, details, {"Retry-After": str(retry_after)})


def error_response(status, code, message, details=None, headers=None):
    """Return the JSON error response every failure uses; the page (emailsvc/ui) answers its own paths with HTML."""
    page = current_app.extensions.get("emailsvc.error_page")
    response = page and page(status, message, headers or {})
    if response is not None:
        return response
    error = {"code": code, "message": message}
    if details is not None:
        error["details"] = details
    response = jsonify(error_schema.dump({"error": error}))
    response.status_code = status
    response.headers.update(headers or {})
    return response


def handle_api_error(exc):
    return error_response(exc.status, exc.code, exc.message, exc.details, exc.headers)


def handle_http_exception(exc):
    # Keep headers such as Allow (405); the body is ours.
    headers = {k: v for k, v in exc.get_headers() if k.lower() not in ("content-type", "content-length")}
    code, message = HTTP_ERRORS.get(exc.code, ("error", exc.name))
    if exc.code == 413:
        message = message.format(limit=request.max_content_length)  # MAX_CONTENT_LENGTH, or a route's own cap
    elif exc.code == 429:
        message = message.format(limit=exc.description)  # flask-limiter puts the limit, e.g. "120 per 1 minute"
    return error_response(exc.code, code, message, headers=headers)


def handle_validation_error(exc):
    return handle_api_error(ValidationFailed(details=exc.normalized_messages()))


def handle_unexpected(exc):
    log.exception("unhandled error")
    return error_response(500, "internal_error", "An unexpected error occurred.")


def register_error_handlers(app):
    """Make every error, ours or Flask's, answer in the one JSON shape."""
    app.register_error_handler(ApiError, handle_api_error)
    app.register_error_handler(HTTPException, handle_http_exception)
    app.register_error_handler(ValidationError, handle_validation_error)
    app.register_error_handler(Exception, handle_unexpected)
