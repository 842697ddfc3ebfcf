"""What the next layer makes of a header: values checked as Python's email package decodes them, and
built messages checked as they will be serialised, so no request can add, split or end a header.

Python's email package decodes RFC 2047 encoded words (any charset, q or b, adjacent or glued to
text) when a header is set, and before CPython 3.11.10 / 3.12.5 / 3.13.0 (CVE-2024-6923) wrote the
decoded CR/LF out verbatim. So a value is judged by its decoded form, decoded by the same parser
(`policy.default.header_factory`) the builder uses, and a built message is serialised and read back
before it is handed to SMTP.
"""

import re
from email import policy

# C0 and C1 controls (NEL among them), DEL, and what Python's email package also treats as line breaks (U+2028/9).
CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
ENCODED_WORD_START = "=?"
NO_CONTROLS = "Must not contain line breaks or control characters, encoded or not."
NESTED = "Must not contain encoded words that decode to further encoded words."


class UnsafeMessage(ValueError):
    """The serialised message would not have exactly the headers it was built with."""


UNWRITABLE = "Cannot be written as a header (malformed encoded words)."


def decoded(name, value):
    """Return `value` as the header `name` holds it once Python's email package has decoded it."""
    if ENCODED_WORD_START not in value:
        return value  # without an encoded word the parser hands the text back unchanged
    return str(policy.default.header_factory(name, value))


def header_value_problem(name, value):
    """Return why `value` may not be the header `name`, or None when it is safe as SMTP will see it.

    The decoded form must hold no control character, and must not decode again: the builder re-parses
    what it is given, so an encoded word hidden inside another would be decoded there. And it must
    fold: some malformed words (an empty charset beside non-ASCII text) decode to bytes the folder
    cannot write, which would only fail later, in the worker.
    """
    if CONTROL_CHARS.search(value):
        return NO_CONTROLS
    if ENCODED_WORD_START not in value:
        return None
    header = policy.default.header_factory(name, value)
    once = str(header)
    if CONTROL_CHARS.search(once):
        return NO_CONTROLS
    if once != value and decoded(name, once) != once:
        return NESTED
    # Folding costs more than decoding; it can fail only on text it must encode again (not ASCII).
    return unwritable(header) if header.defects or not once.isascii() else None


def unwritable(header):
    """Return UNWRITABLE when the parsed `header` cannot be folded for the wire, else None."""
    try:
        header.fold(policy=policy.default)
    except (ValueError, LookupError, TypeError):  # UnicodeEncodeError is a ValueError
        return UNWRITABLE
    return None


def check_serialised(data, names):
    """Raise UnsafeMessage unless `data` (a serialised message, CRLF line ends) has exactly the
    headers `names`, in order, before its first blank line, and no bare CR or LF anywhere."""
    if b"\0" in data or b"\r" in data.replace(b"\r\n", b"") or b"\n" in data.replace(b"\r\n", b""):
        raise UnsafeMessage("The serialised message holds a bare CR, LF or NUL.")
    head, blank, _ = data.partition(b"\r\n\r\n")
    if not blank:
        raise UnsafeMessage("The serialised message has no body separator.")
    found = [line.split(b":", 1)[0].decode("ascii", "replace").lower()
             for line in head.split(b"\r\n") if line[:1] not in (b" ", b"\t")]  # fmt: skip
    if found != [name.lower() for name in names]:
        extra = [name for name in found if name not in {n.lower() for n in names}]
        raise UnsafeMessage(f"The serialised headers differ from those built (unexpected: {extra or 'none'}).")
