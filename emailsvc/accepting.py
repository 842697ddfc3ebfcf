"""Accepting messages: the sender check, the rows (suppression and Idempotency-Key settled in their insert),
the queue, and the rollback when the queue is down. POST /email/send, POST /email/batch and a resend
all come here, through `accept`: one message is a batch of one. A dry run comes here too, and stops
before anything is recorded, with what would be sent and what was decided."""

import uuid
from datetime import UTC, datetime

from flask import current_app, g, request
from redis.exceptions import RedisError

from .addresses import addr_spec, domain_of, is_special_use, suppression_keys
from .errors import RecipientSuppressed, ServiceUnavailable, ValidationFailed
from .idempotency import fingerprint, record_emails
from .jobs import enqueue_deliveries
from .limits import messages_left
from .mail_templates.rendering import render_for_send
from .mailer import message_content
from .queries.emails import mark_failed
from .queries.idempotency import find_keyed_emails, release_key
from .queries.suppressions import suppressed_among
from .services import get_services

QUEUE_DOWN = "The queue was unavailable, so the message was not queued."
SENDER_REFUSED = "This sender domain is not allowed."
TOO_BIG = "The message as built would be over MAX_MESSAGE_BYTES ({} bytes)."
HEADER_ROOM = 64 * 1024  # headers and MIME structure, generously


def sender_allowed(sender, config):
    """EMAIL_ALLOWED_FROM_DOMAINS, so the service is no open relay: False for a sender outside them."""
    allowed = config["EMAIL_ALLOWED_FROM_DOMAINS"]
    return not allowed or domain_of(sender) in allowed


def special_use_problems(email, config):
    """With EMAIL_REJECT_SPECIAL_USE, the fields of a loaded message that name special-use domains (.local,
    .test, localhost…), with why; EMAIL_DEFAULT_FROM is the operator's own choice and is not checked."""
    if not config["EMAIL_REJECT_SPECIAL_USE"]:
        return None
    fields = {"to": email["to_addrs"], "cc": email["cc_addrs"], "bcc": email["bcc_addrs"],
              "from": [email["from_addr"]], "reply_to": [email["reply_to"]]}  # fmt: skip
    refused = [field for field, addresses in fields.items()
               if any(a and is_special_use(domain_of(a)) for a in addresses)]  # fmt: skip
    message = "Special-use domain names (.local, .test, localhost, …) are refused by this service."
    return {field: [message] for field in refused} or None


def built_size(email):
    """The size of the message as built, from above: text and files base64-encoded (4/3, and a line break
    every 76 characters) with room for the headers; computed without building it."""
    text = sum(len(part.encode()) for part in (email["body"], email["html"]) if part)
    files = sum(attachment["size"] for attachment in email.get("attachments") or ())
    return (text + files) * 4 // 3 * 78 // 76 + HEADER_ROOM


def complete(email, project_id, api_key_id, config):
    """Fill in what the service decides for a loaded (and rendered) message: sender, id, status, Message-ID."""
    email["from_addr"] = email["from_addr"] or config["EMAIL_DEFAULT_FROM"]
    email_id = uuid.uuid4()
    email.setdefault("template", None)
    email.setdefault("resent_from", None)
    email.update(
        id=email_id,
        project_id=project_id,
        api_key_id=api_key_id,
        status="SCHEDULED" if email["scheduled_at"] else "PENDING",
        message_id=f"<{email_id}@{domain_of(email['from_addr'])}>",
    )
    return email


def by_index(batch, errors, error=ValidationFailed):
    """The 422 for `errors` ({index: {field: messages}}): a batch's details name each message by its index,
    {"messages": {"3": {...}}}; a single message's are its own."""
    if batch:
        return error(details={"messages": {str(n): details for n, details in sorted(errors.items())}})
    return error(details=errors[0])


def render_batch(project_id, messages):
    """Render each loaded message of a batch that names a template (render_for_send); an error names its index."""
    emails, failed = [], {}
    for n, message in enumerate(messages):
        try:
            emails.append(render_for_send(project_id, message))
        except ValidationFailed as exc:
            failed[n] = exc.details
    if failed:
        raise by_index(True, failed)
    return emails


