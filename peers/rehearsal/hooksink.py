#!/usr/bin/env python3
"""Webhook sink for the rotation rehearsal stage (scripts/rehearse).

    python3 peers/rehearsal/hooksink.py --port PORT --dir DIR

Accepts every POST on 127.0.0.1:PORT (0: any free port), whatever the path, answers
200 `ok` and writes the body, as received, to DIR/NNNN.json (0001.json, 0002.json, …,
continuing after the files already there). Each file is written under a temporary name
and renamed, so a reader never sees half of one. Prints `LISTENING <port>` once it
accepts connections; runs until SIGTERM or SIGINT. Standard library only.

scripts/rehearse runs two: the ticket webhook keycanary notifies, and the receiver behind
Alertmanager.
"""

import argparse
import os
import re
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer


class Sink:
    def __init__(self, directory):
        self.directory = directory
        self.lock = threading.Lock()
        numbers = [
            int(m.group(1))
            for m in (re.fullmatch(r"(\d+)\.json", n) for n in os.listdir(directory))
            if m
        ]
        self.last = max(numbers, default=0)

    def write(self, body):
        with self.lock:
            self.last += 1
            final = os.path.join(self.directory, f"{self.last:04}.json")
            tmp = final + ".tmp"
            with open(tmp, "wb") as f:
                f.write(body)
            os.rename(tmp, final)
            return final


def handler(sink):
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            length = int(self.headers.get("Content-Length") or 0)
            path = sink.write(self.rfile.read(length))
            self.log_message("%s -> %s", self.path, os.path.basename(path))
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", "3")
            self.end_headers()
            self.wfile.write(b"ok\n")

        def do_GET(self):
            self.send_response(405)
            self.send_header("Content-Length", "0")
            self.end_headers()

    return Handler


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--dir", required=True)
    args = parser.parse_args()
    os.makedirs(args.dir, exist_ok=True)

    server = HTTPServer(("127.0.0.1", args.port), handler(Sink(args.dir)))
    print(f"LISTENING {server.server_address[1]}", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
