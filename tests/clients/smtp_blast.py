#!/usr/bin/env python3
"""Crash-safety load: THREADS smtplib clients send COUNT messages in total to HOST:PORT, each with
a unique token in its Subject, and print "OK <token>" (flushed) for every message that got a 250.
Stops by itself when all are sent, the time limit passes, or the server goes away."""
import smtplib
import sys
import threading
import time

host, port, count, threads, recipient, limit = (
    sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], float(sys.argv[6]))
lock = threading.Lock()
next_index = [0]
deadline = time.time() + limit


def take():
    with lock:
        if next_index[0] >= count or time.time() > deadline:
            return None
        next_index[0] += 1
        return next_index[0]


def worker(wid):
    client = None
    while True:
        n = take()
        if n is None:
            break
        token = "blast-%06d" % n
        body = "Subject: %s\r\nMessage-ID: <%s@test>\r\n\r\n%s\r\n" % (token, token, ("x" * 70 + "\r\n") * 12)
        try:
            if client is None:
                client = smtplib.SMTP(host, port, timeout=10)
                client.ehlo("blaster%d" % wid)
            client.sendmail("blaster@localhost", [recipient], body)
        except Exception as e:  # the server was killed: stop this worker
            sys.stderr.write("worker %d: %s\n" % (wid, e))
            return
        with lock:
            sys.stdout.write("OK %s\n" % token)
            sys.stdout.flush()
    if client is not None:
        try:
            client.quit()
        except Exception:
            pass


workers = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
for w in workers:
    w.start()
for w in workers:
    w.join()
