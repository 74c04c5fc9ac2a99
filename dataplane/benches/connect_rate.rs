//! Connection rate with 10 / 1k / 100k rules loaded against the same path with no program
//! attached, interleaved in one run, plus each verdict's own cost from the kernel's bpf_stats:
//! - egress: connect() from a governed cgroup over loopback (cgroup/connect4, mw_connect4);
//! - inbound: connect() from a client network namespace to a governed server namespace over a
//!   veth (sk_lookup, mw_sk_lookup), AuthorizationPolicy rules with distinct source blocks.
//!
//! Run as root: `cargo bench -p dataplane --bench connect_rate`. Environment:
//! MESHWARD_BENCH_ROUNDS (default 5), MESHWARD_BENCH_MS per measurement (default 1000).
#[path = "../../tests/support/mod.rs"]
mod support;

use std::{
    collections::BTreeMap,
    net::{SocketAddr, TcpListener},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use support::{
    Agent, CgroupTree, NetPair, Scratch, in_cgroup, in_netns, program_stats, write_atomic,
};

const CLIENT_ENV: &str = "MESHWARD_BENCH_CLIENT";
const SERVER_ENV: &str = "MESHWARD_BENCH_SERVER";
const INBOUND_PORT: u16 = 18300;

/// One experiment: the configs per level and where the client runs.
struct Experiment<'a> {
    title: &'a str,
    program: &'a str,
    levels: Vec<(&'a str, String)>,
    target: SocketAddr,
    place_client: Box<dyn Fn(&mut Command) -> Child + 'a>,
}

fn main() {
    if let Ok(spec) = std::env::var(CLIENT_ENV) {
        return client(&spec);
    }
    if let Ok(port) = std::env::var(SERVER_ENV) {
        return serve(port.parse().expect("port"));
    }
    support::require_root();
    // Reloads of 100k rules on a busy 2-core machine can take longer than the tests' default.
    // SAFETY: set before any other thread of this process exists.
    unsafe { std::env::set_var("MESHWARD_WAIT_SECS", "180") };
    let rounds: usize = env_or("MESHWARD_BENCH_ROUNDS", 5);
    let ms: u64 = env_or("MESHWARD_BENCH_MS", 1000);
    let sizes = [10, 1_000, 100_000];
    let _stats = aya::sys::enable_stats(aya::sys::Stats::RunTime).expect("enable bpf_stats");

    // Egress: a listener on loopback in this process, the client in a governed cgroup.
    let server = TcpListener::bind("127.0.0.1:0").expect("bind");
    let target = server.local_addr().expect("addr");
    raise_backlog(&server);
    std::thread::spawn(move || server.incoming().for_each(drop));
    let cg = CgroupTree::new("bench-connect");
    let rel = cg.child("client");
    let mut levels = vec![("no program", egress_config(&rel, target, None))];
    for (n, name) in sizes.iter().zip(["10 rules", "1k rules", "100k rules"]) {
        levels.push((name, egress_config(&rel, target, Some(*n))));
    }
    run(
        &Experiment {
            title: "egress (cgroup/connect4)",
            program: "mw_connect4",
            levels,
            target,
            place_client: Box::new(|cmd| in_cgroup(cmd, &rel)),
        },
        rounds,
        ms,
    );

    // Inbound: server and client in their own network namespaces.
    let net = NetPair::new("bench-inbound");
    let server_cgroup = cg.child("server");
    let exe = std::env::current_exe().expect("own path");
    let mut server = Command::new(&exe);
    server.env(SERVER_ENV, INBOUND_PORT.to_string());
    let mut server = in_netns(&mut server, &net.server_ns, Some(&server_cgroup));
    std::thread::sleep(Duration::from_millis(300));
    let target: SocketAddr = format!("{}:{INBOUND_PORT}", net.server_ip)
        .parse()
        .expect("addr");
    let netns = NetPair::netns_path(&net.server_ns);
    let mut levels = vec![(
        "no program",
        inbound_config(&net, &server_cgroup, None, &netns),
    )];
    for (n, name) in sizes.iter().zip(["10 rules", "1k rules", "100k rules"]) {
        levels.push((name, inbound_config(&net, &server_cgroup, Some(*n), &netns)));
    }
    let client_ns = net.client_ns.clone();
    run(
        &Experiment {
            title: "inbound (sk_lookup)",
            program: "mw_sk_lookup",
            levels,
            target,
            place_client: Box::new(move |cmd| in_netns(cmd, &client_ns, None)),
        },
        rounds,
        ms,
    );
    let _ = server.kill();
    let _ = server.wait();
}

fn run(exp: &Experiment, rounds: usize, ms: u64) {
    let scratch = Scratch::new("bench-connect-config");
    let path = scratch.write("policy.yaml", &exp.levels[0].1);
    let mut agent = Agent::start("bench-connect", &path, &["--events-per-sec", "1"]);
    let mut rates: BTreeMap<usize, Vec<f64>> = BTreeMap::new();
    let mut verdict_ns: BTreeMap<usize, Vec<f64>> = BTreeMap::new();
    let mut apply_ms: BTreeMap<usize, Vec<f64>> = BTreeMap::new();
    let mut generation = agent.json("/healthz")["generation"].as_u64().unwrap_or(0);
    for round in 0..rounds {
        for (i, (name, config)) in exp.levels.iter().enumerate() {
            if !(round == 0 && i == 0) {
                write_atomic(&path, config);
                let t = Instant::now();
                let want = generation + 1;
                let h = agent.wait_until(name, |h| h["generation"].as_u64() == Some(want));
                apply_ms
                    .entry(i)
                    .or_default()
                    .push(t.elapsed().as_secs_f64() * 1e3);
                assert_eq!(h["status"], "ok", "{h}");
                generation = want;
            }
            let before = program_stats(exp.program);
            let rate = measure(exp, ms);
            let after = program_stats(exp.program);
            rates.entry(i).or_default().push(rate);
            if after.1 > before.1 {
                let ns = (after.0 - before.0) as f64 / (after.1 - before.1) as f64;
                verdict_ns.entry(i).or_default().push(ns);
            }
            eprintln!(
                "{} round {round} {name:>11}: {rate:>9.0} connects/s",
                exp.title
            );
        }
    }
    let base = median(&rates[&0]);
    println!("\n{}: median of {rounds} rounds\n", exp.title);
    println!(
        "| rules loaded | connects/s | ratio to no program | verdict ns/run (bpf_stats) | reload to live, ms |"
    );
    println!("|---|---|---|---|---|");
    for (i, (name, _)) in exp.levels.iter().enumerate() {
        let r = median(&rates[&i]);
        let fmt = |m: &BTreeMap<usize, Vec<f64>>| {
            m.get(&i)
                .map(|v| format!("{:.0}", median(v)))
                .unwrap_or_else(|| "—".into())
        };
        println!(
            "| {name} | {r:.0} | {:.3} | {} | {} |",
            r / base,
            fmt(&verdict_ns),
            fmt(&apply_ms)
        );
    }
}

fn env_or<T: std::str::FromStr>(key: &str, default: T) -> T {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// std listens with a backlog of 128; a full accept queue drops SYNs (1 s retransmit) and
/// would measure the accept loop instead of connect().
fn raise_backlog(l: &TcpListener) {
    // SAFETY: listen(2) again on our own listening socket only raises its backlog.
    unsafe { libc::listen(std::os::fd::AsRawFd::as_raw_fd(l), 4096) };
}

/// `n` ALLOW rules for the workload (one of them the benchmark's target), or the workload with
/// no cgroup annotation (no program attached to the cgroup).
fn egress_config(rel: &str, target: SocketAddr, n: Option<usize>) -> String {
    let Some(n) = n else {
        return "apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata:\n  name: client\n  namespace: bench\nspec:\n  labels:\n    app: client\n".into();
    };
    let mut s = support::workload("bench", "client", "client", rel);
    s.push_str("apiVersion: meshward.io/v1alpha1\nkind: EgressPolicy\nmetadata:\n  name: many\n  namespace: bench\nspec:\n  action: ALLOW\n  rules:\n");
    s.push_str(&format!(
        "  - to:\n    - hosts: [\"{}\"]\n      ports: [{}]\n",
        target.ip(),
        target.port()
    ));
    for i in 1..n {
        s.push_str(&format!(
            "  - to:\n    - hosts: [\"{}\"]\n      ports: [443]\n",
            filler_ip(i)
        ));
    }
    s
}

/// `n` ALLOW AuthorizationPolicy rules for the server (one admits the client's address), or the
/// server without a netns annotation (no sk_lookup attached).
fn inbound_config(
    net: &NetPair,
    cgroup: &str,
    n: Option<usize>,
    netns: &std::path::Path,
) -> String {
    let netns_line = match n {
        Some(_) => format!("    meshward.io/netns: {}\n", netns.display()),
        None => String::new(),
    };
    let mut s = format!(
        "apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata:\n  name: server\n  namespace: bench\n  annotations:\n    meshward.io/cgroup: {cgroup}\n{netns_line}spec:\n  address: {}\n  labels:\n    app: server\n---\n",
        net.server_ip
    );
    let Some(n) = n else { return s };
    s.push_str("apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: many\n  namespace: bench\nspec:\n  action: ALLOW\n  rules:\n");
    s.push_str(&format!(
        "  - from:\n    - source:\n        ipBlocks: [\"{}\"]\n    to:\n    - operation:\n        ports: [\"{INBOUND_PORT}\"]\n",
        net.client_ip
    ));
    for i in 1..n {
        s.push_str(&format!(
            "  - from:\n    - source:\n        ipBlocks: [\"{}\"]\n",
            filler_ip(i)
        ));
    }
    s
}

/// Distinct addresses that no benchmark traffic uses (they only fill the tables).
fn filler_ip(i: usize) -> String {
    format!("10.{}.{}.{}", (i >> 16) & 255, (i >> 8) & 255, i & 255)
}

/// Runs the client where the experiment places it for `ms` and returns connects per second.
fn measure(exp: &Experiment, ms: u64) -> f64 {
    let exe = std::env::current_exe().expect("own path");
    let mut cmd = Command::new(exe);
    cmd.env(CLIENT_ENV, format!("{},{ms}", exp.target))
        .stdout(Stdio::piped());
    let out = (exp.place_client)(&mut cmd)
        .wait_with_output()
        .expect("client");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("client failed: {}", String::from_utf8_lossy(&out.stdout)))
}

/// Server mode (inside the server namespace): accept and drop, with a deep accept queue.
fn serve(port: u16) {
    let l = TcpListener::bind(("0.0.0.0", port)).expect("bind");
    raise_backlog(&l);
    l.incoming().for_each(drop);
}

/// Client mode: connect + close (RST, so no TIME_WAIT pile-up) in a loop; prints connects/s.
fn client(spec: &str) {
    let (addr, ms) = spec.split_once(',').expect("addr,ms");
    let addr: SocketAddr = addr.parse().expect("addr");
    let deadline = Duration::from_millis(ms.parse().expect("ms"));
    let SocketAddr::V4(v4) = addr else {
        panic!("IPv4 target")
    };
    let sin = libc::sockaddr_in {
        sin_family: libc::AF_INET as u16,
        sin_port: v4.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*v4.ip()).to_be(),
        },
        sin_zero: [0; 8],
    };
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < deadline {
        // SAFETY: plain socket calls on a fresh fd with valid pointers.
        unsafe {
            let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
            assert!(fd >= 0, "socket");
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                (&raw const linger).cast(),
                size_of::<libc::linger>() as u32,
            );
            let rc = libc::connect(
                fd,
                (&raw const sin).cast(),
                size_of::<libc::sockaddr_in>() as u32,
            );
            assert_eq!(rc, 0, "connect: {}", std::io::Error::last_os_error());
            libc::close(fd);
        }
        n += 1;
    }
    println!("{:.1}", n as f64 / start.elapsed().as_secs_f64());
}
