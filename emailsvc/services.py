"""The connections one process holds: the databases, Redis, the queue and the SMTP mailer."""

from flask import current_app
from redis import Redis
from rq import Queue

from .db import Database
from .mailer import Mailer

EMAIL_QUEUE = "email"
WEBHOOK_QUEUE = "webhooks"
FAILED_JOB_TTL = 7 * 24 * 3600  # failed jobs of either queue stay visible in rq-dashboard for a week


class Services:
    """Created once per app; every connection inside is opened lazily, after any fork."""

    def __init__(self, config):
        self.db = Database(config["DATABASE_URL"])
        self.read_db = (
            self.db if config["DATABASE_READ_URL"] == config["DATABASE_URL"] else Database(config["DATABASE_READ_URL"])
        )
        # Short timeouts: a Redis outage must turn into a quick 503, not a hung request.
        self.redis = Redis.from_url(
            config["REDIS_URL"], socket_connect_timeout=2, socket_timeout=5, health_check_interval=30
        )
        self.email_queue = Queue(EMAIL_QUEUE, connection=self.redis)
        self.webhook_queue = Queue(WEBHOOK_QUEUE, connection=self.redis)
        self.mailer = Mailer(
            config["SMTP_HOST"],
            config["SMTP_PORT"],
            security=config["SMTP_SECURITY"],
            username=config["SMTP_USERNAME"],
            password=config["SMTP_PASSWORD"],
            timeout=config["SMTP_TIMEOUT"],
        )


def get_services():
    """Return the Services of the current app."""
    return current_app.extensions["emailsvc"]
