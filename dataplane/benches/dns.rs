//! In-kernel DNS learning: what an answer costs the kernel, and what the connect verdict costs
//! with 10,000 learned addresses, against the same traffic under a policy without DNS rules
//! (same programs, nothing watched, nothing learned), from the kernel's bpf_stats.
//!
//! A governed client (`tests/support/dns_tool.py resolve-connect`) resolves 10,000 distinct
//! names through a small DNS server answering each with its own address (`synth-server`) and
//! connects to each address at once; a warm-up pass fills the learned table, the measured pass
//! repeats it. Levels alternate round by round.
//!
//! Run as root: `cargo bench -p dataplane --bench dns`. Environment: MESHWARD_BENCH_ROUNDS
//! (default 3), MESHWARD_BENCH_NAMES (default 10000).
#[path = "../../tests/support/mod.rs"]
mod support;

use std::{
    io::BufRead,
    process::{Command, Stdio},
};

use support::{
    Agent, CgroupTree, PYTHON, Scratch, egress, free_port, in_cgroup, program_stats, workload,
    write_atomic,
};

const DNS_TOOL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/support/dns_tool.py");
const CONNECT_PORT: u16 = 9;

fn main() {
    support::require_root();
    let rounds: usize = env_or("MESHWARD_BENCH_ROUNDS", 3);
    let names: usize = env_or("MESHWARD_BENCH_NAMES", 10_000);
    let _stats = aya::sys::enable_stats(aya::sys::Stats::RunTime).expect("enable bpf_stats");

    let port = free_port();
    let mut server = Command::new(PYTHON)
        .args([DNS_TOOL, "synth-server", &port.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .expect("synth server");
    let mut ready = String::new();
    std::io::BufReader::new(server.stdout.as_mut().expect("stdout"))
        .read_line(&mut ready)
        .expect("ready");

    let cg = CgroupTree::new("bench-dns");
    let rel = cg.child("client");
    let scratch = Scratch::new("bench-dns");
    let resolver = format!("  - to:\n    - hosts: [\"127.0.0.1\"]\n      ports: [{port}]\n");
    let with_names = [
        workload("b", "client", "client", &rel),
        egress("b", "resolver", Some("client"), "ALLOW", &resolver),
        egress(
            "b",
            "by-name",
            Some("client"),
            "ALLOW",
            "  - to:\n    - hosts: [\"*.bench.test\"]\n",
        ),
    ]
    .concat();
    let without_names = [
        workload("b", "client", "client", &rel),
        egress("b", "resolver", Some("client"), "ALLOW", &resolver),
        egress(
            "b",
            "by-address",
            Some("client"),
            "ALLOW",
            "  - to:\n    - hosts: [\"127.0.0.0/8\"]\n",
        ),
    ]
    .concat();
    let config = scratch.write("policy.yaml", &with_names);
    let mut agent = Agent::start(
        "bench-dns",
        &config,
        &["--dns-port", &port.to_string(), "--dns-min-ttl", "300"],
    );

    let levels = [
        ("no DNS rules", &without_names),
        ("DNS rules (*.bench.test)", &with_names),
    ];
    let mut results: Vec<Vec<(f64, f64, u64)>> = vec![Vec::new(); levels.len()];
    for round in 0..rounds {
        for (i, (title, text)) in levels.iter().enumerate() {
            let generation = agent.json("/healthz")["generation"].as_u64().unwrap_or(0);
            write_atomic(&config, text);
            agent.sighup();
            agent.wait_until("reload", |h| {
                h["generation"].as_u64().unwrap_or(0) > generation
            });
            let pattern = format!("n{{i}}.r{round}.bench.test");
            resolve_connect(&rel, port, &pattern, names); // warm-up: fills the learned table
            let (ai, ac) = program_stats("mw_dns_ingress");
            let (ci, cc) = program_stats("mw_connect4");
            let denied = resolve_connect(&rel, port, &pattern, names);
            let (ai2, ac2) = program_stats("mw_dns_ingress");
            let (ci2, cc2) = program_stats("mw_connect4");
            let answer_ns = (ai2 - ai) as f64 / (ac2 - ac).max(1) as f64;
            let verdict_ns = (ci2 - ci) as f64 / (cc2 - cc).max(1) as f64;
            let learned = agent.json("/policy")["dns_learned"]
                .as_array()
                .map_or(0, |a| a.len()) as u64;
            println!(
                "round {round} {title:>26}: dns ingress {answer_ns:.0} ns/run ({} runs), connect4 {verdict_ns:.0} ns/run ({} runs), {learned} learned, {denied} denied",
                ac2 - ac,
                cc2 - cc
            );
            assert_eq!(denied, 0, "{title}: connects were denied");
            results[i].push((answer_ns, verdict_ns, learned));
        }
    }
    println!(
        "\n| policy | DNS answer in the kernel, ns/run (mw_dns_ingress) | ratio | connect verdict, ns/run (mw_connect4) | ratio | learned (workload, address) pairs |"
    );
    println!("|---|---|---|---|---|---|");
    let base = (
        median(results[0].iter().map(|r| r.0)),
        median(results[0].iter().map(|r| r.1)),
    );
    for ((title, _), r) in levels.iter().zip(&results) {
        let a = median(r.iter().map(|r| r.0));
        let v = median(r.iter().map(|r| r.1));
        println!(
            "| {title} | {a:.0} | {:.2} | {v:.0} | {:.2} | {} |",
            a / base.0,
            v / base.1,
            r.iter().map(|r| r.2).max().unwrap_or(0)
        );
    }
    let _ = server.kill();
    let _ = server.wait();
}

/// One pass over `names` names; returns how many connects were denied.
fn resolve_connect(rel: &str, port: u16, pattern: &str, names: usize) -> u64 {
    let mut cmd = Command::new(PYTHON);
    cmd.args([
        DNS_TOOL,
        "resolve-connect",
        &format!("127.0.0.1:{port}"),
        pattern,
        "--count",
        &names.to_string(),
        "--connect-port",
        &CONNECT_PORT.to_string(),
    ])
    .stdout(Stdio::piped());
    let out = in_cgroup(&mut cmd, rel)
        .wait_with_output()
        .expect("dns_tool");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("dns_tool prints JSON");
    assert_eq!(v["answers"].as_u64(), Some(names as u64), "{v}");
    v["denied"].as_u64().unwrap_or(u64::MAX)
}

fn env_or<T: std::str::FromStr>(key: &str, default: T) -> T {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(v: impl Iterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = v.collect();
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}
