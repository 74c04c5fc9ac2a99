# The client side of captured TCP conversations (tests/posture_replay.rs), all at once (one
# thread each): connect to 127.0.0.1:PORT and follow the turns — send our captured bytes, or
# read the server's and check them byte for byte — then close. Prints "PORT ok" or
# "PORT error ..." per conversation.
#   replay_client.py SPEC.json   (a list of {"port": N, "turns": [["c" | "s", HEX], ...]})
import json
import socket
import sys
import threading

spec = json.load(open(sys.argv[1]))
results = {}


def replay(conv):
    port = conv["port"]
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for side, arg in conv["turns"]:
                if side == "c":
                    s.sendall(bytes.fromhex(arg))
                    continue
                want, got = bytes.fromhex(arg), b""
                while len(got) < len(want):
                    more = s.recv(len(want) - len(got))
                    if not more:
                        raise EOFError(f"server closed with {len(want) - len(got)} bytes to come")
                    got += more
                if got != want:
                    raise ValueError("the server's bytes arrived changed")
        results[port] = "ok"
    except Exception as e:  # reported, the test decides
        results[port] = f"error {type(e).__name__}: {e}"


threads = [threading.Thread(target=replay, args=(c,)) for c in spec]
for t in threads:
    t.start()
for t in threads:
    t.join()
for c in spec:
    print(c["port"], results.get(c["port"], "error no result"))
