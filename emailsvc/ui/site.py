"""What every page under /ui/ shares: the session's key, checked again on every request, CSRF tokens, HTML errors.

The session cookie (Flask's, signed with SECRET_KEY) holds the key's id and a seal made from its hash,
never the key: a revoked key signs its sessions out at their next request, and a leaked SECRET_KEY
alone cannot sign a session in.
"""

import hashlib
import hmac
import secrets
from datetime import UTC, datetime

from flask import Blueprint, g, redirect, render_template, request, session, url_for

from ..auth import OPERATOR, SCOPES
from ..db import DatabaseUnavailable
from ..errors import ApiError, Unauthorized
from ..queries.api_keys import get_active_api_key
from ..services import get_services

bp = Blueprint("ui", __name__, url_prefix="/ui", template_folder="templates")
PAGE_PREFIX = "/ui/"


class CsrfRefused(ApiError):
    """A form came without this session's token: from another site, or from an expired page."""

    status, code = 403, "csrf_refused"
    message = "This form has expired or did not come from this page: reload the page and try again."


def is_page(path):
    """Whether `path` belongs to the page (HTML answers) rather than to the API (JSON answers)."""
    return path == PAGE_PREFIX[:-1] or path.startswith(PAGE_PREFIX)


def seal(key_row):
    """What the session stores beside the key's id: derived from the key's hash, which only the database holds."""
    return hmac.new(bytes(key_row["key_hash"]), b"emailsvc page session", hashlib.sha256).hexdigest()


def sign_in_session(key_row):
    """Start a fresh session for the key: a new CSRF token, nothing kept from before signing in."""
    session.clear()
    session.permanent = True  # expires after PERMANENT_SESSION_LIFETIME, even in a browser never closed
    session.update(key=key_row["id"], seal=seal(key_row), csrf=secrets.token_urlsafe(32))


def load_session_key():
    """Put the session's key in g.api_key, as the API's guard expects it, if it is still active; else sign out."""
    g.api_key = g.key_lookup_error = None  # a page is signed in by its cookie alone, never by a header
    key_id = session.get("key")
    if key_id is None:
        return
    try:
        with get_services().db.cursor() as cur:
            row = get_active_api_key(cur, key_id)
    except DatabaseUnavailable as exc:
        g.key_lookup_error = exc
        return
    if row is None or not hmac.compare_digest(session.get("seal", ""), seal(row)):
        session.clear()  # revoked: signed out at once
        return
    g.api_key = row


def csrf_token():
    """This session's CSRF token (made on first use, so the sign-in form has one too)."""
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(32)
    return session["csrf"]


def check_csrf():
    """Refuse a POST whose form does not carry this session's token."""
    if request.method != "POST":
        return
    sent, expected = request.form.get("csrf_token", ""), session.get("csrf", "")
    if not expected or not hmac.compare_digest(sent.encode(), expected.encode()):
        raise CsrfRefused()


bp.before_request(load_session_key)
bp.before_request(check_csrf)


def when(moment):
    """A time as the page shows it: UTC, to the second (`moment`: a datetime, or ISO 8601 text from jsonb)."""
    if not moment:
        return ""
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


@bp.app_context_processor
def page_globals():
    key = g.get("api_key")
    scopes = set(key["scopes"]) if key else set()
    # `when` is a global rather than a filter: registering a filter makes the app build its Jinja
    # environment, which refers back to the app, at create_app already.
    return {"csrf_token": csrf_token, "signed_in": key, "reads_mail": bool(scopes & set(SCOPES)),
            "operator": OPERATOR in scopes, "scopes": scopes, "when": when}  # fmt: skip


def error_page(status, message, headers):
    """The page's answer to an error on its paths: sign-in for a 401, else an HTML page (None: not a page path)."""
    if not is_page(request.path):
        return None
    if status == Unauthorized.status:
        target = request.full_path.rstrip("?") if request.method == "GET" else None
        return redirect(url_for("ui.session.sign_in", next=target))
    kept = {k: v for k, v in headers.items() if k.lower() != "www-authenticate"}  # Retry-After, Allow
    return render_template("ui/error.html", status=status, message=message), status, kept
