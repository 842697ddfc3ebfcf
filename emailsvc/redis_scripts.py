"""The accept path's Redis scripts, one round trip each, on a connection of their own.

Every accepted send runs two scripts: the rate-limit count (limits.py) and the job write (rq_enqueue.py).
Through redis-py's client each call takes a connection from the pool (a lock, a liveness check that costs a
non-blocking `recv`, a release event), wraps the command in its retry policy and the response in its
callbacks: about 120 Python calls a command, more than the script costs Redis. `run_script` sends the same
EVALSHA on a connection each thread of each process keeps for itself, and reads the answer: the same bytes
on the wire, the same answer and errors.

What the client's path gives that matters here is kept: a script Redis forgot (a restart, SCRIPT FLUSH) is
loaded again and run, and a connection Redis closed (a restart, an idle timeout) is opened again and the
command sent once more, as the client's retry policy did. Unlike that policy, a timeout is not retried: the
script may have run. (Should a connection break after Redis ran a script, the retry counts the limits twice,
a little high until the window ends, or queues the job twice, which is harmless: a delivery claims its
message once.)
"""

import os
import threading
import weakref

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError

_local = threading.local()


def _connection(client):
    """This thread's connection to `client`'s server, opened with the client's own settings."""
    connections = getattr(_local, "connections", None)
    if connections is None or _local.pid != os.getpid():  # a forked child must not share its parent's socket
        connections = _local.connections = weakref.WeakKeyDictionary()  # closed with their client's pool
        _local.pid = os.getpid()
    pool = client.connection_pool
    conn = connections.get(pool)
    if conn is None:
        conn = connections[pool] = pool.connection_class(**pool.connection_kwargs)
    return conn


def run_script(script, keys, args):
    """Run `script` (a redis-py Script) with `keys` and `args` in one round trip; return its answer."""
    conn = _connection(script.registered_client)
    for attempt in (1, 2):
        try:
            try:
                conn.send_command("EVALSHA", script.sha, len(keys), *keys, *args)
                return conn.read_response()
            except NoScriptError:
                conn.send_command("SCRIPT", "LOAD", script.script)
                conn.read_response()
                conn.send_command("EVALSHA", script.sha, len(keys), *keys, *args)
                return conn.read_response()
        except RedisConnectionError:
            conn.disconnect()
            if attempt == 2:
                raise
        except BaseException:
            # Whatever else broke the exchange (a timeout, an interrupt) may leave an answer unread.
            conn.disconnect()
            raise
