#!/usr/bin/env python3
"""Generates the TLS handshake vectors under tests/data/handshakes/ (run from anywhere).

Real stacks, byte-exact: Python's ssl module (OpenSSL) driven through MemoryBIO pairs, and
`openssl s_client`/`s_server` through a loopback relay for what Python cannot select (TLS 1.3
cipher suites, key-share groups forcing a HelloRetryRequest). Each vector is two files,
NAME.c2s (client to server bytes) and NAME.s2c, holding the handshake plus one application
record each way, and one line in expected.json with what a correct parser must report
(negotiated version and suite from the stack itself, SNI, ALPN, mTLS).

Certificates are made afresh with the openssl CLI in a temporary directory (not kept), so
regenerating changes the bytes but not the expectations.

    python3 dataplane-common/tests/data/make_vectors.py
"""

import json
import os
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import warnings

warnings.filterwarnings("ignore", category=DeprecationWarning)

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "handshakes")
VERSIONS = {"TLSv1": 0x0301, "TLSv1.1": 0x0302, "TLSv1.2": 0x0303, "TLSv1.3": 0x0304}


def sh(*args, **kw):
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kw)


def make_pki(d):
    def key(name):
        sh("openssl", "genrsa", "-out", f"{d}/{name}.key", "2048")

    key("ca")
    sh("openssl", "req", "-x509", "-new", "-key", f"{d}/ca.key", "-subj", "/CN=meshward test CA",
       "-days", "3650", "-out", f"{d}/ca.crt")
    for name, ext in (("server", "subjectAltName=DNS:server.test\nextendedKeyUsage=serverAuth"),
                      ("client", "extendedKeyUsage=clientAuth")):
        key(name)
        sh("openssl", "req", "-new", "-key", f"{d}/{name}.key", "-subj", f"/CN={name}.test",
           "-out", f"{d}/{name}.csr")
        with open(f"{d}/{name}.ext", "w") as f:
            f.write(ext + "\n")
        sh("openssl", "x509", "-req", "-in", f"{d}/{name}.csr", "-CA", f"{d}/ca.crt", "-CAkey",
           f"{d}/ca.key", "-CAcreateserial", "-days", "3650", "-extfile", f"{d}/{name}.ext",
           "-out", f"{d}/{name}.crt")
    # ffdhe2048 (RFC 7919) for the DHE suites.
    sh("openssl", "genpkey", "-genparam", "-algorithm", "DH", "-pkeyopt", "group:ffdhe2048",
       "-out", f"{d}/dh.pem")


def iana_id(ctx, openssl_name):
    for c in ctx.get_ciphers():
        if c["name"] == openssl_name:
            return c["id"] & 0xFFFF
    raise KeyError(openssl_name)


