"""Opaque pagination cursors: a position (created_at, id) in a list, packed, checksummed, URL-safe.

The position is not a secret (`created_before` reaches any point of the list), so the checksum is
keyed only to tell a cursor this service made from a corrupted or edited one: those get a 400
instead of a page that starts somewhere unexpected.
"""

import base64
import binascii
import hashlib
import hmac
import struct
import uuid
from datetime import UTC, datetime, timedelta

VERSION = 1
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_LAYOUT = struct.Struct(">Bq16s")  # version, microseconds since the epoch, id
_DIGEST_SIZE = 8
_KEY = b"emailsvc email-log cursor"


class InvalidCursor(ValueError):
    """The text is not a cursor this service made."""


def _digest(payload):
    return hashlib.blake2b(payload, key=_KEY, digest_size=_DIGEST_SIZE).digest()


def encode_cursor(created_at, row_id):
    """Return the cursor pointing at the row with this created_at and id."""
    micros = (created_at - EPOCH) // timedelta(microseconds=1)
    payload = _LAYOUT.pack(VERSION, micros, row_id.bytes)
    return base64.urlsafe_b64encode(payload + _digest(payload)).rstrip(b"=").decode()


def decode_cursor(text):
    """Return (created_at, id) from a cursor, or raise InvalidCursor."""
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise InvalidCursor("Not a valid cursor.") from exc
    payload, digest = raw[:-_DIGEST_SIZE], raw[-_DIGEST_SIZE:]
    if len(payload) != _LAYOUT.size or not hmac.compare_digest(digest, _digest(payload)):
        raise InvalidCursor("Not a valid cursor.")
    version, micros, id_bytes = _LAYOUT.unpack(payload)
    if version != VERSION:
        raise InvalidCursor("This cursor is from an older version; start again from the first page.")
    try:
        created_at = EPOCH + timedelta(microseconds=micros)
    except OverflowError as exc:
        raise InvalidCursor("Not a valid cursor.") from exc
    return created_at, uuid.UUID(bytes=id_bytes)
