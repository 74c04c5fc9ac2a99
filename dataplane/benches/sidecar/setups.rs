//! The four setups and how each one is brought up: (a) plain, (b) meshward, (c) meshward with
//! `--fast-path`, (d) an Envoy pair. A [`Running`] setup stops its processes when dropped.
use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
};

use crate::{
    load::{DENIED_PORT, ECHO_PORT, Load, SINK_PORT, wait_listening},
    support::{Agent, MESHWARD, Scratch},
    topology::{CLIENT_CPU, SERVER_CPU, Topology},
};

pub const ROLE_ENV: &str = "MESHWARD_SIDECAR_ROLE";
pub const SPEC_ENV: &str = "MESHWARD_SIDECAR_SPEC";

/// Client-side Envoy listeners (in the client namespace, on 127.0.0.1).
const CLIENT_PROXY_ECHO: u16 = 15001;
const CLIENT_PROXY_SINK: u16 = 15002;
/// Server-side Envoy listeners (on the server's veth address).
const SERVER_PROXY_ECHO: u16 = 15006;
const SERVER_PROXY_SINK: u16 = 15007;

/// Extra rules in each of the two policies (egress and inbound), beside the one that admits the
/// benchmark's traffic.
pub const EXTRA_RULES: usize = 100_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Setup {
    Plain,
    Meshward,
    FastPath,
    Envoy,
}

impl Setup {
    pub const ALL: [Setup; 4] = [Setup::Plain, Setup::Meshward, Setup::FastPath, Setup::Envoy];

    pub fn label(self) -> &'static str {
        match self {
            Setup::Plain => "(a) plain",
            Setup::Meshward => "(b) meshward",
            Setup::FastPath => "(c) meshward --fast-path",
            Setup::Envoy => "(d) Envoy pair",
        }
    }
}

/// Whether this build's agent has the same-node fast path (`meshward run --fast-path`).
pub fn fast_path_available() -> bool {
    let out = Command::new(MESHWARD)
        .args(["run", "--help"])
        .output()
        .expect("meshward run --help");
    String::from_utf8_lossy(&out.stdout).contains("--fast-path")
}

/// What lives for one setup in one round; dropping it stops everything.
pub struct Running {
    pub setup: Setup,
    echo: SocketAddr,
    sink: SocketAddr,
    agent: Option<Agent>,
    _processes: Vec<KillOnDrop>,
}

impl Running {
    /// Where the client connects for `load`.
    pub fn target(&self, load: Load) -> SocketAddr {
        if load.uses_sink() {
            self.sink
        } else {
            self.echo
        }
    }

    /// The agent's allow verdicts for the two policies, as a check that it was in the path.
    pub fn verdict_counts(&self) -> Option<(u64, u64)> {
        let agent = self.agent.as_ref()?;
        let count = |policy| {
            agent
                .metric(
                    "meshward_rule_verdicts_total",
                    &[("policy", policy), ("verdict", "allow")],
                )
                .unwrap_or(0)
        };
        Some((count("client-to-server"), count("server-admits-client")))
    }

    /// The fast path's counters, as `event=value` pairs (a check of what it redirected).
    pub fn fast_path_counts(&self) -> Option<String> {
        let agent = self.agent.as_ref()?;
        let text = agent.get("/metrics");
        let pairs: Vec<String> = text
            .lines()
            .filter_map(|l| l.strip_prefix("meshward_fast_path_total{event=\""))
            .filter_map(|l| l.split_once("\"} "))
            .filter(|(_, v)| *v != "0")
            .map(|(event, v)| format!("{event}={v}"))
            .collect();
        Some(pairs.join(" "))
    }
}

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Files the setups share across rounds: the mesh policy and the two Envoy configs.
pub struct SetupFiles {
    policy: PathBuf,
    client_proxy: PathBuf,
    server_proxy: PathBuf,
    _scratch: Scratch,
}

