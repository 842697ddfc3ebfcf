"""Every setting, read from the environment once, with the defaults of the product contract."""

import os

from dotenv import load_dotenv

DEFAULTS = {
    "DATABASE_URL": "postgresql://postgres@127.0.0.1:5432/emailsvc",
    "DATABASE_READ_URL": "",
    "REDIS_URL": "redis://127.0.0.1:6379/0",
    "SMTP_HOST": "127.0.0.1",
    "SMTP_PORT": "1025",
    "SMTP_USERNAME": "",
    "SMTP_PASSWORD": "",
    "SMTP_SECURITY": "none",
    "SMTP_TIMEOUT": "10",
    "SMTP_CONCURRENCY": "16",
    "SMTP_MAX_CONNECTIONS": "",
    "SMTP_IDLE_TIMEOUT": "30",
    "EMAIL_DEFAULT_FROM": "no-reply@localhost",
    "EMAIL_ALLOWED_FROM_DOMAINS": "",
    "EMAIL_RETRY_INTERVALS": "10,60,300",
    "WORKER_PROCESSES": str(os.cpu_count() or 1),
    "RECONCILE_INTERVAL": "30",
    "RECONCILE_GRACE": "60",
    "RATELIMIT_DEFAULT": "600 per minute",
    "RATELIMIT_SEND": "120 per minute",
    "RATELIMIT_DELIVERY_EVENTS": "1200 per minute",
    "RATELIMIT_UNKNOWN_KEYS": "60 per minute",
    "RATELIMIT_PROJECT": "",  # unlimited
    "RATELIMIT_MESSAGES": "6000 per minute",
    "WEBHOOK_SECRET": "",
    "TRUSTED_PROXIES": "0",
    "WEBHOOK_RETRY_INTERVALS": "30,120,600,1800,3600,7200,21600,43200,86400",
    "WEBHOOK_PROCESSES": "1",
    "WEBHOOK_TIMEOUT": "5",
    "WEBHOOK_ALLOW_PRIVATE": "false",
    "MAX_CONTENT_LENGTH": str(16 * 1024 * 1024),
    "MAX_MESSAGE_BYTES": str(10 * 1024 * 1024),
}


SMTP_SECURITY_MODES = ("none", "starttls", "ssl")


def _split(value):
    return [item.strip() for item in value.split(",") if item.strip()]


def load_config(environ=None):
    """Return the settings from `environ` (default: the process environment plus `.env`)."""
    if environ is None:
        load_dotenv()
        environ = os.environ
    raw = {name: environ.get(name, default) for name, default in DEFAULTS.items()}
    if raw["SMTP_SECURITY"].strip().lower() not in SMTP_SECURITY_MODES:
        # A typo must not quietly mean plaintext, with SMTP_PASSWORD sent in the clear.
        raise ValueError(f"SMTP_SECURITY must be one of {', '.join(SMTP_SECURITY_MODES)}, not {raw['SMTP_SECURITY']!r}")
    concurrency = int(raw["SMTP_CONCURRENCY"])
    if concurrency < 1 or (raw["SMTP_MAX_CONNECTIONS"] and int(raw["SMTP_MAX_CONNECTIONS"]) < 1):
        raise ValueError("SMTP_CONCURRENCY and SMTP_MAX_CONNECTIONS must be at least 1")
    return {
        **raw,
        "DATABASE_READ_URL": raw["DATABASE_READ_URL"] or raw["DATABASE_URL"],
        "SMTP_PORT": int(raw["SMTP_PORT"]),
        "SMTP_SECURITY": raw["SMTP_SECURITY"].strip().lower(),
        "SMTP_TIMEOUT": float(raw["SMTP_TIMEOUT"]),
        "SMTP_CONCURRENCY": concurrency,
        "SMTP_MAX_CONNECTIONS": int(raw["SMTP_MAX_CONNECTIONS"]) if raw["SMTP_MAX_CONNECTIONS"] else concurrency,
        "SMTP_IDLE_TIMEOUT": float(raw["SMTP_IDLE_TIMEOUT"]),
        "EMAIL_ALLOWED_FROM_DOMAINS": [d.lower() for d in _split(raw["EMAIL_ALLOWED_FROM_DOMAINS"])],
        "EMAIL_RETRY_INTERVALS": [int(s) for s in _split(raw["EMAIL_RETRY_INTERVALS"])],
        "WORKER_PROCESSES": int(raw["WORKER_PROCESSES"]),
        "RECONCILE_INTERVAL": float(raw["RECONCILE_INTERVAL"]),
        "RECONCILE_GRACE": float(raw["RECONCILE_GRACE"]),
        "WEBHOOK_SECRET": _split(raw["WEBHOOK_SECRET"]),
        "TRUSTED_PROXIES": int(raw["TRUSTED_PROXIES"]),
        "WEBHOOK_RETRY_INTERVALS": [int(s) for s in _split(raw["WEBHOOK_RETRY_INTERVALS"])],
        "WEBHOOK_PROCESSES": int(raw["WEBHOOK_PROCESSES"]),
        "WEBHOOK_TIMEOUT": float(raw["WEBHOOK_TIMEOUT"]),
        "WEBHOOK_ALLOW_PRIVATE": raw["WEBHOOK_ALLOW_PRIVATE"].strip().lower() in ("1", "true", "yes"),
        "MAX_CONTENT_LENGTH": int(raw["MAX_CONTENT_LENGTH"]),
        "MAX_MESSAGE_BYTES": int(raw["MAX_MESSAGE_BYTES"]),
    }
