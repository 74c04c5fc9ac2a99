//! The same-node fast path on the real kernel, as root: a client workload and a server workload,
//! each in its own cgroup and network namespace (a veth between them), governed by an agent
//! with `--fast-path`. Traffic comes from tests/support/stress.py: many concurrent connections,
//! writes of 1 B .. 256 KiB, half-closes, slow readers, epoll loops, and a SHA-256 of every byte
//! checked at both ends. The kernel's own counters (`meshward_fast_path_total`) say which bytes
//! were redirected socket to socket and which the stack carried.

mod support;

use std::{
    io::{BufRead, BufReader},
    net::SocketAddr,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::Duration,
};

use support::{
    tls::{Pki, records},
    *,
};

const STRESS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/support/stress.py");
const GIB: u64 = 1 << 30;
/// Ports the policy allows from the client to the server.
const ECHO_PORT: u16 = 7300;
const OTHER_PORT: u16 = 7301;
/// A port no rule allows.
const DENIED_PORT: u16 = 7399;

/// Two governed workloads on a veth pair, and the policy that lets the client reach the server.
struct Mesh {
    net: NetPair,
    cgroups: CgroupTree,
    client: String,
    server: String,
    policy: PathBuf,
    _scratch: Scratch,
}

impl Mesh {
    fn new(test: &str) -> Self {
        let net = NetPair::new(test);
        let cgroups = CgroupTree::new(test);
        let client = cgroups.child("client");
        let server = cgroups.child("server");
        let scratch = Scratch::new(test);
        let netns = NetPair::netns_path(&net.server_ns);
        let policy = scratch.write(
            "mesh.yaml",
            &format!(
                "apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata:\n  name: client\n  namespace: fp\n  annotations:\n    meshward.io/cgroup: {client}\nspec:\n  address: {cip}\n  serviceAccount: client\n  labels:\n    app: client\n---\napiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata:\n  name: server\n  namespace: fp\n  annotations:\n    meshward.io/cgroup: {server}\n    meshward.io/netns: {netns}\nspec:\n  address: {sip}\n  serviceAccount: server\n  labels:\n    app: server\n---\napiVersion: meshward.io/v1alpha1\nkind: EgressPolicy\nmetadata:\n  name: client-to-server\n  namespace: fp\nspec:\n  selector:\n    matchLabels:\n      app: client\n  action: ALLOW\n  rules:\n  - to:\n    - hosts: [\"{sip}\"]\n      ports: [{ECHO_PORT}, {OTHER_PORT}]\n---\napiVersion: meshward.io/v1alpha1\nkind: EgressPolicy\nmetadata:\n  name: watch-echo\n  namespace: fp\nspec:\n  selector:\n    matchLabels:\n      app: client\n  action: AUDIT\n  rules:\n  - to:\n    - hosts: [\"{sip}\"]\n      ports: [{ECHO_PORT}]\n---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: server-admits-client\n  namespace: fp\nspec:\n  selector:\n    matchLabels:\n      app: server\n  action: ALLOW\n  rules:\n  - from:\n    - source:\n        principals: [\"cluster.local/ns/fp/sa/client\"]\n",
                cip = net.client_ip,
                sip = net.server_ip,
                netns = netns.display(),
            ),
        );
        Self {
            net,
            cgroups,
            client,
            server,
            policy,
            _scratch: scratch,
        }
    }

    /// The stress echo server on `port` in the server namespace, in `cgroup` (None: a process
    /// no policy governs).
    fn serve(&self, port: u16, cgroup: Option<&str>) -> Killed {
        let mut cmd = Command::new(PYTHON);
        cmd.args([STRESS, "serve", &port.to_string()])
            .stdout(Stdio::piped());
        let mut child = in_netns(&mut cmd, &self.net.server_ns, cgroup);
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("server output");
        assert_eq!(line.trim(), "listening", "stress server did not start");
        Killed(child)
    }

    /// Runs `stress.py <mode> <server ip> <port> <args>` in the client workload; its report.
    fn client(&self, mode: &str, port: u16, args: &[String]) -> serde_json::Value {
        let mut cmd = Command::new(PYTHON);
        cmd.args([STRESS, mode, self.net.server_ip, &port.to_string()])
            .args(args)
            .stdout(Stdio::piped());
        let out = in_netns(&mut cmd, &self.net.client_ns, Some(&self.client))
            .wait_with_output()
            .expect("stress client");
        let text = String::from_utf8_lossy(&out.stdout);
        serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("report {text:?}: {e}"))
    }

    fn drive(&self, port: u16, total: u64, conns: u32, seed: u64) -> serde_json::Value {
        self.client(
            "drive",
            port,
            &[total.to_string(), conns.to_string(), seed.to_string()],
        )
    }
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `meshward_fast_path_total{event}` now.
fn fast(agent: &Agent, event: &str) -> u64 {
    agent
        .metric("meshward_fast_path_total", &[("event", event)])
        .unwrap_or_else(|| panic!("no meshward_fast_path_total{{event={event}}}"))
}

