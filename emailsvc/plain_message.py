"""The DATA bytes of a plain message, written directly: the email package's bytes, at ~2% of its CPU.

Most transactional mail is ASCII text, HTML or both (multipart/alternative), to a few plain
addresses, with no extra headers or attachments. For such a message the email package
(mailer.build_message and serialise) spends ~400 µs (~800 µs with both parts) of a sending
process's CPU parsing each header into a tree and folding it back into the same text
(docs/performance.md). `plain_content` writes those bytes itself, only when every
header would come out of the email package exactly as given and unfolded, and returns None for
anything else, which mailer.message_content then builds the email package's way.
tests/test_plain_message.py compares the two byte for byte, on generated messages at every edge
of what is taken here (line lengths, characters, address forms); a multipart boundary is random,
drawn as the email package draws it, and the tests compare the bytes around it.
"""

import random
import re
import sys
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
# The email package's multipart boundary: 15 "=", a random number of 19 digits, "==".
BOUNDARY = "=" * 15 + "%019d=="
# Printable ASCII words separated by single spaces, with no encoded word (=?…?=) to decode.
PLAIN_TEXT = re.compile(r"[!-~]+(?: [!-~]+)*")


def plain_content(row):
    """Return the bytes DATA carries for a log row (CRLF line ends), or None unless the row is plain."""
    if row["headers"] or row.get("attachments"):
        return None
    parts = [(text, subtype) for text, subtype in ((row["body"], "plain"), (row["html"], "html")) if text is not None]
    bodies = [_body(text) for text, _ in parts]
    subject = row["subject"]
    if not parts or None in bodies or not PLAIN_TEXT.fullmatch(subject) or "=?" in subject:
        return None
    if not row["to_addrs"] or not PLAIN_MESSAGE_ID.fullmatch(row["message_id"]):
        return None
    head = []
    # In the order mailer.build_message sets them.
    for name, values in (("From", [row["from_addr"]]), ("To", row["to_addrs"]), ("Cc", row["cc_addrs"]),
                         ("Reply-To", [row["reply_to"]] if row["reply_to"] else [])):  # fmt: skip
        if values and not all(PLAIN_ADDRESS.fullmatch(value) and "=?" not in value for value in values):
            return None
        if values:
            head.append(f"{name}: {', '.join(values)}")
    date = format_datetime(row["scheduled_at"] or row["created_at"])
    head += [f"Subject: {subject}", f"Date: {date}", f"Message-ID: {row['message_id']}"]
    if any(len(line) > MAX_LINE for line in head):
        return None
    if len(parts) == 1:
        lines = [*head, *_part_head(parts[0][1]), "", bodies[0]]
    else:  # text and HTML: multipart/alternative, laid out as the email package lays it out
        boundary = BOUNDARY % random.randrange(sys.maxsize)  # the email package's own kind of boundary
        lines = [*head, "MIME-Version: 1.0", "Content-Type: multipart/alternative;", f' boundary="{boundary}"', "",
                 f"--{boundary}", *_part_head("plain")[:2], "", bodies[0], "",
                 f"--{boundary}", *_part_head("html"), "", bodies[1], "", f"--{boundary}--"]  # fmt: skip
    return "\r\n".join(lines).encode("ascii") + b"\r\n"


def _body(text):
    # Taken as 7bit: ASCII, no line longer than MAX_LINE, no NUL (for serialise's checks to refuse), and no
    # run of "=" that a multipart boundary starts with (the email package would pick another boundary).
    if not text.isascii() or "\0" in text or "=" * 15 in text:
        return None
    lines = text.encode("ascii").splitlines()  # as the email package splits them: CRLF, CR or LF
    if not lines or max(len(line) for line in lines) > MAX_LINE:
        return None
    return b"\r\n".join(lines).decode("ascii")


def _part_head(subtype):
    return [f'Content-Type: text/{subtype}; charset="utf-8"', "Content-Transfer-Encoding: 7bit", "MIME-Version: 1.0"]
