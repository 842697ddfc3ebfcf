"""The parser's work a JSON body asks for, counted at C speed before it is parsed, and refused past what
its messages can need.

json.loads spends 40–130 ns a value, 600–900 ns an object key, and about 1 ns a byte of string: its
CPU grows with the number of values and keys, not with the bytes. Every value and key but the first
follows a `,` `:` `[` or `{` (a key's value follows its `:`), so that punctuation, counted outside
strings with each `:` weighing as much as a key costs, bounds the work. It is counted over the body's
structure (one `bytes.translate`) first; only a body over the cap there, such as a long text full of
commas, is counted again without what its strings hold.
"""

import json

from .errors import ApiError

# A key weighs as much as this many values (what it costs the parser beside one).
KEY_WEIGHT = 9
# A message's share: over twice what its variables can need (64 KiB of compact JSON: 43,690 values as
# `[],`, or 13,107 keys as `"":0,`, 131,000 with their weight), the rest of its fields at their caps
# (50 recipients, 50 headers, 20 metadata keys, 20 attachments) a few hundred more; and past the
# 262,000 values of a 10 MiB list of addresses, which validation refuses by counting (422). json.loads
# parses the most it allows in 25–50 ms: 40,000 keys, or 360,000 strings, numbers or empty objects.
VALUES_PER_MESSAGE = 360_000
# What a body's structure is made of: punctuation, brackets, and the quotes that say where strings are.
NOT_STRUCTURE = bytes(b for b in range(256) if b not in b'",:[]{}')
NOT_PUNCTUATION = bytes(b for b in range(256) if b not in b",:[{")
# Up to this many quotes, strings are found one by one; past it, cut out all at once.
FEW_QUOTES = 10_000


class TooManyValues(ApiError):
    """The body holds more JSON values than its messages can need."""

    status, code = 413, "payload_too_large"


def weight(data):
    """Weigh the `,` `:` `[` `{` bytes in `data`: one each, and a `:` (a key) KEY_WEIGHT."""
    return len(data.translate(None, NOT_PUNCTUATION)) + (KEY_WEIGHT - 1) * data.count(b":")


def weight_in_strings(data, most):
    """Weigh the punctuation inside the JSON strings of `data`, or return None when it holds more than
    `most` strings (each a value or key: too many already)."""
    if b"\\" in data:  # left to right, as the parser reads escapes: `\\` first, then `\"`; no other holds a quote
        data = data.replace(b"\\\\", b"").replace(b'\\"', b"")
    quotes = data.count(b'"')
    if quotes // 2 > most:
        return None
    if quotes <= FEW_QUOTES:  # a few strings, maybe long: cut them out where they are
        at = [-1]
        for _ in range(quotes):
            at.append(data.find(b'"', at[-1] + 1))
        return weight(b"".join(data[start + 1 : end] for start, end in zip(at[1::2], at[2::2], strict=False)))
    # Many: strings holding no punctuation go first, at C speed (two strings are never adjacent in JSON),
    # so only those holding some (a text with commas) are split apart.
    structure = data.translate(None, NOT_STRUCTURE).replace(b'""', b"")
    return weight(b"".join(structure.split(b'"')[1::2]))


def check_values(data, messages=1):
    """Refuse (413) a body holding more values than `messages` messages can need, before it is parsed."""
    cap = VALUES_PER_MESSAGE * messages
    if len(data) <= cap:  # even all keys (`"ab":0,`) parse in ~20 ms, and so do the deepest nestings
        return
    encoding = json.detect_encoding(data)
    if encoding not in ("utf-8", "utf-8-sig"):  # UTF-16 or -32: count what the parser will read
        data = data.decode(encoding, "replace").encode()
    total = weight(data)
    if total <= cap:
        return
    inside = weight_in_strings(data, cap)
    if inside is None or total - inside > cap:
        per = "a message needs" if messages == 1 else f"{messages:,} messages need"
        raise TooManyValues(f"The body holds more JSON values than {per} (at most {VALUES_PER_MESSAGE:,} each).")
