#!/usr/bin/env python3
"""Crash-safety load: THREADS smtplib clients send COUNT messages in total to HOST:PORT, each with
a unique token in its Subject, and print "OK <token>" (flushed) for every message that got a 250.
Stops by itself when all are sent, the time limit passes, or the server goes away.

Usage: smtp_blast.py HOST PORT COUNT THREADS RECIPIENT LIMIT_SECS [tag=T] [lines=N] [sender=token]
                    [retry=SECS]
tokens are T-NNNNNN (default tag "blast"); bodies have N lines of 70 x (default 12); with
sender=token the envelope sender is <token@localhost>, so the token shows in `ringmail queue
list` for mail that is never delivered."""
import smtplib
import sys
import threading
import time

host, port, count, threads, recipient, limit = (
    sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], float(sys.argv[6]))
options = dict(arg.split("=", 1) for arg in sys.argv[7:])
tag = options.get("tag", "blast")
lines = int(options.get("lines", "12"))
token_sender = options.get("sender") == "token"
retry_secs = float(options.get("retry", "0"))
lock = threading.Lock()
next_index = [0]
deadline = time.time() + limit


def take():
    with lock:
        if next_index[0] >= count or time.time() > deadline:
            return None
        next_index[0] += 1
        return next_index[0]


def connect(wid):
    """With retry=SECS, a refused connection is retried for up to SECS seconds: on a shared
    machine a SYN can meet a moment where no listener takes it (the power-loss test saw whole
    seconds of it); a test that cuts the server off kills its clients rather than wait."""
    attempts = max(1, int(retry_secs * 20))
    for attempt in range(attempts):
        try:
            client = smtplib.SMTP(host, port, timeout=10)
            client.ehlo("blaster%d" % wid)
            return client
        except ConnectionRefusedError:
            if attempt == attempts - 1:
                raise
            time.sleep(0.05)


def worker(wid):
    client = None
    while True:
        n = take()
        if n is None:
            break
        token = "%s-%06d" % (tag, n)
        body = "Subject: %s\r\nMessage-ID: <%s@test>\r\n\r\n%s\r\n" % (token, token, ("x" * 70 + "\r\n") * lines)
        sender = "%s@localhost" % token if token_sender else "blaster@localhost"
        try:
            if client is None:
                client = connect(wid)
            client.sendmail(sender, [recipient], body)
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
