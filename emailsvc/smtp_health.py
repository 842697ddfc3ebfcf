"""The relay's health as the workers last found it, kept in Redis for GET /readyz to show.

A relay that refuses connections, greets with an error, or lacks STARTTLS or AUTH when they are
configured is a configuration problem an operator must see; every message is retried meanwhile
(docs/delivery.md). Writes are rare: a process writes when its own view changes, and repeats it at
most every REFRESH seconds, so a steady stream of mail costs no Redis round trip for this.
"""

import json
import logging
import time
from datetime import UTC, datetime

from redis.exceptions import RedisError

log = logging.getLogger(__name__)
KEY = "emailsvc:smtp_health"
# The stages before MAIL: a failure there is the relay's or the configuration's, not a message's.
RELAY_STAGES = ("connect", "greeting", "ehlo", "starttls", "auth")
REFRESH = 30  # seconds: how stale another process's report may get before this one repeats its own
PROBLEM_TTL = 900  # a problem no worker has seen for this long is forgotten (no mail, no news)

_last = {"ok": None, "reason": None, "written": 0.0}  # this process's last write


def note(redis, failure):
    """Record what an attempt showed of the relay: `failure` (a mailer.Failure) or None when the session worked."""
    problem = failure if failure is not None and failure.stage in RELAY_STAGES else None
    ok, reason = problem is None, problem and f"{problem.stage}: {problem.reply}"
    now = time.monotonic()
    if (ok, reason) == (_last["ok"], _last["reason"]) and now - _last["written"] < REFRESH:
        return
    try:
        if ok:
            redis.delete(KEY)
        else:
            at = datetime.now(UTC).isoformat()
            redis.set(KEY, json.dumps({"reason": reason, "stage": problem.stage, "at": at}), ex=PROBLEM_TTL)
    except RedisError:  # the queue's own trouble will show; health is only information
        log.warning("could not record the SMTP relay's health in Redis")
        return
    _last.update(ok=ok, reason=reason, written=now)


def read(redis):
    """Return {"ok", "reason", "stage", "at"}: the last problem a worker met with the relay, or ok."""
    raw = redis.get(KEY)
    if raw is None:
        return {"ok": True, "reason": None, "stage": None, "at": None}
    return {"ok": False, **json.loads(raw)}
