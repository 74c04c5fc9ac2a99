# Connects (tcp) or sends a datagram (udp) to HOST PORT and prints "ok" or the errno name.
# Run inside a test cgroup by tests/support/mod.rs; EPERM is what a denied connect() returns.
import errno
import socket
import sys

kind, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
family = socket.AF_INET6 if ":" in host else socket.AF_INET
sock = socket.socket(family, socket.SOCK_DGRAM if kind == "udp" else socket.SOCK_STREAM)
sock.settimeout(2)
try:
    if kind == "udp":
        sock.sendto(b"meshward", (host, port))
    else:
        sock.connect((host, port))
    print("ok")
except OSError as e:
    print(errno.errorcode.get(e.errno, str(e)))
