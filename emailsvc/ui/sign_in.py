"""Signing in with an API key (held by the session as its id, never the key), signing out, and the front door."""

from flask import Blueprint, current_app, g, redirect, render_template, request, session, url_for

from ..auth import OPERATOR, SCOPES, look_up_key
from ..errors import RateLimited
from .site import PAGE_PREFIX, sign_in_session

bp = Blueprint("session", __name__)


def safe_next(target):
    """Where to go after signing in: a path of the page only, never another site (`//host`)."""
    return target if target and target.startswith(PAGE_PREFIX) else url_for("ui.session.home")


@bp.get("/")
def home():
    """The log for a key that reads mail, the queues for an operator key, else sign-in."""
    scopes = set(g.api_key["scopes"]) if g.api_key else set()
    if scopes & set(SCOPES):
        return redirect(url_for("ui.pages.log"))
    if OPERATOR in scopes:
        return redirect(url_for("rq_dashboard.queues_overview"))
    return redirect(url_for(".sign_in"))


@bp.get("/sign-in")
def sign_in():
    """The sign-in form."""
    insecure = current_app.config["SESSION_COOKIE_SECURE"] and not request.is_secure
    return render_template("ui/sign_in.html", next=request.args.get("next", ""), insecure=insecure)


@bp.post("/sign-in")
def sign_in_with_key():
    """Check the key as the API does (unknown keys count against the address), then start a session."""
    target = request.form.get("next", "")

    def refuse(message, status):
        return render_template("ui/sign_in.html", next=target, error=message), status

    try:
        row = look_up_key(request.form.get("key", "").strip())
    except RateLimited as exc:
        return refuse(exc.message, exc.status)
    if row is None:
        return refuse("This is not an active API key.", 401)
    if not set(row["scopes"]) & {"read", OPERATOR}:
        return refuse("This key may only send mail; sign in with a key holding the 'read' scope.", 403)
    sign_in_session(row)
    return redirect(safe_next(target))


@bp.post("/sign-out")
def sign_out():
    """End the session (the form carries the CSRF token, so no other site can sign you out)."""
    session.clear()
    return redirect(url_for(".sign_in"))
