"""emailsvc: a self-hosted transactional email service."""

from . import openapi
from .auth import confirm_remembered_key, load_api_key
from .cli import register_commands
from .config import load_config
from .errors import register_error_handlers
from .key_memory import KeyMemory
from .limits import init_limiter
from .request_log import register_request_log
from .services import Services
from .ui import init_ui
from .views import (
    delivery_events,
    emails,
    health,
    lifecycle,
    logs,
    metrics,
    projects,
    suppressions,
    templates,
    webhooks,
)
from .web import App, register_request_hooks


def create_app(config=None):
    """Build the app from the environment, or, when given, from `config`: settings as the environment spells them."""
    app = App(__name__, static_folder=None)
    app.config.update(load_config(config))
    app.json.sort_keys = False
    app.extensions["emailsvc"] = Services(app.config)
    app.extensions["emailsvc.keys"] = KeyMemory()
    # before_request hooks run in this order: the clock, the request ID, then the key, then the count keyed on
    # it, which also reads whether a key remembered by this process still stands.
    register_request_log(app)
    register_request_hooks(app)
    app.before_request(load_api_key)
    init_limiter(app)
    app.before_request(confirm_remembered_key)
    register_error_handlers(app)
    app.register_blueprint(health.bp)
    app.register_blueprint(emails.bp)
    app.register_blueprint(logs.bp)
    app.register_blueprint(delivery_events.bp)
    app.register_blueprint(suppressions.bp)
    app.register_blueprint(webhooks.bp)
    app.register_blueprint(projects.bp)
    app.register_blueprint(templates.bp)
    app.register_blueprint(lifecycle.bp)
    app.register_blueprint(metrics.bp)
    app.register_blueprint(openapi.bp)
    init_ui(app)
    register_commands(app)
    return app
