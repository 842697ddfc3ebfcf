"""A relay with latency for the benchmarks: an SMTP server that answers every DATA after a set delay.

    python bench/relay.py PORT [--delay-ms 100] [--host 127.0.0.1]

A real relay (a provider's endpoint, an MTA in another zone) takes tens to hundreds of milliseconds
per message; postfix's smtp-sink answers in microseconds. This server speaks enough ESMTP for
smtplib (EHLO/HELO, MAIL, RCPT, DATA, RSET, NOOP, QUIT; PIPELINING and 8BITMIME announced), holds
the reply to each message's final dot for `--delay-ms`, and discards bodies. Many connections are
served at once: a delay holds only its own connection, and commands pipelined behind a delayed
reply are answered after it, in order.

It counts what it accepts, so a benchmark can tell when N messages arrived without polling the
database. Two extra commands, on any connection: `XSTATS` answers
"250 messages=<n> recipients=<n> first=<t> last=<t> connections=<n>" (t: the relay's monotonic
clock, in seconds, at the first and last accepted message), `XRESET` zeroes the counts.

It is a raw asyncio protocol rather than aiosmtpd: aiosmtpd parses and keeps every message and
costs several times the CPU per message, which would make the relay, not the sender, the bound at
high rates. bench/relay_ceiling.py measures the ceiling.
"""

import argparse
import asyncio
import signal
import time

GREETING = b"220 relay.bench ESMTP latency relay\r\n"
EHLO = b"250-relay.bench\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-SIZE 52428800\r\n250 ENHANCEDSTATUSCODES\r\n"
MAX_LINE = 4096


class Stats:
    def __init__(self):
        self.connections = 0
        self.reset()

    def reset(self):
        self.messages = self.recipients = 0
        self.first = self.last = 0.0

    def accepted(self, recipients):
        now = time.monotonic()
        if not self.messages:
            self.first = now
        self.messages += 1
        self.recipients += recipients
        self.last = now

    def line(self):
        return (
            f"250 messages={self.messages} recipients={self.recipients} first={self.first:.6f} "
            f"last={self.last:.6f} connections={self.connections}\r\n"
        ).encode()


class RelayProtocol(asyncio.Protocol):
    def __init__(self, stats, delay):
        self.stats, self.delay = stats, delay
        self.buffer = b""
        self.in_data = False
        self.held = False  # a delayed reply is pending: later input waits behind it
        self.recipients = 0
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport
        self.stats.connections += 1
        transport.write(GREETING)

    def connection_lost(self, exc):
        self.stats.connections -= 1
        self.transport = None

    def data_received(self, data):
        self.buffer += data
        self.process()

    def process(self):
        while not self.held and self.transport is not None:
            if self.in_data:
                # The body is not kept: look for the final dot, and drop everything before it.
                end = self.buffer.find(b"\r\n.\r\n")
                if end < 0:
                    self.buffer = self.buffer[-4:]  # a terminator may straddle two reads
                    return
                self.buffer = self.buffer[end + 5 :]
                self.in_data = False
                self.stats.accepted(self.recipients)
                self.recipients = 0
                reply = b"250 2.0.0 Ok: queued\r\n"
                if self.delay:
                    self.held = True
                    asyncio.get_running_loop().call_later(self.delay, self.release, reply)
                    return
                self.transport.write(reply)
                continue
            end = self.buffer.find(b"\r\n")
            if end < 0:
                if len(self.buffer) > MAX_LINE:
                    self.transport.write(b"500 5.5.0 Line too long\r\n")
                    self.transport.close()
                return
            line, self.buffer = self.buffer[:end], self.buffer[end + 2 :]
            self.command(line)

    def release(self, reply):
        self.held = False
        if self.transport is not None:
            self.transport.write(reply)
            self.process()

    def command(self, line):
        verb = line[:4].upper()
        write = self.transport.write
        if verb == b"EHLO":
            write(EHLO)
        elif verb == b"HELO":
            write(b"250 relay.bench\r\n")
        elif verb == b"MAIL":
            self.recipients = 0
            write(b"250 2.1.0 Ok\r\n")
        elif verb == b"RCPT":
            self.recipients += 1
            write(b"250 2.1.5 Ok\r\n")
        elif verb == b"DATA":
            self.in_data = True
            # The body starts a line: the final dot of an empty body is found like any other.
            self.buffer = b"\r\n" + self.buffer
            write(b"354 End data with <CR><LF>.<CR><LF>\r\n")
        elif verb == b"RSET":
            self.recipients = 0
            write(b"250 2.0.0 Ok\r\n")
        elif verb == b"NOOP":
            write(b"250 2.0.0 Ok\r\n")
        elif verb == b"QUIT":
            write(b"221 2.0.0 Bye\r\n")
            self.transport.close()
        elif line.upper() == b"XSTATS":
            write(self.stats.line())
        elif line.upper() == b"XRESET":
            self.stats.reset()
            write(b"250 2.0.0 Reset\r\n")
        else:
            write(b"502 5.5.2 Command not recognized\r\n")


async def serve(host, port, delay):
    loop = asyncio.get_running_loop()
    stats = Stats()
    server = await loop.create_server(lambda: RelayProtocol(stats, delay), host, port, backlog=1024)
    stop = loop.create_future()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set_result, None)
    async with server:
        await stop


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("port", type=int)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--delay-ms", type=float, default=0.0, help="wait this long before answering each DATA")
    args = parser.parse_args()
    asyncio.run(serve(args.host, args.port, args.delay_ms / 1000))


if __name__ == "__main__":
    main()
