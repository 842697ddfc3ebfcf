"""marshmallow schemas: input schemas that load and validate requests, output schemas that dump rows."""

import re
from datetime import UTC, datetime, timedelta

from marshmallow import Schema, ValidationError, fields, validate, validates, validates_schema

from .addresses import CONTROL_CHARS, InvalidAddress, normalize_address

MAX_RECIPIENTS = 50
MAX_METADATA_KEYS = 20
# Custom headers a sender may set besides X-*; everything structural (From, To, Bcc, Content-Type,
# Message-ID, Date, MIME-Version, …) is built by the service and cannot be overridden.
ALLOWED_HEADERS = {"list-unsubscribe", "list-unsubscribe-post", "list-id", "in-reply-to", "references",
                   "auto-submitted", "precedence", "importance", "priority"}  # fmt: skip
HEADER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]{0,76}$")
MAX_SCHEDULE_AHEAD = timedelta(days=30)


class AddressField(fields.String):
    """One address, display name allowed; loads to its normalised header form."""

    def _deserialize(self, value, attr, data, **kwargs):
        text = super()._deserialize(value, attr, data, **kwargs)
        try:
            return normalize_address(text)
        except InvalidAddress as exc:
            raise ValidationError(str(exc)) from exc


class AddressList(fields.List):
    """A list of addresses; `single=True` also accepts one address as a plain string."""

    def __init__(self, single=False, **kwargs):
        super().__init__(AddressField(), **kwargs)
        self.single = single

    def _deserialize(self, value, attr, data, **kwargs):
        if self.single and isinstance(value, str):
            value = [value]
        return super()._deserialize(value, attr, data, **kwargs)


def no_line_breaks(value):
    if CONTROL_CHARS.search(value):
        raise ValidationError("Must not contain line breaks or control characters.")


class SendSchema(Schema):
    """The body of POST /email/send."""

    to_addrs = AddressList(data_key="to", single=True, required=True, validate=validate.Length(min=1))
    cc_addrs = AddressList(data_key="cc", load_default=list)
    bcc_addrs = AddressList(data_key="bcc", load_default=list)
    from_addr = AddressField(data_key="from", load_default=None)
    reply_to = AddressField(load_default=None)
    subject = fields.String(required=True, validate=[validate.Length(min=1, max=998), no_line_breaks])
    body = fields.String(load_default=None)
    html = fields.String(load_default=None)
    headers = fields.Dict(keys=fields.String(), values=fields.String(), load_default=dict)
    metadata = fields.Dict(
        keys=fields.String(validate=validate.Length(min=1, max=64)),
        values=fields.String(validate=validate.Length(max=500)),
        load_default=dict,
        validate=validate.Length(max=MAX_METADATA_KEYS, error="At most {max} keys."),
    )
    # An offset is required: a naive time would be read in a time zone the client did not mean.
    scheduled_at = fields.AwareDateTime(
        data_key="send_at",
        load_default=None,
        error_messages={"invalid_awareness": "Give a time with a UTC offset, e.g. 2026-12-01T09:00:00Z."},
    )

    @validates("headers")
    def check_headers(self, headers, **kwargs):
        errors = {}
        for name, value in headers.items():
            if not HEADER_NAME.match(name):
                errors[name] = ["Not a valid header name."]
            elif not (name.lower().startswith("x-") or name.lower() in ALLOWED_HEADERS):
                errors[name] = ["Only X-* and list/threading headers may be set."]
            elif CONTROL_CHARS.search(value) or len(value) > 998:
                errors[name] = ["Must be at most 998 characters without line breaks."]
        if errors:
            raise ValidationError(errors)

    @validates("scheduled_at")
    def check_send_at(self, value, **kwargs):
        now = datetime.now(UTC)
        if value is not None and not now < value <= now + MAX_SCHEDULE_AHEAD:
            raise ValidationError("Must be in the future and at most 30 days ahead.")

    @validates_schema
    def check_message(self, data, **kwargs):
        if not data.get("body") and not data.get("html"):
            raise ValidationError("Give a text `body`, an `html` body, or both.", "body")
        count = sum(len(data.get(f, [])) for f in ("to_addrs", "cc_addrs", "bcc_addrs"))
        if count > MAX_RECIPIENTS:
            raise ValidationError(f"At most {MAX_RECIPIENTS} recipients over to, cc and bcc.", "to")


class EventSchema(Schema):
    """One entry of a message's history."""

    type = fields.String()
    at = fields.DateTime()
    detail = fields.String()


class LogSchema(Schema):
    """A log row as clients see it."""

    id = fields.UUID()
    status = fields.String()
    from_addr = fields.String(data_key="from")
    to = fields.List(fields.String(), attribute="to_addrs")
    cc = fields.List(fields.String(), attribute="cc_addrs")
    bcc = fields.List(fields.String(), attribute="bcc_addrs")
    reply_to = fields.String()
    subject = fields.String()
    body = fields.String()
    html = fields.String()
    metadata = fields.Dict()
    attempts = fields.Integer()
    error_message = fields.String()
    message_id = fields.String()
    created_at = fields.DateTime()
    scheduled_at = fields.DateTime()
    sent_at = fields.DateTime()
    failed_at = fields.DateTime()
    delivered_at = fields.DateTime()


class LogWithEventsSchema(LogSchema):
    """A log row with its history, for GET /email/logs/<id>."""

    events = fields.List(fields.Nested(EventSchema))


send_schema = SendSchema()
log_schema = LogSchema()
log_with_events_schema = LogWithEventsSchema()
