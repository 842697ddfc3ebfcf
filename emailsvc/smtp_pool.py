"""The SMTP connections of one process: up to SMTP_MAX_CONNECTIONS, lent one per send, reused, closed when idle.

A sending process runs SMTP_CONCURRENCY deliveries at once (emailsvc/sending.py); each borrows a
Mailer for its send and gives it back, so a connection carries message after message. A delivery
that finds every connection lent waits for one: the cap is what keeps a small relay from being
flooded, whatever the concurrency. A mailer nobody has used for SMTP_IDLE_TIMEOUT seconds is closed
(QUIT) and dropped by a background thread, as relays drop idle sessions anyway.
"""

import logging
import os
import threading
import time
from contextlib import contextmanager

from .mailer import Mailer

log = logging.getLogger(__name__)


class MailerPool:
    """Mailers for one relay, created on demand up to `max_connections`, lent by `lease()`."""

    def __init__(self, settings, max_connections, idle_timeout):
        self.settings = settings  # the keyword arguments of Mailer
        self.max_connections = max_connections
        self.idle_timeout = idle_timeout
        self._idle = []  # (mailer, monotonic time it was given back), most recently returned last
        self._lent = 0
        self._closed = False
        self._changed = threading.Condition()
        self._closer_pid = None

    @contextmanager
    def lease(self):
        """Lend a mailer for one send, waiting while all `max_connections` are lent."""
        mailer = self._take()
        try:
            yield mailer
        finally:
            self._give_back(mailer)

    def _take(self):
        with self._changed:
            self._start_closer()
            while not self._idle and self._lent >= self.max_connections:
                self._changed.wait()
            self._lent += 1
            if self._idle:
                # The most recently used: a warm connection, and the rest of the pool ages out when traffic drops.
                return self._idle.pop()[0]
        return Mailer(**self.settings)

    def _give_back(self, mailer):
        with self._changed:
            self._lent -= 1
            if not self._closed:
                self._idle.append((mailer, time.monotonic()))
                self._changed.notify_all()
                return
        mailer.close()

    def close(self):
        """Close every idle connection now, and each lent one as it comes back."""
        with self._changed:
            self._closed = True
            idle, self._idle = self._idle, []
            self._changed.notify_all()
        for mailer, _ in idle:
            mailer.close()

    def _start_closer(self):
        # One closing thread per process (threads do not survive a fork), started by the first lease.
        if self._closer_pid != os.getpid():
            self._closer_pid = os.getpid()
            threading.Thread(target=self._close_idle_forever, name="smtp-idle-closer", daemon=True).start()

    def _close_idle_forever(self):
        while True:
            with self._changed:
                if self._closed:
                    return
                now = time.monotonic()
                count = sum(1 for _, since in self._idle if now - since >= self.idle_timeout)
                # The oldest are at the front; sleep until the next one is due, or until something changes.
                expired, self._idle = self._idle[:count], self._idle[count:]
                if not expired:
                    self._changed.wait(self._idle[0][1] + self.idle_timeout - now if self._idle else None)
                    continue
            for mailer, _ in expired:
                try:
                    mailer.close()
                except Exception:  # a broken connection must not stop the closing of the others
                    log.exception("closing an idle SMTP connection failed")
