//! Real-world TLS handshakes through real sockets: every TLS conversation of the ja4plus
//! captures (FoxIO vectors, scripts/bootstrap.sh) whose client opens with a complete ClientHello
//! and whose server answers with a ServerHello is replayed over loopback TCP — the captured bytes
//! of both sides, in capture order — with a governed process as the client and a listener
//! outside the governed cgroup as the server, one listening port per conversation. What the
//! kernel posture programs report for each port (/posture: SNI, version, cipher) is compared
//! with what tls-parser reads from the same bytes; both sides also check that every byte
//! arrived untouched.

#[path = "support/captures.rs"]
mod captures;
mod support;

use std::{
    collections::BTreeMap,
    io::{Read, Write},
    net::TcpListener,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use captures::{capture_files, conversations, hellos};
use support::*;

/// One conversation to replay and what tls-parser reads from it.
struct Case {
    name: String,
    turns: Vec<(bool, Vec<u8>)>,
    sni: Option<String>,
    version: String,
    cipher: String,
    /// Why the kernel is not expected to report it (it is replayed all the same: its bytes must
    /// pass untouched, and a record, if any, must agree).
    unfinished: Option<&'static str>,
    hello_retry: bool,
}

/// Version names as /posture spells them (docs/posture.md).
fn version_name(v: u16) -> String {
    match v {
        0x0300 => "SSL 3.0".into(),
        0x0301..=0x0304 => format!("TLS 1.{}", v - 0x0301),
        _ => format!("0x{v:04x}"),
    }
}

/// Cipher suite names from tls-parser's own copy of the IANA registry.
fn cipher_name(c: u16) -> String {
    tls_parser::TlsCipherSuite::from_id(c)
        .map(|s| s.name.to_string())
        .unwrap_or_else(|| format!("0x{c:04x}"))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The replayable conversations of every capture, and how many TLS client streams were left
/// out, per (reason, capture file).
fn cases() -> (Vec<Case>, BTreeMap<(&'static str, String), usize>) {
    let (mut cases, mut left_out) = (vec![], BTreeMap::new());
    for path in capture_files() {
        let file = std::fs::read(&path).expect("read capture");
        let file_name = path.file_name().unwrap_or_default().to_string_lossy();
        for conv in conversations(&file) {
            let (c, s) = (hellos(&conv.c2s), hellos(&conv.s2c));
            let (a, ap, b, bp) = conv.key;
            let name = format!("{file_name} {a}:{ap} -> {b}:{bp}");
            let mut leave_out =
                |reason| *left_out.entry((reason, file_name.to_string())).or_default() += 1;
            if s.opens_with_client_hello {
                leave_out("the ClientHello is in the direction captured second");
            }
            if !c.opens_with_client_hello {
                continue; // not a TLS client stream
            }
            let Some((version, cipher)) = s.server_hello else {
                leave_out("no ServerHello in the server's direction (not captured)");
                continue;
            };
            if c.client_hello_len > dataplane_common::tls::HELLO_CAP {
                leave_out("ClientHello longer than the kernel's 4 KiB hello buffer");
                continue;
            }
            // TLS <= 1.2 is recorded when the client's direction reaches its ChangeCipherSpec
            // (docs/posture.md): a handshake the client never finished leaves no record.
            let unfinished = (version < 0x0304 && !c.change_cipher_spec).then_some(
                "TLS <= 1.2 handshake the client never finished (no ChangeCipherSpec: an alert or \
                 the end of the capture), not recorded by design",
            );
            cases.push(Case {
                name,
                turns: conv.turns,
                sni: c.sni,
                version: version_name(version),
                cipher: cipher_name(cipher),
                unfinished,
                hello_retry: s.hello_retry,
            });
        }
    }
    (cases, left_out)
}

/// The server side of one conversation: accepts one connection, then sends its turns and
/// checks that the client's arrive byte for byte.
fn serve(listener: TcpListener, turns: Vec<(bool, Vec<u8>)>) -> Result<(), String> {
    listener.set_nonblocking(true).map_err(|e| e.to_string())?;
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut sock = loop {
        match listener.accept() {
            Ok((s, _)) => break s,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if Instant::now() > deadline {
                    return Err("no connection".into());
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => return Err(format!("accept: {e}")),
        }
    };
    sock.set_nonblocking(false).map_err(|e| e.to_string())?;
    sock.set_read_timeout(Some(Duration::from_secs(20)))
        .map_err(|e| e.to_string())?;
    sock.set_nodelay(true).map_err(|e| e.to_string())?;
    for (i, (from_client, bytes)) in turns.iter().enumerate() {
        if *from_client {
            let mut got = vec![0; bytes.len()];
            sock.read_exact(&mut got)
                .map_err(|e| format!("turn {i}: read {} bytes: {e}", bytes.len()))?;
            if got != *bytes {
                return Err(format!("turn {i}: the client's bytes arrived changed"));
            }
        } else {
            sock.write_all(bytes)
                .map_err(|e| format!("turn {i}: write: {e}"))?;
        }
    }
    Ok(())
}

#[test]
fn ja4plus_captures_replayed_through_real_sockets_read_like_tls_parser() {
    let started = Instant::now();
    let (cases, left_out) = cases();
    assert!(
        cases.len() >= 20,
        "too few replayable TLS conversations: {}",
        cases.len()
    );
    let cg = CgroupTree::new("posture-replay");
    let client = cg.child("client");
    let scratch = Scratch::new("posture-replay");
    let config = scratch.write("policy.yaml", &workload("tls", "replay", "replay", &client));
    let agent = Agent::start("posture-replay", &config, &["--tls-posture"]);

    // One listener (and port) per conversation, outside the governed cgroup.
    let (mut spec, mut ports, mut servers) = (vec![], vec![], vec![]);
    for case in &cases {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = l.local_addr().expect("addr").port();
        let turns: Vec<_> = case
            .turns
            .iter()
            .map(|(c, b)| serde_json::json!([if *c { "c" } else { "s" }, hex(b)]))
            .collect();
        spec.push(serde_json::json!({ "port": port, "turns": turns }));
        ports.push(port);
        let t = case.turns.clone();
        servers.push(std::thread::spawn(move || serve(l, t)));
    }
    let spec_path = scratch.write("replay.json", &serde_json::Value::from(spec).to_string());
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/support/replay_client.py"
    );
    let mut cmd = Command::new("/usr/bin/python3");
    cmd.arg(script).arg(&spec_path).stdout(Stdio::piped());
    let out = in_cgroup(&mut cmd, &client)
        .wait_with_output()
        .expect("replay client");
    let client_results: BTreeMap<u16, String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let (port, result) = l.split_once(' ')?;
            Some((port.parse().ok()?, result.to_string()))
        })
        .collect();
    let mut replay_errors = vec![];
    for ((server, port), case) in servers.into_iter().zip(&ports).zip(&cases) {
        let server = server.join().expect("server thread");
        let client = client_results.get(port).map_or("no result", String::as_str);
        if server.is_err() || client != "ok" {
            replay_errors.push(format!(
                "{} (port {port}): server {server:?}, client {client}",
                case.name
            ));
        }
    }
    assert!(
        replay_errors.is_empty(),
        "replays failed (bytes must pass untouched):\n{}",
        replay_errors.join("\n")
    );

    // The records, once every port has one (or 10 s have passed).
    let deadline = Instant::now() + Duration::from_secs(10);
    let rows: Vec<serde_json::Value> = loop {
        let p = agent.json("/posture");
        let rows: Vec<_> = p["records"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|r| r["workload"] == "replay")
            .cloned()
            .collect();
        let reported = |port: u16| rows.iter().any(|r| r["server_port"] == port);
        let expected = cases
            .iter()
            .zip(&ports)
            .filter(|(c, _)| c.unfinished.is_none());
        if expected.clone().all(|(_, &p)| reported(p)) || Instant::now() > deadline {
            break rows;
        }
        std::thread::sleep(Duration::from_millis(100));
    };

    let (mut agree, mut disagree, mut unreported, mut excluded) = (0, vec![], vec![], vec![]);
    for (case, &port) in cases.iter().zip(&ports) {
        let mine: Vec<_> = rows.iter().filter(|r| r["server_port"] == port).collect();
        let expected = serde_json::json!({
            "sni": case.sni, "tls_version": case.version, "cipher": case.cipher,
        });
        let ours = |r: &serde_json::Value| {
            serde_json::json!({
                "sni": r["sni"], "tls_version": r["tls_version"], "cipher": r["cipher"],
            })
        };
        let what = format!("{} (port {port})", case.name);
        match (mine.as_slice(), case.unfinished) {
            ([], None) => unreported.push(format!("{what}: expected {expected}")),
            ([], Some(why)) => excluded.push(format!("{what}: {why}; not reported")),
            ([r], why) if ours(r) == expected && r["role"] == "client" => match why {
                None => agree += 1,
                Some(why) => excluded.push(format!("{what}: {why}; reported anyway, agrees")),
            },
            _ => {
                let kernel: Vec<_> = mine.iter().map(|r| ours(r)).collect();
                let kernel = serde_json::Value::from(kernel);
                disagree.push(format!("{what}: tls-parser {expected}, kernel {kernel}"));
            }
        }
    }
    println!(
        "ja4plus replay: {} streams, {} agree, {} disagree, {} not reported ({:.1} s)",
        agree + disagree.len() + unreported.len(),
        agree,
        disagree.len(),
        unreported.len(),
        started.elapsed().as_secs_f64()
    );
    let counted: Vec<&Case> = cases.iter().filter(|c| c.unfinished.is_none()).collect();
    let mut versions: BTreeMap<&str, usize> = BTreeMap::new();
    for c in &counted {
        *versions.entry(&c.version).or_default() += 1;
    }
    let files: std::collections::BTreeSet<_> = counted
        .iter()
        .filter_map(|c| c.name.split(' ').next())
        .collect();
    println!(
        "  from {} capture files; versions {versions:?}; {} without SNI; {} after a HelloRetryRequest",
        files.len(),
        counted.iter().filter(|c| c.sni.is_none()).count(),
        counted.iter().filter(|c| c.hello_retry).count()
    );
    for ((reason, file), n) in &left_out {
        println!("  left out, {reason}: {file} x{n}");
    }
    for e in &excluded {
        println!("  replayed, excluded from the figures: {e}");
    }
    for d in &disagree {
        println!("  disagree: {d}");
    }
    for u in &unreported {
        println!("  not reported: {u}");
    }
    assert!(
        disagree.is_empty() && unreported.is_empty(),
        "{} disagree, {} not reported (see above)",
        disagree.len(),
        unreported.len()
    );
    // Handshakes that never finished leave no row but are counted when their socket closes.
    let unfinished = cases.iter().filter(|c| c.unfinished.is_some()).count() as u64;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let incomplete = agent.json("/posture")["stats"]["incomplete"].as_u64();
        if incomplete == Some(unfinished) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "incomplete handshakes counted: {incomplete:?}, expected {unfinished}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    println!("  unfinished handshakes counted as incomplete: {unfinished}");
}
