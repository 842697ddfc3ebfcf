"""Rate limits (flask-limiter, counted in Redis): RATELIMIT_DEFAULT over every route, extra route limits,
RATELIMIT_PROJECT across all of a project's keys, and RATELIMIT_MESSAGES, the messages a key sends
(taken only when the whole request fits).

Every window a request counts is counted in one round trip (INCR_WITH_TTL), which also reads the key
revocation token (key_memory.py). CountingLimiter (limiter.py) asks WindowRedisStorage.count_request
for them all at once; flask-limiter's own check (the request on which Redis is found again after an
outage) asks `incr` for one window at a time, and the first counts them all. add_headers writes the
X-RateLimit-* headers from those counts. Each limit's exemption, key and cost are functions of the
request's Facts, read once a count. A look-up through one of Flask's context-local proxies (`request`, `g`)
costs about 10k instructions, some ten times a limit's own arithmetic: this path reads the object behind
each proxy once (`_get_current_object()`) and its attributes from there.
"""

import functools
import logging
import math
import time
import uuid
from typing import NamedTuple

from flask import current_app, g, request
from flask_limiter import Limit
from limits import parse, parse_many
from limits.storage import RedisStorage
from redis.exceptions import RedisError

from .errors import ApiError
from .key_memory import REVOCATIONS, saw_token
from .limiter import CountingLimiter
from .redis_scripts import run_script
from .schemas import MAX_BATCH
from .web import json_body

log = logging.getLogger(__name__)

# Load balancers poll the probes many times a second, and a probe must never be refused.
UNLIMITED = {"health.healthz", "health.readyz"}
# Extra limits, each counted on its own on top of RATELIMIT_DEFAULT: scope → (the setting holding it, the
# endpoints it counts together). A batch is one request of RATELIMIT_SEND, and a resend is a send.
SENDING = {"emails.send", "emails.batch", "lifecycle.resend"}
ROUTE_LIMITS = {
    "emails.send": ("RATELIMIT_SEND", SENDING),
    "delivery_events.receive": ("RATELIMIT_DELIVERY_EVENTS", {"delivery_events.receive"}),
}
# The relay's delivery events carry no API key and all come from its few addresses, in bursts after
# an outage: only their own (generous) per-address limit counts them, not RATELIMIT_DEFAULT.
OWN_LIMIT_ONLY = {"delivery_events.receive"}
PROJECT_SCOPE = "project"
KEY_MARK = "\x00"  # stands for a key function's value in a limit's key (window_keys); never in one
MESSAGES_SCOPE = "messages"

# Fixed windows (KEYS, with ARGV holding each one's expiry, amount and cap in turn): the first hit starts a
# window; each count comes back with its TTL and whether it was taken, all in the same round trip. A
# window with cap 0 is always counted (a request is counted, refused or not). A window with a cap is
# taken only when it fits under its cap and every window counted before it is within its own limit
# (passed as its cap, negated, so it is still counted): the messages of a refused request are not taken.
# A key after the windows (KEYS, one more than ARGV's triples) is the revocation token of key_memory.py:
# its value is answered after the windows' counts, set first to the last ARGV when Redis has none.
INCR_WITH_TTL = """
local answers = {}
local fits = true
local windows = math.floor(#ARGV / 3)
for i = 1, windows do
    local key = KEYS[i]
    local amount, cap = tonumber(ARGV[3 * i - 1]), tonumber(ARGV[3 * i])
    local current, taken = 0, 1
    if cap > 0 then
        current = tonumber(redis.call("get", key) or "0")
        if fits and current + amount <= cap then
            current = redis.call("incrby", key, amount)
        else
            taken = 0
        end
    else
        current = redis.call("incrby", key, amount)
        if cap < 0 and current > -cap then
            fits = false
        end
    end
    if taken == 1 and current == amount then
        redis.call("expire", key, ARGV[3 * i - 2])
    end
    answers[i] = {current, redis.call("ttl", key), taken}
end
if #KEYS > windows then
    local token = redis.call("get", KEYS[windows + 1])
    if not token then
        token = ARGV[#ARGV]
        redis.call("set", KEYS[windows + 1], token)
    end
    answers[windows + 1] = token
end
return answers
"""


