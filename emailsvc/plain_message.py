"""The DATA bytes of a plain message, written directly: the email package's bytes, at a tenth of its CPU.

Most transactional mail is one ASCII text or HTML part, to a few plain addresses, with no extra
headers or attachments. For such a message the email package (mailer.build_message and serialise)
spends ~400 µs of a sending process's CPU parsing each header into a tree and folding it back into
the same text (docs/performance.md). `plain_content` writes those bytes itself, only when every
header would come out of the email package exactly as given and unfolded, and returns None for
anything else, which mailer.message_content then builds the email package's way.
tests/test_plain_message.py compares the two byte for byte, on generated messages at every edge
of what is taken here (line lengths, characters, address forms).
"""

import re
from email.utils import format_datetime

# The email package folds a header line longer than this (policy.default.max_line_length), and sends a
# body line longer than this as quoted-printable instead of 7bit.
MAX_LINE = 78
ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
DOT_ATOM = rf"{ATOM}(?:\.{ATOM})*"
DOMAIN = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*"
# An address the email package writes back unchanged: a bare addr-spec, or a display name of atoms
# separated by single spaces (nothing it would quote or encode) before <addr-spec>.
PLAIN_ADDRESS = re.compile(rf"(?:{ATOM}(?: {ATOM})* <{DOT_ATOM}@{DOMAIN}>|{DOT_ATOM}@{DOMAIN})")
PLAIN_MESSAGE_ID = re.compile(rf"<[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*@{DOMAIN}>")
# Printable ASCII words separated by single spaces, with no encoded word (=?…?=) to decode.
PLAIN_TEXT = re.compile(r"[!-~]+(?: [!-~]+)*")


def plain_content(row):
    """Return the bytes DATA carries for a log row (CRLF line ends), or None unless the row is plain."""
    if row["headers"] or row.get("attachments") or (row["body"] is None) == (row["html"] is None):
        return None
    text, subtype = (row["body"], "plain") if row["body"] is not None else (row["html"], "html")
    if not text.isascii() or "\0" in text:  # a NUL is for serialise's checks to refuse
        return None
    lines = text.encode("ascii").splitlines()
    subject = row["subject"]
    if not lines or max(len(line) for line in lines) > MAX_LINE or not PLAIN_TEXT.fullmatch(subject) or "=?" in subject:
        return None
    # In the order mailer.build_message sets them.
    addresses = [("From", [row["from_addr"]]), ("To", row["to_addrs"]), ("Cc", row["cc_addrs"]),
                 ("Reply-To", [row["reply_to"]] if row["reply_to"] else [])]  # fmt: skip
    if not row["to_addrs"] or not PLAIN_MESSAGE_ID.fullmatch(row["message_id"]):
        return None
    head = []
    for name, values in addresses:
        if values and not all(PLAIN_ADDRESS.fullmatch(value) and "=?" not in value for value in values):
            return None
        if values:
            head.append(f"{name}: {', '.join(values)}")
    date = format_datetime(row["scheduled_at"] or row["created_at"])
    head += [f"Subject: {subject}", f"Date: {date}", f"Message-ID: {row['message_id']}"]
    if any(len(line) > MAX_LINE for line in head):
        return None
    head += [f'Content-Type: text/{subtype}; charset="utf-8"', "Content-Transfer-Encoding: 7bit", "MIME-Version: 1.0"]
    return "\r\n".join(head).encode("ascii") + b"\r\n\r\n" + b"\r\n".join(lines) + b"\r\n"
