"""A tiny authoritative DNS responder for ringmail's tests, on loopback only.

dnslib does the wire format; this file only decides answers, because dnslib's own
`zoneresolver` answers NXDOMAIN for every empty answer and so cannot tell NXDOMAIN from
NODATA (RFC 2308 §2.1 vs §2.2), which the MX fallback of RFC 5321 §5.1 depends on.

Usage: dns_server.py ZONE_FILE
  Binds UDP and TCP on the same free port of 127.0.0.1 and prints `READY <port>` on stdout.
  The zone file is standard master-file text, plus one extra directive:
    $SERVFAIL name.    every query at or below `name.` gets SERVFAIL (RCODE 2)
  Answers: records of the asked type (CNAMEs followed inside the zone); NODATA (NOERROR, no
  answer, SOA in authority) when the name owns other records or has names below it; NXDOMAIN
  otherwise.
"""

import socket
import sys

from dnslib import QTYPE, RCODE, RR, DNSLabel
from dnslib.server import BaseResolver, DNSLogger, DNSServer


class TestResolver(BaseResolver):
    def __init__(self, zone_text):
        lines = []
        self.servfail = []
        for line in zone_text.splitlines():
            if line.strip().upper().startswith("$SERVFAIL"):
                self.servfail.append(DNSLabel(line.split()[1]))
            else:
                lines.append(line)
        self.records = list(RR.fromZone("\n".join(lines) + "\n"))

    def _below(self, name, parent):
        return name == parent or name.matchSuffix(parent)

    def _exists(self, name):
        # A name exists if it owns records or is an empty non-terminal (RFC 8020).
        return any(self._below(rr.rname, name) for rr in self.records)

    def _soa_for(self, name):
        best = None
        for rr in self.records:
            if rr.rtype == QTYPE.SOA and self._below(name, rr.rname):
                if best is None or len(rr.rname.label) > len(best.rname.label):
                    best = rr
        return best

    def resolve(self, request, handler):
        reply = request.reply()
        reply.header.aa = 1
        qname = request.q.qname
        qtype = request.q.qtype
        if any(self._below(qname, s) for s in self.servfail):
            reply.header.rcode = RCODE.SERVFAIL
            return reply
        name = qname
        for _ in range(8):  # follow CNAME chains inside the zone, boundedly
            found = [rr for rr in self.records if rr.rname == name and
                     (rr.rtype == qtype or qtype == QTYPE.ANY)]
            cname = [rr for rr in self.records if rr.rname == name and rr.rtype == QTYPE.CNAME]
            if found:
                for rr in found:
                    reply.add_answer(rr)
                return reply
            if cname and qtype != QTYPE.CNAME:
                reply.add_answer(cname[0])
                name = cname[0].rdata.label
                continue
            break
        if not reply.rr and not self._exists(name):
            reply.header.rcode = RCODE.NXDOMAIN
        soa = self._soa_for(name)
        if soa is not None and not any(rr.rtype == qtype for rr in reply.rr):
            reply.add_auth(soa)
        return reply


def main():
    with open(sys.argv[1]) as f:
        resolver = TestResolver(f.read())
    logger = DNSLogger("-request,-reply,-truncated,+error", prefix=False)
    # Bind UDP on a free port, then TCP on the same port (retry with a fresh port if taken).
    for _ in range(50):
        udp = DNSServer(resolver, address="127.0.0.1", port=0, logger=logger)
        port = udp.server.server_address[1]
        try:
            tcp = DNSServer(resolver, address="127.0.0.1", port=port, tcp=True, logger=logger)
        except OSError:
            udp.server.server_close()
            continue
        break
    else:
        sys.exit("dns_server: no free port")
    udp.start_thread()
    tcp.start_thread()
    print("READY %d" % port, flush=True)
    # Exit when the parent closes our stdin (or kills us), so no server outlives its test.
    sys.stdin.read()


if __name__ == "__main__":
    main()
