"""Every setting, read from the environment once, with the defaults of the product contract."""

import os

import idna
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
    "EMAIL_REJECT_SPECIAL_USE": "false",
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
    "SECRET_KEY": "",  # signs the page's session cookie; without it the page (/ui/) is off
    "SESSION_COOKIE_SECURE": "true",  # the page's cookie travels over HTTPS only; `make run` turns it off
    "DEV_MAIL_DIR": "",  # the development sink's folder, browsable at /ui/dev/mail (set by `make run` only)
    "METRICS_TOKEN": "",  # none: GET /metrics takes an operator key only
    "PROMETHEUS_MULTIPROC_DIR": "var/metrics",
    "LOG_FORMAT": "text",
    "BODY_RETENTION_DAYS": "30",
    "LOG_RETENTION_DAYS": "365",
}
MIN_SECRET_KEY_LENGTH = 32


SMTP_SECURITY_MODES = ("none", "starttls", "ssl")
LOG_FORMATS = ("text", "json")


def _split(value):
    return [item.strip() for item in value.split(",") if item.strip()]


def _flag(value):
    return value.strip().lower() in ("1", "true", "yes")


def ascii_domain(name):
    """Return a domain name in the ASCII (punycode) form addresses are stored in: bücher.example →
    xn--bcher-kva.example, the same IDNA (UTS 46) mapping email-validator applies."""
    try:
        return idna.encode(name.strip().rstrip("."), uts46=True).decode("ascii").lower()
    except idna.IDNAError as exc:
        raise ValueError(f"Not a valid domain name: {name!r} ({exc})") from exc


def load_config(environ=None):
    """Return the settings from `environ` (default: the process environment plus `.env`)."""
    if environ is None:
        load_dotenv()
        environ = os.environ
    raw = {name: environ.get(name, default) for name, default in DEFAULTS.items()}
    if raw["SMTP_SECURITY"].strip().lower() not in SMTP_SECURITY_MODES:
        # A typo must not quietly mean plaintext, with SMTP_PASSWORD sent in the clear.
        raise ValueError(f"SMTP_SECURITY must be one of {', '.join(SMTP_SECURITY_MODES)}, not {raw['SMTP_SECURITY']!r}")
    if raw["SECRET_KEY"] and len(raw["SECRET_KEY"]) < MIN_SECRET_KEY_LENGTH:
        # Whoever guesses it can sign a session for any key id: as good as holding every key.
        raise ValueError(f"SECRET_KEY must be at least {MIN_SECRET_KEY_LENGTH} characters (random), or empty")
    if raw["LOG_FORMAT"].strip().lower() not in LOG_FORMATS:
        raise ValueError(f"LOG_FORMAT must be one of {', '.join(LOG_FORMATS)}, not {raw['LOG_FORMAT']!r}")
    retention = {name: int(raw[name]) for name in ("BODY_RETENTION_DAYS", "LOG_RETENTION_DAYS")}
    if min(retention.values()) < 0:
        raise ValueError("BODY_RETENTION_DAYS and LOG_RETENTION_DAYS must be 0 (keep for ever) or more")
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
        "EMAIL_ALLOWED_FROM_DOMAINS": [ascii_domain(d) for d in _split(raw["EMAIL_ALLOWED_FROM_DOMAINS"])],
        "EMAIL_REJECT_SPECIAL_USE": _flag(raw["EMAIL_REJECT_SPECIAL_USE"]),
        "EMAIL_RETRY_INTERVALS": [int(s) for s in _split(raw["EMAIL_RETRY_INTERVALS"])],
        "WORKER_PROCESSES": int(raw["WORKER_PROCESSES"]),
        "RECONCILE_INTERVAL": float(raw["RECONCILE_INTERVAL"]),
        "RECONCILE_GRACE": float(raw["RECONCILE_GRACE"]),
        "WEBHOOK_SECRET": _split(raw["WEBHOOK_SECRET"]),
        "TRUSTED_PROXIES": int(raw["TRUSTED_PROXIES"]),
        "WEBHOOK_RETRY_INTERVALS": [int(s) for s in _split(raw["WEBHOOK_RETRY_INTERVALS"])],
        "WEBHOOK_PROCESSES": int(raw["WEBHOOK_PROCESSES"]),
        "WEBHOOK_TIMEOUT": float(raw["WEBHOOK_TIMEOUT"]),
        "WEBHOOK_ALLOW_PRIVATE": _flag(raw["WEBHOOK_ALLOW_PRIVATE"]),
        "MAX_CONTENT_LENGTH": int(raw["MAX_CONTENT_LENGTH"]),
        "SESSION_COOKIE_SECURE": raw["SESSION_COOKIE_SECURE"].strip().lower() in ("1", "true", "yes"),
        # Absolute: gunicorn's workers and worker.py's processes must name the same directory.
        "PROMETHEUS_MULTIPROC_DIR": os.path.abspath(raw["PROMETHEUS_MULTIPROC_DIR"]),
        "LOG_FORMAT": raw["LOG_FORMAT"].strip().lower(),
        **retention,
        "MAX_MESSAGE_BYTES": int(raw["MAX_MESSAGE_BYTES"]),
    }
