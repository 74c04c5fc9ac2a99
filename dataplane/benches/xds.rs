//! xDS: time to enforce. A real ADS server (`xds/tests/server.py`, grpcio) pushes to a running
//! agent; a prober in a client network namespace connect()s to a server workload in its own
//! namespace until the kernel's verdict changes. The clock starts when the benchmark hands the
//! change to the server (so it includes the server's encoding and push) and stops at the first
//! connect() that gets the new verdict.
//!
//! - 10,000 Authorization resources in one response (add, then remove), several rounds;
//! - one-resource deltas (a DENY of the probed port added, then removed), on a small base and
//!   on top of the 10,000.
//!
//! Run as root: `sudo cargo bench -p dataplane --bench xds`. Environment: MESHWARD_BENCH_ROUNDS
//! (10,000-resource rounds, default 5), MESHWARD_BENCH_FLIPS (one-resource flips per base,
//! default 200).
#[path = "../../tests/support/mod.rs"]
mod support;
#[path = "../../xds/tests/support/mod.rs"]
mod xds_server;

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use support::{Agent, CgroupTree, NetPair, Prober, Scratch, Server};
use xds::Resource;
use xds::proto::workload::{Address, Workload, address};
use xds_server::{Res, TestServer, deny_port};

const ADDRESS: &str = "type.googleapis.com/istio.workload.Address";
const AUTHZ: &str = "type.googleapis.com/istio.security.Authorization";
const EGRESS: &str = "type.googleapis.com/meshward.v1alpha1.EgressPolicy";

const N: u32 = 10_000;
/// The 10,000 DENY the ports BASE..BASE+N; the last one is probed.
const BASE: u16 = 20_000;
const FLIP_PORT: u16 = 18_400;

fn main() {
    support::require_root();
    // SAFETY: set before any other thread of this process exists.
    unsafe { std::env::set_var("MESHWARD_WAIT_SECS", "180") };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio");
    runtime.block_on(bench());
}

struct Bench {
    server: TestServer,
    prober: Prober,
    agent: Agent,
    big: SocketAddr,
    flip: SocketAddr,
}