class WindowRedisStorage(RedisStorage):
    """Redis storage that counts every window of a request (`planned_windows`) in one EVALSHA, answering each
    one's count with its window's end, so the per-key, per-route and per-project limits and the headers
    together cost one round trip. The same EVALSHA reads the key revocation token (key_memory.py)."""

    STORAGE_SCHEME = ["emailsvc+redis"]
    planned_windows = staticmethod(lambda: [])  # set by init_limiter: the current request's windows

    def initialize_storage(self, uri):
        super().initialize_storage(uri)
        self.lua_incr_with_ttl = self.get_connection().register_script(INCR_WITH_TTL)

    def count_request(self):
        """Count every window of the current request; return (limit, request arguments, verdict) of each, in
        the order flask-limiter checks its limits (the verdict is what it compares with the limit)."""
        windows = self.planned_windows()
        if not windows:
            return []
        seen = self.count(windows)
        return [(lim, args, seen[key][2]) for key, _, _, _, lim, args in windows]

    def incr(self, key, expiry, amount=1):
        """flask-limiter's own count of one window: the first of a request counts every window the request
        will count, and the others get the count already made."""
        counts = request_counts()
        if key in counts.ahead:
            counts.ahead.discard(key)
            return counts.seen[key][2]
        windows = [w for w in self.planned_windows() if w[0] not in counts.seen]
        if not any(w[0] == key for w in windows):
            windows.append((key, expiry, amount, 0))
        counts.ahead.update(w[0] for w in windows if w[0] != key)
        return self.count(windows)[key][2]

    def count(self, windows):
        """Count `windows` ((key, expiry, amount, cap, ...), as planned_windows gives them) in one EVALSHA, and
        read the revocation token in it; keep each one's (count, window end, verdict) in the request's counts,
        and the messages taken, and return those counts by key. A window not taken has a verdict over its limit,
        however many are left."""
        windows = sorted(windows, key=lambda w: w[3] > 0)  # the windows taken only when the rest fit come last
        *answers, token = run_script(
            self.lua_incr_with_ttl,
            [*(self.prefixed_key(w[0]) for w in windows), REVOCATIONS],
            [*(arg for w in windows for arg in w[1:4]), uuid.uuid4().hex],
        )
        saw_token(token.decode() if isinstance(token, bytes) else token)
        counts, now = request_counts(), time.time()
        seen = counts.seen
        for (key, _, amount, cap, *_), (count, ttl, taken) in zip(windows, answers, strict=True):
            seen[key] = (count, now + max(ttl, 0), count if taken else cap + 1)
            if cap > 0 and taken:
                counts.taken = (self.prefixed_key(key), amount)
        return seen

    def give_back(self, counts, response):
        """Return the messages a request took when it was not accepted (a 4xx or 5xx): they were not sent."""
        if counts.taken is None or response.status_code < 400:
            return
        (prefixed, amount), counts.taken = counts.taken, None
        try:
            self.get_connection().decrby(prefixed, amount)
        except RedisError:  # the count stays a little high until the window ends
            log.warning("rate-limit refund skipped: Redis unavailable")
            return
        for window_key, (count, end, verdict) in counts.seen.items():
            if self.prefixed_key(window_key) == prefixed:
                counts.seen[window_key] = (count - amount, end, verdict)


class RequestCounts:
    """What a request's EVALSHA answered: (count, window end, verdict) by limit key; the keys it counted before
    flask-limiter asked for them (incr); the messages it took, as (prefixed key, amount), or None."""

    __slots__ = ("seen", "ahead", "taken")

    def __init__(self):
        self.seen, self.ahead, self.taken = {}, set(), None


def request_counts():
    """The current request's RequestCounts, made at the first call."""
    request_globals = g._get_current_object()
    counts = request_globals.get("rate_counts")
    if counts is None:
        counts = request_globals.rate_counts = RequestCounts()
    return counts


class Facts(NamedTuple):
    """What a limit's exemption, key and cost depend on, read once a count."""

    endpoint: str | None
    api_key: dict | None  # the row of the request's valid API key
    dry_run: bool  # a send or batch with ?dry_run=true: it sends nothing, and only RATELIMIT_DEFAULT counts it


def request_facts():
    """The current request's Facts."""
    req = request._get_current_object()
    endpoint, args = req.endpoint, req.args
    dry_run = endpoint in SENDING and "dry_run" in args and args["dry_run"] == "true"  # get() raises when absent
    return Facts(endpoint, g._get_current_object().get("api_key"), dry_run)


def client_key():
    """Count per API key when the request carries a valid one, else per client address (after ProxyFix)."""
    return _by_client(request_facts())


def _by_client(facts):
    api_key = facts.api_key
    return f"key:{api_key['id']}" if api_key else f"addr:{request.remote_addr}"


def _by_project(facts):
    """Count RATELIMIT_PROJECT per project, over all of its keys."""
    return f"project:{facts.api_key['project_id']}"


def _not_at(endpoints, facts):
    return facts.endpoint not in endpoints


def _not_sending(endpoints, facts):
    return facts.endpoint not in endpoints or facts.dry_run


def messages_left():
    """{"limit", "remaining"} of the key's RATELIMIT_MESSAGES (its first window), read without taking any."""
    limiter = current_app.extensions["emailsvc.limiter"]
    item = parse_many(current_app.config["RATELIMIT_MESSAGES"])[0]
    try:
        _, remaining = limiter.limiter.get_window_stats(item, client_key(), MESSAGES_SCOPE)
    except RedisError:
        remaining = None  # unknown while Redis is away
    return {"limit": item.amount, "remaining": remaining}


