"""The one JSON error shape of the API, and the exceptions views raise to produce it."""

import logging

from flask import jsonify
from marshmallow import ValidationError
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)

HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "rate_limited",
    503: "service_unavailable",
}


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


class UnsupportedMediaType(ApiError):
    """The body is not declared as JSON."""

    status, code, message = 415, "unsupported_media_type", "Send the body as application/json."


class ValidationFailed(ApiError):
    """Well-formed but invalid input; `details` maps field to messages."""

    status, code, message = 422, "validation_error", "Invalid request body."


class ServiceUnavailable(ApiError):
    """A backing service (PostgreSQL or Redis) cannot be reached."""

    status, code, message = 503, "service_unavailable", "The service is temporarily unavailable."

    def __init__(self, message=None, details=None, retry_after=5):
        super().__init__(message, details, {"Retry-After": str(retry_after)})


def error_response(status, code, message, details=None, headers=None):
    """Return the JSON error response every failure uses."""
    error = {"code": code, "message": message}
    if details is not None:
        error["details"] = details
    response = jsonify({"error": error})
    response.status_code = status
    response.headers.update(headers or {})
    return response


def handle_api_error(exc):
    return error_response(exc.status, exc.code, exc.message, exc.details, exc.headers)


def handle_http_exception(exc):
    headers = {k: v for k, v in exc.get_headers() if k.lower() not in ("content-type", "content-length")}
    message = exc.description or exc.name
    return error_response(exc.code, HTTP_CODES.get(exc.code, "error"), message, headers=headers)


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
