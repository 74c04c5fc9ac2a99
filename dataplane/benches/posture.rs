//! TLS posture cost: bulk throughput and TLS handshake rate with the posture programs attached
//! (agent with --tls-posture governing the cgroups) against the same cgroups with no program,
//! interleaved in one run. Run as root: `cargo bench -p dataplane --bench posture`.
//! Environment: MESHWARD_BENCH_ROUNDS (default 3).
#[path = "../../tests/support/mod.rs"]
mod support;

use std::{
    collections::BTreeMap,
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use support::{Agent, CgroupTree, Scratch, in_cgroup, write_atomic};

const SINK_ENV: &str = "MESHWARD_BENCH_SINK";
const SEND_ENV: &str = "MESHWARD_BENCH_SEND";
const BULK_BYTES: u64 = 4 << 30;

fn main() {
    if let Ok(port) = std::env::var(SINK_ENV) {
        return sink(port.parse().expect("port"));
    }
    if let Ok(port) = std::env::var(SEND_ENV) {
        return send(port.parse().expect("port"));
    }
    support::require_root();
    // SAFETY: set before any other thread of this process exists.
    unsafe { std::env::set_var("MESHWARD_WAIT_SECS", "120") };
    let rounds: usize = std::env::var("MESHWARD_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let cg = CgroupTree::new("bench-posture");
    let (client, server) = (cg.child("client"), cg.child("server"));
    let scratch = Scratch::new("bench-posture");
    let sh = |cmd: &str| {
        let ok = Command::new("sh")
            .arg("-c")
            .arg(cmd)
            .current_dir(&scratch.dir)
            .status()
            .expect("sh")
            .success();
        assert!(ok, "{cmd}");
    };
    sh(
        "openssl req -x509 -newkey rsa:2048 -nodes -keyout s.key -out s.crt -subj /CN=server.test -days 1 2>/dev/null",
    );
    let governed = [
        support::workload("b", "client", "client", &client),
        support::workload("b", "server", "server", &server),
    ]
    .concat();
    let ungoverned = "apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata:\n  name: client\n  namespace: b\nspec:\n  serviceAccount: client\n".to_string();
    // Which side's socket is in the sockhash: both (the real case), or one, to tell the cost of
    // the sk_msg (sending) path from the sk_skb (receiving) path.
    let client_only = [
        support::workload("b", "client", "client", &client),
        "apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata:\n  name: server\n  namespace: b\nspec:\n  serviceAccount: server\n---\n".to_string(),
    ]
    .concat();
    let server_only = [
        ungoverned.clone(),
        "---\n".to_string(),
        support::workload("b", "server", "server", &server),
    ]
    .concat();
    let levels = [
        ("no program", ungoverned),
        ("posture programs", governed),
        ("sender side only", client_only),
        ("receiver side only", server_only),
    ];
    let path = scratch.write("policy.yaml", &levels[0].1);
    let mut agent = Agent::start("bench-posture", &path, &["--tls-posture"]);
    let exe = std::env::current_exe().expect("own path");

    let mut bulk: BTreeMap<usize, Vec<f64>> = BTreeMap::new();
    let mut hs: BTreeMap<usize, Vec<f64>> = BTreeMap::new();
    let mut generation = agent.json("/healthz")["generation"].as_u64().unwrap_or(0);
    for round in 0..rounds {
        for (i, (name, config)) in levels.iter().enumerate() {
            if !(round == 0 && i == 0) {
                write_atomic(&path, config);
                let want = generation + 1;
                agent.wait_until(name, |h| h["generation"].as_u64() == Some(want));
                generation = want;
            }
            // Bulk: a sink in the server cgroup, a sender in the client cgroup (both sockets in
            // the sockhash when governed).
            let port = support::free_port();
            let mut sink = Command::new(&exe);
            sink.env(SINK_ENV, port.to_string()).stdout(Stdio::piped());
            let sink = in_cgroup(&mut sink, &server);
            std::thread::sleep(Duration::from_millis(200));
            let mut sender = Command::new(&exe);
            sender
                .env(SEND_ENV, port.to_string())
                .stdout(Stdio::piped());
            let out = in_cgroup(&mut sender, &client)
                .wait_with_output()
                .expect("sender");
            let _ = sink.wait_with_output();
            let gbps: f64 = String::from_utf8_lossy(&out.stdout)
                .trim()
                .parse()
                .expect("gbit/s");
            bulk.entry(i).or_default().push(gbps);
            // Handshakes: openssl s_time (new session each time) against s_server.
            let tls_port = support::free_port();
            let mut srv = Command::new("openssl");
            srv.args([
                "s_server",
                "-accept",
                &format!("127.0.0.1:{tls_port}"),
                "-cert",
                "s.crt",
                "-key",
                "s.key",
                "-quiet",
            ])
            .current_dir(&scratch.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
            let mut srv = in_cgroup(&mut srv, &server);
            std::thread::sleep(Duration::from_millis(300));
            let mut st = Command::new("openssl");
            st.args([
                "s_time",
                "-connect",
                &format!("127.0.0.1:{tls_port}"),
                "-new",
                "-time",
                "3",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
            let out = in_cgroup(&mut st, &client)
                .wait_with_output()
                .expect("s_time");
            let _ = srv.kill();
            let _ = srv.wait();
            let text = String::from_utf8_lossy(&out.stdout);
            let rate = text
                .lines()
                .find(|l| l.contains("connections/user sec") || l.contains("connections in"))
                .and_then(|l| l.split_whitespace().find_map(|w| w.parse::<f64>().ok()))
                .unwrap_or(0.0);
            let per_sec = text
                .lines()
                .find_map(|l| {
                    l.strip_suffix(" connections/user sec")
                        .and_then(|x| x.rsplit(';').next())
                        .and_then(|x| x.trim().parse::<f64>().ok())
                })
                .unwrap_or(rate);
            hs.entry(i).or_default().push(per_sec);
            eprintln!(
                "round {round} {name:>16}: bulk {gbps:.2} Gbit/s, handshakes {per_sec:.0}/user-s"
            );
        }
    }
    let med = |v: &Vec<f64>| {
        let mut v = v.clone();
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    // The machine's speed drifts between rounds (a shared VM): each round measures both levels
    // back to back, and the ratio reported is the median of those paired ratios.
    let paired = |m: &BTreeMap<usize, Vec<f64>>, i: usize| {
        let ratios: Vec<f64> = m[&i].iter().zip(&m[&0]).map(|(x, base)| x / base).collect();
        med(&ratios)
    };
    println!(
        "| | bulk Gbit/s (median) | ratio (median of paired rounds) | TLS handshakes per user-second (openssl s_time -new, median) | ratio (median of paired rounds) |"
    );
    println!("|---|---|---|---|---|");
    for (i, (name, _)) in levels.iter().enumerate() {
        println!(
            "| {name} | {:.2} | {:.3} | {:.0} | {:.3} |",
            med(&bulk[&i]),
            paired(&bulk, i),
            med(&hs[&i]),
            paired(&hs, i)
        );
    }
    let rows = agent.json("/posture");
    eprintln!("posture stats: {}", rows["stats"]);
}

/// Sink mode: accept one connection and read until EOF.
fn sink(port: u16) {
    pin_to_cpu(1);
    let l = TcpListener::bind(("127.0.0.1", port)).expect("bind");
    let (mut s, _) = l.accept().expect("accept");
    let mut buf = vec![0u8; 1 << 20];
    while s.read(&mut buf).map(|n| n > 0).unwrap_or(false) {}
}

/// Sender mode: BULK_BYTES in 64 KiB writes; prints Gbit/s.
fn send(port: u16) {
    pin_to_cpu(0);
    // The sink may still be starting on a loaded machine.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut s = loop {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(s) => break s,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => panic!("connect to the sink: {e}"),
        }
    };
    let buf = vec![0x5au8; 64 << 10];
    let start = Instant::now();
    let mut sent = 0u64;
    while sent < BULK_BYTES {
        s.write_all(&buf).expect("write");
        sent += buf.len() as u64;
    }
    drop(s);
    println!(
        "{:.3}",
        sent as f64 * 8.0 / start.elapsed().as_secs_f64() / 1e9
    );
}

/// Keeps sender and sink on CPUs of their own: where the scheduler puts them moved single rounds
/// by ±15% on 2 cores.
fn pin_to_cpu(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; sched_setaffinity reads it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            eprintln!("pinning to CPU {cpu}: {}", std::io::Error::last_os_error());
        }
    }
}
