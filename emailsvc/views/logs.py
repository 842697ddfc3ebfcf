"""GET /email/logs: the email log, a page at a time, with today's counts."""

from flask import Blueprint

from ..auth import current_project_id, require_scope
from ..list_args import load_args, log_list_args
from ..log_pages import read_cursor_page, read_offset_page
from ..openapi import document
from ..schemas import log_page_schema, log_schema
from ..services import get_services

bp = Blueprint("logs", __name__, url_prefix="/email")


@bp.get("/logs")
@document(query=log_list_args, response=log_page_schema)
@require_scope("read")
def list_logs():
    """Offset mode when `page` is given (oldest first, with the total), else cursor mode (newest first)."""
    args = load_args(log_list_args)
    read_page = read_offset_page if args["page"] is not None else read_cursor_page
    rows, pagination, today = read_page(get_services(), current_project_id(), args)
    return {"items": log_schema.dump(rows, many=True), "pagination": pagination, "today": today}
