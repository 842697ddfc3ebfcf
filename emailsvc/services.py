"""The connections one process holds: the databases, Redis, the queue and the SMTP connections."""

from flask import current_app
from redis import Redis
from rq import Queue

from .db import Database
from .smtp_pool import MailerPool

EMAIL_QUEUE = "email"
WEBHOOK_QUEUE = "webhooks"
FAILED_JOB_TTL = 7 * 24 * 3600  # failed jobs of either queue stay visible in rq-dashboard for a week


class Services:
    """Created once per app; every connection inside is opened lazily, after any fork."""

    def __init__(self, config):
        # A sending process holds one connection per delivery in flight (its sending lock lives on it);
        # connections are opened only as they are needed, so the web's processes open no more for this.
        self.db = Database(config["DATABASE_URL"], max_connections=max(8, config["SMTP_CONCURRENCY"] + 2))
        self.read_db = (
            self.db if config["DATABASE_READ_URL"] == config["DATABASE_URL"] else Database(config["DATABASE_READ_URL"])
        )
        self.redis_url = config["REDIS_URL"]
        self.redis = self.new_redis()
        self.email_queue = Queue(EMAIL_QUEUE, connection=self.redis)
        self.webhook_queue = Queue(WEBHOOK_QUEUE, connection=self.redis)
        self.mailers = MailerPool(
            {
                "host": config["SMTP_HOST"],
                "port": config["SMTP_PORT"],
                "security": config["SMTP_SECURITY"],
                "username": config["SMTP_USERNAME"],
                "password": config["SMTP_PASSWORD"],
                "timeout": config["SMTP_TIMEOUT"],
            },
            max_connections=config["SMTP_MAX_CONNECTIONS"],
            idle_timeout=config["SMTP_IDLE_TIMEOUT"],
        )

    def new_redis(self, client_name=None):
        """A Redis client with a connection pool of its own; `client_name` names its connections on the server."""
        # Short timeouts: a Redis outage must turn into a quick 503, not a hung request.
        options = {"socket_connect_timeout": 2, "socket_timeout": 5, "health_check_interval": 30}
        return Redis.from_url(self.redis_url, client_name=client_name, **options)


def get_services():
    """Return the Services of the current app."""
    return current_app.extensions["emailsvc"]
