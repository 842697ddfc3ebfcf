"""flask-limiter's Limiter with its per-request check narrowed to the limits emailsvc configures.

flask-limiter resolves every request's limits through its general machinery: it re-parses each limit
string into new objects, merges decorated, blueprint, application and meta limits through ordered sets,
and looks up exemption scopes, all before counting anything. That was a fifth of a send's CPU, though
emailsvc sets default limits only (emailsvc/limits.py: fixed strings, `shared` scopes, `exempt_when`,
`cost`), and its storage counts every window of a request in one EVALSHA.

`CountingLimiter` resolves those limits once, at the first request, and checks each request against
them as flask-limiter does: the same filters, exemptions, scopes and keys, counted through
flask-limiter's own strategy and storage, the same `RequestLimit`s for the headers, and the same
RateLimitExceeded (the tightest breached limit) for a refusal. While Redis is away it hands the
request to flask-limiter's own check, which counts in memory (`in_memory_fallback_enabled`) and
looks for Redis again. It builds on flask-limiter's internals (`flask-limiter~=4.1` in
requirements.txt): tests/test_limiter.py answers the same requests with it and with the unchanged
Limiter, so an upgrade that changes the check fails there.
"""

import flask
from flask_limiter import Limiter, RequestLimit
from flask_limiter.errors import RateLimitExceeded


class CountingLimiter(Limiter):
    """A Limiter whose default limits are resolved once. Any other kind of limit or exemption (decorated,
    blueprint, application, meta, per method, conditional) raises RuntimeError at the first request rather
    than being ignored."""

    _resolved = None

    def _check_request_limit(self, callable_name=None, in_middleware=True):
        if self._storage_dead:
            return super()._check_request_limit(callable_name, in_middleware)
        endpoint = self.identify_request()
        exempt = not endpoint or endpoint.split(".")[-1] == "static" or any(fn() for fn in self._request_filters)
        if exempt or not self.enabled:
            return None
        limits = self._resolved or self._resolve()  # outside the try: a limit it cannot check is no storage error
        try:
            return self._check(endpoint, limits)
        except RateLimitExceeded:
            raise
        except Exception:
            # What flask-limiter does when its storage fails: count in memory from now on, this request too.
            self.logger.warning("Rate limit storage unreachable - falling back to in-memory storage")
            self._storage_dead = True
            self.context.seen_limits.clear()
            return super()._check_request_limit(callable_name, in_middleware)

    def _resolve(self):
        """The default limits, sorted as flask-limiter sorts them; RuntimeError if anything else is configured."""
        manager = self.limit_manager
        limits = sorted(manager.default_limits, key=lambda lim: lim.limit)
        others = (manager._decorated_limits or manager._blueprint_limits or manager._application_limits
                  or manager._route_exemptions or manager._blueprint_exemptions)  # fmt: skip
        special = any(lim.methods or lim.per_method or lim.deduct_when or lim.on_breach for lim in limits)
        if others or special or self._meta_limits or self._key_prefix or self._on_breach:
            raise RuntimeError("CountingLimiter checks plain default limits only")
        self._resolved = limits
        return limits

    def _check(self, endpoint, limits):
        context, method = self.context, flask.request.method
        counted, breached = [], None
        for lim in limits:
            if lim.is_exempt:
                continue
            args = [lim.key_func(), lim.scope_for(endpoint, method)]
            if not all(args):
                self.logger.error(f"Skipping limit: {lim.limit}. Empty value found in parameters.")
                continue
            counted.append(RequestLimit(self, lim.limit, args, False, lim.shared))
            if not self._limiter.hit(lim.limit, *args, cost=lim.deduction_amount):
                self.logger.info("ratelimit %s (%s) exceeded at endpoint: %s", lim.limit, args[0], args[1])
                counted[-1].breached, breached = True, lim
                break  # flask-limiter's default (fail_on_first_breach): the limits after it are not counted
        context.view_rate_limits = counted
        context.view_rate_limit = counted[-1] if breached else (counted[0] if counted else None)
        if breached:
            raise RateLimitExceeded(breached)
        return None
