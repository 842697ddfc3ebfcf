"""SMTP: build the MIME message of a log row and hand it to the relay over a reused connection."""

import io
import smtplib
import ssl
from email.errors import MessageError
from email.generator import BytesGenerator
from email.message import EmailMessage
from email.utils import format_datetime

from .addresses import addr_spec
from .header_safety import CONTROL_CHARS, UnsafeMessage, check_serialised


class PermanentFailure(Exception):
    """The relay refused the message for good (5xx); retrying cannot help."""


class TransientFailure(Exception):
    """The relay could not take the message now (4xx, connection error, timeout)."""


def build_message(row):
    """Return the EmailMessage for a log row: text, html or multipart/alternative, with a stable Message-ID."""
    msg = EmailMessage()
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
    verify_headers(msg, row)
    return msg


def envelope_recipients(row):
    """Return the bare addresses the message goes to, Bcc included (Bcc is never a header)."""
    return [addr_spec(a) for a in row["to_addrs"] + row["cc_addrs"] + row["bcc_addrs"]]


class _KeepsDataReply:
    # smtplib drops the relay's reply to DATA ("250 2.0.0 queued as …"); keep it for the log.
    def data(self, msg):
        self.data_reply = super().data(msg)
        return self.data_reply


class _SMTP(_KeepsDataReply, smtplib.SMTP):
    pass


class _SMTPSSL(_KeepsDataReply, smtplib.SMTP_SSL):
    pass


class Mailer:
    """One SMTP connection, opened on first use and kept open between messages."""

    def __init__(self, host, port, security="none", username="", password="", timeout=10):
        self.host, self.port, self.security = host, port, security
        self.username, self.password, self.timeout = username, password, timeout
        self._smtp = None
        self._reused = False

    def _connect(self):
        context = ssl.create_default_context()
        if self.security == "ssl":
            smtp = _SMTPSSL(self.host, self.port, timeout=self.timeout, context=context)
        else:
            smtp = _SMTP(self.host, self.port, timeout=self.timeout)
            if self.security == "starttls":
                smtp.starttls(context=context)
        if self.username:
            smtp.login(self.username, self.password)
        return smtp

    def close(self):
        """Say QUIT and forget the connection."""
        smtp, self._smtp = self._smtp, None
        if smtp is not None:
            try:
                smtp.quit()
            except (smtplib.SMTPException, OSError):
                smtp.close()

    def send(self, row):
        """Send one log row; return the relay's reply, or raise PermanentFailure / TransientFailure."""
        try:
            msg = build_message(row)
        except (ValueError, TypeError, MessageError) as exc:  # UnsafeMessage included
            raise PermanentFailure(f"The message could not be built: {exc}") from exc
        sender, recipients = addr_spec(row["from_addr"]), envelope_recipients(row)
        try:
            try:
                return self._send_once(msg, sender, recipients)
            except smtplib.SMTPServerDisconnected:
                if not self._reused:
                    raise
                # The relay closed the connection we kept open while idle: reconnect once.
                self.close()
                return self._send_once(msg, sender, recipients)
        except smtplib.SMTPRecipientsRefused as exc:
            self._reset()
            replies = {rcpt: f"{code} {text.decode(errors='replace')}" for rcpt, (code, text) in exc.recipients.items()}
            detail = "; ".join(f"{rcpt}: {reply}" for rcpt, reply in replies.items())
            if all(code >= 500 for code, _ in exc.recipients.values()):
                raise PermanentFailure(f"All recipients refused: {detail}") from exc
            raise TransientFailure(f"Recipients refused: {detail}") from exc
        except smtplib.SMTPResponseException as exc:
            self._reset()
            reply = f"{exc.smtp_code} {_text(exc.smtp_error)}"
            if 500 <= exc.smtp_code < 600 and not isinstance(exc, smtplib.SMTPAuthenticationError):
                raise PermanentFailure(reply) from exc
            raise TransientFailure(reply) from exc
        except smtplib.SMTPNotSupportedError as exc:
            # The relay lacks an extension the message needs (SMTPUTF8 for a non-ASCII address): retrying cannot help.
            self._reset()
            raise PermanentFailure(f"The relay does not support this message: {exc}") from exc
        except (smtplib.SMTPException, OSError) as exc:
            self.close()
            raise TransientFailure(f"{type(exc).__name__}: {exc}".rstrip(": ")) from exc

    def _send_once(self, msg, sender, recipients):
        self._reused = self._smtp is not None
        if self._smtp is None:
            self._smtp = self._connect()
        refused = self._smtp.send_message(msg, from_addr=sender, to_addrs=recipients)
        code, text = self._smtp.data_reply
        reply = f"{code} {_text(text)}"
        if refused:
            reply += "; refused: " + "; ".join(f"{r}: {c} {_text(t)}" for r, (c, t) in refused.items())
        return reply

    def _reset(self):
        # After a refusal the session may be mid-transaction; RSET it, or drop it if that fails.
        if self._smtp is not None:
            try:
                self._smtp.rset()
            except (smtplib.SMTPException, OSError):
                self.close()


def _text(value):
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def verify_headers(msg, row):
    """Raise UnsafeMessage unless `msg` will go out with exactly the headers it was built with.

    Defence in depth behind the API's checks, for rows that did not pass them (older rows, direct
    writes) and for interpreters whose email package writes decoded CR/LF verbatim (before
    CVE-2024-6923 was fixed): every header as decoded, then the message serialised as smtplib will
    serialise it (SMTPUTF8 when an envelope address is not ASCII), with CRLF line ends.
    """
    for name, value in msg.items():
        if CONTROL_CHARS.search(str(value)):
            raise UnsafeMessage(f"The {name} header decodes to a line break or control character.")
    envelope = [addr_spec(row["from_addr"]), *envelope_recipients(row)]
    buffer = io.BytesIO()
    policy = msg.policy.clone(linesep="\r\n", utf8=not all(a.isascii() for a in envelope))
    BytesGenerator(buffer, policy=policy).flatten(msg)
    check_serialised(buffer.getvalue(), msg.keys())