impl SetupFiles {
    pub fn new(topo: &Topology) -> Self {
        let scratch = Scratch::new("bench-sidecar");
        Self {
            policy: scratch.write("policy.yaml", &mesh_policy(topo, EXTRA_RULES)),
            client_proxy: scratch.write("client-envoy.yaml", &client_proxy_config(topo)),
            server_proxy: scratch.write("server-envoy.yaml", &server_proxy_config(topo)),
            _scratch: scratch,
        }
    }
}

pub fn start(setup: Setup, topo: &Topology, files: &SetupFiles) -> Running {
    let server = start_echo_server(topo);
    let direct = |port| SocketAddr::from((server_ip(topo), port));
    let mut running = Running {
        setup,
        echo: direct(ECHO_PORT),
        sink: direct(SINK_PORT),
        agent: None,
        _processes: vec![server],
    };
    match setup {
        Setup::Plain => {}
        Setup::Meshward => running.agent = Some(start_agent(topo, &files.policy, &[])),
        Setup::FastPath => {
            running.agent = Some(start_agent(topo, &files.policy, &["--fast-path"]));
        }
        Setup::Envoy => {
            running
                ._processes
                .push(start_envoy(topo, &files.server_proxy, Side::Server));
            running
                ._processes
                .push(start_envoy(topo, &files.client_proxy, Side::Client));
            let local = |port| SocketAddr::from(([127, 0, 0, 1], port));
            running.echo = local(CLIENT_PROXY_ECHO);
            running.sink = local(CLIENT_PROXY_SINK);
        }
    }
    wait_until_path_works(topo, &running);
    if running.agent.is_some() {
        assert_enforcing(topo);
        topo.wait_agent_idle();
    }
    running
}

fn server_ip(topo: &Topology) -> std::net::Ipv4Addr {
    topo.net.server_ip.parse().expect("server ip")
}

fn start_echo_server(topo: &Topology) -> KillOnDrop {
    let exe = std::env::current_exe().expect("own path");
    let mut cmd = Command::new(exe);
    cmd.env(ROLE_ENV, "server").stdout(Stdio::piped());
    let mut child = topo.spawn_server_side(&mut cmd, &topo.server_cgroup, SERVER_CPU);
    wait_listening(child.stdout.take().expect("server stdout"));
    KillOnDrop(child)
}

/// The agent runs unpinned (it does no work per connection) and is moved into the bench's agent
/// cgroup so that its CPU time is counted with the setup's. It watches its config at the
/// production default interval (the tests' helper would poll every 200 ms): its periodic work
/// grows with the number of rules.
fn start_agent(topo: &Topology, policy: &Path, extra: &[&str]) -> Agent {
    let mut args = vec!["--events-per-sec", "1", "--watch-interval-ms", "1000"];
    args.extend_from_slice(extra);
    let agent = Agent::start("bench-sidecar", policy, &args);
    topo.adopt(pid_with_arg(&agent.pin_path), &topo.agent_cgroup);
    agent
}

/// The pid of the process whose command line has `arg` (the agent's unique pin path).
fn pid_with_arg(arg: &Path) -> u32 {
    let want = arg.as_os_str().as_encoded_bytes();
    std::fs::read_dir("/proc")
        .expect("read /proc")
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .find(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| c.split(|b| *b == 0).any(|a| a == want))
                .unwrap_or(false)
        })
        .expect("the agent's pid")
}

