"""The development SMTP sink: `python -m emailsvc.devsmtp` stores every message it receives as var/mail/*.eml."""

import argparse
import signal
import time
import uuid
from pathlib import Path

from aiosmtpd.controller import Controller


class MaildirSink:
    """An aiosmtpd handler that writes each message, with its envelope, to a .eml file."""

    def __init__(self, directory):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)

    async def handle_DATA(self, server, session, envelope):
        name = f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}.eml"
        envelope_lines = f"X-Envelope-From: {envelope.mail_from}\r\nX-Envelope-To: {', '.join(envelope.rcpt_tos)}\r\n"
        (self.directory / name).write_bytes(envelope_lines.encode() + envelope.original_content)
        return f"250 OK stored as {name}"


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=1025)
    parser.add_argument("--dir", default="var/mail")
    args = parser.parse_args()
    controller = Controller(MaildirSink(args.dir), hostname=args.host, port=args.port)
    controller.start()
    # Stop on Ctrl-C even when started in the background, where the shell ignores SIGINT for us.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    print(f"Development SMTP sink on {args.host}:{args.port}, writing to {args.dir}/", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
