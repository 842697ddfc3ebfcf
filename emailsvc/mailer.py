"""SMTP: build the MIME message of a log row and hand it to the relay, one command at a time, over a reused
connection; report what the relay answered for each recipient and classify what failed.

The conversation is driven step by step (EHLO, STARTTLS, AUTH, MAIL, one RCPT per recipient, DATA)
rather than through smtplib's send_message, so each recipient's reply is known, and so is the stage
of any failure. What the stages decide (docs/delivery.md): a connection that fails before the body
was sent may be opened again at once; one that fails after it leaves the outcome unknown.
"""

import functools
import io
import re
import smtplib
import ssl
from dataclasses import dataclass, field
from email import policy
from email.errors import MessageError
from email.generator import BytesGenerator
from email.headerregistry import HeaderRegistry
from email.message import EmailMessage
from email.utils import format_datetime

from .addresses import addr_spec
from .header_safety import CONTROL_CHARS, UnsafeMessage, check_serialised
from .plain_message import plain_content

# RFC 3463: an enhanced status code opens the text of a reply ("550 5.1.1 No such user").
ENHANCED_STATUS = re.compile(r"([245]\.\d{1,3}\.\d{1,3})(?![\d.])")
UNKNOWN_OUTCOME = (
    "No answer after the message was sent ({}): the relay may have accepted it. "
    "It will be sent again with the same Message-ID."
)


