#!/usr/bin/env python3
"""Power-loss load on POP3: one poplib session after another to HOST:PORT as USER, each deleting
the first listed message and quitting; prints "DELETED <uidl>" (flushed) once QUIT got +OK, the
moment the deletion is promised (RFC 1939 section 6). Stops when the mailbox is empty, the time
limit passes, or the server goes away.

Usage: pop3_delete.py HOST PORT USER PASSWORD LIMIT_SECS"""
import poplib
import random
import sys
import time

host, port, user, password, limit = (
    sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], float(sys.argv[5]))
deadline = time.time() + limit


def connect():
    """A refused connection is retried for up to five seconds (see smtp_blast.py)."""
    for attempt in range(100):
        try:
            return poplib.POP3(host, port, timeout=10)
        except ConnectionRefusedError:
            if attempt == 99:
                raise
            time.sleep(0.05)


while time.time() < deadline:
    try:
        p = connect()
        p.user(user)
        p.pass_(password)
        listing = p.uidl()[1]
        if not listing:
            p.quit()
            break
        number, uidl = listing[0].decode().split()
        p.dele(int(number))
        p.quit()
    except Exception as e:  # the server was killed: stop
        sys.stderr.write("pop3_delete: %s\n" % e)
        break
    sys.stdout.write("DELETED %s\n" % uidl)
    sys.stdout.flush()
    time.sleep(random.uniform(0, 0.05))