async fn bench() {
    let rounds: usize = env_or("MESHWARD_BENCH_ROUNDS", 5);
    let flips: usize = env_or("MESHWARD_BENCH_FLIPS", 200);
    let net = NetPair::new("bench-xds");
    let cg = CgroupTree::new("bench-xds");
    let server_cgroup = cg.child("server");
    let scratch = Scratch::new("bench-xds");
    let _servers: Vec<Server> = [FLIP_PORT, BASE + (N - 1) as u16]
        .iter()
        .map(|p| Server::start(&net.server_ns, Some(&server_cgroup), *p, &scratch))
        .collect();
    let config = scratch.write(
        "local.yaml",
        &format!(
            "apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata:\n  name: server\n  namespace: bench\n  annotations:\n    meshward.io/cgroup: {server_cgroup}\n    meshward.io/netns: {}\nspec:\n  labels:\n    app: server\n",
            NetPair::netns_path(&net.server_ns).display()
        ),
    );
    let mut server = TestServer::start(xds_server::free_port()).await;
    let ip: std::net::Ipv4Addr = net.server_ip.parse().expect("ip");
    let workload = Resource::Address(Address {
        r#type: Some(address::Type::Workload(Workload {
            uid: "uid-server".into(),
            name: "server".into(),
            namespace: "bench".into(),
            addresses: vec![ip.octets().to_vec()],
            service_account: "server".into(),
            ..Default::default()
        })),
    });
    server
        .set(ADDRESS, &[Res::new("uid-server", "v1", &workload)], &[])
        .await;
    server.set(AUTHZ, &[], &[]).await;
    server.set(EGRESS, &[], &[]).await;
    let address = server.address();
    let agent = Agent::start(
        "bench-xds",
        &config,
        &[
            "--xds-address",
            &address,
            "--node-id",
            "bench",
            "--events-per-sec",
            "1",
        ],
    );
    for t in [ADDRESS, AUTHZ, EGRESS] {
        server.ack(t).await;
    }
    let mut b = Bench {
        server,
        prober: Prober::start(Some(&net.client_ns), None),
        agent,
        big: format!("{}:{}", net.server_ip, BASE + (N - 1) as u16)
            .parse()
            .expect("addr"),
        flip: format!("{}:{FLIP_PORT}", net.server_ip)
            .parse()
            .expect("addr"),
    };
    assert_eq!(b.prober.probe("tcp", None, b.big), "ok");
    assert_eq!(b.prober.probe("tcp", None, b.flip), "ok");

    let ten_k: Vec<Res> = (0..N)
        .map(|i| {
            let name = format!("deny-{i:05}");
            Res::new(
                &format!("bench/{name}"),
                "v1",
                &deny_port("bench", &name, u32::from(BASE) + i),
            )
        })
        .collect();
    let ten_k_names: Vec<String> = ten_k.iter().map(|r| r.name.clone()).collect();
    let names: Vec<&str> = ten_k_names.iter().map(String::as_str).collect();

    // One-resource deltas on a small base (the workload, nothing else).
    let small = flip_series(&mut b, flips, "small base").await;

    // 10,000 in one response, then all removed in one response.
    let mut add_ms = Vec::new();
    let mut remove_ms = Vec::new();
    for round in 0..rounds {
        let t = Instant::now();
        let seq = b.server.set_nowait(AUTHZ, &ten_k, &[]);
        let big = b.big;
        add_ms.push(until(&mut b.prober, big, "ECONNREFUSED", t));
        b.server.done(seq).await;
        b.server.ack(AUTHZ).await;
        let t = Instant::now();
        let seq = b.server.set_nowait(AUTHZ, &[], &names);
        remove_ms.push(until(&mut b.prober, big, "ok", t));
        b.server.done(seq).await;
        b.server.ack(AUTHZ).await;
        eprintln!(
            "round {round}: 10,000 added → enforced {:.0} ms; removed → lifted {:.0} ms",
            add_ms[round], remove_ms[round]
        );
    }

    // One-resource deltas on top of the 10,000.
    b.server.set(AUTHZ, &ten_k, &[]).await;
    b.server.ack(AUTHZ).await;
    let big = b.big;
    assert_eq!(b.prober.probe("tcp", None, big), "ECONNREFUSED");
    let large = flip_series(&mut b, flips, "on 10,000").await;

    std::fs::write("/tmp/xds-bench-agent.log", b.agent.log()).ok();
    let health = b.agent.json("/healthz");
    assert_eq!(health["xds"]["nacks"], 0, "{health}");
    println!(
        "\nxDS: time to enforce (from the server being handed the change to the first connect() with the new verdict)\n"
    );
    println!("| change | n | p50 ms | p99 ms | max ms |");
    println!("|---|---|---|---|---|");
    row("10,000 Authorizations added (one delta response)", &add_ms);
    row(
        "10,000 Authorizations removed (one delta response)",
        &remove_ms,
    );
    row("one Authorization added/removed, small base", &small);
    row("one Authorization added/removed, on 10,000", &large);
}

/// `flips` one-resource changes: a DENY of the probed port added (ok → refused), then removed.
async fn flip_series(b: &mut Bench, flips: usize, what: &str) -> Vec<f64> {
    let mut ms = Vec::with_capacity(flips);
    let flip = b.flip;
    for i in 0..flips {
        let t = Instant::now();
        if i % 2 == 0 {
            let r = Res::new(
                "bench/flip",
                &format!("v{i}"),
                &deny_port("bench", "flip", FLIP_PORT.into()),
            );
            let seq = b.server.set_nowait(AUTHZ, &[r], &[]);
            ms.push(until(&mut b.prober, flip, "ECONNREFUSED", t));
            b.server.done(seq).await;
        } else {
            let seq = b.server.set_nowait(AUTHZ, &[], &["bench/flip"]);
            ms.push(until(&mut b.prober, flip, "ok", t));
            b.server.done(seq).await;
        }
        b.server.ack(AUTHZ).await;
    }
    let mut sorted = ms.clone();
    sorted.sort_by(f64::total_cmp);
    eprintln!(
        "{flips} one-resource flips, {what}: p50 {:.2} ms, p99 {:.2} ms",
        pct(&sorted, 50.0),
        pct(&sorted, 99.0)
    );
    ms
}

/// Probes `dst` until the verdict is `want`; milliseconds since `start`.
fn until(prober: &mut Prober, dst: SocketAddr, want: &str, start: Instant) -> f64 {
    loop {
        if prober.probe("tcp", None, dst) == want {
            return start.elapsed().as_secs_f64() * 1e3;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "{dst} never became {want}"
        );
    }
}

fn row(what: &str, v: &[f64]) {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    println!(
        "| {what} | {} | {:.2} | {:.2} | {:.2} |",
        s.len(),
        pct(&s, 50.0),
        pct(&s, 99.0),
        s.last().copied().unwrap_or(0.0)
    );
}

/// Nearest-rank percentile of sorted values.
fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn env_or<T: std::str::FromStr>(key: &str, default: T) -> T {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