fn assert_clean(report: &serde_json::Value, total: u64) {
    assert_eq!(report["ok"], true, "stress run failed: {report}");
    assert_eq!(report["bytes"], total, "{report}");
    assert_eq!(report["stalls"], 0, "lost wake-ups: {report}");
}

fn seed() -> u64 {
    std::env::var("MESHWARD_STRESS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            let s = u64::from(std::process::id());
            eprintln!("stress seed {s} (replay: MESHWARD_STRESS_SEED={s})");
            s
        })
}

/// 1 GiB over 128 connections, 32 at a time, with the fast path on: every byte arrives, in
/// order, at both ends, and most of them were redirected rather than carried by the stack.
#[test]
fn a_gibibyte_under_stress_arrives_byte_exact_through_the_fast_path() {
    let mesh = Mesh::new("fp-stress");
    let agent = Agent::start("fp-stress", &mesh.policy, &["--fast-path"]);
    let _server = mesh.serve(ECHO_PORT, Some(&mesh.server));
    let report = mesh.drive(ECHO_PORT, GIB, 32, seed());
    eprintln!("fast path: {report}");
    assert_clean(&report, GIB);
    print_counters(&agent);
    // Each byte crosses twice (the echo).
    let redirected = fast(&agent, "redirected_bytes");
    assert!(redirected >= GIB / 4, "only {redirected} bytes redirected");
    assert!(
        fast(&agent, "sockets_joined") >= 2 * 128,
        "both ends of every connection join"
    );
    // Verdicts are counted at connect as without the fast path, AUDIT included.
    let verdicts = |policy, verdict| {
        agent.metric(
            "meshward_rule_verdicts_total",
            &[("policy", policy), ("verdict", verdict)],
        )
    };
    assert_eq!(verdicts("client-to-server", "allow"), Some(128));
    assert_eq!(verdicts("watch-echo", "audit"), Some(128));
}

fn print_counters(agent: &Agent) {
    for line in agent.get("/metrics").lines() {
        if line.starts_with("meshward_fast_path_total") {
            eprintln!("{line}");
        }
    }
}

/// The same traffic without the fast path: nothing is redirected, nothing joins the sockhash.
#[test]
fn without_the_fast_path_the_stack_carries_everything() {
    let mesh = Mesh::new("fp-off");
    let agent = Agent::start("fp-off", &mesh.policy, &[]);
    let _server = mesh.serve(ECHO_PORT, Some(&mesh.server));
    let total = GIB / 4;
    let report = mesh.drive(ECHO_PORT, total, 16, seed());
    assert_clean(&report, total);
    assert_eq!(fast(&agent, "redirected"), 0);
    assert_eq!(fast(&agent, "sockets_joined"), 0);
}

/// With TLS posture parsing on as well: each connection's first bytes go by the stack while
/// posture reads them, the rest is redirected, and every byte still arrives in order.
#[test]
fn with_posture_parsing_on_bytes_stay_in_order_across_the_switch() {
    let mesh = Mesh::new("fp-posture");
    let agent = Agent::start(
        "fp-posture",
        &mesh.policy,
        &["--fast-path", "--tls-posture"],
    );
    let _server = mesh.serve(ECHO_PORT, Some(&mesh.server));
    let report = mesh.drive(ECHO_PORT, GIB, 32, seed());
    assert_clean(&report, GIB);
    assert!(fast(&agent, "stack_posture") > 0, "posture read no bytes");
    print_counters(&agent);
    assert!(fast(&agent, "redirected_bytes") >= GIB / 4);
    // Posture saw the connections (the stress bytes are not TLS).
    let not_tls = agent
        .metric("meshward_tls_connections_total", &[("reason", "not_tls")])
        .or_else(|| agent.metric("meshward_tls_unparsed_total", &[("reason", "not_tls")]));
    eprintln!("posture not_tls: {not_tls:?}");
}