def memory_handshake(pki, name, version=None, ciphers=None, sni="server.test", alpn=None,
                     server_alpn=None, client_cert=False, request_cert=False, dhe=False,
                     tls13=False):
    """Handshake between two ssl objects over MemoryBIOs; returns (c2s, s2c, facts)."""
    sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    sctx.load_cert_chain(f"{pki}/server.crt", f"{pki}/server.key")
    cctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    cctx.load_verify_locations(f"{pki}/ca.crt")
    for ctx in (sctx, cctx):
        if version:
            ctx.minimum_version = version
            ctx.maximum_version = version
        if ciphers:
            ctx.set_ciphers(ciphers)
    if dhe:
        sctx.load_dh_params(f"{pki}/dh.pem")
    if request_cert:
        sctx.verify_mode = ssl.CERT_OPTIONAL
        sctx.load_verify_locations(f"{pki}/ca.crt")
    if client_cert:
        cctx.load_cert_chain(f"{pki}/client.crt", f"{pki}/client.key")
    if alpn:
        cctx.set_alpn_protocols(alpn)
    if server_alpn:
        sctx.set_alpn_protocols(server_alpn)
    if not sni:
        cctx.check_hostname = False
    cin, cout, sin, sout = (ssl.MemoryBIO() for _ in range(4))
    client = cctx.wrap_bio(cin, cout, server_side=False, server_hostname=sni or None)
    server = sctx.wrap_bio(sin, sout, server_side=True)
    c2s, s2c = bytearray(), bytearray()
    cdone = sdone = False
    for _ in range(50):
        for obj, done_name in ((client, "c"), (server, "s")):
            if (done_name == "c" and cdone) or (done_name == "s" and sdone):
                continue
            try:
                obj.do_handshake()
                if done_name == "c":
                    cdone = True
                else:
                    sdone = True
            except ssl.SSLWantReadError:
                pass
            b = cout.read()
            if b:
                c2s += b
                sin.write(b)
            b = sout.read()
            if b:
                s2c += b
                cin.write(b)
        if cdone and sdone:
            break
    assert cdone and sdone, name
    # One application record each way (and whatever the stacks flush with it: tickets).
    client.write(b"ping")
    b = cout.read()
    c2s += b
    sin.write(b)
    server.read(4)
    server.write(b"pong")
    b = sout.read()
    s2c += b
    cin.write(b)
    client.read(4)
    ver = client.version()
    cipher = client.cipher()[0]
    facts = {
        "version": VERSIONS[ver],
        "cipher": iana_id(cctx, cipher),
        "cipher_openssl": cipher,
        "sni": sni or "",
        "alpn_offered_first": alpn[0] if alpn else "",
        "alpn_selected": client.selected_alpn_protocol() or "",
    }
    if ver == "TLSv1.3":
        facts["mtls"] = "unknown"
    elif request_cert:
        facts["mtls"] = "cert" if client_cert else "empty"
    else:
        facts["mtls"] = "none"
    return bytes(c2s), bytes(s2c), facts


class Relay:
    """Loopback TCP relay recording both directions."""

    def __init__(self, upstream_port):
        self.lsock = socket.socket()
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(1)
        self.port = self.lsock.getsockname()[1]
        self.upstream = upstream_port
        self.c2s, self.s2c = bytearray(), bytearray()
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        c, _ = self.lsock.accept()
        s = socket.create_connection(("127.0.0.1", self.upstream))

        def pump(a, b, buf):
            try:
                while True:
                    d = a.recv(65536)
                    if not d:
                        break
                    buf += d
                    b.sendall(d)
            except OSError:
                pass
            for x in (a, b):
                try:
                    x.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

        t = threading.Thread(target=pump, args=(s, c, self.s2c), daemon=True)
        t.start()
        pump(c, s, self.c2s)
        t.join(5)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def openssl_handshake(pki, server_args, client_args):
    """openssl s_server / s_client through a relay; returns (c2s, s2c, client stdout)."""
    port = free_port()
    srv = subprocess.Popen(
        ["openssl", "s_server", "-accept", f"127.0.0.1:{port}", "-cert", f"{pki}/server.crt",
         "-key", f"{pki}/server.key", "-naccept", "1", *server_args],
        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)  # s_server listening (a probe connection would use its one accept)
    relay = Relay(port)
    cli = subprocess.run(
        ["openssl", "s_client", "-connect", f"127.0.0.1:{relay.port}", "-CAfile", f"{pki}/ca.crt",
         *client_args],
        input=b"ping\n", capture_output=True, timeout=20)
    relay.thread.join(10)
    srv.kill()
    srv.wait()
    return bytes(relay.c2s), bytes(relay.s2c), cli.stdout.decode(errors="replace")


