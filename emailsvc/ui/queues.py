"""rq-dashboard at /ui/queues, behind the page's sign-in, for an operator key only.

Its actions (delete, requeue, empty) reach the jobs of every project, so a project key gets 403. Its
pages run inline scripts and underscore templates (`new Function`) and post without CSRF tokens: the
path gets the CSP it needs (QUEUES_CSP), and the session cookie's SameSite=Strict keeps other sites'
requests, even top-level links to its GET that requeues, from arriving signed in.
"""

import rq_dashboard
from flask import g, request
from rq_dashboard.web import setup_rq_connection

from ..auth import OPERATOR
from ..errors import Forbidden, Unauthorized
from .site import load_session_key

QUEUES_PREFIX = "/ui/queues"
QUEUES_CSP = ("default-src 'self'; script-src 'self' 'unsafe-inline' 'unsafe-eval'; style-src 'self' 'unsafe-inline'; "
              "img-src 'self' data:; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")  # fmt: skip


def require_operator():
    """Before every rq-dashboard request: a signed-in operator key, else sign-in (401) or 403."""
    if request.blueprint != rq_dashboard.blueprint.name:
        return
    load_session_key()
    if g.key_lookup_error:
        raise g.key_lookup_error
    if g.api_key is None:
        raise Unauthorized()
    if OPERATOR not in g.api_key["scopes"]:
        raise Forbidden("The queues hold every project's jobs: only an operator key may open them.")


def mount_queues(app):
    """Serve rq-dashboard under /ui/queues on the app's own Redis, guarded by require_operator."""
    app.config["RQ_DASHBOARD_REDIS_URL"] = app.config["REDIS_URL"]
    setup_rq_connection(app)  # a client object only: nothing connects until a page asks
    app.before_request(require_operator)
    app.register_blueprint(rq_dashboard.blueprint, url_prefix=QUEUES_PREFIX)
