# TLS echo peer for the long-transfer integrity test.
#   server PORT CERT KEY        -> serves one connection: echoes every byte back
#   client PORT CA TOTAL SEED   -> sends TOTAL bytes in random chunk sizes (1 B .. 256 KiB),
#                                  checks the echo byte for byte, prints "ok <bytes>"
import os
import random
import socket
import ssl
import sys

mode, port = sys.argv[1], int(sys.argv[2])
if mode == "server":
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(sys.argv[3], sys.argv[4])
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", port))
    srv.listen(1)
    print("listening", flush=True)
    conn, _ = srv.accept()
    tls = ctx.wrap_socket(conn, server_side=True)
    while True:
        data = tls.recv(1 << 18)
        if not data:
            break
        tls.sendall(data)
    tls.close()
else:
    ca, total, seed = sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
    rng = random.Random(seed)
    ctx = ssl.create_default_context(cafile=ca)
    tls = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname="server.test")
    sent = 0
    while sent < total:
        n = min(rng.randint(1, 1 << 18), total - sent)
        block = os.urandom(n)
        tls.sendall(block)
        got = bytearray()
        while len(got) < n:
            chunk = tls.recv(n - len(got))
            if not chunk:
                print("eof after", sent + len(got), flush=True)
                sys.exit(1)
            got += chunk
        if bytes(got) != block:
            print("mismatch at", sent, flush=True)
            sys.exit(1)
        sent += n
    tls.close()
    print("ok", sent, flush=True)
