"""Valid API keys remembered by each process, so a request's key costs no database round trip, and a
revoked key is still refused at once.

Every revocation replaces a random token in Redis (REVOCATIONS) before `api-keys revoke` returns. The
rate-limit count every request already makes reads that token in the same script (limits.py), and
a remembered key stands only when the token is the one it was remembered under; otherwise it is
looked up again. A key is remembered under the token this process had read before the look-up
began, so a revocation committed after that read always changes the token the key is checked
against. A request whose count did not reach Redis (Redis away: the limiter counts in memory) reads
no token and trusts nothing remembered. Whatever happens to Redis, a key is looked up again once
it has been remembered for TRUST_SECONDS, which is also how `last_used_at` stays current.
"""

import logging
import time
import uuid
from typing import NamedTuple

from flask import current_app, g, has_request_context
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

REVOCATIONS = "emailsvc:key-revocations"
TRUST_SECONDS = 60
REMEMBERED = 10_000  # keys one process remembers at most; the oldest are forgotten first


class Remembered(NamedTuple):
    row: dict
    token: str | None  # the revocation token read before the look-up; None: none read yet, never trusted
    at: float  # time.monotonic() of the look-up


class KeyMemory:
    """One process's remembered keys (by key hash), and the revocation token it read last."""

    def __init__(self):
        self.keys = {}
        self.last_token = None

    def recall(self, digest):
        """Return the Remembered of the key with this hash, unless it is older than TRUST_SECONDS."""
        remembered = self.keys.get(digest)
        if remembered is None or time.monotonic() - remembered.at >= TRUST_SECONDS:
            return None
        return remembered

    def remember(self, digest, row, token):
        """Keep a valid key's row, looked up after the revocation token `token` was read."""
        if len(self.keys) >= REMEMBERED:
            self.keys.pop(next(iter(self.keys), None), None)  # another thread may be forgetting the same one
        self.keys[digest] = Remembered(row, token, time.monotonic())

    def forget(self, digest):
        self.keys.pop(digest, None)


def saw_token(token):
    """Note the revocation token a request's rate-limit count read (called by the limiter's storage)."""
    if has_request_context():
        g.revocation_token = token
        current_app.extensions["emailsvc.keys"].last_token = token


def confirmed(remembered):
    """True when the request's count read the token `remembered` was remembered under."""
    return remembered.token is not None and g.get("revocation_token") == remembered.token


def announce_revocation(redis, revoked_at):
    """Make every process look its keys up again; return only once each will (`revoked_at`: time.monotonic() of
    the revocation's commit). Without Redis, wait until no remembered key can be trusted any more."""
    deadline = revoked_at + TRUST_SECONDS + 1
    while True:
        try:
            redis.set(REVOCATIONS, uuid.uuid4().hex)
            return True
        except RedisError:
            if time.monotonic() >= deadline:
                return False
            log.warning("key revocation: Redis unavailable; retrying until every process looks its keys up again")
            time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
