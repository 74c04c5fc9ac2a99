# A TCP server that accepts connections and records each accepted peer, one line per accept,
# in LOGFILE. Run by tests/support/mod.rs inside a test network namespace and cgroup.
import socket
import sys

port, logfile = int(sys.argv[1]), sys.argv[2]
srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("0.0.0.0", port))
srv.listen(128)
with open(logfile, "a", buffering=1) as log:
    log.write("listening\n")
    while True:
        conn, peer = srv.accept()
        log.write(f"accepted {peer[0]}\n")
        conn.close()
