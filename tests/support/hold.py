#!/usr/bin/env python3
"""Long-lived TCP connections for tests/revoke.rs.

serve PORT [PORT ...]   echo server on every port (a thread per connection); prints "listening"
hold HOST PORT SECONDS  one connection that sends a byte and reads its echo every 50 ms; prints
                        "connected", then "alive" after SECONDS, or "reset <error>" as soon as
                        the connection fails
"""
import socket
import sys
import threading
import time


def echo(conn):
    with conn:
        try:
            while data := conn.recv(4096):
                conn.sendall(data)
        except OSError:
            pass


def accept_loop(lsock):
    while True:
        conn, _ = lsock.accept()
        threading.Thread(target=echo, args=(conn,), daemon=True).start()


def serve(ports):
    threads = []
    for port in ports:
        lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        lsock.bind(("0.0.0.0", port))
        lsock.listen(64)
        t = threading.Thread(target=accept_loop, args=(lsock,), daemon=True)
        t.start()
        threads.append(t)
    print("listening", flush=True)
    for t in threads:
        t.join()


def hold(host, port, seconds):
    sock = socket.create_connection((host, port), timeout=5)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    print("connected", flush=True)
    end = time.monotonic() + seconds
    try:
        while time.monotonic() < end:
            sock.sendall(b"x")
            if sock.recv(1) != b"x":
                raise ConnectionError("closed by the peer")
            time.sleep(0.05)
    except OSError as e:
        name = type(e).__name__
        print(f"reset {name}", flush=True)
        return
    print("alive", flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve([int(p) for p in sys.argv[2:]])
    else:
        hold(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]))