/// Runs a client-role helper in the client namespace and cgroup; its stdout.
pub fn run_client(topo: &Topology, spec: &str) -> String {
    let exe = std::env::current_exe().expect("own path");
    let mut cmd = Command::new(exe);
    cmd.env(ROLE_ENV, "client")
        .env(SPEC_ENV, spec)
        .stdout(Stdio::piped());
    let out = topo
        .spawn_client_side(&mut cmd, &topo.client_cgroup, CLIENT_CPU)
        .wait_with_output()
        .expect("client");
    assert!(out.status.success(), "client `{spec}` failed");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// One request/response through the echo path (retried while proxies start); a connect() to
/// the sink.
fn wait_until_path_works(topo: &Topology, running: &Running) {
    run_client(
        topo,
        &format!("ping {}", running.target(Load::ConnectRequestClose)),
    );
    let sink = running.target(Load::Bulk);
    assert_eq!(
        run_client(topo, &format!("probe {sink}")),
        "ok",
        "sink {sink}"
    );
}

/// A port no rule allows must be refused at connect() by the agent's egress program.
fn assert_enforcing(topo: &Topology) {
    let denied = SocketAddr::from((server_ip(topo), DENIED_PORT));
    let verdict = run_client(topo, &format!("probe {denied}"));
    assert_eq!(verdict, "EPERM", "the agent does not govern the client");
}

/// The client workload (its cgroup for egress, its address for its identity at the server),
/// the server workload (its cgroup and network namespace: inbound applies), an EgressPolicy
/// ALLOW to the server's ports and an AuthorizationPolicy ALLOW for the client's principal, each
/// with `extra` rules for other addresses that no traffic of the bench uses.
pub fn mesh_policy(topo: &Topology, extra: usize) -> String {
    let net = &topo.net;
    let netns = crate::support::NetPair::netns_path(&net.server_ns);
    let mut s = format!(
        "apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata:\n  name: client\n  namespace: bench\n  annotations:\n    meshward.io/cgroup: {}\nspec:\n  address: {}\n  serviceAccount: client\n  labels:\n    app: client\n---\n",
        topo.client_cgroup, net.client_ip
    );
    s += &format!(
        "apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata:\n  name: server\n  namespace: bench\n  annotations:\n    meshward.io/cgroup: {}\n    meshward.io/netns: {}\nspec:\n  address: {}\n  serviceAccount: server\n  labels:\n    app: server\n---\n",
        topo.server_cgroup,
        netns.display(),
        net.server_ip
    );
    s += &format!(
        "apiVersion: meshward.io/v1alpha1\nkind: EgressPolicy\nmetadata:\n  name: client-to-server\n  namespace: bench\nspec:\n  selector:\n    matchLabels:\n      app: client\n  action: ALLOW\n  rules:\n  - to:\n    - hosts: [\"{}\"]\n      ports: [{ECHO_PORT}, {SINK_PORT}]\n",
        net.server_ip
    );
    for i in 1..=extra {
        s += &format!(
            "  - to:\n    - hosts: [\"{}\"]\n      ports: [443]\n",
            filler_ip(i)
        );
    }
    s += &format!(
        "---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: server-admits-client\n  namespace: bench\nspec:\n  selector:\n    matchLabels:\n      app: server\n  action: ALLOW\n  rules:\n  - from:\n    - source:\n        principals: [\"cluster.local/ns/bench/sa/client\"]\n    to:\n    - operation:\n        ports: [\"{ECHO_PORT}\", \"{SINK_PORT}\"]\n"
    );
    for i in 1..=extra {
        s += &format!(
            "  - from:\n    - source:\n        ipBlocks: [\"{}\"]\n",
            filler_ip(i)
        );
    }
    s
}

/// Distinct addresses that no benchmark traffic uses (they only fill the tables).
fn filler_ip(i: usize) -> String {
    format!("10.{}.{}.{}", (i >> 16) & 255, (i >> 8) & 255, i & 255)
}

#[derive(Clone, Copy)]
enum Side {
    Client,
    Server,
}

/// Envoy with one worker (`--concurrency 1`), pinned to its side's CPU, in its own cgroup.
fn start_envoy(topo: &Topology, config: &Path, side: Side) -> KillOnDrop {
    let mut cmd = Command::new(envoy_binary());
    cmd.arg("-c")
        .arg(config)
        .args(["--concurrency", "1", "--disable-hot-restart", "-l", "error"])
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    KillOnDrop(match side {
        Side::Client => topo.spawn_client_side(&mut cmd, &topo.client_proxy_cgroup, CLIENT_CPU),
        Side::Server => topo.spawn_server_side(&mut cmd, &topo.server_proxy_cgroup, SERVER_CPU),
    })
}

/// `$MESHWARD_ENVOY`, else the one scripts/bootstrap.sh installs, else `envoy` on PATH.
fn envoy_binary() -> PathBuf {
    if let Ok(p) = std::env::var("MESHWARD_ENVOY") {
        return p.into();
    }
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    let bootstrap = Path::new(&home).join(".cache/meshward-tools/envoy-venv/bin/envoy");
    if bootstrap.exists() {
        bootstrap
    } else {
        "envoy".into()
    }
}

/// The client's sidecar: plain tcp_proxy from 127.0.0.1 to the server's sidecar.
fn client_proxy_config(topo: &Topology) -> String {
    let server = topo.net.server_ip;
    let listeners = [
        envoy_listener("echo", "127.0.0.1", CLIENT_PROXY_ECHO, None),
        envoy_listener("sink", "127.0.0.1", CLIENT_PROXY_SINK, None),
    ];
    let clusters = [
        envoy_cluster("echo", server, SERVER_PROXY_ECHO),
        envoy_cluster("sink", server, SERVER_PROXY_SINK),
    ];
    envoy_bootstrap(&listeners.concat(), &clusters.concat())
}

/// The server's sidecar: the network RBAC filter admitting the client, then tcp_proxy to the
/// server on 127.0.0.1. Without mTLS there is no principal to match: the client is admitted by
/// its address, which is what meshward's principal resolves to as well.
fn server_proxy_config(topo: &Topology) -> String {
    let server = topo.net.server_ip;
    let rbac = Some(topo.net.client_ip);
    let listeners = [
        envoy_listener("echo", server, SERVER_PROXY_ECHO, rbac),
        envoy_listener("sink", server, SERVER_PROXY_SINK, rbac),
    ];
    let clusters = [
        envoy_cluster("echo", "127.0.0.1", ECHO_PORT),
        envoy_cluster("sink", "127.0.0.1", SINK_PORT),
    ];
    envoy_bootstrap(&listeners.concat(), &clusters.concat())
}

fn envoy_bootstrap(listeners: &str, clusters: &str) -> String {
    format!("static_resources:\n  listeners:\n{listeners}  clusters:\n{clusters}")
}

fn envoy_listener(name: &str, ip: &str, port: u16, allow_only: Option<&str>) -> String {
    let rbac = allow_only.map(|client| format!(
        "      - name: envoy.filters.network.rbac\n        typed_config:\n          \"@type\": type.googleapis.com/envoy.extensions.filters.network.rbac.v3.RBAC\n          stat_prefix: {name}\n          rules:\n            action: ALLOW\n            policies:\n              client:\n                permissions: [{{any: true}}]\n                principals:\n                - direct_remote_ip: {{address_prefix: {client}, prefix_len: 32}}\n"
    )).unwrap_or_default();
    format!(
        "  - name: {name}\n    address:\n      socket_address: {{address: {ip}, port_value: {port}}}\n    filter_chains:\n    - filters:\n{rbac}      - name: envoy.filters.network.tcp_proxy\n        typed_config:\n          \"@type\": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy\n          stat_prefix: {name}\n          cluster: {name}\n"
    )
}

fn envoy_cluster(name: &str, ip: &str, port: u16) -> String {
    format!(
        "  - name: {name}\n    type: STATIC\n    connect_timeout: 1s\n    load_assignment:\n      cluster_name: {name}\n      endpoints:\n      - lb_endpoints:\n        - endpoint:\n            address:\n              socket_address: {{address: {ip}, port_value: {port}}}\n"
    )
}
