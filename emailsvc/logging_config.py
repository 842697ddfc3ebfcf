"""How every process logs: one line per record, as text or (LOG_FORMAT=json) as one JSON object with the
record's extra fields, each stamped with the ID of the request it belongs to.

What a line may hold: ids, routes, statuses, SMTP codes. Never a message body, never a recipient
address, never a key: request lines name the route template, not the path (`/suppressions/<address>`).
"""

import logging

from flask import g, has_app_context
from pythonjsonlogger.json import JsonFormatter

# The process id tells which gunicorn worker or sending process wrote a line.
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(process)d] [%(request_id)s] %(message)s"
JSON_FIELDS = "%(asctime)s %(levelname)s %(name)s %(process)d %(message)s %(request_id)s"
JSON_NAMES = {"asctime": "time", "levelname": "level", "name": "logger", "process": "pid"}


def json_formatter():
    """The JSON formatter of every process (gunicorn.conf.py names it for gunicorn's own lines too)."""
    return JsonFormatter(JSON_FIELDS, rename_fields=JSON_NAMES, defaults={"request_id": "-"})


def formatter(log_format):
    """The formatter of LOG_FORMAT: `json` or `text`."""
    return json_formatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)


def _with_request_id(make_record):
    def make(*args, **kwargs):
        record = make_record(*args, **kwargs)
        record.request_id = g.get("request_id", "-") if has_app_context() else "-"
        return record

    make.adds_request_id = True
    return make


def configure_logging(log_format):
    """Stamp every log record with its request's ID, and log to stderr in `log_format` unless the host configured
    logging (gunicorn's JSON set-up in gunicorn.conf.py; pytest)."""
    # No line names its caller's file, line, function or thread: skip finding them for every record, as the
    # logging HOWTO's "Optimization" section describes (the caller's frame walk was a third of a request line).
    logging._srcfile = None
    logging.logThreads = logging.logMultiprocessing = False
    if not getattr(logging.getLogRecordFactory(), "adds_request_id", False):
        logging.setLogRecordFactory(_with_request_id(logging.getLogRecordFactory()))
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(formatter(log_format))
        root.addHandler(handler)
        root.setLevel(logging.INFO)
