//! Established connections under a policy change, on the real kernel, as root: a client
//! workload and a server workload, each in its own cgroup and network namespace (a veth between
//! them). Long-lived connections (tests/support/hold.py: a byte echoed every 50 ms) are open
//! when the policy file is replaced; the one the new policy denies is reset, the others live on.

mod support;

use std::{
    io::{BufRead, BufReader},
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::{Child, ChildStdout, Command, Stdio},
};

use support::*;

const HOLD: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/support/hold.py");
/// Ports the server listens on: the first loses its permission, the second keeps it.
const REVOKED: u16 = 7410;
const KEPT: u16 = 7411;
/// The agent checks the policy file every 100 ms.
const FAST_WATCH: &[&str] = &["--watch-interval-ms", "100"];
/// How long each held connection pings before it reports "alive".
const HOLD_SECS: &str = "10";

/// What each side of the mesh allows: the client's EgressPolicy ports (optionally scoped to one
/// executable) and the server's AuthorizationPolicy ports.
struct Policy<'a> {
    egress_ports: &'a [u16],
    /// The egress rule's host: the server's address, or a DNS name the agent resolves.
    egress_host: Option<&'a str>,
    egress_binary: Option<&'a Path>,
    /// A second, workload-wide egress ALLOW (all processes of the client).
    egress_everyone: &'a [u16],
    inbound_ports: &'a [u16],
}

struct Mesh {
    net: NetPair,
    _cgroups: CgroupTree,
    client: String,
    server: String,
    scratch: Scratch,
    config: PathBuf,
}

impl Mesh {
    fn new(test: &str, policy: &Policy) -> Self {
        let net = NetPair::new(test);
        let cgroups = CgroupTree::new(test);
        let client = cgroups.child("client");
        let server = cgroups.child("server");
        let scratch = Scratch::new(test);
        let mut mesh = Self {
            net,
            _cgroups: cgroups,
            client,
            server,
            config: PathBuf::new(),
            scratch,
        };
        mesh.config = mesh.scratch.write("mesh.yaml", &mesh.yaml(policy));
        mesh
    }