def main():
    os.makedirs(OUT, exist_ok=True)
    expected = {}

    def save(name, c2s, s2c, facts):
        with open(os.path.join(OUT, name + ".c2s"), "wb") as f:
            f.write(c2s)
        with open(os.path.join(OUT, name + ".s2c"), "wb") as f:
            f.write(s2c)
        expected[name] = facts
        print(f"{name}: c2s {len(c2s)} s2c {len(s2c)} {facts}")

    with tempfile.TemporaryDirectory() as pki:
        make_pki(pki)
        V = ssl.TLSVersion
        legacy = "DEFAULT@SECLEVEL=0"
        cases = [
            ("tls10", dict(version=V.TLSv1, ciphers=legacy)),
            ("tls11", dict(version=V.TLSv1_1, ciphers=legacy)),
            ("tls12_ecdhe", dict(version=V.TLSv1_2, ciphers="ECDHE-RSA-AES128-GCM-SHA256",
                                 alpn=["h2", "http/1.1"], server_alpn=["http/1.1"])),
            ("tls12_dhe_aes256_sha", dict(version=V.TLSv1_2, ciphers="DHE-RSA-AES256-SHA@SECLEVEL=0",
                                          dhe=True)),
            ("tls12_rsa_kx", dict(version=V.TLSv1_2, ciphers="AES128-SHA@SECLEVEL=0")),
            ("tls12_chacha", dict(version=V.TLSv1_2, ciphers="ECDHE-RSA-CHACHA20-POLY1305")),
            ("tls12_mtls_cert", dict(version=V.TLSv1_2, request_cert=True, client_cert=True)),
            ("tls12_mtls_empty", dict(version=V.TLSv1_2, request_cert=True, client_cert=False)),
            ("tls12_no_sni", dict(version=V.TLSv1_2, sni=None)),
            ("tls13", dict(alpn=["h2", "http/1.1"], server_alpn=["h2"])),
            ("tls13_mtls", dict(request_cert=True, client_cert=True)),
            # A ClientHello spanning several segments (~2.6 KB of ALPN) and one over HELLO_CAP.
            ("tls13_big_hello", dict(alpn=["h2"] + [f"proto-{i:04d}" for i in range(230)],
                                     server_alpn=["h2"])),
            ("tls13_huge_hello", dict(alpn=["x-first"] + [f"proto-{i:04d}" for i in range(420)],
                                      server_alpn=["x-first"])),
        ]
        for name, kw in cases:
            save(name, *memory_handshake(pki, name, **kw))

        # TLS 1.3 with ChaCha20 (suite chosen by openssl's -ciphersuites).
        c2s, s2c, out = openssl_handshake(
            pki, ["-tls1_3", "-ciphersuites", "TLS_CHACHA20_POLY1305_SHA256"],
            ["-tls1_3", "-ciphersuites", "TLS_CHACHA20_POLY1305_SHA256", "-servername",
             "server.test", "-alpn", "h2"])
        assert "TLS_CHACHA20_POLY1305_SHA256" in out, out
        save("tls13_chacha_openssl", c2s, s2c, {
            "version": 0x0304, "cipher": 0x1303, "cipher_openssl": "TLS_CHACHA20_POLY1305_SHA256",
            "sni": "server.test", "alpn_offered_first": "h2", "alpn_selected": "", "mtls": "unknown"})

        # HelloRetryRequest: the client's key share is X25519, the server only takes P-256.
        c2s, s2c, out = openssl_handshake(
            pki, ["-tls1_3", "-groups", "P-256"],
            ["-tls1_3", "-groups", "X25519:P-256", "-servername", "server.test"])
        assert "TLS_AES_256_GCM_SHA384" in out, out
        save("tls13_hrr_openssl", c2s, s2c, {
            "version": 0x0304, "cipher": 0x1302, "cipher_openssl": "TLS_AES_256_GCM_SHA384",
            "sni": "server.test", "alpn_offered_first": "", "alpn_selected": "", "mtls": "unknown",
            "hello_retry": True})

        # TLS 1.2 mTLS with openssl tools, through a real TCP connection.
        c2s, s2c, out = openssl_handshake(
            pki, ["-tls1_2", "-CAfile", f"{pki}/ca.crt", "-Verify", "1", "-verify_return_error"],
            ["-tls1_2", "-cert", f"{pki}/client.crt", "-key", f"{pki}/client.key",
             "-servername", "server.test"])
        assert "ECDHE-RSA-AES256-GCM-SHA384" in out, out
        save("tls12_mtls_openssl", c2s, s2c, {
            "version": 0x0303, "cipher": 0xc030, "cipher_openssl": "ECDHE-RSA-AES256-GCM-SHA384",
            "sni": "server.test", "alpn_offered_first": "", "alpn_selected": "", "mtls": "cert"})

    with open(os.path.join(OUT, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1, sort_keys=True)
        f.write("\n")


if __name__ == "__main__":
    sys.exit(main())
