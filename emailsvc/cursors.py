"""Opaque pagination cursors: a position (created_at, key) in a list, packed, checksummed, URL-safe.

Every list is ordered by (created_at, key), newest first or oldest first; the key (a UUID, or text
such as a suppressed address) breaks ties, so no row is dropped or repeated between pages.

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
_LAYOUT = struct.Struct(">Bq?")  # version, microseconds since the epoch, whether the key is a UUID; then the key
_DIGEST_SIZE = 8
_KEY = b"emailsvc email-log cursor"


class InvalidCursor(ValueError):
    """The text is not a cursor this service made."""


def _digest(payload):
    return hashlib.blake2b(payload, key=_KEY, digest_size=_DIGEST_SIZE).digest()


def encode_cursor(created_at, key):
    """Return the cursor pointing at the row with this created_at and key (a UUID or a string)."""
    micros = (created_at - EPOCH) // timedelta(microseconds=1)
    is_uuid = isinstance(key, uuid.UUID)
    payload = _LAYOUT.pack(VERSION, micros, is_uuid) + (key.bytes if is_uuid else key.encode())
    return base64.urlsafe_b64encode(payload + _digest(payload)).rstrip(b"=").decode()


def decode_cursor(text):
    """Return (created_at, key) from a cursor, or raise InvalidCursor."""
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise InvalidCursor("Not a valid cursor.") from exc
    payload, digest = raw[:-_DIGEST_SIZE], raw[-_DIGEST_SIZE:]
    if len(payload) < _LAYOUT.size or not hmac.compare_digest(digest, _digest(payload)):
        raise InvalidCursor("Not a valid cursor.")
    version, micros, is_uuid = _LAYOUT.unpack_from(payload)
    if version != VERSION:
        raise InvalidCursor("This cursor is from an older version; start again from the first page.")
    try:
        created_at = EPOCH + timedelta(microseconds=micros)
        key_bytes = payload[_LAYOUT.size :]
        return created_at, uuid.UUID(bytes=key_bytes) if is_uuid else key_bytes.decode()
    except (OverflowError, ValueError) as exc:
        raise InvalidCursor("Not a valid cursor.") from exc


def split_page(rows, limit, key):
    """Split `limit + 1` fetched rows into the page and the cursor of the next one (None on the last page)."""
    if len(rows) <= limit:
        return rows, None
    return rows[:limit], encode_cursor(*key(rows[limit - 1]))
