//! connect() rate from a governed cgroup with 10 / 1k / 100k egress rules loaded, against the
//! same cgroup with no program attached, interleaved in one run; plus the verdict's own cost per
//! run from the kernel's bpf_stats. Run as root:
//!   cargo bench -p dataplane --bench connect_rate
//! Environment: MESHWARD_BENCH_ROUNDS (default 5), MESHWARD_BENCH_MS per measurement (1000).
#[path = "../../tests/support/mod.rs"]
mod support;

use std::{
    collections::BTreeMap,
    net::{SocketAddr, TcpListener},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use support::{Agent, CgroupTree, Scratch, in_cgroup};

const CLIENT_ENV: &str = "MESHWARD_BENCH_CLIENT";

fn main() {
    if let Ok(spec) = std::env::var(CLIENT_ENV) {
        return client(&spec);
    }
    support::require_root();
    let rounds: usize = env_or("MESHWARD_BENCH_ROUNDS", 5);
    let ms: u64 = env_or("MESHWARD_BENCH_MS", 1000);

    let server = TcpListener::bind("127.0.0.1:0").expect("bind");
    let target = server.local_addr().expect("addr");
    // std listens with a backlog of 128; a full accept queue drops SYNs (1 s retransmit) and
    // would measure the accept thread instead of connect().
    // SAFETY: listen(2) again on our own listening socket only raises its backlog.
    unsafe { libc::listen(std::os::fd::AsRawFd::as_raw_fd(&server), 4096) };
    std::thread::spawn(move || {
        for s in server.incoming() {
            drop(s);
        }
    });

    let cg = CgroupTree::new("bench-connect");
    let rel = cg.child("client");
    let scratch = Scratch::new("bench-connect");
    let levels: [(&str, Option<usize>); 4] = [
        ("no program", None),
        ("10 rules", Some(10)),
        ("1k rules", Some(1_000)),
        ("100k rules", Some(100_000)),
    ];
    let configs: Vec<String> = levels
        .iter()
        .map(|(_, n)| config(&rel, target, *n))
        .collect();
    let path = scratch.write("policy.yaml", &configs[0]);
    let mut agent = Agent::start("bench-connect", &path, &["--events-per-sec", "1"]);
    let _stats = aya::sys::enable_stats(aya::sys::Stats::RunTime).expect("enable bpf_stats");

    let mut rates: BTreeMap<usize, Vec<f64>> = BTreeMap::new();
    let mut verdict_ns: BTreeMap<usize, Vec<f64>> = BTreeMap::new();
    let mut apply_ms: BTreeMap<usize, Vec<f64>> = BTreeMap::new();
    let mut generation = agent.json("/healthz")["generation"].as_u64().unwrap_or(0);
    for round in 0..rounds {
        for (i, (name, _)) in levels.iter().enumerate() {
            if !(round == 0 && i == 0) {
                std::fs::write(&path, &configs[i]).expect("write config");
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
            let before = connect4_stats();
            let rate = measure(&rel, target, ms);
            let after = connect4_stats();
            rates.entry(i).or_default().push(rate);
            if after.1 > before.1 {
                verdict_ns
                    .entry(i)
                    .or_default()
                    .push((after.0 - before.0) as f64 / (after.1 - before.1) as f64);
            }
            eprintln!("round {round} {name:>11}: {rate:>9.0} connects/s");
        }
    }
    let base = median(&rates[&0]);
    println!(
        "| rules loaded | connects/s (median of {rounds}) | ratio to no program | verdict ns/run (bpf_stats) | reload to live, ms |"
    );
    println!("|---|---|---|---|---|");
    for (i, (name, _)) in levels.iter().enumerate() {
        let r = median(&rates[&i]);
        let ns = verdict_ns
            .get(&i)
            .map(|v| format!("{:.0}", median(v)))
            .unwrap_or_else(|| "—".into());
        let ap = apply_ms
            .get(&i)
            .map(|v| format!("{:.0}", median(v)))
            .unwrap_or_else(|| "—".into());
        println!("| {name} | {r:.0} | {:.3} | {ns} | {ap} |", r / base);
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

/// The policy: `n` ALLOW rules for the workload (one of them the benchmark's target), or the
/// workload with no cgroup annotation (no program attached to the cgroup).
fn config(rel: &str, target: SocketAddr, n: Option<usize>) -> String {
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
            "  - to:\n    - hosts: [\"10.{}.{}.{}\"]\n      ports: [443]\n",
            (i >> 16) & 255,
            (i >> 8) & 255,
            i & 255
        ));
    }
    s
}

/// Summed (run_time_ns, run_cnt) of every loaded mw_connect4 program.
fn connect4_stats() -> (u64, u64) {
    aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .filter(|p| p.name_as_str() == Some("mw_connect4"))
        .fold((0, 0), |(t, c), p| {
            (t + p.run_time().as_nanos() as u64, c + p.run_count())
        })
}

/// Runs the client inside the cgroup for `ms` and returns connects per second.
fn measure(rel: &str, target: SocketAddr, ms: u64) -> f64 {
    let exe = std::env::current_exe().expect("own path");
    let mut cmd = Command::new(exe);
    cmd.env(CLIENT_ENV, format!("{target},{ms}"))
        .stdout(Stdio::piped());
    let out = in_cgroup(&mut cmd, rel).wait_with_output().expect("client");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("client failed: {}", String::from_utf8_lossy(&out.stdout)))
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
