"""flask-limiter's Limiter with its per-request check narrowed to the limits emailsvc configures.

flask-limiter resolves every request's limits through its general machinery: it re-parses each limit
string into new objects, merges decorated, blueprint, application and meta limits through ordered sets,
and looks up exemption scopes, then counts each limit through its strategy and storage, building its key
again each time. emailsvc sets default limits only (emailsvc/limits.py: fixed strings, `shared` scopes,
`exempt_when`, `cost`), and its storage counts every window of a request in one EVALSHA.

`CountingLimiter` checks, at the first request, that nothing else is configured, and then asks the
storage (limits.py: WindowRedisStorage.count_request) for every window of each request at once, each
with the count flask-limiter would compare with its limit. From those it builds what flask-limiter's
check does: the same filters and exemptions, the same `RequestLimit`s for the headers, up to the first
breached limit, and the same RateLimitExceeded (the tightest breached limit) for a refusal. While Redis
is away it hands the request to flask-limiter's own check, which counts in memory
(`in_memory_fallback_enabled`) and looks for Redis again. It builds on flask-limiter's internals
(`flask-limiter~=4.1` in requirements.txt): tests/test_limiter.py answers the same requests with it
and with the unchanged Limiter, so an upgrade that changes the check fails there.
"""

from flask.globals import request_ctx
from flask_limiter import Limiter, RequestLimit
from flask_limiter.errors import RateLimitExceeded


class CountingLimiter(Limiter):
    """A Limiter of plain default limits, counted by a storage with `count_request` (limits.py). Any other kind
    of limit or exemption (decorated, blueprint, application, meta, per method, conditional) raises
    RuntimeError at the first request rather than being ignored."""

    _resolved = None  # the default limits, once checked

    @property
    def context(self):
        """flask-limiter's state of the current request, read from the request context itself: flask-limiter
        looks through its context-local proxy twice each time, five times a request."""
        try:
            return request_ctx._get_current_object()._limiter_request_context[self]
        except AttributeError:  # the request's first: flask-limiter makes it
            return super().context

    def _check_request_limit(self, callable_name=None, in_middleware=True):
        if self._storage_dead:
            return super()._check_request_limit(callable_name, in_middleware)
        endpoint = self.identify_request()
        exempt = not endpoint or endpoint.split(".")[-1] == "static" or any(fn() for fn in self._request_filters)
        if exempt or not self.enabled:
            return None
        self._resolved or self._resolve()  # outside the try: a limit it cannot check is no storage error
        try:
            return self._check()
        except RateLimitExceeded:
            raise
        except Exception:
            # What flask-limiter does when its storage fails: count in memory from now on, this request too.
            self.logger.warning("Rate limit storage unreachable - falling back to in-memory storage")
            self._storage_dead = True
            self.context.seen_limits.clear()
            return super()._check_request_limit(callable_name, in_middleware)

    def _resolve(self):
        """The default limits; RuntimeError if anything else is configured."""
        manager = self.limit_manager
        limits = manager.default_limits
        others = (manager._decorated_limits or manager._blueprint_limits or manager._application_limits
                  or manager._route_exemptions or manager._blueprint_exemptions)  # fmt: skip
        special = any(lim.methods or lim.per_method or lim.deduct_when or lim.on_breach for lim in limits)
        if others or special or self._meta_limits or self._key_prefix or self._on_breach:
            raise RuntimeError("CountingLimiter checks plain default limits only")
        self._resolved = limits
        return limits

    def _check(self):
        counted, breached = [], None
        # Each limit, in flask-limiter's order, with its key function's value and scope, and its count.
        for lim, args, verdict in self._storage.count_request():
            if not all(args):
                self.logger.error(f"Skipping limit: {lim.limit}. Empty value found in parameters.")
                continue
            counted.append(RequestLimit(self, lim.limit, args, False, lim.shared))
            if verdict > lim.limit.amount:  # what flask-limiter's strategy compares (FixedWindowRateLimiter.hit)
                self.logger.info("ratelimit %s (%s) exceeded at endpoint: %s", lim.limit, args[0], args[1])
                counted[-1].breached, breached = True, lim
                break  # flask-limiter's default (fail_on_first_breach): the limits after it are left out
        context = self.context
        context.view_rate_limits = counted
        context.view_rate_limit = counted[-1] if breached else (counted[0] if counted else None)
        if breached:
            raise RateLimitExceeded(breached)
        return None
