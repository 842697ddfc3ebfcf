"""marshmallow schemas: input schemas that load and validate requests, output schemas that dump rows."""

import base64
import binascii
import datetime as dt
import email.errors
import email.header
import hashlib
import json
import mimetypes
import re
import urllib.parse
from datetime import UTC, datetime, timedelta
from itertools import islice

from marshmallow import (
    EXCLUDE,
    Schema,
    ValidationError,
    fields,
    post_load,
    pre_load,
    validate,
    validates,
    validates_schema,
)

from .addresses import MAX_ADDRESS_LENGTH, InvalidAddress, normalize_address
from .header_safety import CONTROL_CHARS, ENCODED_WORD_START, header_value_problem
from .row_dumps import RowSchema

MAX_RECIPIENTS = 50
RECIPIENT_FIELDS = ("to", "cc", "bcc")
# The parser's cost grows with the text (encoded display names most): over to/cc/bcc together, room
# for 50 addresses of 160 characters, far more than display names need.
MAX_RECIPIENTS_SIZE = 8 * 1024
MAX_BATCH = 500  # messages in one POST /email/batch
MAX_ATTACHMENTS = 20
MAX_FILENAME_BYTES = 255
# Extensions mail filters and clients treat as programs; refused by name (docs/api.md lists them).
BLOCKED_EXTENSIONS = frozenset({
    "ade", "adp", "app", "bat", "chm", "cmd", "com", "cpl", "dll", "exe", "hta", "inf", "ins", "isp", "jar", "js",
    "jse", "lib", "lnk", "mde", "msc", "msi", "msp", "mst", "pif", "ps1", "reg", "scr", "sct", "shb", "sys", "vb",
    "vbe", "vbs", "vxd", "wsc", "wsf", "wsh",
})  # fmt: skip
MIME_TYPE = r"^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,62}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,62}$"
CONTENT_ID = r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,99}$"
# A filename a client may spell in an encoded form: RFC 2231 (charset'language'percent-encoded) or
# RFC 2047 (=?charset?B|Q?...?=). Each is checked as the recipient's mail client would decode it.
RFC2231 = re.compile(r"^[A-Za-z0-9_-]*'[A-Za-z-]*'(.*)$", re.DOTALL)
MAX_METADATA_KEYS = 20
MAX_HEADERS = 50
MAX_HEADER_VALUE = 998  # RFC 5322's line limit
# All custom headers together, names and values: room for long List-Unsubscribe and References
# headers, while the decoding every value gets (encoded words) stays a few milliseconds.
MAX_HEADERS_SIZE = 16 * 1024
# Of which values holding RFC 2047 encoded words (`=?`), which are decoded and folded as the builder will:
# that costs ~2 µs a character, so 8 KiB of them (with 8 KiB of encoded display names and a subject)
# keeps the worst message under 50 ms of CPU; plain values cost ~0.04 µs a character.
MAX_ENCODED_HEADERS_SIZE = 8 * 1024
# Custom headers a sender may set besides X-*; everything structural (From, To, Bcc, Content-Type,
# Message-ID, Date, MIME-Version, …) is built by the service and cannot be overridden.
ALLOWED_HEADERS = {"list-unsubscribe", "list-unsubscribe-post", "list-id", "in-reply-to", "references",
                   "auto-submitted", "precedence", "importance", "priority"}  # fmt: skip
HEADER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]{0,76}$")
MAX_SCHEDULE_AHEAD = timedelta(days=30)
# What the document tells clients (and the fuzz) about free text: JSON Schema has no flag for "ignore
# case" and no rule for what a decoder makes of a value, so these spell out the plain-text part.
NO_CONTROLS_PATTERN = r"^[^\u0000-\u001f\u007f-\u009f\u2028\u2029]*$"
NO_NUL_PATTERN = r"^[^\u0000]*$"  # PostgreSQL text cannot hold NUL (see web.json_body)


def _any_case(text):
    return "".join(f"[{c.lower()}{c.upper()}]" if c.isalpha() else c for c in text)


SETTABLE_HEADER_PATTERN = (
    "^(?:[Xx]-[A-Za-z0-9-]{1,75}|" + "|".join(_any_case(h) for h in sorted(ALLOWED_HEADERS)) + ")$"
)
HEADER_VALUE_DOC = ("At most 998 characters, no control characters (CR, LF, NUL, NEL, U+2028, U+2029, …), also "
                    "once RFC 2047 encoded words are decoded; names unique ignoring letter case.")  # fmt: skip
