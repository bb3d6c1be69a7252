#!/usr/bin/env python3
"""SMTP sink for the integration tests (aiosmtpd).

    python3 peers/smtp/mailsink.py --port PORT --dir DIR

Accepts every message on 127.0.0.1:PORT (0: any free port) and writes each one, as
received, to DIR/NNNN.eml, then a decoded summary to DIR/NNNN.json (`from`, `to`,
`subject`, `text`: the text/plain part). Each file is written under a temporary name and
renamed, so a reader never sees half of one; the .json appears last. Prints `LISTENING <port>` once it accepts connections, and
exits when its standard input closes (the test that started it is gone) or on SIGTERM.

It never relays anything anywhere.
"""

import argparse
import asyncio
import email
import email.policy
import itertools
import json
import os
import signal
import sys

from aiosmtpd.smtp import SMTP


class Sink:
    def __init__(self, directory):
        self.directory = directory
        self.counter = itertools.count(1)

    def write(self, name, data):
        final = os.path.join(self.directory, name)
        tmp = final + ".tmp"
        with open(tmp, "wb") as f:
            f.write(data)
        os.rename(tmp, final)

    async def handle_DATA(self, server, session, envelope):
        n = next(self.counter)
        raw = envelope.original_content or envelope.content
        self.write(f"{n:04}.eml", raw)
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        body = msg.get_body(preferencelist=("plain",))
        summary = {
            "from": envelope.mail_from,
            "to": envelope.rcpt_tos,
            "subject": str(msg["subject"] or ""),
            "text": body.get_content() if body is not None else "",
        }
        self.write(f"{n:04}.json", json.dumps(summary).encode())
        return "250 OK"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--dir", required=True)
    args = parser.parse_args()
    os.makedirs(args.dir, exist_ok=True)

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    sink = Sink(args.dir)
    server = loop.run_until_complete(
        loop.create_server(
            lambda: SMTP(sink, hostname="keycanary-test-sink"),
            host="127.0.0.1",
            port=args.port,
        )
    )
    port = server.sockets[0].getsockname()[1]
    print(f"LISTENING {port}", flush=True)

    def stdin_closed():
        if not sys.stdin.buffer.read1(4096):
            loop.stop()

    loop.add_reader(sys.stdin.fileno(), stdin_closed)
    loop.add_signal_handler(signal.SIGTERM, loop.stop)
    try:
        loop.run_forever()
    finally:
        server.close()


if __name__ == "__main__":
    main()
