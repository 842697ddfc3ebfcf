"""Keyset pagination for list endpoints: the `limit` parameter and opaque cursors."""

import base64
import binascii
import json

from flask import request

from .errors import InvalidParameter

DEFAULT_LIMIT, MAX_LIMIT = 10, 100


def page_limit():
    """Return `?limit=` clamped to 1–100 (default 10); a non-number is a 400."""
    text = request.args.get("limit", str(DEFAULT_LIMIT))
    if not text.strip().lstrip("-").isdigit() or len(text) > 12:
        raise InvalidParameter("`limit` must be a whole number.", details={"limit": ["Not a whole number."]})
    return min(max(int(text), 1), MAX_LIMIT)


def encode_cursor(*values):
    """Return an opaque cursor for the sort key of the last item of a page."""
    return base64.urlsafe_b64encode(json.dumps([str(v) for v in values]).encode()).decode().rstrip("=")


def page_cursor(*parsers):
    """Return `?cursor=` decoded into one value per parser (None when absent); a bad cursor is a 400."""
    text = request.args.get("cursor")
    if not text:
        return None
    try:
        values = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        if not isinstance(values, list) or len(values) != len(parsers):
            raise ValueError("wrong shape")
        return [parse(value) for parse, value in zip(parsers, values, strict=True)]
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError) as exc:
        raise InvalidParameter("`cursor` is not a cursor this API returned.", details={"cursor": ["Invalid."]}) from exc


def text(value):
    """A cursor parser for a string sort key (PostgreSQL text cannot hold NUL)."""
    if not isinstance(value, str) or "\x00" in value:
        raise ValueError("not text")
    return value


def page(rows, limit, key):
    """Split `limit + 1` fetched rows into the page and the cursor of the next one (or None)."""
    if len(rows) <= limit:
        return rows, None
    return rows[:limit], encode_cursor(*key(rows[limit - 1]))
