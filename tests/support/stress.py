#!/usr/bin/env python3
"""Stress traffic for the same-node fast path (tests/fast_path.rs).

serve PORT
    Echo server, one epoll loop, non-blocking sockets. Each connection's bytes are echoed back
    through a bounded buffer (a full buffer stops reading: back-pressure reaches the client);
    at the client's half-close the server sends the rest, then the SHA-256 of everything it
    received (64 hex digits), then half-closes. Some connections are slow readers: reading
    pauses for a while, so receive buffers fill. Prints "listening" when ready.

drive HOST PORT TOTAL_BYTES CONNS SEED
    Moves TOTAL_BYTES over 4 x CONNS connections, CONNS at a time, each sending seeded random
    bytes in writes of 1 B .. 256 KiB, half-closing, and checking that the echo hashes to what
    it sent and that the server's hash says the same. Some connections read slowly. Prints one
    JSON line: {"ok", "conns", "bytes", "secs", "stalls", "errors"}.

wake HOST PORT ROUNDS
    One connection, ROUNDS small messages each sent after a pause while both sides sleep in
    epoll_wait with no other work: each must wake the reader within 5 s. Prints the same JSON.

A "stall" is an epoll_wait that returned nothing although no timer was due while connections
waited for data: a lost wake-up.
"""
import hashlib
import json
import random
import select
import socket
import sys
import time

MAX_WRITE = 256 * 1024
ECHO_BUFFER = 512 * 1024
IDLE_TIMEOUT = 10.0


def log_uniform(rng, hi):
    """A size in 1..hi, uniform in its logarithm (as many tiny writes as huge ones)."""
    return max(1, min(hi, int(2 ** rng.uniform(0, hi.bit_length()))))


class EchoConn:
    def __init__(self, sock, rng):
        self.sock = sock
        self.buf = bytearray()
        self.hash = hashlib.sha256()
        self.eof = False
        self.trailer_sent = False
        self.slow = rng.random() < 0.25
        self.rng = rng
        self.paused_until = 0.0

    def wants(self, now):
        ev = 0
        if not self.eof and len(self.buf) < ECHO_BUFFER and now >= self.paused_until:
            ev |= select.EPOLLIN
        if self.buf:
            ev |= select.EPOLLOUT
        return ev


def serve(port):
    lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind(("0.0.0.0", port))
    lsock.listen(1024)
    lsock.setblocking(False)
    ep = select.epoll()
    ep.register(lsock.fileno(), select.EPOLLIN)
    conns = {}
    registered = {}
    rng = random.Random(port)
    print("listening", flush=True)
    while True:
        now = time.monotonic()
        for fd, c in conns.items():
            want = c.wants(now)
            if registered.get(fd) != want:
                ep.modify(fd, want)
                registered[fd] = want
        timers = [c.paused_until for c in conns.values() if c.paused_until > now]
        timeout = max(0.0, min(timers) - now) if timers else -1
        for fd, ev in ep.poll(timeout):
            if fd == lsock.fileno():
                while True:
                    try:
                        s, _ = lsock.accept()
                    except BlockingIOError:
                        break
                    s.setblocking(False)
                    c = EchoConn(s, random.Random(rng.random()))
                    conns[s.fileno()] = c
                    registered[s.fileno()] = 0
                    ep.register(s.fileno(), 0)
                continue
            c = conns.get(fd)
            if c is None:
                continue
            if ev & (select.EPOLLIN | select.EPOLLHUP | select.EPOLLERR) and not c.eof:
                try:
                    data = c.sock.recv(min(MAX_WRITE, ECHO_BUFFER - len(c.buf)))
                except BlockingIOError:
                    data = None
                except ConnectionError:
                    data = b""
                if data == b"":
                    c.eof = True
                    c.buf += c.hash.hexdigest().encode()
                elif data:
                    c.hash.update(data)
                    c.buf += data
                    if c.slow and c.rng.random() < 0.05:
                        c.paused_until = time.monotonic() + c.rng.uniform(0.02, 0.2)
            if ev & select.EPOLLOUT and c.buf:
                try:
                    n = c.sock.send(c.buf[:MAX_WRITE])
                    del c.buf[:n]
                except BlockingIOError:
                    pass
                except ConnectionError:
                    c.buf.clear()
                    c.eof = True
            if c.eof and not c.buf:
                try:
                    c.sock.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
                ep.unregister(fd)
                registered.pop(fd, None)
                del conns[fd]
                c.sock.close()