/// A reader asleep in epoll_wait wakes for every redirected message (the wake-up class of bug
/// the seed talk describes for strparser). The server listens before the agent starts, as a
/// node's servers do: its accepted sockets join the fast path all the same.
#[test]
fn epoll_readers_wake_for_redirected_data() {
    let mesh = Mesh::new("fp-wake");
    let _server = mesh.serve(ECHO_PORT, Some(&mesh.server));
    let agent = Agent::start("fp-wake", &mesh.policy, &["--fast-path"]);
    let before = fast(&agent, "redirected");
    let rounds = 300;
    let report = mesh.client("wake", ECHO_PORT, &[rounds.to_string()]);
    assert_eq!(report["ok"], true, "{report}");
    let redirected = fast(&agent, "redirected") - before;
    // Each round is one message each way.
    assert!(
        redirected >= 2 * rounds as u64 - 4,
        "{redirected} of {} messages redirected",
        2 * rounds
    );
}

/// Policy still decides at connect (a port no rule allows is refused), and a connection to a
/// server no policy governs is carried by the stack, byte-exact, counted as not local.
#[test]
fn policy_still_decides_and_ungoverned_peers_use_the_stack() {
    let mesh = Mesh::new("fp-policy");
    let agent = Agent::start("fp-policy", &mesh.policy, &["--fast-path"]);
    let denied = SocketAddr::from((
        mesh.net.server_ip.parse::<std::net::Ipv4Addr>().unwrap(),
        DENIED_PORT,
    ));
    let (verdict, _) = probe_in_netns(&mesh.net.client_ns, Some(&mesh.client), denied);
    assert_eq!(
        verdict, "EPERM",
        "the fast path must not bypass connect-time policy"
    );

    let outsider = mesh.cgroups.child("outsider");
    let _server = mesh.serve(OTHER_PORT, Some(&outsider));
    let before = fast(&agent, "redirected");
    let total = 64 << 20;
    let report = mesh.drive(OTHER_PORT, total, 8, seed());
    assert_clean(&report, total);
    assert_eq!(
        fast(&agent, "redirected"),
        before,
        "an ungoverned peer got redirected data"
    );
    assert!(fast(&agent, "stack_peer_not_local") > 0);
}

/// A sockhash too small for every socket (`--sockhash-capacity 6`: three connections' two
/// ends) under 16 concurrent connections: the sockets that do not fit keep the stack, each is
/// counted, none loses or reorders a byte, and the ones that fit are still redirected.
#[test]
fn a_full_sockhash_leaves_sockets_on_the_stack_and_loses_no_byte() {
    let mesh = Mesh::new("fp-full");
    let mut agent = Agent::start(
        "fp-full",
        &mesh.policy,
        &["--fast-path", "--sockhash-capacity", "6"],
    );
    let _server = mesh.serve(ECHO_PORT, Some(&mesh.server));
    let total = 256 << 20;
    let report = mesh.drive(ECHO_PORT, total, 16, seed());
    assert_clean(&report, total);
    print_counters(&agent);
    assert!(
        fast(&agent, "sockhash_full") > 0,
        "no socket found the sockhash full"
    );
    // The first connections are opened one after the other, before any is full.
    assert!(fast(&agent, "redirected") > 0, "nothing was redirected");

    // A restarted agent that asks for the default size adopts the pinned sockhash as it is.
    let full_before = fast(&agent, "sockhash_full");
    agent.kill9();
    agent.restart_with(&["--fast-path"]);
    assert!(
        agent
            .log()
            .contains("the adopted sockhash keeps its capacity"),
        "the size mismatch was not reported"
    );
    let total = 32 << 20;
    assert_clean(&mesh.drive(ECHO_PORT, total, 16, seed()), total);
    assert!(fast(&agent, "sockhash_full") > full_before);
}

/// The fast path stops under live connections: the agent is killed mid-stream and comes back
/// without `--fast-path`. The live sockets keep the dead agent's sk_msg program, which reads the
/// new agent's switch: every connection that was being redirected goes on through the stack
/// without losing or reordering a byte. One long-lived connection (small echoed messages for
/// ~8 s) is sure to send across the switch; the bulk traffic may or may not.
#[test]
fn turning_the_fast_path_off_mid_stream_loses_no_byte() {
    let mesh = Mesh::new("fp-toggle");
    let mut agent = Agent::start("fp-toggle", &mesh.policy, &["--fast-path"]);
    let _server = mesh.serve(ECHO_PORT, Some(&mesh.server));
    let total = GIB / 2;
    let (bulk, long_lived, at_restart) = std::thread::scope(|s| {
        let bulk = s.spawn(|| mesh.drive(ECHO_PORT, total, 16, seed()));
        let long_lived = s.spawn(|| mesh.client("wake", ECHO_PORT, &["800".to_string()]));
        wait_for(
            || fast(&agent, "redirected_bytes") > 16 << 20,
            "redirected traffic",
        );
        agent.kill9();
        agent.restart_with(&[]);
        let at_restart = fast(&agent, "redirected");
        let bulk = bulk.join().expect("stress client");
        (bulk, long_lived.join().expect("wake client"), at_restart)
    });
    assert_clean(&bulk, total);
    assert_eq!(long_lived["ok"], true, "{long_lived}");
    assert_eq!(
        fast(&agent, "redirected"),
        at_restart,
        "messages were redirected after the fast path was switched off"
    );
    assert!(
        fast(&agent, "stack_disabled") > 0,
        "no message met the switch"
    );
}

