"""The operator's page: server-rendered HTML under /ui/ to look at a project's mail, and the queues.

Off (404) unless SECRET_KEY is set: the session cookie is signed with it, and a page with a guessable
signature would be worse than none. Every answer under /ui/ carries a strict Content-Security-Policy
and is never cached; errors there are HTML pages, while the API keeps its JSON ones.
"""

from datetime import timedelta
from pathlib import Path

from flask import request, send_from_directory

from . import dev_mail, pages, sign_in
from .queues import QUEUES_CSP, QUEUES_PREFIX, mount_queues
from .site import bp, error_page, is_page

STATIC_DIR = Path(__file__).parent / "static"
PAGE_CSP = ("default-src 'none'; style-src 'self'; img-src 'self'; frame-src 'self'; form-action 'self'; "
            "base-uri 'none'; frame-ancestors 'none'")  # fmt: skip
SESSION_LIFETIME = timedelta(hours=12)

bp.register_blueprint(sign_in.bp)
bp.register_blueprint(pages.bp)
bp.register_blueprint(dev_mail.bp)


def secure_page(response):
    """Give every answer under /ui/ the page's security headers (a view may have set a stricter CSP)."""
    if not is_page(request.path):
        return response
    queues = request.path == QUEUES_PREFIX or request.path.startswith(QUEUES_PREFIX + "/")
    response.headers.setdefault("Content-Security-Policy", QUEUES_CSP if queues else PAGE_CSP)
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"  # message ids in URLs stay here
    if request.endpoint != "static":
        response.headers["Cache-Control"] = "no-store"  # mail on a shared machine's back button
    return response


def send_static(filename):
    return send_from_directory(STATIC_DIR, filename)


def init_ui(app):
    """Mount the page on `app` when SECRET_KEY is set; otherwise /ui/ stays unknown (404)."""
    if not app.config["SECRET_KEY"]:
        return
    app.config.update(
        SESSION_COOKIE_NAME="emailsvc_ui",
        SESSION_COOKIE_PATH="/ui",  # the API never sees it
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Strict",  # no other site's request, link or form, arrives signed in
        PERMANENT_SESSION_LIFETIME=SESSION_LIFETIME,
    )
    app.extensions["emailsvc.error_page"] = error_page
    # The endpoint is named `static` because rq-dashboard's pages ask for it by that name.
    app.add_url_rule("/ui/static/<path:filename>", endpoint="static", view_func=send_static)
    app.register_blueprint(bp)
    mount_queues(app)
    app.after_request(secure_page)