def accept(emails, body, key, batch=False, dry_run=False):
    """Record the loaded (and rendered) messages `emails` as PENDING or SCHEDULED, all or none, in one
    statement, and queue them in one round trip; return (rows in order, replayed).

    `body` is the request the Idempotency-Key `key` fingerprints (with the request's method and
    path); a replay returns the rows the key made. `batch`: errors name each message by its index.
    `dry_run`: record, queue and send nothing, refuse nothing for policy; return (previews, False).
    """
    # Each context-local (current_app, g, request) looked up once: every look-up costs ~10 calls.
    config, req, api_key = current_app.config, request._get_current_object(), g.api_key
    project_id, api_key_id = api_key["project_id"], api_key["id"]
    special = {n: problems for n, email in enumerate(emails) if (problems := special_use_problems(email, config))}
    if special:
        raise by_index(batch, special)
    for email in emails:
        complete(email, project_id, api_key_id, config)
    limit = config["MAX_MESSAGE_BYTES"]
    too_big = {n: {"attachments": [TOO_BIG.format(limit)]} for n, e in enumerate(emails) if built_size(e) > limit}
    if too_big:
        raise by_index(batch, too_big)
    if dry_run:
        return preview(emails, body, key), False
    refused = {
        n: {"from": [SENDER_REFUSED]}
        for n, email in enumerate(emails)
        if not sender_allowed(email["from_addr"], config)
    }
    if refused:
        raise by_index(batch, refused)
    recipients = [suppression_keys(e["to_addrs"] + e["cc_addrs"] + e["bcc_addrs"]) for e in emails]
    db = get_services().db
    route = f"{req.method} {req.path}"
    try:
        with db.cursor() as cur:
            rows, replayed = record_emails(cur, project_id, emails, recipients, api_key_id, key, route, body)
    except RecipientSuppressed as exc:  # details: {index: addresses}
        if not batch:
            raise RecipientSuppressed(details={"addresses": exc.details[0]}) from None
        raise by_index(batch, {n: {"recipient_suppressed": a} for n, a in exc.details.items()}, exc.__class__) from None
    if replayed:
        return rows, True
    try:
        enqueue_deliveries([(email["id"], email["scheduled_at"]) for email in emails])
    except RedisError as exc:
        with db.cursor() as cur:
            for email in emails:
                mark_failed(cur, email["id"], QUEUE_DOWN, from_statuses=["PENDING", "SCHEDULED"], release_lock=False)
            release_key(cur, emails[0]["id"])
        raise ServiceUnavailable(QUEUE_DOWN + " It is recorded as FAILED; send it again.") from exc
    return rows, False


def preview(emails, body, key):
    """What accepting `emails` would do, without doing it: for each, the MIME message as the worker would build
    it (only Date, Message-ID and MIME boundaries differ), its SMTP envelope, and the decisions made."""
    route = f"{request.method} {request.path}"
    recipients = [suppression_keys(e["to_addrs"] + e["cc_addrs"] + e["bcc_addrs"]) for e in emails]
    with get_services().db.cursor() as cur:
        suppressed = set(suppressed_among(cur, emails[0]["project_id"], {a for keys in recipients for a in keys}))
        known_hash, _ = find_keyed_emails(cur, g.api_key["id"], key) if key is not None else (None, [])
    idempotency = "new" if known_hash is None else "replay" if known_hash == fingerprint(body, route) else "conflict"
    rate_limit, now = messages_left(), datetime.now(UTC)
    previews = []
    for email, keys in zip(emails, recipients, strict=True):
        rcpt_to = [addr_spec(a) for a in email["to_addrs"] + email["cc_addrs"] + email["bcc_addrs"]]
        content, _ = message_content({**email, "created_at": now}, rcpt_to)
        decisions = {
            "sender_allowed": sender_allowed(email["from_addr"], current_app.config),
            "suppressed": [address for address in keys if address in suppressed],
            "scheduled_for": email["scheduled_at"],
            "idempotency": idempotency,
            "rate_limit": rate_limit,
        }
        envelope = {"mail_from": addr_spec(email["from_addr"]), "rcpt_to": rcpt_to}
        previews.append({"mime": content.decode("utf-8", "replace"), "envelope": envelope, "decisions": decisions})
    return previews


def accept_email(email, body, key):
    """Accept one message (see accept); return (row, replayed)."""
    rows, replayed = accept([email], body, key)
    return rows[0], replayed
