"""POST /email/send and GET /email/logs/<id>."""

from flask import Blueprint

from ..accepting import accept_email
from ..auth import current_project_id, require_scope
from ..idempotency import idempotency_key
from ..log_pages import read_message
from ..mail_templates.rendering import render_for_send
from ..openapi import document
from ..schemas import log_schema, log_with_events_schema, send_schema
from ..services import get_services
from ..web import json_body

bp = Blueprint("emails", __name__, url_prefix="/email")
SEND_EXAMPLE = {"to": ["Alice <alice@example.com>"], "subject": "Your order has shipped", "body": "It is on its way.",
                "html": "<p>It is on its way.</p>", "metadata": {"order_id": "42"}}  # fmt: skip


@bp.post("/send")
@document(body=send_schema, example=SEND_EXAMPLE, response=log_schema, status=201)
@require_scope("send")
def send():
    """Validate, render a template if one is named, record as PENDING (or SCHEDULED), queue, and answer 201."""
    body, key = json_body(), idempotency_key()
    email = render_for_send(current_project_id(), send_schema.load(body))
    row, replayed = accept_email(email, body, key)
    return log_schema.dump(row), 201, {"Idempotent-Replayed": "true"} if replayed else {}


@bp.get("/logs/<email_id>")
@document(response=log_with_events_schema, errors=[404])
@require_scope("read")
def get_log(email_id):
    """Return one log of the key's project with its events, oldest first; another project's id is unknown here."""
    return log_with_events_schema.dump(read_message(get_services(), current_project_id(), email_id))