    fn yaml(&self, p: &Policy) -> String {
        let list = |ports: &[u16], quoted: bool| {
            ports
                .iter()
                .map(|p| {
                    if quoted {
                        format!("\"{p}\"")
                    } else {
                        p.to_string()
                    }
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        let binaries = p
            .egress_binary
            .map(|b| format!("  binaries: [\"{}\"]\n", b.display()))
            .unwrap_or_default();
        let mut docs = format!(
            "apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata:\n  name: client\n  namespace: rv\n  annotations:\n    meshward.io/cgroup: {client}\nspec:\n  address: {cip}\n  serviceAccount: client\n  labels:\n    app: client\n---\napiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata:\n  name: server\n  namespace: rv\n  annotations:\n    meshward.io/cgroup: {server}\n    meshward.io/netns: {netns}\nspec:\n  address: {sip}\n  serviceAccount: server\n  labels:\n    app: server\n---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: server-inbound\n  namespace: rv\nspec:\n  selector:\n    matchLabels:\n      app: server\n  action: ALLOW\n  rules:\n  - from:\n    - source:\n        principals: [\"cluster.local/ns/rv/sa/client\"]\n    to:\n    - operation:\n        ports: [{inbound}]\n---\n",
            client = self.client,
            server = self.server,
            cip = self.net.client_ip,
            sip = self.net.server_ip,
            netns = NetPair::netns_path(&self.net.server_ns).display(),
            inbound = list(p.inbound_ports, true),
        );
        if !p.egress_ports.is_empty() {
            docs.push_str(&format!(
                "apiVersion: meshward.io/v1alpha1\nkind: EgressPolicy\nmetadata:\n  name: client-egress\n  namespace: rv\nspec:\n  selector:\n    matchLabels:\n      app: client\n{binaries}  action: ALLOW\n  rules:\n  - to:\n    - hosts: [\"{host}\"]\n      ports: [{egress}]\n---\n",
                host = p.egress_host.unwrap_or(self.net.server_ip),
                egress = list(p.egress_ports, false),
            ));
        }
        if !p.egress_everyone.is_empty() {
            docs.push_str(&format!(
                "apiVersion: meshward.io/v1alpha1\nkind: EgressPolicy\nmetadata:\n  name: client-everyone\n  namespace: rv\nspec:\n  selector:\n    matchLabels:\n      app: client\n  action: ALLOW\n  rules:\n  - to:\n    - ports: [{}]\n---\n",
                list(p.egress_everyone, false)
            ));
        }
        docs
    }

    /// Replaces the policy file and waits until the agent enforces it as `generation`.
    fn change(&self, agent: &mut Agent, policy: &Policy, generation: u64) {
        write_atomic(&self.config, self.yaml(policy));
        agent.wait_until("the new policy", |h| h["generation"] == generation);
    }

    fn serve(&self) -> Held {
        let mut cmd = Command::new(PYTHON);
        cmd.args([HOLD, "serve", &REVOKED.to_string(), &KEPT.to_string()])
            .stdout(Stdio::piped());
        let mut held = Held::new(in_netns(&mut cmd, &self.net.server_ns, Some(&self.server)));
        assert_eq!(held.line(), "listening");
        held
    }

    /// A held connection from the client workload, run by `python`.
    fn hold(&self, python: &Path, port: u16) -> Held {
        let mut cmd = Command::new(python);
        cmd.args([
            HOLD,
            "hold",
            self.net.server_ip,
            &port.to_string(),
            HOLD_SECS,
        ])
        .stdout(Stdio::piped());
        let mut held = Held::new(in_netns(&mut cmd, &self.net.client_ns, Some(&self.client)));
        assert_eq!(held.line(), "connected", "port {port}");
        held
    }
}

/// A hold.py process and its output; killed on drop.
struct Held {
    child: Child,
    out: BufReader<ChildStdout>,
}

impl Held {
    fn new(mut child: Child) -> Self {
        let out = BufReader::new(child.stdout.take().expect("stdout"));
        Self { child, out }
    }

    fn line(&mut self) -> String {
        let mut line = String::new();
        self.out.read_line(&mut line).expect("hold.py output");
        line.trim().to_string()
    }

    /// The connection's fate: "alive" or "reset <error>".
    fn outcome(mut self) -> String {
        self.line()
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn closed(agent: &Agent, direction: &str) -> u64 {
    agent
        .metric(
            "meshward_connections_closed_total",
            &[("direction", direction)],
        )
        .expect("meshward_connections_closed_total")
}

const BOTH: &[u16] = &[REVOKED, KEPT];
const ONLY_KEPT: &[u16] = &[KEPT];

/// Both ports allowed on both sides, to the server's address, for every process.
const OPEN: Policy<'static> = Policy {
    egress_ports: BOTH,
    egress_host: None,
    egress_binary: None,
    egress_everyone: &[],
    inbound_ports: BOTH,
};

/// The client's egress permission for one port is withdrawn: that connection is reset at once,
/// the other one lives on, and a new connection to the withdrawn port is refused.
#[test]
fn a_withdrawn_egress_permission_resets_the_connection() {
    let open = OPEN;
    let mesh = Mesh::new("rv-egress", &open);
    let mut agent = Agent::start("rv-egress", &mesh.config, FAST_WATCH);
    let _server = mesh.serve();
    let revoked = mesh.hold(Path::new(PYTHON), REVOKED);
    let kept = mesh.hold(Path::new(PYTHON), KEPT);
    mesh.change(
        &mut agent,
        &Policy {
            egress_ports: ONLY_KEPT,
            ..open
        },
        2,
    );
    assert!(revoked.outcome().starts_with("reset"), "{}", agent.log());
    assert_eq!(kept.outcome(), "alive");
    assert_eq!(closed(&agent, "egress"), 1);
    assert_eq!(closed(&agent, "inbound"), 0);
    assert!(
        agent
            .log()
            .contains("connection reset: the new policy denies it"),
        "the reset is logged"
    );
    let (verdict, _) = probe_in_netns(
        &mesh.net.client_ns,
        Some(&mesh.client),
        format!("{}:{REVOKED}", mesh.net.server_ip).parse().unwrap(),
    );
    assert_eq!(verdict, "EPERM");
}

/// The server's AuthorizationPolicy stops admitting the client on one port: the server's side
/// of that connection is reset (the client sees it), the other lives on — with the same-node
/// fast path carrying both connections' bytes.
#[test]
fn a_withdrawn_inbound_permission_resets_the_connection_on_the_fast_path_too() {
    let open = OPEN;
    let mesh = Mesh::new("rv-inbound", &open);
    let mut agent = Agent::start(
        "rv-inbound",
        &mesh.config,
        &["--fast-path", FAST_WATCH[0], FAST_WATCH[1]],
    );
    let _server = mesh.serve();
    let revoked = mesh.hold(Path::new(PYTHON), REVOKED);
    let kept = mesh.hold(Path::new(PYTHON), KEPT);
    mesh.change(
        &mut agent,
        &Policy {
            inbound_ports: ONLY_KEPT,
            ..open
        },
        2,
    );
    assert!(revoked.outcome().starts_with("reset"), "{}", agent.log());
    assert_eq!(kept.outcome(), "alive");
    assert_eq!(closed(&agent, "inbound"), 1);
    assert_eq!(closed(&agent, "egress"), 0);
    let redirected = agent
        .metric("meshward_fast_path_total", &[("event", "redirected")])
        .expect("fast path counters");
    assert!(redirected > 0, "the held connections were on the fast path");
}

/// With --keep-established the same change leaves the connection alone; new connections get
/// the new policy.
#[test]
fn keep_established_leaves_live_connections_to_their_connect_time_verdict() {
    let open = OPEN;
    let mesh = Mesh::new("rv-keep", &open);
    let mut agent = Agent::start(
        "rv-keep",
        &mesh.config,
        &["--keep-established", FAST_WATCH[0], FAST_WATCH[1]],
    );
    let _server = mesh.serve();
    let revoked = mesh.hold(Path::new(PYTHON), REVOKED);
    mesh.change(
        &mut agent,
        &Policy {
            egress_ports: ONLY_KEPT,
            ..open
        },
        2,
    );
    assert_eq!(revoked.outcome(), "alive");
    assert_eq!(closed(&agent, "egress"), 0);
}

/// A rule scoped to an executable: the connection's owner is found (its socket among the
/// workload's processes' descriptors) and decided as that executable. A change that still
/// allows it through the executable's rule keeps it; removing that rule resets it.
#[test]
fn connections_allowed_for_an_executable_are_decided_as_that_executable() {
    let scratch_python = Scratch::new("rv-binary-exe");
    let allowed = scratch_python.dir.join("allowed-python");
    std::fs::copy("/usr/bin/python3.11", &allowed).expect("copy the python executable");
    std::fs::set_permissions(&allowed, PermissionsExt::from_mode(0o755)).expect("chmod");
    let by_binary = Policy {
        egress_ports: &[REVOKED],
        egress_host: None,
        egress_binary: Some(&allowed),
        egress_everyone: &[],
        inbound_ports: BOTH,
    };
    let mesh = Mesh::new("rv-binary", &by_binary);
    let mut agent = Agent::start("rv-binary", &mesh.config, FAST_WATCH);
    let _server = mesh.serve();
    let held = mesh.hold(&allowed, REVOKED);
    // Every process of the client may now reach KEPT only; allowed-python keeps REVOKED through
    // its own rule (a decision without the executable would deny it).
    let narrowed = Policy {
        egress_everyone: ONLY_KEPT,
        ..by_binary
    };
    mesh.change(&mut agent, &narrowed, 2);
    assert_eq!(
        closed(&agent, "egress"),
        0,
        "allowed-python may still reach it"
    );
    // The executable's rule goes: now the connection is denied for every process.
    mesh.change(
        &mut agent,
        &Policy {
            egress_ports: &[],
            egress_binary: None,
            ..narrowed
        },
        3,
    );
    assert!(held.outcome().starts_with("reset"), "{}", agent.log());
    assert_eq!(closed(&agent, "egress"), 1);
}

/// The connection was allowed by a DNS name's answer; the name then moves to another address.
/// The live connection keeps its connect-time verdict (docs/dns.md), and a later, unrelated
/// policy change does not reset it either: the previous policy is decided with today's answers,
/// under which it denied this connection too, so nothing was withdrawn by the change.
#[test]
fn a_connection_to_a_moved_name_is_not_reset_by_an_unrelated_change() {
    const NAME: &str = "svc.rv.test";
    let by_name = Policy {
        egress_ports: &[REVOKED],
        egress_host: Some(NAME),
        egress_binary: None,
        egress_everyone: &[],
        inbound_ports: BOTH,
    };
    let mesh = Mesh::new("rv-dns", &by_name);
    let dns = Dnsmasq::start(&[(NAME, mesh.net.server_ip)], 1);
    let dns_port = dns.addr.port();
    let mut agent = Agent::start(
        "rv-dns",
        &mesh.config,
        &[
            "--dns-server",
            &dns.addr.to_string(),
            "--dns-min-ttl",
            "1",
            FAST_WATCH[0],
            FAST_WATCH[1],
        ],
    );
    let _server = mesh.serve();
    let held = mesh.hold(Path::new(PYTHON), REVOKED);
    drop(dns);
    let _moved = Dnsmasq::start_on(dns_port, &[(NAME, "192.0.2.7")], 1);
    let moved = agent.wait_until("the moved answer", |h| {
        h["last_reload"]["trigger"] == "DNS answer changed" && h["status"] == "ok"
    });
    assert_eq!(
        closed(&agent, "egress"),
        0,
        "an answer change resets nothing"
    );
    let generation = moved["generation"].as_u64().expect("generation");
    // Unrelated: every process of the client may also reach KEPT.
    mesh.change(
        &mut agent,
        &Policy {
            egress_everyone: ONLY_KEPT,
            ..by_name
        },
        generation + 1,
    );
    assert_eq!(held.outcome(), "alive", "{}", agent.log());
    assert_eq!(closed(&agent, "egress"), 0);
    let (verdict, _) = probe_in_netns(
        &mesh.net.client_ns,
        Some(&mesh.client),
        format!("{}:{REVOKED}", mesh.net.server_ip).parse().unwrap(),
    );
    assert_eq!(verdict, "EPERM", "a new connection gets the moved answer");
}
