"""An SMTP sink built on aiosmtpd (a server nobody on this project wrote), for tests.

Usage: python3 aiosmtpd_sink.py HOST PORT OUTDIR
Advertises PIPELINING besides aiosmtpd's own extensions, writes each message to
OUTDIR/N.eml (the data as aiosmtpd unstuffed it) and OUTDIR/N.json (the envelope), prints
"ready" once listening, and stops when its standard input closes.
"""
import json
import os
import sys

from aiosmtpd.controller import Controller


class Sink:
    def __init__(self, outdir):
        self.outdir = outdir
        self.count = 0

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        # RFC 2920: aiosmtpd reads commands from a stream, so pipelining already works.
        return responses[:1] + ["250-PIPELINING"] + responses[1:]

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.startswith("perm-"):
            return "550 5.1.1 no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.count += 1
        base = os.path.join(self.outdir, str(self.count))
        with open(base + ".eml", "wb") as f:
            f.write(envelope.original_content or envelope.content)
        with open(base + ".json", "w") as f:
            json.dump({"mail_from": envelope.mail_from, "rcpt_tos": envelope.rcpt_tos}, f)
        return "250 2.0.0 Message accepted"


def main():
    host, port, outdir = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    controller = Controller(Sink(outdir), hostname=host, port=port)
    controller.start()
    print("ready", flush=True)
    sys.stdin.read()
    controller.stop()


if __name__ == "__main__":
    main()