class DriveConn:
    def __init__(self, host, port, size, seed):
        self.rng = random.Random(seed)
        self.left = size
        self.size = size
        self.pending = b""
        self.sent_hash = hashlib.sha256()
        self.echo_hash = hashlib.sha256()
        self.received = 0
        self.tail = bytearray()
        self.half_closed = False
        self.done = False
        self.slow = self.rng.random() < 0.25
        self.paused_until = 0.0
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setblocking(False)
        self.sock.connect_ex((host, port))

    def wants(self, now):
        ev = 0
        if not self.done and now >= self.paused_until:
            ev |= select.EPOLLIN
        if not self.half_closed:
            ev |= select.EPOLLOUT
        return ev

    def on_writable(self):
        while not self.half_closed:
            if not self.pending:
                if self.left == 0:
                    self.sock.shutdown(socket.SHUT_WR)
                    self.half_closed = True
                    return
                n = min(self.left, log_uniform(self.rng, MAX_WRITE))
                self.pending = self.rng.randbytes(n)
                self.sent_hash.update(self.pending)
                self.left -= n
            try:
                n = self.sock.send(self.pending)
            except BlockingIOError:
                return
            self.pending = self.pending[n:]
            if self.pending:
                return

    def on_readable(self):
        data = self.sock.recv(MAX_WRITE)
        if data == b"":
            self.done = True
            return
        echo_left = self.size - self.received
        self.echo_hash.update(data[:echo_left])
        self.received += min(len(data), echo_left)
        self.tail += data[echo_left:]
        if self.slow and self.rng.random() < 0.05:
            self.paused_until = time.monotonic() + self.rng.uniform(0.02, 0.2)

    def check(self):
        sent = self.sent_hash.hexdigest()
        if self.received != self.size:
            return f"echo {self.received} of {self.size} bytes"
        if self.echo_hash.hexdigest() != sent:
            return "echo differs from what was sent"
        if self.tail.decode(errors="replace") != sent:
            return f"server hash {self.tail[:64]!r} differs from the sent bytes' hash"
        return None


def drive(host, port, total, conns, seed):
    rng = random.Random(seed)
    count = 4 * conns
    weights = [rng.uniform(0.2, 1.8) for _ in range(count)]
    sizes = [int(total * w / sum(weights)) for w in weights]
    sizes[-1] += total - sum(sizes)
    queue = list(enumerate(sizes))
    ep = select.epoll()
    live, registered = {}, {}
    errors, stalls, finished, moved = [], 0, 0, 0
    start = time.monotonic()
    while queue or live:
        while queue and len(live) < conns:
            i, size = queue.pop()
            c = DriveConn(host, port, size, seed * 1000 + i)
            live[c.sock.fileno()] = c
            registered[c.sock.fileno()] = 0
            ep.register(c.sock.fileno(), 0)
        now = time.monotonic()
        for fd, c in live.items():
            want = c.wants(now)
            if registered[fd] != want:
                ep.modify(fd, want)
                registered[fd] = want
        timers = [c.paused_until for c in live.values() if c.paused_until > now]
        timeout = min(timers) - now if timers else IDLE_TIMEOUT
        events = ep.poll(max(0.0, timeout))
        if not events and not timers:
            stalls += 1
            if stalls >= 3:
                errors.append(f"no progress for {3 * IDLE_TIMEOUT} s with {len(live)} connections")
                break
        for fd, ev in events:
            c = live[fd]
            try:
                if ev & select.EPOLLOUT:
                    c.on_writable()
                if ev & (select.EPOLLIN | select.EPOLLHUP | select.EPOLLERR):
                    c.on_readable()
            except (ConnectionError, OSError) as e:
                errors.append(f"connection {fd}: {e!r}")
                c.done = True
            if c.done:
                problem = c.check()
                if problem:
                    errors.append(problem)
                finished += 1
                moved += c.size
                ep.unregister(fd)
                del live[fd], registered[fd]
                c.sock.close()
    report(not errors and finished == count, finished, moved, start, stalls, errors)


def wake(host, port, rounds):
    rng = random.Random(rounds)
    s = socket.create_connection((host, port))
    s.setblocking(False)
    ep = select.epoll()
    ep.register(s.fileno(), select.EPOLLIN)
    errors, start, moved = [], time.monotonic(), 0
    for i in range(rounds):
        time.sleep(rng.uniform(0.001, 0.02))
        msg = rng.randbytes(rng.randint(1, 100))
        s.sendall(msg)
        got = b""
        while len(got) < len(msg):
            if not ep.poll(5.0):
                errors.append(f"round {i}: no wake-up within 5 s ({len(got)} of {len(msg)} bytes)")
                break
            got += s.recv(4096)
        if got != msg:
            errors.append(f"round {i}: echo differs")
            break
        moved += len(msg)
    report(not errors, 1, moved, start, 0, errors)


def report(ok, conns, moved, start, stalls, errors):
    print(json.dumps({"ok": ok, "conns": conns, "bytes": moved,
                      "secs": round(time.monotonic() - start, 3), "stalls": stalls,
                      "errors": errors[:20]}), flush=True)


if __name__ == "__main__":
    mode, args = sys.argv[1], sys.argv[2:]
    if mode == "serve":
        serve(int(args[0]))
    elif mode == "drive":
        drive(args[0], int(args[1]), int(args[2]), int(args[3]), int(args[4]))
    elif mode == "wake":
        wake(args[0], int(args[1]), int(args[2]))
    else:
        sys.exit(f"unknown mode {mode}")