/// With TLS posture on, a socket's sk_msg program is the posture entry stage, which reaches the
/// fast path by a tail call through the pinned stage table. An agent killed and restarted with
/// the same flags fills that table with its own stages: a connection opened before the restart
/// goes on being redirected after it (with an agent-owned table, the tail call would fail and
/// every later message would take the stack).
#[test]
fn with_posture_a_live_connection_keeps_the_fast_path_across_a_restart() {
    const FLAGS: &[&str] = &["--fast-path", "--tls-posture"];
    let mesh = Mesh::new("fp-posture-restart");
    let mut agent = Agent::start("fp-posture-restart", &mesh.policy, FLAGS);
    let _server = mesh.serve(ECHO_PORT, Some(&mesh.server));
    let (long_lived, at_restart) = std::thread::scope(|s| {
        let long_lived = s.spawn(|| mesh.client("wake", ECHO_PORT, &["800".to_string()]));
        wait_for(|| fast(&agent, "redirected") > 20, "redirected messages");
        agent.kill9();
        agent.restart_with(FLAGS);
        let at_restart = fast(&agent, "redirected");
        (long_lived.join().expect("wake client"), at_restart)
    });
    assert_eq!(long_lived["ok"], true, "{long_lived}");
    let after = fast(&agent, "redirected") - at_restart;
    assert!(
        after > 100,
        "only {after} messages of the live connection were redirected after the restart"
    );
}

fn wait_for(pred: impl Fn() -> bool, what: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !pred() {
        assert!(std::time::Instant::now() < deadline, "timed out: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// TLS between two governed workloads on one node with posture on: the handshake is read on the
/// stack (both ends report TLS 1.3 and the server name), then the application data is
/// redirected, and the 8 MiB echoed each way arrive byte for byte.
#[test]
fn tls_posture_is_reported_and_the_data_after_the_handshake_is_redirected() {
    let cgroups = CgroupTree::new("fp-tls");
    let (client, server) = (cgroups.child("client"), cgroups.child("server"));
    let scratch = Scratch::new("fp-tls");
    let pki = Pki::new(&scratch);
    let policy = scratch.write(
        "policy.yaml",
        &[
            workload("tls", "client", "client", &client),
            workload("tls", "server", "server", &server),
        ]
        .concat(),
    );
    let agent = Agent::start("fp-tls", &policy, &["--fast-path", "--tls-posture"]);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/support/tls_echo.py");
    let port = free_port().to_string();
    let mut cmd = Command::new(PYTHON);
    cmd.args([script, "server", &port])
        .args([pki.path("server.crt"), pki.path("server.key")])
        .stdout(Stdio::piped());
    let mut echo = Killed(in_cgroup(&mut cmd, &server));
    let mut line = String::new();
    BufReader::new(echo.0.stdout.as_mut().expect("stdout"))
        .read_line(&mut line)
        .expect("tls echo server output");
    assert_eq!(line.trim(), "listening");
    let total = 8 << 20;
    let mut cmd = Command::new(PYTHON);
    cmd.args([script, "client", &port, &pki.path("ca.crt")])
        .args([total.to_string(), "2026".to_string()])
        .stdout(Stdio::piped());
    let out = in_cgroup(&mut cmd, &client)
        .wait_with_output()
        .expect("tls echo client");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.trim(), format!("ok {total}"), "client: {text}");
    for (workload, role) in [("client", "client"), ("server", "server")] {
        let rows = records(&agent, workload, 1);
        assert!(
            rows.iter().any(|r| r["tls_version"] == "TLS 1.3"
                && r["sni"] == "server.test"
                && r["role"] == role),
            "{workload}: {rows:#?}"
        );
    }
    print_counters(&agent);
    assert!(
        fast(&agent, "stack_posture") > 0,
        "the handshake did not go by the stack"
    );
    assert!(
        fast(&agent, "redirected_bytes") >= total,
        "the data after the handshake was not redirected"
    );
}
