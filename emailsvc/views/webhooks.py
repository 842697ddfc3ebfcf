"""POST, GET /webhooks, DELETE /webhooks/<id> and GET /webhooks/<id>/deliveries.

An endpoint receives the log of every message of its project (without bodies), so managing endpoints
needs both scopes, and reading them needs `read`. A key sees only its project's endpoints.
"""

import uuid

from flask import Blueprint, current_app

from ..auth import current_project_id, require_scope
from ..cursors import split_page
from ..errors import NotFound, ValidationFailed
from ..list_args import load_args, page_args
from ..openapi import document
from ..queries.webhooks import (
    attach_attempts,
    delete_endpoint,
    endpoint_exists,
    insert_endpoint,
    list_deliveries,
    list_endpoints,
)
from ..schemas import (
    delivery_page_schema,
    delivery_schema,
    new_webhook_response_schema,
    new_webhook_schema,
    webhook_list_schema,
    webhook_schema,
)
from ..services import get_services
from ..signing import new_webhook_secret
from ..web import json_body
from ..webhook_targets import TargetRefused, vet_url

bp = Blueprint("webhooks", __name__, url_prefix="/webhooks")


def endpoint_id(text):
    """Return the endpoint id in a URL, or raise 404."""
    try:
        return uuid.UUID(text)
    except ValueError as exc:
        raise NotFound("No webhook endpoint with this id.") from exc


@bp.post("")
@document(body=new_webhook_schema, response=new_webhook_response_schema, status=201)
@require_scope("send", "read")
def create():
    """Register an endpoint; the response is the only one that shows its signing secret."""
    endpoint = new_webhook_schema.load(json_body())
    if not current_app.config["WEBHOOK_ALLOW_PRIVATE"]:
        try:
            vet_url(endpoint["url"])
        except TargetRefused as exc:
            message = f"Refused: {exc}. Webhooks go to public addresses unless WEBHOOK_ALLOW_PRIVATE is set."
            raise ValidationFailed(details={"url": [message]}) from exc
    with get_services().db.cursor() as cur:
        row = insert_endpoint(cur, current_project_id(), endpoint["url"], endpoint["events"], new_webhook_secret())
    return new_webhook_response_schema.dump(row), 201


@bp.get("")
@document(response=webhook_list_schema)
@require_scope("read")
def list_all():
    """Return the project's endpoints, oldest first, without secrets."""
    with get_services().db.cursor() as cur:
        rows = list_endpoints(cur, current_project_id())
    return {"items": webhook_schema.dump(rows, many=True)}


@bp.delete("/<webhook_id>")
@document(status=204, errors=[404])
@require_scope("send", "read")
def delete(webhook_id):
    """Remove an endpoint and its delivery history; nothing more is sent to it."""
    with get_services().db.cursor() as cur:
        if not delete_endpoint(cur, current_project_id(), endpoint_id(webhook_id)):
            raise NotFound("No webhook endpoint with this id.")
    return "", 204


@bp.get("/<webhook_id>/deliveries")
@document(query=page_args, response=delivery_page_schema, errors=[404])
@require_scope("read")
def deliveries(webhook_id):
    """Return an endpoint's deliveries, newest first, each with its attempts, a page at a time."""
    args = load_args(page_args)
    limit = args["limit"]
    with get_services().db.cursor() as cur:
        if not endpoint_exists(cur, current_project_id(), endpoint_id(webhook_id)):
            raise NotFound("No webhook endpoint with this id.")
        rows = list_deliveries(cur, endpoint_id(webhook_id), limit + 1, args["cursor"])
        rows, next_cursor = split_page(rows, limit, lambda row: (row["created_at"], row["id"]))
        attach_attempts(cur, rows)
    return {"items": delivery_schema.dump(rows, many=True), "pagination": {"limit": limit, "next_cursor": next_cursor}}
