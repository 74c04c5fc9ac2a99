//! TLS posture measured in the kernel from real handshakes of real TLS stacks (openssl, curl,
//! gnutls, Python ssl), with the governed workload as client and as server. Each test compares
//! what meshward reports (/posture) with what the peers negotiated.

mod support;

use std::{
    path::PathBuf,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use support::{
    tls::{Pki, records},
    *,
};

/// A CA, a server certificate for server.test and a client certificate, made with openssl.
/// An `openssl s_server` (outside any governed cgroup unless `rel` is given), killed on drop.
struct TlsServer {
    child: std::process::Child,
    port: u16,
}

impl TlsServer {
    fn start(pki: &Pki, rel: Option<&str>, extra: &[&str]) -> Self {
        let port = free_port();
        let mut cmd = Command::new("openssl");
        cmd.args(["s_server", "-accept", &format!("127.0.0.1:{port}"), "-cert"])
            .arg(pki.path("server.crt"))
            .arg("-key")
            .arg(pki.path("server.key"))
            .arg("-quiet")
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = match rel {
            Some(rel) => in_cgroup(&mut cmd, rel),
            None => cmd.spawn().expect("openssl s_server"),
        };
        // A plain connect tells when it listens (s_server drops it and goes on serving).
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "s_server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Self { child, port }
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `openssl s_client` in cgroup `rel` (stdin closed: handshake, then close).
fn s_client(pki: &Pki, rel: Option<&str>, port: u16, extra: &[&str]) -> bool {
    let mut cmd = Command::new("openssl");
    cmd.args([
        "s_client",
        "-connect",
        &format!("127.0.0.1:{port}"),
        "-CAfile",
    ])
    .arg(pki.path("ca.crt"))
    .args(extra)
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let child = match rel {
        Some(rel) => in_cgroup(&mut cmd, rel),
        None => cmd.spawn().expect("openssl s_client"),
    };
    let out = child.wait_with_output().expect("s_client runs");
    let text = String::from_utf8_lossy(&out.stdout);
    // s_client prints "Verify return code: 0" even when no handshake happened.
    text.contains("Verify return code: 0") && !text.contains("Cipher is (NONE)")
}

fn config(scratch: &Scratch, entries: &[String]) -> PathBuf {
    scratch.write("policy.yaml", &entries.concat())
}

fn one(rows: &[serde_json::Value]) -> &serde_json::Value {
    assert_eq!(rows.len(), 1, "{rows:#?}");
    &rows[0]
}

/// A client workload in a cgroup; the agent reads TLS posture.
struct Node {
    _cg: CgroupTree,
    _scratch: Scratch,
    pki: Pki,
    client: String,
    server: String,
    agent: Agent,
}

impl Node {
    fn new(test: &str) -> Self {
        Self::with_policies(test, &[])
    }

    /// With extra policy documents (e.g. a name rule, which puts the client's sockets into the
    /// sockhash so that sk_msg reads what they send; without one, cgroup_skb egress does).
    fn with_policies(test: &str, policies: &[String]) -> Self {
        let cg = CgroupTree::new(test);
        let client = cg.child("client");
        let server = cg.child("server");
        let scratch = Scratch::new(test);
        let pki = Pki::new(&scratch);
        let mut docs = vec![
            workload("tls", "client", "client", &client),
            workload("tls", "server", "server", &server),
        ];
        docs.extend(policies.iter().cloned());
        let path = config(&scratch, &docs);
        let agent = Agent::start(test, &path, &["--tls-posture"]);
        Self {
            _cg: cg,
            _scratch: scratch,
            pki,
            client,
            server,
            agent,
        }
    }
}

#[test]
fn openssl_versions_and_ciphers_as_seen_by_a_governed_client() {
    let node = Node::new("posture-versions");
    let cases: [(&[&str], &[&str], &str, &str); 5] = [
        (
            &["-tls1_3"],
            &[
                "-tls1_3",
                "-ciphersuites",
                "TLS_CHACHA20_POLY1305_SHA256",
                "-alpn",
                "h2,http/1.1",
            ],
            "TLS 1.3",
            "TLS_CHACHA20_POLY1305_SHA256",
        ),
        (
            &["-tls1_2"],
            &["-tls1_2", "-cipher", "ECDHE-RSA-AES128-GCM-SHA256"],
            "TLS 1.2",
            "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        ),
        (
            &["-tls1_2", "-dhparam", "ffdhe2048"],
            &["-tls1_2", "-cipher", "DHE-RSA-AES256-SHA@SECLEVEL=0"],
            "TLS 1.2",
            "TLS_DHE_RSA_WITH_AES_256_CBC_SHA",
        ),
        (
            &["-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"],
            &["-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"],
            "TLS 1.1",
            "",
        ),
        (
            &["-tls1", "-cipher", "DEFAULT@SECLEVEL=0"],
            &["-tls1", "-cipher", "DEFAULT@SECLEVEL=0"],
            "TLS 1.0",
            "",
        ),
    ];
    for (i, (server_args, client_args, version, cipher)) in cases.iter().enumerate() {
        let server = TlsServer::start(&node.pki, None, server_args);
        let mut args = vec!["-servername", "server.test"];
        args.extend_from_slice(client_args);
        assert!(
            s_client(&node.pki, Some(&node.client), server.port, &args),
            "case {i}: handshake"
        );
        let rows = records(&node.agent, "client", (i + 1) as u64);
        let row = rows
            .iter()
            .find(|r| r["server_port"] == server.port)
            .unwrap_or_else(|| panic!("case {i}: no row for port {}: {rows:#?}", server.port));
        assert_eq!(row["tls_version"], *version, "case {i}: {row}");
        if !cipher.is_empty() {
            assert_eq!(row["cipher"], *cipher, "case {i}: {row}");
        }
        assert_eq!(row["sni"], "server.test", "case {i}: {row}");
        assert_eq!(row["role"], "client");
        let weak = version.ends_with("1.0") || version.ends_with("1.1");
        assert_eq!(row["weak_version"], weak, "case {i}: {row}");
        // What the client offered, read from its ClientHello in the kernel: s_client pinned
        // to one version offers that version at most.
        assert_eq!(row["offered_max_version"], *version, "case {i}: {row}");
        let offered_weak = row["offered_weak_ciphers"].as_array().expect("list");
        match i {
            0 => {
                assert_eq!(row["alpn"], "h2", "case {i}: {row}");
                assert!(offered_weak.is_empty(), "case {i}: {row}");
            }
            2 => assert!(
                offered_weak.iter().any(|c| c == "CBC-SHA1"),
                "case {i}: {row}"
            ),
            _ => assert_eq!(row["alpn"], serde_json::Value::Null, "case {i}: {row}"),
        }
    }
}

#[test]
fn mtls_is_reported_where_the_wire_shows_it() {
    let node = Node::new("posture-mtls");
    let verify = [
        "-CAfile",
        &node.pki.path("ca.crt"),
        "-Verify",
        "1",
        "-verify_return_error",
    ]
    .map(String::from);
    let verify: Vec<&str> = verify.iter().map(String::as_str).collect();
    let (cert, key) = (node.pki.path("client.crt"), node.pki.path("client.key"));
    // TLS 1.2 with a client certificate: mTLS true.
    let mut server_args = vec!["-tls1_2"];
    server_args.extend(&verify);
    let s = TlsServer::start(&node.pki, None, &server_args);
    assert!(s_client(
        &node.pki,
        Some(&node.client),
        s.port,
        &["-tls1_2", "-cert", &cert, "-key", &key]
    ));
    let rows = records(&node.agent, "client", 1);
    assert_eq!(one(&rows)["mtls"], true, "{rows:#?}");
    // TLS 1.2 without a certificate request: false.
    let s2 = TlsServer::start(&node.pki, None, &["-tls1_2"]);
    assert!(s_client(
        &node.pki,
        Some(&node.client),
        s2.port,
        &["-tls1_2"]
    ));
    let rows = records(&node.agent, "client", 2);
    let row = rows
        .iter()
        .find(|r| r["server_port"] == s2.port)
        .expect("row");
    assert_eq!(row["mtls"], false, "{row}");
    // TLS 1.3 with a client certificate: the certificate is encrypted, so "unknown".
    let mut server_args = vec!["-tls1_3"];
    server_args.extend(&verify);
    let s3 = TlsServer::start(&node.pki, None, &server_args);
    assert!(s_client(
        &node.pki,
        Some(&node.client),
        s3.port,
        &["-tls1_3", "-cert", &cert, "-key", &key]
    ));
    let rows = records(&node.agent, "client", 3);
    let row = rows
        .iter()
        .find(|r| r["server_port"] == s3.port)
        .expect("row");
    assert_eq!(row["mtls"], "unknown", "{row}");
}

#[test]
fn governed_server_and_plaintext_streams() {
    let node = Node::new("posture-server");
    let s = TlsServer::start(&node.pki, Some(&node.server), &["-tls1_3"]);
    assert!(s_client(
        &node.pki,
        None,
        s.port,
        &["-tls1_3", "-servername", "server.test"]
    ));
    let rows = records(&node.agent, "server", 1);
    let tls: Vec<_> = rows
        .iter()
        .filter(|r| r["tls_version"] == "TLS 1.3")
        .collect();
    assert_eq!(tls.len(), 1, "{rows:#?}");
    assert_eq!(tls[0]["role"], "server");
    assert_eq!(tls[0]["sni"], "server.test");
    // A plain HTTP request from the governed client: recorded as plaintext, passed untouched
    // (the request reaches the server and its answer comes back).
    let http = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = http.local_addr().expect("addr").port();
    let server = std::thread::spawn(move || {
        use std::io::{Read, Write};
        let (mut s, _) = http.accept().expect("accept");
        let mut buf = [0u8; 64];
        let n = s.read(&mut buf).expect("read");
        s.write_all(b"HTTP/1.0 200 OK\r\n\r\nplain").expect("write");
        String::from_utf8_lossy(&buf[..n]).to_string()
    });
    let mut cmd = Command::new("/usr/bin/python3");
    cmd.arg("-c").arg(format!(
        "import socket;s=socket.create_connection(('127.0.0.1',{port}));s.sendall(b'GET / HTTP/1.0\\r\\n\\r\\n');print(s.recv(64).decode())"
    ));
    let out = in_cgroup(cmd.stdout(Stdio::piped()), &node.client)
        .wait_with_output()
        .expect("python");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("plain"),
        "answer passed untouched"
    );
    assert!(server.join().expect("server").starts_with("GET / HTTP/1.0"));
    let rows = records(&node.agent, "client", 1);
    assert!(
        rows.iter()
            .any(|r| r["tls_version"] == "none" && r["server_port"] == port),
        "{rows:#?}"
    );
    let metrics = node.agent.get("/metrics");
    assert!(
        metrics.contains("meshward_tls_handshakes_total{"),
        "{metrics}"
    );
    assert!(
        metrics.contains("connection_security_policy=\"unknown\""),
        "{metrics}"
    );
    assert!(
        metrics.contains("connection_security_policy=\"none\""),
        "{metrics}"
    );
}

#[test]
fn long_tls_transfer_through_the_posture_programs_loses_and_reorders_nothing() {
    // What the client sends is read by cgroup_skb egress here, by sk_msg on the sockhash when
    // the client has a name rule.
    long_tls_transfer(&Node::new("posture-bulk"));
    let name_rule = egress(
        "tls",
        "names",
        Some("client"),
        "DENY",
        "  - to:\n    - hosts: [never.invalid]\n",
    );
    long_tls_transfer(&Node::with_policies("posture-bulk-msg", &[name_rule]));
}

fn long_tls_transfer(node: &Node) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/support/tls_echo.py");
    let port = free_port();
    let mut server = Command::new("/usr/bin/python3")
        .args([
            script,
            "server",
            &port.to_string(),
            &node.pki.path("server.crt"),
            &node.pki.path("server.key"),
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("tls echo server");
    {
        use std::io::BufRead;
        let mut line = String::new();
        std::io::BufReader::new(server.stdout.as_mut().expect("stdout"))
            .read_line(&mut line)
            .expect("ready");
        assert_eq!(line.trim(), "listening");
    }
    // 32 MiB each way in random chunk sizes, checked byte for byte by the client.
    let total = 32 << 20;
    let mut cmd = Command::new("/usr/bin/python3");
    cmd.args([
        script,
        "client",
        &port.to_string(),
        &node.pki.path("ca.crt"),
        &total.to_string(),
        "2026",
    ])
    .stdout(Stdio::piped());
    let out = in_cgroup(&mut cmd, &node.client)
        .wait_with_output()
        .expect("tls echo client");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.trim(), format!("ok {total}"), "client: {text}");
    let _ = server.wait();
    // The handshake was read and the connection then left alone.
    let rows = records(&node.agent, "client", 1);
    assert!(
        rows.iter()
            .any(|r| r["tls_version"] == "TLS 1.3" && r["sni"] == "server.test"),
        "{rows:#?}"
    );
}

#[test]
fn handshakes_split_into_tiny_segments_and_non_tls_bytes() {
    let node = Node::new("posture-fragments");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/support/frag_tls.py");
    for (i, (maxver, chunk, version)) in [("1.3", "7", "TLS 1.3"), ("1.2", "3", "TLS 1.2")]
        .iter()
        .enumerate()
    {
        let s = TlsServer::start(&node.pki, None, &[]);
        let sni = format!("frag{i}.server.test");
        let mut cmd = Command::new("/usr/bin/python3");
        cmd.args([
            script,
            &s.port.to_string(),
            &node.pki.path("ca.crt"),
            &sni,
            chunk,
            maxver,
        ])
        .stdout(Stdio::piped());
        let out = in_cgroup(&mut cmd, &node.client)
            .wait_with_output()
            .expect("frag client");
        assert!(
            String::from_utf8_lossy(&out.stdout).starts_with("ok"),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
        let rows = records(&node.agent, "client", (i + 1) as u64);
        let row = rows
            .iter()
            .find(|r| r["server_port"] == s.port)
            .unwrap_or_else(|| panic!("{rows:#?}"));
        assert_eq!(row["tls_version"], *version, "{row}");
        assert_eq!(
            row["sni"],
            sni.as_str(),
            "ClientHello in {chunk}-byte segments: {row}"
        );
    }
    // Random bytes: not TLS; recorded as plaintext and passed untouched.
    let (addr, _l) = listener("127.0.0.1");
    let mut cmd = Command::new("/usr/bin/python3");
    cmd.arg("-c").arg(format!(
        "import os,socket;s=socket.create_connection(('127.0.0.1',{}));s.sendall(os.urandom(4096));print('sent')",
        addr.port()
    ));
    let out = in_cgroup(cmd.stdout(Stdio::piped()), &node.client)
        .wait_with_output()
        .expect("python");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "sent");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let p = node.agent.json("/posture");
        let plaintext = p["records"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|r| r["tls_version"] == "none" && r["server_port"] == addr.port());
        if plaintext {
            assert_eq!(p["stats"]["malformed"], 0, "{p}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "random bytes not recorded as plaintext: {p}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn curl_and_gnutls_clients_are_read_like_openssl() {
    let node = Node::new("posture-peers");
    // curl, TLS 1.2 only, SNI from the URL.
    let s = TlsServer::start(&node.pki, None, &["-www"]);
    let url = format!("https://server.test:{}/", s.port);
    let resolve = format!("server.test:{}:127.0.0.1", s.port);
    let mut cmd = Command::new("curl");
    cmd.args([
        "-sS",
        "-o",
        "/dev/null",
        "--tlsv1.2",
        "--tls-max",
        "1.2",
        "--cacert",
    ])
    .arg(node.pki.path("ca.crt"))
    .args(["--resolve", &resolve, &url]);
    let out = in_cgroup(cmd.stderr(Stdio::piped()), &node.client)
        .wait_with_output()
        .expect("curl");
    assert!(
        out.status.success(),
        "curl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows = records(&node.agent, "client", 1);
    let row = rows
        .iter()
        .find(|r| r["server_port"] == s.port)
        .unwrap_or_else(|| panic!("{rows:#?}"));
    assert_eq!(row["tls_version"], "TLS 1.2", "{row}");
    assert_eq!(row["sni"], "server.test", "{row}");
    // gnutls-cli, TLS 1.3, a different TLS library.
    let s2 = TlsServer::start(&node.pki, None, &[]);
    let mut cmd = Command::new("gnutls-cli");
    cmd.args([
        "--x509cafile",
        &node.pki.path("ca.crt"),
        "--sni-hostname=gnutls.server.test",
        "--insecure",
    ])
    .args(["-p", &s2.port.to_string(), "127.0.0.1"])
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    let _ = in_cgroup(&mut cmd, &node.client).wait();
    let rows = records(&node.agent, "client", 2);
    let row = rows
        .iter()
        .find(|r| r["server_port"] == s2.port)
        .unwrap_or_else(|| panic!("{rows:#?}"));
    assert_eq!(row["tls_version"], "TLS 1.3", "{row}");
    assert_eq!(row["sni"], "gnutls.server.test", "{row}");
}

/// EgressPolicy host names are also checked against the server name of a governed client's
/// ClientHello: a DENY name (wildcards included) cuts the connection there, and so does a name
/// no ALLOW rule names when the address was admitted only because an allowed name resolves to
/// it. The rule is named in the event; posture rows carry the client's binary.
#[test]
fn server_names_are_enforced_at_the_client_hello() {
    let dns = Dnsmasq::start(&[("good.test", "127.0.0.1")], 60);
    let cg = CgroupTree::new("posture-sni");
    let client = cg.child("client");
    let scratch = Scratch::new("posture-sni");
    let pki = Pki::new(&scratch);
    let path = config(
        &scratch,
        &[
            workload("tls", "client", "client", &client),
            egress(
                "tls",
                "names",
                None,
                "ALLOW",
                "  - to:\n    - hosts: [good.test]\n",
            ),
            egress(
                "tls",
                "evil",
                None,
                "DENY",
                "  - to:\n    - hosts: [\"*.evil.test\"]\n",
            ),
        ],
    );
    let agent = Agent::start(
        "posture-sni",
        &path,
        &["--tls-posture", "--dns-server", &dns.addr.to_string()],
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while agent.json("/policy")["dns_names"][0]["ips"][0] != "127.0.0.1" {
        assert!(Instant::now() < deadline, "good.test never resolved");
        std::thread::sleep(Duration::from_millis(100));
    }
    let server = TlsServer::start(&pki, None, &[]);
    let hello = |sni: Option<&str>| {
        let mut args = vec!["-tls1_3"];
        match sni {
            Some(name) => args.extend(["-servername", name]),
            None => args.push("-noservername"),
        }
        s_client(&pki, Some(&client), server.port, &args)
    };

    assert!(
        hello(Some("good.test")),
        "allowed name: handshake completes"
    );
    assert!(!hello(Some("other.test")), "name not allowed: cut");
    assert!(!hello(None), "no server name: cut");
    assert!(!hello(Some("a.b.evil.test")), "denied wildcard: cut");
    assert!(hello(Some("GOOD.test")), "names are case-insensitive");

    // Plaintext to the same address is not a TLS connection: nothing to check.
    let plain: std::net::SocketAddr = format!("127.0.0.1:{}", server.port).parse().unwrap();
    assert_eq!(probe(&client, "tcp", plain), "ok");

    let sni_events = |rule: &str| {
        let events = agent.json("/events");
        events["events"]
            .as_array()
            .expect("events list")
            .iter()
            .filter(|e| e["hook"] == "tls_sni" && e["rule"] == rule)
            .cloned()
            .collect::<Vec<_>>()
    };
    let defaults = sni_events(
        "(sni deny: admitted only by DNS-name ALLOW rules, and none names this TLS server name)",
    );
    assert_eq!(defaults.len(), 2, "other.test and no SNI");
    assert_eq!(
        defaults[0]["destination"],
        format!("127.0.0.1:{}", server.port)
    );
    assert_eq!(defaults[0]["workload"], "client");
    assert_eq!(defaults[0]["comm"], "openssl");
    assert_eq!(sni_events("tls/evil#0").len(), 1, "the DENY rule is named");
    assert_eq!(agent.metric("meshward_tls_sni_cut_total", &[]), Some(3));
    assert_eq!(
        agent.metric(
            "meshward_rule_verdicts_total",
            &[("policy", "evil"), ("verdict", "deny")]
        ),
        Some(1)
    );

    let rows = records(&agent, "client", 2);
    let good: Vec<_> = rows.iter().filter(|r| r["sni"] == "good.test").collect();
    assert!(!good.is_empty(), "{rows:#?}");
    let openssl = std::fs::canonicalize(which("openssl")).expect("openssl path");
    assert_eq!(
        good[0]["binary"],
        openssl.display().to_string(),
        "the client's binary"
    );
    assert!(
        rows.iter()
            .all(|r| r["sni"] == "good.test" || r["sni"] == "GOOD.test"),
        "cut connections record no handshake: {rows:#?}"
    );
}

fn which(tool: &str) -> PathBuf {
    std::env::var_os("PATH")
        .and_then(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join(tool))
                .find(|f| f.is_file())
        })
        .unwrap_or_else(|| panic!("{tool} not on PATH"))
}
