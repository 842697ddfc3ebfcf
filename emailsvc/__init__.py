"""emailsvc: a self-hosted transactional email service."""

from flask import Flask

from .auth import load_api_key
from .cli import register_commands
from .config import load_config
from .errors import register_error_handlers
from .services import Services
from .views import emails, health, logs
from .web import register_request_hooks


def create_app(config=None):
    """Build the app from the environment, or, when given, from `config`: settings as the environment spells them."""
    app = Flask(__name__, static_folder=None)
    app.config.update(load_config(config))
    app.json.sort_keys = False
    app.extensions["emailsvc"] = Services(app.config)
    register_request_hooks(app)
    app.before_request(load_api_key)
    register_error_handlers(app)
    app.register_blueprint(health.bp)
    app.register_blueprint(emails.bp)
    app.register_blueprint(logs.bp)
    register_commands(app)
    return app