def message_count(facts):
    """The messages a send or batch asks to send: what RATELIMIT_MESSAGES takes (a malformed batch: 1; one
    without a valid key: 1, unread, since it is refused (401) whatever it holds)."""
    if facts.endpoint != "emails.batch" or facts.api_key is None:
        return 1
    try:
        body = json_body()  # parsed once, here or in the view, and refused (here: counted as 1) by the same checks
    except ApiError:
        return 1
    messages = body.get("messages")
    return min(len(messages), MAX_BATCH) if isinstance(messages, list) and messages else 1


def _own_limit_only(facts):
    return facts.endpoint in OWN_LIMIT_ONLY


def _without_key(facts):
    return facts.api_key is None


def limit_definitions(config):
    """Every limit as (setting's value, key function, scope, exemption, cost), each function of the request's
    Facts: what flask-limiter counts, and what planned_windows counts; `shared` scopes, so each is one count
    across routes. A limit with a cost (RATELIMIT_MESSAGES) takes that many, and only when the request fits
    every other limit too."""
    definitions = [(config["RATELIMIT_DEFAULT"], _by_client, "all", _own_limit_only, None)]
    for scope, (setting, endpoints) in ROUTE_LIMITS.items():
        exempt = functools.partial(_not_sending if endpoints == SENDING else _not_at, endpoints)
        definitions.append((config[setting], _by_client, scope, exempt, None))
    if config["RATELIMIT_PROJECT"]:
        definitions.append((config["RATELIMIT_PROJECT"], _by_project, PROJECT_SCOPE, _without_key, None))
    exempt = functools.partial(_not_sending, SENDING)
    definitions.append((config["RATELIMIT_MESSAGES"], _by_client, MESSAGES_SCOPE, exempt, message_count))
    return definitions


def _as_flask_limiter_calls_it(function):
    """`function` of the request's Facts, called without arguments (a Limit's functions), or None."""
    return function and (lambda: function(request_facts()))


def flask_limiter_limits(definitions):
    """The Limit of each of `definitions` (limit_definitions): all "default" limits, so flask-limiter never reads
    its own RATELIMIT_DEFAULT setting (the same name as ours) as a second, per-route limit."""
    return [
        Limit(value, key_function=_as_flask_limiter_calls_it(key_function), scope=scope, shared=True,
              exempt_when=_as_flask_limiter_calls_it(exempt), cost=_as_flask_limiter_calls_it(cost))
        for value, key_function, scope, exempt, cost in definitions
    ]  # fmt: skip


def window_keys(limits, definitions):
    """What planned_windows needs of each limit, in the order flask-limiter checks them (by window length),
    made once: the limit (a RuntimeLimit of `limits`, the Limits of `definitions`), its key as a pair
    (before, after) around the key function's value (what `key_for(value, scope)` gives), its scope, expiry
    and cap (INCR_WITH_TTL), and its definition's exemption, key function and cost."""
    keyed = [
        (lim, *lim.limit.key_for(KEY_MARK, scope).split(KEY_MARK), scope, lim.limit.get_expiry(),
         lim.limit.amount if cost else -lim.limit.amount, exempt, key_function, cost)
        for limit, (_, key_function, scope, exempt, cost) in zip(limits, definitions, strict=True)
        for lim in limit
    ]  # fmt: skip
    return sorted(keyed, key=lambda entry: entry[0].limit)  # as flask-limiter and CountingLimiter sort them


def planned_windows(keyed):
    """Return (key, expiry, amount, cap, limit, request arguments) of every window the current request counts,
    in the order flask-limiter checks its limits, keyed as it keys them: cap is the limit for a window taken
    only when it fits (INCR_WITH_TTL), else minus the limit; the arguments are the key function's value and
    the scope. `keyed` is what window_keys returns. (Health probes are never counted: the request filter.)
    """
    facts = request_facts()
    windows = []
    for lim, before, after, scope, expiry, cap, exempt, key_function, cost in keyed:
        if not exempt(facts):
            value = key_function(facts)
            windows.append((f"{before}{value}{after}", expiry, cost(facts) if cost else 1, cap, lim, [value, scope]))
    return windows


