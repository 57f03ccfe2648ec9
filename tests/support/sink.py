#!/usr/bin/env python3
"""A receiving SMTP server for ringmail's end-to-end tests, written by someone else: aiosmtpd.

Usage: sink.py IP OUTPUT_FILE

Listens on IP at a free port (chosen by the kernel: the socket is bound to port 0 before
aiosmtpd sees it, so there is no pick-then-bind race), prints "sink listening on PORT" once
it accepts connections, and appends every message it receives to OUTPUT_FILE as one JSON line:
{"from": ..., "to": [...], "data": "<base64 of the DATA bytes, dot-unstuffed>"}, with
"from" empty for the null sender <>.
The line is written and flushed before the 250 reply, so a reader never misses an accepted
message. Runs until killed. aiosmtpd comes from scripts/install-test-deps (python3-aiosmtpd).
"""

import base64
import json
import socket
import sys
import threading
import time

from aiosmtpd.controller import Controller


class JsonLinesHandler:
    """Appends each message to a file, one JSON object per line."""

    def __init__(self, path):
        self.path = path
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        data = envelope.original_content
        if data is None:
            data = envelope.content
        if isinstance(data, str):
            data = data.encode("utf-8", "surrogateescape")
        # aiosmtpd spells the null reverse-path (RFC 5321 §4.5.5, bounces) `<>`; we record
        # it as "", as ringmail's envelopes do.
        sender = "" if envelope.mail_from == "<>" else envelope.mail_from
        record = {
            "from": sender,
            "to": list(envelope.rcpt_tos),
            "data": base64.b64encode(data).decode("ascii"),
        }
        with self.lock, open(self.path, "a", encoding="ascii") as out:
            out.write(json.dumps(record, ensure_ascii=True) + "\n")
            out.flush()
        return "250 2.0.0 Ok: stored"


class BoundController(Controller):
    """aiosmtpd's Controller on a socket we bound ourselves (port 0 = any free port)."""

    def __init__(self, handler, sock, **kwargs):
        self.sock = sock
        host, port = sock.getsockname()[:2]
        super().__init__(handler, hostname=host, port=port, **kwargs)

    def _create_server(self):
        return self.loop.create_server(
            self._factory_invoker, sock=self.sock, ssl=self.ssl_context
        )


def main():
    ip, path = sys.argv[1], sys.argv[2]
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((ip, 0))
    sock.listen(128)
    # SMTPUTF8 so that tests may send internationalized addresses (RFC 6531); 8BITMIME is
    # always on in aiosmtpd.
    controller = BoundController(
        JsonLinesHandler(path), sock, enable_SMTPUTF8=True, data_size_limit=64 << 20
    )
    controller.start()
    print(f"sink listening on {controller.port}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
