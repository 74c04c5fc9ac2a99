"""DNS helpers for tests/dns.rs, run as real processes (inside a governed cgroup where the test
needs it). Standard library only.

  resolve-connect SERVER PORT NAMES... [--count N] [--tcp] [--aaaa] [--connect-port P]
      For N rounds, for each name (`{i}` in a name is replaced by the round number): ask SERVER
      (ip:port) for the name's A (or AAAA) records and connect() at once to each address on
      --connect-port. Prints one JSON object: rounds, answers, allowed (connect succeeded or
      was refused by the peer), denied (EPERM/EACCES), failed (no answer), examples.
      --no-connect only resolves.
  synth-server PORT
      A UDP DNS server on 127.0.0.1:PORT answering `n<I>.<anything>` with 127.1.<I/256>.<I%256>
      and anything else with 127.0.0.200 (TTL 300): many distinct addresses for benchmarks.
  spoof-server PORT ANSWER_IP SPOOF_NAME SPOOF_IP
      A UDP DNS server on 127.0.0.1:PORT answering every A query with ANSWER_IP; before each
      answer it sends the client two answers it did not ask for (another id; the right id with
      question SPOOF_NAME), both with address SPOOF_IP: what a spoofer would try.
"""

import errno
import json
import random
import socket
import struct
import sys


def encode_name(name):
    out = b""
    for label in name.rstrip(".").split("."):
        out += bytes([len(label)]) + label.encode()
    return out + b"\0"


def query(qid, name, qtype):
    return struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0) + encode_name(name) + struct.pack("!HH", qtype, 1)


def skip_name(msg, pos):
    while True:
        n = msg[pos]
        if n == 0:
            return pos + 1
        if n & 0xC0 == 0xC0:
            return pos + 2
        pos += 1 + n


def answers(msg, qtype):
    """The addresses of type `qtype` in an answer section."""
    _, _, qd, an, _, _ = struct.unpack("!HHHHHH", msg[:12])
    pos = 12
    for _ in range(qd):
        pos = skip_name(msg, pos) + 4
    out = []
    for _ in range(an):
        pos = skip_name(msg, pos)
        rtype, _, _, rdlen = struct.unpack("!HHIH", msg[pos : pos + 10])
        pos += 10
        rdata = msg[pos : pos + rdlen]
        pos += rdlen
        if rtype == qtype == 1 and rdlen == 4:
            out.append(socket.inet_ntop(socket.AF_INET, rdata))
        if rtype == qtype == 28 and rdlen == 16:
            out.append(socket.inet_ntop(socket.AF_INET6, rdata))
    return out


def ask(server, name, qtype, tcp):
    qid = random.randrange(65536)
    msg = query(qid, name, qtype)
    if tcp:
        with socket.create_connection(server, timeout=2) as s:
            s.sendall(struct.pack("!H", len(msg)) + msg)
            n = struct.unpack("!H", recv_exact(s, 2))[0]
            reply = recv_exact(s, n)
    else:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(2)
            s.sendto(msg, server)
            while True:
                reply, _ = s.recvfrom(4096)
                # The answer to this query: same id and same question.
                if reply[:2] == msg[:2] and reply[12 : len(msg)] == msg[12:]:
                    break
    return answers(reply, qtype)


def recv_exact(s, n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise OSError("short read")
        buf += chunk
    return buf


def connect(addr, port):
    family = socket.AF_INET6 if ":" in addr else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.settimeout(2)
        try:
            s.connect((addr, port))
            return "ok"
        except OSError as e:
            return errno.errorcode.get(e.errno, str(e.errno))


def resolve_connect(args):
    host, port = args[0].rsplit(":", 1)
    server = (host, int(port))
    count, tcp, qtype, cport, names = 1, False, 1, 9, []
    it = iter(args[1:])
    for a in it:
        if a == "--count":
            count = int(next(it))
        elif a == "--tcp":
            tcp = True
        elif a == "--aaaa":
            qtype = 28
        elif a == "--no-connect":
            cport = None
        elif a == "--connect-port":
            cport = int(next(it))
        else:
            names.append(a)
    result = {"rounds": count, "answers": 0, "allowed": 0, "denied": 0, "failed": 0, "examples": []}
    for i in range(count):
        for pattern in names:
            name = pattern.replace("{i}", str(i))
            try:
                addrs = ask(server, name, qtype, tcp)
            except OSError:
                addrs = []
            if not addrs:
                result["failed"] += 1
                continue
            result["answers"] += 1
            if cport is None:
                continue
            for addr in addrs:
                r = connect(addr, cport)
                if r in ("EPERM", "EACCES"):
                    result["denied"] += 1
                    if len(result["examples"]) < 5:
                        result["examples"].append(f"{name} {addr}: {r}")
                else:
                    result["allowed"] += 1
    print(json.dumps(result), flush=True)


def spoof_server(args):
    port, answer_ip, spoof_name, spoof_ip = int(args[0]), args[1], args[2], args[3]
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", port))
    print("ready", flush=True)
    while True:
        msg, client = s.recvfrom(4096)
        qid = struct.unpack("!H", msg[:2])[0]
        question = msg[12 : skip_name(msg, 12) + 4]
        spoof_q = encode_name(spoof_name) + struct.pack("!HH", 1, 1)
        spoof_rr = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 60, 4) + socket.inet_aton(spoof_ip)
        # First what an off-path spoofer would send: another id...
        header = struct.pack("!HHHHHH", (qid + 1) % 65536, 0x8180, 1, 1, 0, 0)
        s.sendto(header + spoof_q + spoof_rr, client)
        # ... and the right id with another question. Neither answers what was asked.
        header = struct.pack("!HHHHHH", qid, 0x8180, 1, 1, 0, 0)
        s.sendto(header + spoof_q + spoof_rr, client)
        rr = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 60, 4) + socket.inet_aton(answer_ip)
        s.sendto(struct.pack("!HHHHHH", qid, 0x8180, 1, 1, 0, 0) + question + rr, client)

def synth_server(args):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", int(args[0])))
    print("ready", flush=True)
    while True:
        msg, client = s.recvfrom(4096)
        end = skip_name(msg, 12)
        first = msg[13 : 13 + msg[12]].decode(errors="replace")
        if first.startswith("n") and first[1:].isdigit():
            i = int(first[1:])
            ip = f"127.1.{(i >> 8) & 255}.{i & 255}"
        else:
            ip = "127.0.0.200"
        rr = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 300, 4) + socket.inet_aton(ip)
        header = msg[:2] + struct.pack("!HHHHH", 0x8180, 1, 1, 0, 0)
        s.sendto(header + msg[12 : end + 4] + rr, client)


if __name__ == "__main__":
    {
        "resolve-connect": resolve_connect,
        "spoof-server": spoof_server,
        "synth-server": synth_server,
    }[sys.argv[1]](sys.argv[2:])
