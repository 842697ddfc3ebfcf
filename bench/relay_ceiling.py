"""How fast bench/relay.py takes mail, beside postfix's smtp-sink: so we know the relay is not the bound.

    python bench/relay_ceiling.py [--seconds 8] [--processes 4] [--connections 8] [--delay-ms 0]

Starts each relay, then PROCESSES load-generator processes, each holding CONNECTIONS SMTP
conversations (asyncio, MAIL/RCPT/DATA in one pipelined write as PIPELINING allows, the body after
the 354) pushing small messages for SECONDS. Prints, per relay, the messages/s the clients saw and
the relay's own CPU time per message (from /proc/<pid>/stat): on a shared 2-core machine the load
generator takes a core itself, so the CPU per message is the honest measure of the ceiling
(1 / CPU per message = what one core of relay could take).
"""

import argparse
import asyncio
import multiprocessing
import os
import tempfile
import time

from harness import cpu_seconds, free_port, listens, relay, smtp_sink, wait_until

ENVELOPE = b"MAIL FROM:<sender@example.com>\r\nRCPT TO:<reader@example.com>\r\nDATA\r\n"
BODY = (
    b"From: sender@example.com\r\nTo: reader@example.com\r\nSubject: Your order has shipped\r\n"
    b"Message-ID: <1@example.com>\r\n\r\nHello, your order 42 is on its way.\r\n.\r\n"
)


async def _reply(reader):
    """Read one (possibly multi-line) SMTP reply; return its code."""
    while True:
        line = await reader.readline()
        if not line:
            raise ConnectionError("relay closed the connection")
        if line[3:4] != b"-":
            return int(line[:3])


async def _conversation(port, deadline, counts):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    await _reply(reader)
    writer.write(b"EHLO load.bench\r\n")
    await _reply(reader)
    while time.monotonic() < deadline:
        writer.write(ENVELOPE)
        codes = [await _reply(reader) for _ in range(3)]
        writer.write(BODY)
        codes.append(await _reply(reader))
        if codes != [250, 250, 354, 250]:
            raise RuntimeError(f"unexpected replies {codes}")
        counts[0] += 1
    writer.write(b"QUIT\r\n")
    await _reply(reader)
    writer.close()


def _load(port, connections, seconds, result):
    counts = [0]

    async def run():
        deadline = time.monotonic() + seconds
        await asyncio.gather(*(_conversation(port, deadline, counts) for _ in range(connections)))

    asyncio.run(run())
    result.put(counts[0])


def measure(port, pid, processes, connections, seconds):
    result = multiprocessing.Queue()
    workers = [
        multiprocessing.Process(target=_load, args=(port, connections, seconds, result)) for _ in range(processes)
    ]
    cpu_before, started_at = cpu_seconds(pid), time.monotonic()
    for worker in workers:
        worker.start()
    sent = sum(result.get(timeout=seconds + 60) for _ in workers)
    elapsed = time.monotonic() - started_at
    for worker in workers:
        worker.join()
    cpu = cpu_seconds(pid) - cpu_before
    return sent, elapsed, cpu


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--connections", type=int, default=8, help="per load-generator process")
    parser.add_argument("--delay-ms", type=float, default=0)
    parser.add_argument("--no-sink", action="store_true", help="measure bench/relay.py only")
    args = parser.parse_args()
    log_dir = tempfile.mkdtemp(prefix="emailsvc-relay-")
    load = os.getloadavg()
    print(
        f"{args.processes} load processes x {args.connections} connections, {args.seconds:.0f} s, "
        f"relay delay {args.delay_ms:.0f} ms; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )
    relays = [("bench/relay.py", lambda port: relay(port, args.delay_ms, log_dir))]
    if not args.no_sink and not args.delay_ms:
        relays.append(("postfix smtp-sink", lambda port: smtp_sink(port, log_dir)))
    for name, start in relays:
        port = free_port()
        with start(port) as proc:
            wait_until(lambda p=port: listens(p), 10, name)
            pid = proc.pid
            sent, elapsed, cpu = measure(port, pid, args.processes, args.connections, args.seconds)
        per_message = cpu / max(sent, 1) * 1e6
        print(
            f"{name:20} {sent / elapsed:8,.0f} messages/s seen by the clients; relay CPU {per_message:.0f} µs "
            f"a message ({cpu / elapsed * 100:.0f}% of a core) -> one core takes ~{1e6 / per_message:,.0f}/s"
        )


if __name__ == "__main__":
    main()