TEMPLATE_NAME = r"^[a-z0-9][a-z0-9_-]{0,63}$"
MAX_VARIABLES_BYTES = 64 * 1024


class AddressField(fields.String):
    """One address, display name allowed; loads to its normalised header form."""

    def __init__(self, **kwargs):
        super().__init__(validate=validate.Length(min=1, max=MAX_ADDRESS_LENGTH), **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        text = super()._deserialize(value, attr, data, **kwargs)
        if len(text) > MAX_ADDRESS_LENGTH:  # before parsing: validators run only after _deserialize
            raise ValidationError(f"Must be at most {MAX_ADDRESS_LENGTH} characters.")
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


def safe_subject(value):
    """The subject as SMTP will see it: no control character once its encoded words are decoded."""
    problem = header_value_problem("Subject", value)
    if problem:
        raise ValidationError(problem)


def count_recipients(body):
    """Return (how many, how many characters) the recipients of a raw (not yet loaded) send body are
    over to/cc/bcc, parsing none of them.

    Cheap on any input, so it runs before any address is parsed; a request of several messages
    sums it over them.
    """
    count = size = 0
    for key in RECIPIENT_FIELDS:
        value = body.get(key)
        if isinstance(value, str):
            count, size = count + 1, size + len(value)
        elif isinstance(value, list):
            count += len(value)
            if count <= MAX_RECIPIENTS:  # past that the count alone refuses it: measure no more
                size += sum(len(item) for item in value if isinstance(item, str))
    return count, size


def size_problems(body, schema):
    """Return errors for a raw send body whose size alone refuses it, before anything is parsed:
    too many recipients, headers, metadata keys or unknown fields (a field is loaded, and an unknown
    one reported, at some cost each)."""
    errors = {}
    count, size = count_recipients(body)
    if count > MAX_RECIPIENTS:
        errors["to"] = [f"At most {MAX_RECIPIENTS} recipients over to, cc and bcc."]
    elif size > MAX_RECIPIENTS_SIZE:
        errors["to"] = [f"At most {MAX_RECIPIENTS_SIZE} characters of addresses over to, cc and bcc."]
    for key, most in (("headers", MAX_HEADERS), ("metadata", MAX_METADATA_KEYS)):
        if isinstance(body.get(key), dict) and len(body[key]) > most:
            errors[key] = [f"At most {most} keys."]
    headers = body.get("headers")
    if "headers" not in errors and isinstance(headers, dict):
        size = sum(len(item) for pair in headers.items() for item in pair if isinstance(item, str))
        encoded = sum(len(v) for v in headers.values() if isinstance(v, str) and ENCODED_WORD_START in v)
        if size > MAX_HEADERS_SIZE:
            errors["headers"] = [f"At most {MAX_HEADERS_SIZE} characters of names and values together."]
        elif encoded > MAX_ENCODED_HEADERS_SIZE:
            errors["headers"] = [f"At most {MAX_ENCODED_HEADERS_SIZE} characters of values holding encoded words."]
    if len(body) > len(schema.load_fields):
        names = {field.data_key or name for name, field in schema.load_fields.items()}
        for key in islice((key for key in body if key not in names), 10):
            errors[key] = ["Unknown field."]
    return errors


BODY_DOC = "Give a non-empty `body`, a non-empty `html`, or both."
SEND_AT_DOC = ("An ISO 8601 date-time with a UTC offset, in the future and at most 30 days ahead; a past time "
               "is not valid.")  # fmt: skip


def check_send_at(value):
    """A send_at must be in the future and at most 30 days ahead (None: no time, always fine)."""
    now = datetime.now(UTC)
    if value is not None and not now < value <= now + MAX_SCHEDULE_AHEAD:
        raise ValidationError("Must be in the future and at most 30 days ahead.")


class VariablesField(fields.Dict):
    """A template's variables: a JSON object of at most 64 KiB (as compact JSON)."""

    def _deserialize(self, value, attr, data, **kwargs):
        variables = super()._deserialize(value, attr, data, **kwargs)
        if len(json.dumps(variables, separators=(",", ":")).encode()) > MAX_VARIABLES_BYTES:
            raise ValidationError(f"Must be at most {MAX_VARIABLES_BYTES} bytes as JSON.")
        return variables


def _given(name):
    """The JSON Schema of a body that holds `name` as a non-empty string (for OPENAPI_EXTRA)."""
    return {"required": [name], "properties": {name: {"type": "string", "minLength": 1}}}


class WholeNumber(fields.Integer):
    """An integer that JSON may also spell as an integral float (`3.0`), as JSON Schema's `integer` allows."""

    def __init__(self, **kwargs):
        super().__init__(strict=True, **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        return super()._deserialize(value, attr, data, **kwargs)


def decoded_forms(filename):
    """`filename` and what a mail client could make of it: RFC 2231 and RFC 2047 decoded, where they apply."""
    forms = [filename]
    match = RFC2231.match(filename)
    if match:
        forms.append(urllib.parse.unquote(match.group(1), errors="replace"))
    if "=?" in filename:
        try:
            forms.append(str(email.header.make_header(email.header.decode_header(filename))))
        except (ValueError, LookupError, UnicodeError, email.errors.HeaderParseError):
            raise ValidationError("Not a valid RFC 2047 encoded name.") from None
    return forms


def check_filename(filename):
    """A bare file name: no path, no control character, at most 255 bytes, no program's extension,
    in every form it could be decoded to."""
    if not filename or len(filename.encode()) > MAX_FILENAME_BYTES:
        raise ValidationError(f"Must be 1–{MAX_FILENAME_BYTES} bytes.")
    for form in decoded_forms(filename):
        if "/" in form or "\\" in form or form.strip(" .") == "":
            raise ValidationError("Must be a file name, without a path.")
        if CONTROL_CHARS.search(form):
            raise ValidationError("Must not contain control characters or line breaks.")
        extension = form.rstrip(" .").rpartition(".")[2].lower()
        if "." in form and extension in BLOCKED_EXTENSIONS:
            raise ValidationError(f"Files ending .{extension} are not accepted.")


class Base64Bytes(fields.String):
    """Standard base64 (RFC 4648, no line breaks); loads to the bytes."""

    def _deserialize(self, value, attr, data, **kwargs):
        text = super()._deserialize(value, attr, data, **kwargs)
        try:
            return base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ValidationError("Must be standard base64, without line breaks.") from exc


class AttachmentSchema(Schema):
    """A file sent with the message; with a content_id it is inline (an HTML body refers to it as cid:…)."""

    filename = fields.String(
        required=True, validate=check_filename,
        metadata={"pattern": r"^[^/\\\u0000-\u001f\u007f-\u009f\u2028\u2029]+$",
                  "description": "A bare file name of at most 255 bytes, also once RFC 2231/2047 decoded, not "
                                 "ending in a blocked extension (docs/api.md)."},
    )  # fmt: skip
    content = Base64Bytes(
        required=True,
        metadata={"description": "The file, standard base64 without line breaks.",
                  "pattern": r"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$"},
    )  # fmt: skip
    content_type = fields.String(
        load_default=None, validate=validate.Regexp(MIME_TYPE),
        metadata={"description": "Guessed from the filename when absent, else application/octet-stream."},
    )  # fmt: skip
    content_id = fields.String(
        load_default=None, validate=validate.Regexp(CONTENT_ID),
        metadata={"description": "Makes it inline: the HTML body shows it as `cid:<content_id>`."},
    )  # fmt: skip

    @post_load
    def describe(self, data, **kwargs):
        if data["content_type"] is None:
            data["content_type"] = mimetypes.guess_type(data["filename"], strict=False)[0] or "application/octet-stream"
        data["content_type"] = data["content_type"].lower()
        data["size"] = len(data["content"])
        data["sha256"] = hashlib.sha256(data["content"]).hexdigest()
        return data


class SendSchema(Schema):
    """The body of POST /email/send: subject and body/html, or a template with its variables."""

    # JSON Schema cannot say "at least one of these, non-empty" on a property (a body or an html body,
    # and a subject, unless a template makes them); the document adds this.
    OPENAPI_EXTRA = {"allOf": [{"anyOf": [_given(name) for name in ("body", "html", "template")]},
                               {"anyOf": [_given(name) for name in ("subject", "template")]}]}  # fmt: skip

    to_addrs = AddressList(
        data_key="to", single=True, required=True, validate=validate.Length(min=1, max=MAX_RECIPIENTS)
    )
    cc_addrs = AddressList(data_key="cc", load_default=list, validate=validate.Length(max=MAX_RECIPIENTS))
    bcc_addrs = AddressList(data_key="bcc", load_default=list, validate=validate.Length(max=MAX_RECIPIENTS))
    from_addr = AddressField(data_key="from", load_default=None)
    reply_to = AddressField(load_default=None)
    subject = fields.String(
        load_default=None,  # required unless a template is named: check_source
        validate=[validate.Length(min=1, max=998), safe_subject],
        metadata={"pattern": NO_CONTROLS_PATTERN, "description": HEADER_VALUE_DOC.rsplit(";", 1)[0] + "."},
    )
    body = fields.String(load_default=None, metadata={"pattern": NO_NUL_PATTERN, "description": BODY_DOC})
    html = fields.String(load_default=None, metadata={"pattern": NO_NUL_PATTERN, "description": BODY_DOC})
    headers = fields.Dict(
        keys=fields.String(validate=validate.Regexp(HEADER_NAME, error="Not a valid header name."),
                           metadata={"pattern": SETTABLE_HEADER_PATTERN}),
        values=fields.String(validate=validate.Length(max=MAX_HEADER_VALUE), metadata={"pattern": NO_CONTROLS_PATTERN}),
        load_default=dict,
        validate=validate.Length(max=MAX_HEADERS, error="At most {max} keys."),
        metadata={"description": f"Custom headers: `X-…` or a list/threading header; at most {MAX_HEADERS}, "
                                 f"{MAX_HEADERS_SIZE} characters of names and values together, of which at most "
                                 f"{MAX_ENCODED_HEADERS_SIZE} in values holding encoded words. " + HEADER_VALUE_DOC},
    )  # fmt: skip
    template = fields.String(
        load_default=None, validate=validate.Regexp(TEMPLATE_NAME), metadata={"description": "Send this template."}
    )
    template_version = WholeNumber(
        load_default=None, validate=validate.Range(min=1, max=2**31 - 1),
        metadata={"description": "A version of `template`; the latest when absent."},
    )  # fmt: skip
    variables = VariablesField(keys=fields.String(), load_default=dict, metadata={"description": "For `template`."})
    metadata = fields.Dict(
        keys=fields.String(validate=validate.Length(min=1, max=64), metadata={"pattern": NO_NUL_PATTERN}),
        values=fields.String(validate=validate.Length(max=500), metadata={"pattern": NO_NUL_PATTERN}),
        load_default=dict,
        validate=validate.Length(max=MAX_METADATA_KEYS, error="At most {max} keys."),
    )
    # An offset is required: a naive time would be read in a time zone the client did not mean.
    attachments = fields.List(
        fields.Nested(AttachmentSchema), load_default=list, validate=validate.Length(max=MAX_ATTACHMENTS)
    )
    scheduled_at = fields.AwareDateTime(
        data_key="send_at",
        load_default=None,
        error_messages={"invalid_awareness": "Give a time with a UTC offset, e.g. 2026-12-01T09:00:00Z."},
        metadata={"format": "future-date-time", "description": SEND_AT_DOC},
    )

    @pre_load
    def bound_the_work(self, body, **kwargs):
        errors = size_problems(body, self) if isinstance(body, dict) else {}
        if errors:
            raise ValidationError(errors)
        return body

    @validates("headers")
    def check_headers(self, headers, **kwargs):
        errors, seen = {}, set()
        for name, value in headers.items():
            if name.lower() in seen:
                errors[name] = ["Given twice: header names ignore letter case."]
            elif not (name.lower().startswith("x-") or name.lower() in ALLOWED_HEADERS):
                errors[name] = ["Only X-* and list/threading headers may be set."]
            elif problem := header_value_problem(name, value):
                errors[name] = [problem]
            seen.add(name.lower())
        if errors:
            raise ValidationError(errors)

    @validates("scheduled_at")
    def check_send_at(self, value, **kwargs):
        check_send_at(value)

    @validates_schema(skip_on_field_errors=False, pass_original=True)
    def check_source(self, data, original_data, **kwargs):
        # Read from the request as given, so a missing subject is named beside other fields' errors.
        given = original_data if isinstance(original_data, dict) else {}
        if given.get("template") is not None:
            texts = [f for f in ("subject", "body", "html") if given.get(f) is not None]
            if texts:
                raise ValidationError(f"Give a template or {'/'.join(texts)}, not both.", "template")
        elif given.get("template_version") is not None or given.get("variables"):
            raise ValidationError("Give `template` with its version and variables.", "template")
        elif given.get("subject") is None:
            raise ValidationError("Missing data for required field.", "subject")

    @validates_schema
    def check_message(self, data, **kwargs):
        if data.get("template") is None and not data.get("body") and not data.get("html"):
            raise ValidationError("Give a text `body`, an `html` body, or both.", "body")


class BatchSchema(Schema):
    """The body of POST /email/batch: 1–500 send bodies, accepted all or none."""

    messages = fields.List(
        fields.Nested(SendSchema), required=True, validate=validate.Length(min=1, max=MAX_BATCH),
        metadata={"description": f"1–{MAX_BATCH} bodies of POST /email/send; an error names its message's index."},
    )  # fmt: skip

    @pre_load
    def count_before_parsing(self, data, **kwargs):
        # The sizes are checked before any message is loaded, so a batch of 500 × thousands of addresses
        # costs a count, not the parsing of every address.
        messages = data.get("messages") if isinstance(data, dict) else None
        if not isinstance(messages, list):
            return data
        if len(messages) > MAX_BATCH:
            raise ValidationError({"messages": [f"Give 1–{MAX_BATCH} messages."]})
        over = {
            n: {"to": [f"At most {MAX_RECIPIENTS} recipients over to, cc and bcc."]}
            for n, message in enumerate(messages)
            if isinstance(message, dict) and count_recipients(message)[0] > MAX_RECIPIENTS
        }
        if over:
            raise ValidationError({"messages": over})
        return data


class EventSchema(RowSchema):
    """One entry of a message's history."""

    type = fields.String()
    at = fields.DateTime()
    detail = fields.String(allow_none=True)


class RecipientSchema(RowSchema):
    """One recipient of a message and what became of it."""

    address = fields.String()
    field = fields.String(metadata={"description": "to, cc or bcc"})
    status = fields.String(
        metadata={"description": "pending, accepted, deferred, refused, delivered, bounced, complained"}
    )
    attempts = fields.Integer()
    smtp_code = fields.Integer(allow_none=True)
    enhanced_status = fields.String(allow_none=True)
    response = fields.String(allow_none=True)
    updated_at = fields.String(allow_none=True, metadata={"format": "date-time"})  # kept as ISO 8601 in jsonb


class LastErrorSchema(RowSchema):
    """The classified failure of the latest attempt that had one."""

    smtp_code = fields.Integer(allow_none=True)
    enhanced_status = fields.String(allow_none=True)
    retryable = fields.Boolean()
    stage = fields.String(
        allow_none=True, metadata={"description": "connect, greeting, ehlo, starttls, auth, mail, rcpt, data"}
    )
    message = fields.String()


class TemplateRefSchema(RowSchema):
    """The template a message was rendered from."""

    name = fields.String()
    version = fields.Integer()


class AttachmentLogSchema(RowSchema):
    """An attachment as the log shows it: never its bytes."""

    filename = fields.String()
    content_type = fields.String()
    size = fields.Integer()
    content_id = fields.String(allow_none=True)


class LogSchema(RowSchema):
    """A log row as clients see it; `allow_none` tells the OpenAPI document which fields may be null."""

    id = fields.UUID()
    status = fields.String()
    from_addr = fields.String(data_key="from")
    to = fields.List(fields.String(), attribute="to_addrs")
    cc = fields.List(fields.String(), attribute="cc_addrs")
    bcc = fields.List(fields.String(), attribute="bcc_addrs")
    reply_to = fields.String(allow_none=True)
    subject = fields.String()
    body = fields.String(allow_none=True)
    html = fields.String(allow_none=True)
    metadata = fields.Dict()
    attempts = fields.Integer()
    error_message = fields.String(allow_none=True)
    message_id = fields.String()
    created_at = fields.DateTime()
    scheduled_at = fields.DateTime(allow_none=True)
    sent_at = fields.DateTime(allow_none=True)
    failed_at = fields.DateTime(allow_none=True)
    delivered_at = fields.DateTime(allow_none=True)
    recipients = fields.List(fields.Nested(RecipientSchema))
    last_error = fields.Nested(LastErrorSchema, allow_none=True)
    template = fields.Nested(TemplateRefSchema, allow_none=True, metadata={"description": "What it was rendered from."})
    resent_from = fields.UUID(allow_none=True, metadata={"description": "The message this one resends."})
    content_purged_at = fields.DateTime(
        allow_none=True, metadata={"description": "When BODY_RETENTION_DAYS deleted body, html and headers."}
    )
    attachments = fields.List(fields.Nested(AttachmentLogSchema))


class LogWithEventsSchema(LogSchema):
    """A log row with its history, for GET /email/logs/<id>."""

    events = fields.List(fields.Nested(EventSchema))


class BatchLogSchema(RowSchema):
    """The answer of POST /email/batch: the messages' logs, in the order they were given."""

    data = fields.List(fields.Nested(LogSchema))


class EnvelopeSchema(Schema):
    """The SMTP envelope a message would be sent with."""

    mail_from = fields.String()
    rcpt_to = fields.List(fields.String())


class RateLimitLeftSchema(Schema):
    """RATELIMIT_MESSAGES of the key: its limit and what is left in the current window (null: unknown)."""

    limit = fields.Integer()
    remaining = fields.Integer(allow_none=True)


class DecisionsSchema(Schema):
    """What accepting a message would decide; a dry run refuses nothing for these."""

    sender_allowed = fields.Boolean()
    suppressed = fields.List(fields.String(), metadata={"description": "Recipients on the suppression list."})
    scheduled_for = fields.DateTime(allow_none=True)
    idempotency = fields.String(metadata={"description": "new, replay or conflict"})
    rate_limit = fields.Nested(RateLimitLeftSchema)


class DryRunSchema(Schema):
    """The answer of a dry run: the message as it would be sent, its envelope, and the decisions."""

    mime = fields.String(
        metadata={"description": "As the worker builds it; only Date, Message-ID and boundaries differ."}
    )
    envelope = fields.Nested(EnvelopeSchema)
    decisions = fields.Nested(DecisionsSchema)


class BatchDryRunSchema(Schema):
    """The answer of a batch's dry run, a preview per message in order."""

    data = fields.List(fields.Nested(DryRunSchema))


class HealthSchema(Schema):
    """The answer of GET /healthz."""

    status = fields.String(metadata={"example": "ok"})


class SmtpHealthSchema(Schema):
    """What the workers last found wrong with the SMTP relay (information: readiness does not depend on it)."""

    ok = fields.Boolean()
    reason = fields.String(allow_none=True, metadata={"example": "starttls: The relay does not offer STARTTLS."})
    stage = fields.String(allow_none=True)
    at = fields.String(allow_none=True, metadata={"description": "When a worker last met the problem."})


class ReadySchema(Schema):
    """The answer of GET /readyz: each backend and whether it answered, and the relay's last known health."""

    status = fields.String(metadata={"example": "ready"})
    checks = fields.Dict(keys=fields.String(), values=fields.Boolean())
    smtp = fields.Nested(SmtpHealthSchema)


send_schema = SendSchema()
batch_schema = BatchSchema()
batch_log_schema = BatchLogSchema()
dry_run_schema = DryRunSchema()
batch_dry_run_schema = BatchDryRunSchema()
log_schema = LogSchema()
log_with_events_schema = LogWithEventsSchema()
health_schema = HealthSchema()
ready_schema = ReadySchema()


# Delivery events in, suppressions, webhooks out.

DELIVERY_EVENTS = ("delivered", "bounced", "complained", "deferred")
WEBHOOK_EVENTS = tuple(
    f"email.{event}" for event in ("sent", "failed", *DELIVERY_EVENTS, "recipient_failed", "canceled")
)
MAX_DETAIL = 2000
SANE_TIMES = validate.Range(min=dt.datetime(2000, 1, 1, tzinfo=dt.UTC), max=dt.datetime(2100, 1, 1, tzinfo=dt.UTC))


def webhook_id(delivery_id):
    """Return the `webhook-id` of a delivery, the same on every attempt."""
    return f"msg_{delivery_id.hex}"


class DeliveryEventSchema(Schema):
    """The body of POST /email/webhooks/delivery; fields a relay adds beyond these are ignored."""

    class Meta:
        unknown = EXCLUDE

    id = fields.String(load_default=None, validate=[validate.Length(max=100), no_line_breaks])
    message_id = fields.String(load_default=None, validate=[validate.Length(max=998), no_line_breaks])
    event = fields.String(required=True, validate=validate.OneOf(DELIVERY_EVENTS))
    detail = fields.String(load_default=None)  # NUL is refused for the whole body by json_body
    occurred_at = fields.AwareDateTime(load_default=None, default_timezone=dt.UTC, validate=SANE_TIMES)
    recipient = AddressField(load_default=None)

    @validates_schema
    def check_reference(self, data, **kwargs):
        if not data.get("id") and not data.get("message_id"):
            raise ValidationError("Give the message's `id` or its `message_id`.", "id")

    @post_load
    def shorten_detail(self, data, **kwargs):
        # A long DSN diagnostic is kept in part rather than refused: the relay would only resend it.
        if data["detail"] is not None:
            data["detail"] = data["detail"][:MAX_DETAIL]
        return data


class NewSuppressionSchema(Schema):
    """The body of POST /suppressions."""

    address = AddressField(required=True)
    reason = fields.String(
        load_default="manual",
        validate=[validate.Length(min=1, max=200), no_line_breaks],
        metadata={"pattern": NO_CONTROLS_PATTERN},
    )


class SuppressionSchema(Schema):
    """An entry of the suppression list."""

    address = fields.String()
    reason = fields.String()
    email_id = fields.UUID(allow_none=True)
    created_at = fields.DateTime()


class NewWebhookSchema(Schema):
    """The body of POST /webhooks; `events` defaults to all of them."""

    url = fields.Url(
        required=True, schemes={"http", "https"}, require_tld=False, validate=validate.Length(min=1, max=2000)
    )
    events = fields.List(
        fields.String(validate=validate.OneOf(WEBHOOK_EVENTS)),
        load_default=lambda: list(WEBHOOK_EVENTS),
        validate=validate.Length(min=1),
    )

    @post_load
    def dedupe_events(self, data, **kwargs):
        data["events"] = list(dict.fromkeys(data["events"]))
        return data


class WebhookSchema(Schema):
    """A registered endpoint; its secret is shown only by the response that created it."""

    id = fields.UUID()
    url = fields.String()
    events = fields.List(fields.String())
    status = fields.Function(lambda row: "disabled" if row["disabled_at"] else "enabled")
    created_at = fields.DateTime()
    failing_since = fields.DateTime(allow_none=True)
    disabled_at = fields.DateTime(allow_none=True)


class NewWebhookResponseSchema(WebhookSchema):
    """The 201 body of POST /webhooks: the endpoint and, this once, its signing secret."""

    secret = fields.String()


class AttemptSchema(Schema):
    """One POST of a delivery."""

    at = fields.DateTime()
    status_code = fields.Integer()
    error = fields.String()
    response = fields.String()
    duration_ms = fields.Integer()


class DeliverySchema(Schema):
    """One event for one endpoint, with every attempt made to deliver it."""

    id = fields.Function(lambda row: webhook_id(row["id"]))
    type = fields.String()
    email_id = fields.UUID()
    status = fields.String(attribute="state")
    attempts = fields.List(fields.Nested(AttemptSchema))
    next_attempt_at = fields.Method("dump_next_attempt_at")
    created_at = fields.DateTime()

    def dump_next_attempt_at(self, row):
        # Only a delivery waiting for a retry has a next attempt; otherwise the column holds a lease.
        return row["next_attempt_at"].isoformat() if row["state"] == "pending" else None


class CursorPaginationSchema(Schema):
    """Where a cursor-paginated list stands: the next page's cursor, or null on the last page."""

    limit = fields.Integer()
    next_cursor = fields.String(allow_none=True)


class TodaySchema(RowSchema):
    """Today's counts in the requested time zone."""

    date = fields.Date()
    timezone = fields.String()
    created = fields.Integer()
    sent = fields.Integer()
    failed = fields.Integer()


class LogPaginationSchema(RowSchema):
    """Offset mode: page, limit, total, total_pages, total_exact. Cursor mode: limit, next_cursor."""

    page = fields.Integer()
    limit = fields.Integer()
    total = fields.Integer()
    total_pages = fields.Integer()
    total_exact = fields.Boolean()
    next_cursor = fields.String(allow_none=True)


class LogPageSchema(RowSchema):
    """A page of GET /email/logs."""

    items = fields.List(fields.Nested(LogSchema))
    pagination = fields.Nested(LogPaginationSchema)
    today = fields.Nested(TodaySchema)


class SuppressionPageSchema(Schema):
    """A page of GET /suppressions."""

    items = fields.List(fields.Nested(SuppressionSchema))
    pagination = fields.Nested(CursorPaginationSchema)


class WebhookListSchema(Schema):
    """GET /webhooks."""

    items = fields.List(fields.Nested(WebhookSchema))


class DeliveryPageSchema(Schema):
    """A page of GET /webhooks/<id>/deliveries."""

    items = fields.List(fields.Nested(DeliverySchema))
    pagination = fields.Nested(CursorPaginationSchema)


class DeliveryEventOutcomeSchema(Schema):
    """The answer to a delivery event: what became of it."""

    received = fields.Boolean()
    outcome = fields.String(metadata={"description": "applied, recorded, duplicate or unknown_message."})
    ignored = fields.String(
        metadata={
            "description": "Present when the event was recorded but had no effect for this reason: "
            "not_a_recipient (its `recipient` was not among the message's to, cc or bcc)."
        }
    )


class ProjectKeySchema(Schema):
    """A key of the project as GET /project shows it: never the key or its hash."""

    prefix = fields.String(attribute="key_prefix", metadata={"description": "The key's first characters."})
    name = fields.String()
    scopes = fields.List(fields.String())
    created_at = fields.DateTime()
    last_used_at = fields.DateTime(
        allow_none=True, metadata={"description": "When the key was last used, to the minute; null if never."}
    )


class ProjectSchema(Schema):
    """GET /project: the key's project, its active keys and today's counts."""

    name = fields.String()
    created_at = fields.DateTime()
    keys = fields.List(fields.Nested(ProjectKeySchema))
    today = fields.Nested(TodaySchema)


delivery_event_schema = DeliveryEventSchema()
new_suppression_schema = NewSuppressionSchema()
suppression_schema = SuppressionSchema()
new_webhook_schema = NewWebhookSchema()
webhook_schema = WebhookSchema()
new_webhook_response_schema = NewWebhookResponseSchema()
delivery_schema = DeliverySchema()
log_page_schema = LogPageSchema()
suppression_page_schema = SuppressionPageSchema()
webhook_list_schema = WebhookListSchema()
delivery_page_schema = DeliveryPageSchema()
delivery_event_outcome_schema = DeliveryEventOutcomeSchema()
project_schema = ProjectSchema()
webhook_log_schema = LogSchema(exclude=("body", "html"))  # webhook payloads carry the log without its bodies


# Templates.


class TemplatePartsSchema(Schema):
    """The texts of a template, the field names of a send: subject, and body and/or html."""

    OPENAPI_EXTRA = {"anyOf": [_given("body"), _given("html")]}

    subject = fields.String(
        required=True,
        validate=[validate.Length(min=1, max=998), safe_subject],
        metadata={"pattern": NO_CONTROLS_PATTERN, "description": HEADER_VALUE_DOC.rsplit(";", 1)[0] + "."},
    )
    body = fields.String(load_default=None, metadata={"pattern": NO_NUL_PATTERN, "description": BODY_DOC})
    html = fields.String(load_default=None, metadata={"pattern": NO_NUL_PATTERN, "description": BODY_DOC})

    @validates_schema
    def check_parts(self, data, **kwargs):
        if not data.get("body") and not data.get("html"):
            raise ValidationError("Give a text `body`, an `html` body, or both.", "body")


class NewTemplateSchema(TemplatePartsSchema):
    """The body of POST /templates."""

    name = fields.String(required=True, validate=validate.Regexp(TEMPLATE_NAME, error="Use a-z, 0-9, _ and -."))


class RenderRequestSchema(Schema):
    """The body of POST /templates/<name>/render."""

    variables = VariablesField(keys=fields.String(), load_default=dict)
    version = WholeNumber(load_default=None, validate=validate.Range(min=1, max=2**31 - 1))


class TemplateSchema(Schema):
    """A version of a template."""

    name = fields.String()
    version = fields.Integer()
    subject = fields.String()
    body = fields.String(allow_none=True)
    html = fields.String(allow_none=True)
    variables = fields.List(fields.String(), metadata={"description": "The variables the texts use."})
    created_at = fields.DateTime(metadata={"description": "When this version was stored."})


class RenderedSchema(Schema):
    """A render: what a send with these variables would carry."""

    subject = fields.String()
    body = fields.String(allow_none=True)
    html = fields.String(allow_none=True)


class TemplatePageSchema(Schema):
    """A page of GET /templates."""

    items = fields.List(fields.Nested(TemplateSchema))
    pagination = fields.Nested(CursorPaginationSchema)


class RescheduleSchema(Schema):
    """The body of PATCH /email/logs/<id>."""

    scheduled_at = fields.AwareDateTime(
        data_key="send_at", required=True, allow_none=True, validate=check_send_at,
        error_messages={"invalid_awareness": "Give a time with a UTC offset, e.g. 2026-12-01T09:00:00Z."},
        metadata={"description": "The new time; null sends it now."},
    )  # fmt: skip


template_parts_schema = TemplatePartsSchema()
new_template_schema = NewTemplateSchema()
render_request_schema = RenderRequestSchema()
template_schema = TemplateSchema()
rendered_schema = RenderedSchema()
template_page_schema = TemplatePageSchema()
reschedule_schema = RescheduleSchema()
