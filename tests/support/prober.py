# Long-lived connect prober for differential tests. Reads lines "tcp|udp SRC DST PORT" on stdin
# (SRC "-" = no bind) and answers one line each: "ok" or the errno name. Run inside the test's
# cgroup and/or network namespace, so every probe is a real connect() under the kernel programs.
import errno
import socket
import sys

for line in sys.stdin:
    kind, src, dst, port = line.split()
    family = socket.AF_INET6 if ":" in dst else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM if kind == "udp" else socket.SOCK_STREAM)
    sock.settimeout(2)
    local_port = 0
    try:
        if src != "-":
            sock.bind((src, 0))
            local_port = sock.getsockname()[1]
        if kind == "udp":
            sock.sendto(b"meshward", (dst, int(port)))
        else:
            sock.connect((dst, int(port)))
        result = "ok"
    except OSError as e:
        result = errno.errorcode.get(e.errno, str(e))
    finally:
        sock.close()
    print(result, local_port, flush=True)