class HeaderClasses(HeaderRegistry):
    """The email package's header registry, keeping the class it makes for each header name.

    The stock registry builds a new class (`type(...)`) each time a header is set, read or counted
    against its maximum: ~30 µs a time, a third of building and serialising a small message. The
    classes are the same, so the headers parse, fold and serialise to the same bytes.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._classes = {}

    def __getitem__(self, name):
        key = name.lower()
        cls = self._classes.get(key)
        if cls is None:
            cls = self._classes[key] = super().__getitem__(name)
        return cls

    def map_to_type(self, name, cls):
        super().map_to_type(name, cls)
        self._classes.clear()


# The email package's default policy (what EmailMessage() uses), with the header classes kept.
POLICY = policy.default.clone(header_factory=HeaderClasses())


def build_message(row):
    """Return the EmailMessage for a log row: text, html or multipart/alternative, with a stable Message-ID."""
    msg = EmailMessage(policy=POLICY)
    msg["From"] = row["from_addr"]
    msg["To"] = ", ".join(row["to_addrs"])
    if row["cc_addrs"]:
        msg["Cc"] = ", ".join(row["cc_addrs"])
    if row["reply_to"]:
        msg["Reply-To"] = row["reply_to"]
    msg["Subject"] = row["subject"]
    # The same on every attempt, like the Message-ID; a scheduled message is dated when it was due.
    msg["Date"] = format_datetime(row["scheduled_at"] or row["created_at"])
    msg["Message-ID"] = row["message_id"]
    for name, value in row["headers"].items():
        msg[name] = value
    if row["body"] is not None:
        msg.set_content(row["body"])
        if row["html"] is not None:
            msg.add_alternative(row["html"], subtype="html")
    else:
        msg.set_content(row["html"], subtype="html")
    add_attachments(msg, row.get("attachments") or [], row.get("attachment_contents") or {})
    return msg


def add_attachments(msg, attachments, contents):
    """Add the files: an inline one (with a content_id) related to the HTML body (multipart/related, shown
    where it says cid:…), the others as attachments (multipart/mixed). Non-ASCII names are RFC 2231-encoded.

    `attachments` as the log keeps them; their bytes come from `contents` ({sha256: bytes}) or, for a
    message not recorded yet (a dry run), from each attachment's own `content`.
    """
    for attachment in attachments:
        data = attachment.get("content")
        if data is None:
            data = contents.get(attachment["sha256"])
        if data is None:
            raise ValueError(f"The content of {attachment['filename']!r} is no longer kept.")
        maintype, _, subtype = attachment["content_type"].partition("/")
        if attachment["content_id"]:
            body = msg.get_body(("html", "plain"))
            body.add_related(data, maintype, subtype, cid=f"<{attachment['content_id']}>",
                             filename=attachment["filename"], disposition="inline")  # fmt: skip
        else:
            msg.add_attachment(data, maintype, subtype, filename=attachment["filename"])


def serialise(msg, international):
    """Return the bytes DATA carries: CRLF line ends, and raw UTF-8 headers when the relay takes SMTPUTF8.

    Raise UnsafeMessage unless they carry exactly the headers the message was built with: defence in
    depth behind the API's checks, for rows that did not pass them (older rows, direct writes) and for
    interpreters whose email package writes decoded CR/LF verbatim (before CVE-2024-6923 was fixed).
    """
    for name, value in msg.items():
        if CONTROL_CHARS.search(str(value)):
            raise UnsafeMessage(f"The {name} header decodes to a line break or control character.")
    policy = msg.policy.clone(utf8=True) if international else msg.policy
    out = io.BytesIO()
    BytesGenerator(out, policy=policy).flatten(msg, linesep="\r\n")
    data = out.getvalue()
    check_serialised(data, msg.keys())
    return data


def message_content(row, recipients):
    """Return (the bytes DATA carries for a log row sent to `recipients`, bare addresses; whether SMTPUTF8 is
    needed). The worker and a dry run both come here, so a dry run shows what would be sent."""
    addresses = [addr_spec(row["from_addr"])] + list(recipients)
    international = not all(address.isascii() for address in addresses)
    plain = None if international else plain_content(row)  # the same bytes, when the message is that simple
    return plain or serialise(build_message(row), international), international


@dataclass(frozen=True)
class Reply:
    """One answer of the relay (`code` None when there was none: a connection error or a timeout)."""

    code: int | None
    text: str

    @property
    def enhanced_status(self):
        match = ENHANCED_STATUS.match(self.text)
        return match and match.group(1)

    def __str__(self):
        return f"{self.code} {self.text}" if self.code is not None else self.text


@dataclass(frozen=True)
class Failure:
    """A classified failure: what the log keeps as `last_error`."""

    stage: str | None  # connect, greeting, ehlo, starttls, auth, mail, rcpt, data; None outside SMTP
    reply: Reply
    retryable: bool

    def as_dict(self, message=None):
        return {
            "smtp_code": self.reply.code,
            "enhanced_status": self.reply.enhanced_status,
            "retryable": self.retryable,
            "stage": self.stage,
            "message": message or str(self.reply),
        }


@dataclass
class Outcome:
    """What one attempt did: each recipient's (status, reply, stage) by index, and the failure that stopped it.

    `status` is accepted, deferred or refused. `failure` is None when every failure was a recipient's
    own RCPT reply. `claim_lost` means the attempt stopped before DATA because the sending claim was gone.
    """

    recipients: dict = field(default_factory=dict)
    failure: Failure | None = None
    data_reply: Reply | None = None
    claim_lost: bool = False


class _Stopped(Exception):
    """The conversation ended early at `failure.stage`; `close` when the connection is no longer usable."""

    def __init__(self, failure, close=False):
        super().__init__(str(failure.reply))
        self.failure, self.close = failure, close


class _Conversation:
    # Knows how far a connection got: `stage` moves from connect to greeting once the socket is open,
    # and `body_started` turns true once the relay has said 354 (after that, the outcome may be unknown).
    stage = "connect"
    body_started = False
    _in_data = False

    def _get_socket(self, host, port, timeout):
        sock = super()._get_socket(host, port, timeout)
        self.stage = "greeting"
        return sock

    def data(self, msg):
        self._in_data, self.body_started = True, False
        try:
            return super().data(msg)
        finally:
            self._in_data = False

    def getreply(self):
        code, text = super().getreply()
        if self._in_data and code == 354:
            self.body_started = True
        return code, text


class _SMTP(_Conversation, smtplib.SMTP):
    pass


class _SMTPSSL(_Conversation, smtplib.SMTP_SSL):
    pass


def _reply(code, text):
    return Reply(code, text.decode(errors="replace") if isinstance(text, bytes) else str(text))


def _error_reply(exc):
    # smtplib turns a socket error while reading a reply (a timeout, a reset) into SMTPServerDisconnected:
    # name the socket's error, which says what happened.
    if isinstance(exc, smtplib.SMTPServerDisconnected) and isinstance(exc.__context__, OSError):
        exc = exc.__context__
    return Reply(None, f"{type(exc).__name__}: {exc}".rstrip(": "))


class Mailer:
    """One SMTP connection, opened on first use and kept open between messages."""

    def __init__(self, host, port, security="none", username="", password="", timeout=10):
        self.host, self.port, self.security = host, port, security
        self.username, self.password, self.timeout = username, password, timeout
        self._smtp = None

    def close(self):
        """Say QUIT and forget the connection."""
        smtp, self._smtp = self._smtp, None
        if smtp is not None:
            try:
                smtp.quit()
            except (smtplib.SMTPException, OSError):
                smtp.close()

    def send(self, row, targets, still_claimed=lambda: True):
        """Send a log row to `targets`, a list of (index, address); return the attempt's Outcome.

        `still_claimed()` is asked just before DATA: if it says False, the transaction is reset and
        nothing is sent. A kept connection that turns out dead before DATA is opened again once.
        """
        try:
            content, international = self._content(row, targets)
        except (ValueError, TypeError, UnicodeError, MessageError) as exc:
            failure = Failure("data", Reply(None, f"The message could not be built: {exc}"), retryable=False)
            return _settled(targets, {}, failure)
        sender = addr_spec(row["from_addr"])
        for reconnect in (True, False):
            reused = self._smtp is not None
            rcpt_replies = {}
            try:
                return self._transaction(sender, targets, content, international, still_claimed, rcpt_replies)
            except _Stopped as stop:
                if stop.close:
                    self.close()
                else:
                    self._reset()
                return _settled(targets, rcpt_replies, stop.failure)
            except (smtplib.SMTPException, OSError) as exc:
                smtp = self._smtp
                stage = smtp.stage if smtp is not None else "connect"
                body_started = smtp is not None and smtp.body_started
                self.close()
                if body_started:
                    unknown = Reply(None, UNKNOWN_OUTCOME.format(_error_reply(exc)))
                    return _settled(targets, rcpt_replies, Failure("data", unknown, retryable=True))
                if reconnect and reused and isinstance(exc, smtplib.SMTPServerDisconnected | ConnectionError):
                    continue  # the relay closed the connection we kept open while idle: open another
                return _settled(targets, rcpt_replies, Failure(stage, _error_reply(exc), retryable=True))
        raise AssertionError("unreachable")

    def _content(self, row, targets):
        return message_content(row, [address for _, address in targets])

    def _transaction(self, sender, targets, content, international, still_claimed, rcpt_replies):
        smtp = self._session()
        smtp.stage, smtp.body_started = "mail", False  # a kept connection remembers the last message's
        options = []
        if international:
            if not smtp.has_extn("smtputf8"):
                reply = Reply(None, "The relay does not offer SMTPUTF8, which this message's addresses need.")
                raise _Stopped(Failure("mail", reply, retryable=False))
            options = ["SMTPUTF8", "BODY=8BITMIME"]
        reply = _reply(*smtp.mail(sender, options))
        _check(reply, "mail")
        smtp.stage = "rcpt"
        for index, address in targets:
            reply = rcpt_replies[index] = _reply(*smtp.rcpt(address))
            if reply.code == 421:  # the relay is closing the connection: the others are not asked
                del rcpt_replies[index]
                raise _Stopped(Failure("rcpt", reply, retryable=True), close=True)
        if not any(200 <= r.code < 300 for r in rcpt_replies.values()):
            self._reset()
            return _settled(targets, rcpt_replies)
        if not still_claimed():
            self._reset()
            return Outcome(claim_lost=True)
        smtp.stage = "data"
        try:
            reply = _reply(*smtp.data(content))
        except smtplib.SMTPDataError as exc:  # DATA itself refused: no byte of the body was sent
            reply = _reply(exc.smtp_code, exc.smtp_error)
        _check(reply, "data")
        return _settled(targets, rcpt_replies, data_reply=reply)

    def _session(self):
        """Return the open connection, or open one: greeting, EHLO, STARTTLS and AUTH as configured."""
        if self._smtp is not None:
            return self._smtp
        if self.security == "ssl":
            smtp = _SMTPSSL(timeout=self.timeout, context=_tls_context())
        else:
            smtp = _SMTP(timeout=self.timeout)
        self._smtp = smtp  # from here on, close() ends it whatever happens
        smtp._host = self.host  # as smtplib's constructor sets it: the name TLS checks the certificate against
        code, text = smtp.connect(self.host, self.port)
        if code != 220:
            # 421 (busy, try later) or anything unexpected is retried; a 5xx greeting is a refusal.
            raise _Stopped(Failure("greeting", _reply(code, text), retryable=not 500 <= code < 600), close=True)
        smtp.stage = "ehlo"
        try:
            smtp.ehlo_or_helo_if_needed()
        except smtplib.SMTPHeloError as exc:
            raise _Stopped(Failure("ehlo", _reply(exc.smtp_code, exc.smtp_error), retryable=True), close=True) from exc
        if self.security == "starttls":
            smtp.stage = "starttls"
            if not smtp.has_extn("starttls"):
                raise _Stopped(Failure("starttls", Reply(None, "The relay does not offer STARTTLS."), True), close=True)
            try:
                smtp.starttls(context=_tls_context())
                smtp.ehlo()
            except smtplib.SMTPResponseException as exc:
                reply = _reply(exc.smtp_code, exc.smtp_error)
                raise _Stopped(Failure("starttls", reply, retryable=True), close=True) from exc
        if self.username:
            smtp.stage = "auth"
            if not smtp.has_extn("auth"):
                raise _Stopped(Failure("auth", Reply(None, "The relay does not offer AUTH."), True), close=True)
            try:
                smtp.login(self.username, self.password)
            except smtplib.SMTPResponseException as exc:
                reply = _reply(exc.smtp_code, exc.smtp_error)
                raise _Stopped(Failure("auth", reply, retryable=True), close=True) from exc
            except smtplib.SMTPException as exc:  # no authentication method in common
                raise _Stopped(Failure("auth", _error_reply(exc), retryable=True), close=True) from exc
        return smtp

    def _reset(self):
        # After a refusal the session may be mid-transaction; RSET it, or drop it if that fails.
        if self._smtp is not None:
            try:
                self._smtp.rset()
            except (smtplib.SMTPException, OSError):
                self.close()


def _check(reply, stage):
    """Stop the transaction unless `reply` is 2xx: 5xx is final, anything else (4xx, 421…) retryable."""
    if not 200 <= reply.code < 300:
        raise _Stopped(Failure(stage, reply, retryable=not 500 <= reply.code < 600), close=reply.code == 421)


def _settled(targets, rcpt_replies, failure=None, data_reply=None):
    """Return the Outcome: a recipient's own RCPT refusal or deferral stands; the others share the
    failure that stopped the attempt, or are accepted with the reply to DATA."""
    outcome = Outcome(failure=failure, data_reply=data_reply)
    for index, _ in targets:
        reply = rcpt_replies.get(index)
        if reply is not None and not 200 <= reply.code < 300:
            outcome.recipients[index] = ("refused" if 500 <= reply.code < 600 else "deferred", reply, "rcpt")
        elif failure is not None:
            outcome.recipients[index] = ("deferred" if failure.retryable else "refused", failure.reply, failure.stage)
        else:
            outcome.recipients[index] = ("accepted", data_reply, "data")
    return outcome


@functools.cache
def _tls_context():
    # Built once per process and only for a TLS relay: loading the system's CA store costs ~40 ms of
    # CPU, which every new connection would otherwise pay, plain relays included.
    return ssl.create_default_context()
