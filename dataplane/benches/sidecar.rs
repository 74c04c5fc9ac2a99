//! meshward beside the sidecar it replaces, on one node: (a) plain client and server, no agent;
//! (b) the same under a `meshward run` agent (EgressPolicy for the client, AuthorizationPolicy
//! for the server, 100,000 extra rules in each); (c) (b) with `--fast-path`, when this build has
//! it; (d) an Envoy sidecar pair (tcp_proxy, network RBAC on the server side, plain TCP).
//! Scenarios: request/response (1 B and 1 KiB, 1 and 16 connections), connect-request-close,
//! bulk stream. Setups are interleaved round by round; medians, ratios to (a), CPU per operation.
//!
//! Run as root: `cargo bench -p dataplane --bench sidecar`. Environment: MESHWARD_BENCH_ROUNDS
//! (default 5), MESHWARD_BENCH_SECS per measurement (default 3), MESHWARD_ENVOY (Envoy binary),
//! MESHWARD_BENCH_SETUPS (a subset, e.g. `a,c`).
#[path = "../../tests/support/mod.rs"]
mod support;

#[path = "sidecar/load.rs"]
mod load;
#[path = "sidecar/report.rs"]
mod report;
#[path = "sidecar/setups.rs"]
mod setups;
#[path = "sidecar/topology.rs"]
mod topology;

use load::Load;
use report::{Results, Sample};
use setups::{ROLE_ENV, Running, SPEC_ENV, Setup, SetupFiles};
use topology::Topology;

const SCENARIOS: [(&str, Load); 6] = [
    (
        "rr 1 B x 1 conn",
        Load::RequestResponse { size: 1, conns: 1 },
    ),
    (
        "rr 1 B x 16 conns",
        Load::RequestResponse { size: 1, conns: 16 },
    ),
    (
        "rr 1 KiB x 1 conn",
        Load::RequestResponse {
            size: 1024,
            conns: 1,
        },
    ),
    (
        "rr 1 KiB x 16 conns",
        Load::RequestResponse {
            size: 1024,
            conns: 16,
        },
    ),
    ("connect-request-close", Load::ConnectRequestClose),
    ("bulk stream, 1 conn", Load::Bulk),
];

fn main() {
    match std::env::var(ROLE_ENV).as_deref() {
        Ok("server") => return load::serve_main(),
        Ok("client") => return load::client_main(&std::env::var(SPEC_ENV).expect("spec")),
        _ => {}
    }
    support::require_root();
    // Starting an agent on 200k rules on a busy 2-core machine can take a while.
    // SAFETY: set before any other thread of this process exists.
    unsafe { std::env::set_var("MESHWARD_WAIT_SECS", "180") };
    let rounds: usize = env_or("MESHWARD_BENCH_ROUNDS", 5);
    let secs: f64 = env_or("MESHWARD_BENCH_SECS", 3.0);
    let setups = available_setups();
    let topo = Topology::new();
    let files = SetupFiles::new(&topo);
    let mut results = Results::default();
    for round in 0..rounds {
        for &setup in &setups {
            let running = setups::start(setup, &topo, &files);
            measure_all_scenarios(&topo, &running, secs, round, &mut results);
            report_agent_verdicts(&running);
        }
    }
    println!("\n{rounds} rounds of {secs} s per measurement\n");
    println!("{}", results.markdown(&SCENARIOS, &setups));
    if !setups.contains(&Setup::FastPath) {
        println!("(c) not available in this build");
    }
}

fn available_setups() -> Vec<Setup> {
    let fast_path = setups::fast_path_available();
    if !fast_path {
        eprintln!("(c) not available in this build (`meshward run --help` has no --fast-path)");
    }
    // MESHWARD_BENCH_SETUPS=a,c runs a subset (by the letters of the labels).
    let only = std::env::var("MESHWARD_BENCH_SETUPS").unwrap_or_default();
    Setup::ALL
        .into_iter()
        .filter(|s| *s != Setup::FastPath || fast_path)
        .filter(|s| only.is_empty() || only.split(',').any(|l| s.label()[1..].starts_with(l)))
        .collect()
}

fn measure_all_scenarios(
    topo: &Topology,
    running: &Running,
    secs: f64,
    round: usize,
    results: &mut Results,
) {
    for (name, load) in SCENARIOS {
        let sample = measure(topo, running, load, secs);
        eprintln!(
            "round {round} {:<26} {name:<22} {:>9.0}/s {:>8.2} µs CPU/op ({})",
            running.setup.label(),
            sample.rate(load),
            sample.cpu_us_per_op(load),
            sample.cpu_breakdown(load)
        );
        results.add(running.setup, load, sample);
    }
}

/// One run of the client; the CPU time of every process of the setup over that run (each
/// setup's processes are idle outside it).
fn measure(topo: &Topology, running: &Running, load: Load, secs: f64) -> Sample {
    let target = running.target(load);
    let before = topo.cpu_usec_by_role();
    let out = setups::run_client(topo, &format!("{} {target} {secs}", load.to_arg()));
    let after = topo.cpu_usec_by_role();
    let cpu_usec = std::array::from_fn(|i| after[i] - before[i]);
    let (ops, elapsed) = out.split_once(' ').expect("`<ops> <secs>` from the client");
    Sample {
        ops: ops.parse().expect("operations"),
        secs: elapsed.parse().expect("seconds"),
        cpu_usec,
    }
}

fn report_agent_verdicts(running: &Running) {
    if let Some((egress, inbound)) = running.verdict_counts() {
        eprintln!(
            "{}: allow verdicts egress {egress}, inbound {inbound}",
            running.setup.label()
        );
    }
    if let Some(counts) = running.fast_path_counts() {
        eprintln!("{}: fast path {counts}", running.setup.label());
    }
}

fn env_or<T: std::str::FromStr>(key: &str, default: T) -> T {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
