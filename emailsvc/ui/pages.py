"""The pages of a project's mail: the log, one message and its preview, suppressions, webhook endpoints.

Each reads through the same functions and project scoping as the API (log_pages, suppression_list,
queries/webhooks) and stands behind the API's own guard, require_scope, on the session's key.
"""

from flask import Blueprint, flash, redirect, render_template, request, url_for
from marshmallow import ValidationError
from werkzeug.datastructures import MultiDict

from ..auth import current_project_id, require_scope
from ..list_args import LOG_STATUSES, log_list_args, text_key_page_args
from ..log_pages import read_cursor_page, read_message, read_today
from ..queries.webhooks import attach_attempts, list_deliveries, list_endpoints
from ..services import get_services
from ..suppression_list import read_suppression_page, remove_suppression
from .previews import html_preview

bp = Blueprint("pages", __name__)
PAGE_SIZE = 25
RECENT_DELIVERIES = 10
FILTERS = ("status", "to", "from", "created_after", "created_before")


def given_args(*names):
    """The query string's non-empty values of `names`: an empty form field means no filter."""
    return MultiDict([(k, v) for k, v in request.args.items(multi=True) if k in names and v.strip()])


@bp.get("/log")
@require_scope("read")
def log():
    """The log, newest first, filtered as the form asks, with today's counts (UTC)."""
    given = given_args(*FILTERS, "cursor")
    services, project_id = get_services(), current_project_id()
    try:
        args = log_list_args.load(MultiDict({**given.to_dict(), "limit": str(PAGE_SIZE)}))
    except ValidationError as exc:  # shown beside the form, which keeps what was typed
        today = read_today(services, project_id, log_list_args.load({})["tz"])
        return render_template("ui/log.html", rows=[], today=today, given=given, errors=exc.normalized_messages(),
                               statuses=LOG_STATUSES, next_url=None), 400  # fmt: skip
    rows, pagination, today = read_cursor_page(services, project_id, args)
    cursor = pagination["next_cursor"]
    next_url = cursor and url_for(".log", **{**given_args(*FILTERS).to_dict(), "cursor": cursor})
    return render_template("ui/log.html", rows=rows, today=today, given=given, errors=None,
                           statuses=LOG_STATUSES, next_url=next_url)  # fmt: skip


@bp.get("/log/<email_id>")
@require_scope("read")
def message(email_id):
    """One message: its fields, recipients and their outcomes, events, and its bodies."""
    row = read_message(get_services(), current_project_id(), email_id)
    return render_template("ui/message.html", row=row)


@bp.get("/log/<email_id>/preview")
@require_scope("read")
def preview(email_id):
    """The message's HTML body alone, for the sandboxed frame of its page."""
    return html_preview(read_message(get_services(), current_project_id(), email_id)["html"])


@bp.get("/suppressions")
@require_scope("send")
def suppressions():
    """The suppression list, newest first (the API, too, shows it only to a key that may send)."""
    try:
        cursor = text_key_page_args.load(given_args("cursor"))["cursor"]
    except ValidationError:
        cursor = None  # a mangled link: start from the newest
    rows, next_cursor = read_suppression_page(get_services(), current_project_id(), PAGE_SIZE, cursor)
    next_url = next_cursor and url_for(".suppressions", cursor=next_cursor)
    return render_template("ui/suppressions.html", rows=rows, next_url=next_url)


@bp.post("/suppressions/remove")
@require_scope("send")
def remove():
    """Take an address off the list, so mail to it is accepted again."""
    address = request.form.get("address", "")
    if remove_suppression(get_services(), current_project_id(), address):
        flash(f"{address} is no longer suppressed.")
    else:
        flash(f"{address} was not on the suppression list.")
    return redirect(url_for(".suppressions"))


@bp.get("/webhooks")
@require_scope("read")
def webhooks():
    """The project's webhook endpoints, each with its latest deliveries and their attempts."""
    with get_services().db.cursor() as cur:  # as GET /webhooks reads them
        endpoints = list_endpoints(cur, current_project_id())
        for endpoint in endpoints:
            endpoint["deliveries"] = attach_attempts(cur, list_deliveries(cur, endpoint["id"], RECENT_DELIVERIES))
    return render_template("ui/webhooks.html", endpoints=endpoints)
