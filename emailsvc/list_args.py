"""The query strings of the list endpoints, loaded and checked by marshmallow schemas.

Kept beside schemas.py rather than in it because query strings differ from JSON bodies: every value
arrives as text, a parameter may be repeated, and malformed input is a 400, not a 422.
"""

import re
import uuid
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from flask import request
from marshmallow import Schema, ValidationError, fields, pre_load, validates_schema

from .cursors import InvalidCursor, decode_cursor
from .errors import InvalidParameter
from .schemas import AddressField

LOG_STATUSES = ("SCHEDULED", "PENDING", "SENDING", "SENT", "FAILED", "DELIVERED", "BOUNCED", "COMPLAINED", "CANCELED")
MAX_LIMIT = 100
MAX_PAGE = 2**31 - 1  # keeps (page - 1) * limit far inside PostgreSQL's bigint OFFSET
WHOLE_NUMBER = re.compile(r"[+-]?[0-9]+")
BARE_OFFSET = re.compile(r" ([0-9]{2}:?[0-9]{2})$")  # a `+` the query string turned into a space


class ClampedInteger(fields.String):
    """A whole number, brought into [low, high] rather than refused; anything else is an error."""

    def __init__(self, low, high, **kwargs):
        about = f"A whole number; outside {low}–{high} it is brought into that range. Empty means absent."
        super().__init__(metadata={"pattern": r"^\s*[+-]?[0-9]+\s*$", "description": about}, **kwargs)
        self.low, self.high = low, high

    def _deserialize(self, value, attr, data, **kwargs):
        text = super()._deserialize(value, attr, data, **kwargs).strip()
        if not WHOLE_NUMBER.fullmatch(text):
            raise ValidationError("Not a whole number.")
        number = int(text) if len(text) < 20 else (-1 if text.startswith("-") else 1) * 10**20
        return min(max(number, self.low), self.high)


