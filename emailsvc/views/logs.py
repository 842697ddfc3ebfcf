"""GET /email/logs: the email log, a page at a time, with today's counts."""

from flask import Blueprint, request
from marshmallow import ValidationError

from ..auth import require_scope
from ..errors import InvalidParameter
from ..log_args import log_list_args
from ..log_pages import read_cursor_page, read_offset_page
from ..schemas import log_schema
from ..services import get_services

bp = Blueprint("logs", __name__, url_prefix="/email")


@bp.get("/logs")
@require_scope("read")
def list_logs():
    """Offset mode when `page` is given (oldest first, with the total), else cursor mode (newest first)."""
    try:
        args = log_list_args.load(request.args)
    except ValidationError as exc:
        raise InvalidParameter(details=exc.normalized_messages()) from exc
    read_page = read_offset_page if args["page"] is not None else read_cursor_page
    rows, pagination, today = read_page(get_services(), args)
    return {"items": log_schema.dump(rows, many=True), "pagination": pagination, "today": today}
