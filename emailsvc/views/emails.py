"""POST /email/send, POST /email/batch and GET /email/logs/<id>."""

from flask import Blueprint

from ..accepting import accept, accept_email, render_batch
from ..auth import current_project_id, require_scope
from ..idempotency import idempotency_key
from ..list_args import dry_run_args, load_dry_run
from ..log_pages import read_message
from ..mail_templates.rendering import render_for_send
from ..openapi import document
from ..schemas import (
    batch_dry_run_schema,
    batch_log_schema,
    batch_schema,
    dry_run_schema,
    log_schema,
    log_with_events_schema,
    send_schema,
)
from ..services import get_services
from ..web import json_body

bp = Blueprint("emails", __name__, url_prefix="/email")
SEND_EXAMPLE = {"to": ["Alice <alice@example.com>"], "subject": "Your order has shipped", "body": "It is on its way.",
                "html": "<p>It is on its way.</p>", "metadata": {"order_id": "42"}}  # fmt: skip


@bp.post("/send")
@document(body=send_schema, query=dry_run_args, example=SEND_EXAMPLE, response=log_schema, status=201,
          also={200: (dry_run_schema, "A dry run: what would be sent and decided; nothing is recorded.")})  # fmt: skip
@require_scope("send")
def send():
    """Validate, render a template if one is named, record as PENDING (or SCHEDULED), queue, and answer 201."""
    dry_run = load_dry_run()
    body, key = json_body(), idempotency_key()
    email = render_for_send(current_project_id(), send_schema.load(body))
    if dry_run:
        [previewed], _ = accept([email], body, key, dry_run=True)
        return dry_run_schema.dump(previewed)
    row, replayed = accept_email(email, body, key)
    return log_schema.dump(row), 201, {"Idempotent-Replayed": "true"} if replayed else {}


@bp.post("/batch")
@document(body=batch_schema, query=dry_run_args, example={"messages": [SEND_EXAMPLE]},
          response=batch_log_schema, status=201,
          also={200: (batch_dry_run_schema, "A dry run: each message as it would be sent.")})  # fmt: skip
@require_scope("send")
def batch():
    """Accept 1–500 messages all or none, as POST /email/send accepts one; an error names each message by its index."""
    dry_run = load_dry_run()
    body, key = json_body(), idempotency_key()
    emails = render_batch(current_project_id(), batch_schema.load(body)["messages"])
    if dry_run:
        previews, _ = accept(emails, body, key, batch=True, dry_run=True)
        return batch_dry_run_schema.dump({"data": previews})
    rows, replayed = accept(emails, body, key, batch=True)
    return batch_log_schema.dump({"data": rows}), 201, {"Idempotent-Replayed": "true"} if replayed else {}


@bp.get("/logs/<email_id>")
@document(response=log_with_events_schema, errors=[404])
@require_scope("read")
def get_log(email_id):
    """Return one log of the key's project with its events, oldest first; another project's id is unknown here."""
    return log_with_events_schema.dump(read_message(get_services(), current_project_id(), email_id))