class IsoDateTime(fields.String):
    """An ISO 8601 date or date-time; one without an offset is read as UTC."""

    def __init__(self, **kwargs):
        about = "ISO 8601 date or date-time (RFC 3339 date-times are valid); without an offset it is UTC."
        super().__init__(metadata={"format": "date-time", "description": about}, **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        text = BARE_OFFSET.sub(r"+\1", super()._deserialize(value, attr, data, **kwargs).strip())
        try:
            moment = datetime.fromisoformat(text)
        except ValueError as exc:
            raise ValidationError("Not an ISO 8601 date-time, e.g. 2026-11-28T09:00:00Z.") from exc
        if moment.tzinfo is None:
            return moment.replace(tzinfo=UTC)
        try:
            # In UTC: PostgreSQL refuses offsets past ±15:59, which ISO 8601 (and Python) allow up to ±23:59.
            return moment.astimezone(UTC)
        except OverflowError as exc:  # year 1 minus an offset, or year 9999 plus one
            raise ValidationError("Out of the range of dates.") from exc


class TimeZoneField(fields.String):
    """An IANA time zone name such as Asia/Dhaka."""

    def __init__(self, **kwargs):
        super().__init__(metadata={"format": "time-zone", "description": "An IANA time zone name, e.g. Asia/Dhaka."},
                         **kwargs)  # fmt: skip

    def _deserialize(self, value, attr, data, **kwargs):
        # No zone name has a space, so one is a `+` (as in Etc/GMT+2) that the query string decoded.
        name = super()._deserialize(value, attr, data, **kwargs).replace(" ", "+")
        try:
            return ZoneInfo(name)
        except (KeyError, ValueError, OSError) as exc:  # unknown, malformed, or a directory of zones
            raise ValidationError("Not a known IANA time zone, e.g. Europe/Berlin.") from exc


class StatusField(fields.String):
    """One status, in any letter case."""

    def __init__(self, **kwargs):
        any_case = "|".join("".join(f"[{c}{c.lower()}]" for c in status) for status in LOG_STATUSES)
        super().__init__(metadata={"pattern": f"^(?:{any_case})$", "description": "One status, in any letter case."},
                         **kwargs)  # fmt: skip

    def _deserialize(self, value, attr, data, **kwargs):
        status = super()._deserialize(value, attr, data, **kwargs).upper()
        if status not in LOG_STATUSES:
            raise ValidationError(f"Must be one of {', '.join(LOG_STATUSES)}.")
        return status


class CursorField(fields.String):
    """A next_cursor from an earlier page of a list keyed by `key_type`; loads to its (created_at, key) position."""

    def __init__(self, key_type=uuid.UUID, **kwargs):
        about = "The `next_cursor` of the page before, as given: opaque and checksummed, so no other value is valid."
        super().__init__(metadata={"description": about}, **kwargs)
        self.key_type = key_type

    def _deserialize(self, value, attr, data, **kwargs):
        try:
            created_at, key = decode_cursor(super()._deserialize(value, attr, data, **kwargs))
        except InvalidCursor as exc:
            raise ValidationError(str(exc)) from exc
        # A cursor of another list (a text key where this list sorts by UUID, or the reverse).
        if not isinstance(key, self.key_type):
            raise ValidationError("Not a cursor of this list.")
        return created_at, key


class QueryArgs(Schema):
    """A query string: each parameter given once, and an empty one (`cursor=`, as a form or a client
    library leaves it) absent, as in most APIs."""

    @pre_load
    def one_value_each(self, args, **kwargs):
        if not hasattr(args, "getlist"):
            return {name: value for name, value in args.items() if value != ""}
        given = {name: [value for value in args.getlist(name) if value != ""] for name in args}
        repeated = {name: ["Give this parameter once."] for name, values in given.items() if len(values) > 1}
        if repeated:
            raise ValidationError(repeated)
        return {name: values[0] for name, values in given.items() if values}


class PageArgs(QueryArgs):
    """The query string of a cursor-paginated list: `limit` (1–100, clamped) and `cursor`."""

    limit = ClampedInteger(1, MAX_LIMIT, load_default=10)
    cursor = CursorField(load_default=None)


class TextKeyPageArgs(PageArgs):
    """PageArgs of a list whose ties are broken by a text key (the suppression list, by address)."""

    cursor = CursorField(key_type=str, load_default=None)


class LogListArgs(PageArgs):
    """The query string of GET /email/logs; `page` present means offset mode, absent cursor mode."""

    page = ClampedInteger(1, MAX_PAGE, load_default=None)
    status = StatusField(load_default=None)
    to = AddressField(load_default=None)
    from_addr = AddressField(data_key="from", load_default=None)
    created_after = IsoDateTime(load_default=None)
    created_before = IsoDateTime(load_default=None)
    tz = TimeZoneField(load_default=lambda: ZoneInfo("UTC"))

    @validates_schema
    def one_mode(self, args, **kwargs):
        if args.get("page") is not None and args.get("cursor") is not None:
            raise ValidationError("A cursor is for cursor mode; leave out `page`.", "cursor")


class TodayArgs(QueryArgs):
    """The query string of GET /project: `tz` sets which calendar day today's counts cover."""

    tz = TimeZoneField(load_default=lambda: ZoneInfo("UTC"))


class DryRunArgs(QueryArgs):
    """The query of POST /email/send and POST /email/batch."""

    dry_run = fields.Boolean(
        load_default=False,
        truthy={"true"},
        falsy={"false"},  # as the rate limiter reads it (limits.request_facts)
        metadata={"description": "true: answer 200 with what would be sent and decided; record and send nothing."},
    )


def load_args(schema):
    """Load the request's query string with `schema`; anything malformed is a 400 invalid_parameter."""
    try:
        return schema.load(request.args)
    except ValidationError as exc:
        raise InvalidParameter(details=exc.normalized_messages()) from exc


def load_dry_run():
    """Whether a send or batch asks for a dry run (`?dry_run=true`). Without a query string there is nothing to
    read or refuse: the answer is no, at no cost (every send asks)."""
    return bool(request.query_string) and load_args(dry_run_args)["dry_run"]


page_args = PageArgs()
text_key_page_args = TextKeyPageArgs()
log_list_args = LogListArgs()
today_args = TodayArgs()
dry_run_args = DryRunArgs()
