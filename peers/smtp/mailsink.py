#!/usr/bin/env python3
"""SMTP sink for the integration tests (aiosmtpd).

    python3 peers/smtp/mailsink.py --port PORT --dir DIR
        [--tls none|starttls|implicit --cert CERT.pem --key KEY.pem]
        [--auth USER:PASSWORD]

Accepts every message on 127.0.0.1:PORT (0: any free port) and writes each one, as
received, to DIR/NNNN.eml, then a decoded summary to DIR/NNNN.json (`from`, `to`,
`subject`, `text`: the text/plain part, `tls`: the cipher or null). Each file is written under a temporary name and
renamed, so a reader never sees half of one; the .json appears last. Prints `LISTENING <port>` once it accepts connections, and
exits when its standard input closes (the test that started it is gone) or on SIGTERM.

With `--tls starttls` the server offers STARTTLS and refuses mail before it; with
`--tls implicit` it speaks TLS from the first byte (SMTPS); both present CERT/KEY. With
`--auth` it requires AUTH (PLAIN or LOGIN, over TLS only) with exactly that user and
password, and appends each attempt to DIR/auth.jsonl (`mechanism`, `login`, `ok`).

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
import ssl
import sys

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


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
            # The TLS cipher of the connection the message came over (null: plain SMTP).
            "tls": (server.transport.get_extra_info("cipher") or [None])[0],
        }
        self.write(f"{n:04}.json", json.dumps(summary).encode())
        return "250 OK"


class Authenticator:
    def __init__(self, directory, user, password):
        self.path = os.path.join(directory, "auth.jsonl")
        self.user = user
        self.password = password

    def __call__(self, server, session, envelope, mechanism, auth_data):
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login.decode() == self.user
            and auth_data.password.decode() == self.password
        )
        login = auth_data.login.decode() if isinstance(auth_data, LoginPassword) else ""
        with open(self.path, "a") as f:
            f.write(json.dumps({"mechanism": mechanism, "login": login, "ok": ok}) + "\n")
        return AuthResult(success=ok)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--dir", required=True)
    parser.add_argument("--tls", choices=["none", "starttls", "implicit"], default="none")
    parser.add_argument("--cert")
    parser.add_argument("--key")
    parser.add_argument("--auth")
    args = parser.parse_args()
    os.makedirs(args.dir, exist_ok=True)

    context = None
    if args.tls != "none":
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(args.cert, args.key)
    options = {}
    if args.tls == "starttls":
        options.update(tls_context=context, require_starttls=True)
    if args.auth:
        user, password = args.auth.split(":", 1)
        options.update(
            authenticator=Authenticator(args.dir, user, password),
            # aiosmtpd sees only STARTTLS as TLS; an SMTPS connection is TLS throughout.
            auth_require_tls=args.tls == "starttls",
            auth_required=True,
        )

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    sink = Sink(args.dir)
    server = loop.run_until_complete(
        loop.create_server(
            lambda: SMTP(sink, hostname="keycanary-test-sink", **options),
            host="127.0.0.1",
            port=args.port,
            ssl=context if args.tls == "implicit" else None,
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