def add_headers(limiter, response):
    """X-RateLimit-* of the limit closest to running out on every counted response; Retry-After on a 429.
    Messages a request took but did not send are given back first."""
    counts = g._get_current_object().get("rate_counts")  # None: nothing counted in Redis (a probe, Redis away)
    if counts is not None:
        limiter.storage.give_back(counts, response)
    counted = limiter.current_limits
    if not counted or "X-RateLimit-Limit" in response.headers:  # a refusal that wrote its own (unknown keys)
        return response
    seen = counts.seen if counts is not None else {}
    try:
        # (remaining, window end) of each: from this request's own counts when Redis gave them (no
        # storage look-up), else (the in-memory fallback) from flask-limiter.
        windows = [
            (max(0, c.limit.amount - seen[c.key][0]), seen[c.key][1]) if c.key in seen else c.window[::-1]
            for c in counted
        ]
    except RedisError:  # Redis went away since the count; the response matters more than its headers
        log.warning("rate-limit headers skipped: Redis unavailable")
        return response
    breached = [n for n, c in enumerate(counted) if c.breached]
    n = breached[0] if breached else min(range(len(counted)), key=lambda n: windows[n][0])
    tightest, (remaining, window_end) = counted[n], windows[n]
    response.headers["X-RateLimit-Limit"] = str(tightest.limit.amount)
    response.headers["X-RateLimit-Remaining"] = str(remaining)
    response.headers["X-RateLimit-Reset"] = str(math.ceil(window_end))
    if response.status_code == 429:
        response.headers["Retry-After"] = str(max(1, math.ceil(window_end - time.time())))
    return response


class UnknownKeys:
    """Unknown API keys, counted per client address (RATELIMIT_UNKNOWN_KEYS), so guessing costs no database.

    Only a failed look-up costs a Redis command (the count, shared by every process). Once an
    address's count reaches the limit, this process remembers it until the window ends, and its keys
    are refused (429) before any look-up: a valid key's path costs a dictionary look-up, no round
    trip, and nothing positive is cached, so a revoked key stays refused at once. Each process makes
    at most one look-up more before it learns of the limit.
    """

    KEY = "emailsvc:unknown-keys:{}"
    REMEMBERED = 10_000  # addresses kept in memory at most; expired ones go first

    def __init__(self, redis, limit):
        self.limit = parse(limit)
        self.count = redis.register_script(INCR_WITH_TTL)
        self.blocked = {}  # client address -> time.time() when its window ends

    def retry_after(self, address):
        """Return the seconds `address` must wait before its keys are looked up again, or 0."""
        until = self.blocked.get(address)
        if until is None:
            return 0
        if until <= time.time():
            self.blocked.pop(address, None)
            return 0
        return max(1, math.ceil(until - time.time()))

    def failed(self, address):
        """Count a key from `address` that matched no active key."""
        try:
            [(count, ttl, _)] = self.count([self.KEY.format(address)], [self.limit.get_expiry(), 1, 0])
        except RedisError:  # without the count the look-up still guards; nobody is locked out
            log.warning("unknown-key count skipped: Redis unavailable")
            return
        if count >= self.limit.amount:
            if len(self.blocked) >= self.REMEMBERED:  # a flood from many addresses: forget the expired first
                now = time.time()
                self.blocked = {a: until for a, until in self.blocked.items() if until > now}
                while len(self.blocked) >= self.REMEMBERED:
                    self.blocked.pop(next(iter(self.blocked)))
            self.blocked[address] = time.time() + max(ttl, 1)


def _identify():
    """The request's identity for flask-limiter: None (not counted, as flask-limiter leaves a request it cannot
    identify) for a health probe; unknown routes and wrong methods count too, since probing is traffic."""
    endpoint = request._get_current_object().endpoint
    return None if endpoint in UNLIMITED else endpoint or "unrouted"


def init_limiter(app):
    """Count every request but health probes; register after load_api_key, whose g.api_key it counts by."""
    definitions = limit_definitions(app.config)
    limits = flask_limiter_limits(definitions)
    keyed = window_keys(limits, definitions)  # a malformed limit stops the app here, at start, not at each request
    app.extensions["emailsvc.unknown_keys"] = UnknownKeys(
        app.extensions["emailsvc"].redis, app.config["RATELIMIT_UNKNOWN_KEYS"]
    )
    limiter = CountingLimiter(
        client_key,
        default_limits=limits,
        storage_uri="emailsvc+redis://",  # WindowRedisStorage
        # The queue's pool: same short timeouts, one set of connections per process.
        storage_options={"connection_pool": app.extensions["emailsvc"].redis.connection_pool},
        strategy="fixed-window",
        headers_enabled=False,  # add_headers writes them, without flask-limiter's Retry-After on every 200
        # Redis down: count in this process's memory instead, and look for Redis again with backoff
        # (at most every 32 s); any other limiter failure is logged, never a 500. See docs/api.md.
        in_memory_fallback_enabled=True,
        swallow_errors=True,
        request_identifier=_identify,
    )
    limiter.init_app(app)
    app.extensions["emailsvc.limiter"] = limiter
    limiter.storage.planned_windows = functools.partial(planned_windows, keyed)
    app.after_request(functools.partial(add_headers, limiter))
    return limiter
