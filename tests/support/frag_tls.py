# A TLS client whose every write is cut into CHUNK-byte TCP segments (TCP_NODELAY, a short
# pause between them), so that the ClientHello and later records arrive split at every kind of
# boundary. Prints "ok <version> <cipher>" after the handshake.
#   frag_tls.py PORT CA SNI CHUNK MAXVER
import socket
import ssl
import sys
import time

port, ca, sni, chunk, maxver = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
ctx = ssl.create_default_context(cafile=ca)
ctx.check_hostname = False
ctx.maximum_version = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}[maxver]
incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
tls = ctx.wrap_bio(incoming, outgoing, server_hostname=sni)
sock = socket.create_connection(("127.0.0.1", port))
sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def flush():
    data = outgoing.read()
    for i in range(0, len(data), chunk):
        sock.sendall(data[i : i + chunk])
        time.sleep(0.002)


while True:
    try:
        tls.do_handshake()
        break
    except ssl.SSLWantReadError:
        flush()
        data = sock.recv(65536)
        if not data:
            print("eof")
            sys.exit(1)
        incoming.write(data)
flush()
print("ok", tls.version(), tls.cipher()[0], flush=True)
sock.close()
