//! Policy from an xDS control plane, enforced on the real kernel, as root.
//!
//! The control plane is `xds/tests/server.py` (grpcio + Envoy's generated ADS services, a stack
//! meshward did not write), started by each test. The agent runs with `--xds-address` and a
//! local file that says where the workloads' processes are (cgroups, network namespaces); the
//! workloads' identities and the policies come over xDS. Every check is a real connect() under
//! the kernel programs: egress from a local workload's cgroup (EPERM on deny), inbound from a
//! client network namespace to a server namespace over a veth (ECONNREFUSED on deny; the
//! server never accepts).

mod support;
#[path = "../xds/tests/support/mod.rs"]
mod xds_server;

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use support::*;
use xds::Resource;
use xds::proto::authorization::{self as authz, Authorization, Clause, Match, ServiceAccountMatch};
use xds::proto::egress::{self, EgressPolicy, WorkloadSelector};
use xds::proto::workload::{Address, Workload, address};
use xds_server::{Res, TestServer};

const ADDRESS: &str = "type.googleapis.com/istio.workload.Address";
const AUTHZ: &str = "type.googleapis.com/istio.security.Authorization";
const EGRESS: &str = "type.googleapis.com/meshward.v1alpha1.EgressPolicy";
const TYPES: [&str; 3] = [ADDRESS, AUTHZ, EGRESS];

/// Inbound ports of the server workload (in its own network namespace).
const P_ALLOWED: u16 = 18181;
const P_OTHER: u16 = 18182;

// ---- resources ------------------------------------------------------------------------------

/// An xDS workload `shop/<name>` at `ip` with service account `sa`, selected by the
/// WORKLOAD_SELECTOR Authorizations `policies` (`ns/name`).
fn workload(name: &str, ip: &str, sa: &str, policies: &[&str]) -> Resource {
    let ip: std::net::Ipv4Addr = ip.parse().expect("IPv4");
    Resource::Address(Address {
        r#type: Some(address::Type::Workload(Workload {
            uid: format!("cluster1//v1/Pod/shop/{name}"),
            name: name.into(),
            namespace: "shop".into(),
            addresses: vec![ip.octets().to_vec()],
            service_account: sa.into(),
            authorization_policies: policies.iter().map(|p| p.to_string()).collect(),
            ..Default::default()
        })),
    })
}

fn workload_res(name: &str, version: &str, ip: &str, sa: &str, policies: &[&str]) -> Res {
    Res::new(
        &format!("uid-{name}"),
        version,
        &workload(name, ip, sa, policies),
    )
}

/// WORKLOAD_SELECTOR ALLOW: service account `shop/<sa>` to `port` (istiod's clause shape).
fn allow_sa_to_port(name: &str, sa: &str, port: u32) -> Resource {
    Resource::Authorization(Authorization {
        name: name.into(),
        namespace: "shop".into(),
        scope: authz::Scope::WorkloadSelector as i32,
        action: authz::Action::Allow as i32,
        rules: vec![authz::Rule {
            clauses: vec![
                Clause {
                    matches: vec![Match {
                        service_accounts: vec![ServiceAccountMatch {
                            namespace: "shop".into(),
                            service_account: sa.into(),
                        }],
                        ..Default::default()
                    }],
                },
                Clause {
                    matches: vec![Match {
                        destination_ports: vec![port],
                        ..Default::default()
                    }],
                },
            ],
        }],
        dry_run: false,
    })
}

/// NAMESPACE-scoped DENY of `port` in `shop`.
fn deny_port(name: &str, port: u32) -> Resource {
    xds_server::deny_port("shop", name, port)
}

/// EgressPolicy `shop/<name>` for `app=client`: `action` to 127.0.0.1 on `ports`.
fn egress_policy(name: &str, action: egress::Action, host: &str, ports: &[u16]) -> Resource {
    Resource::EgressPolicy(EgressPolicy {
        namespace: "shop".into(),
        name: name.into(),
        selector: Some(WorkloadSelector {
            match_labels: [("app".to_string(), "client".to_string())].into(),
        }),
        binaries: vec![],
        action: action as i32,
        rules: vec![egress::EgressRule {
            to: vec![egress::EgressTarget {
                hosts: vec![host.into()],
                ports: ports.iter().map(|p| u32::from(*p)).collect(),
            }],
        }],
    })
}

fn egress_res(name: &str, version: &str, action: egress::Action, ports: &[u16]) -> Res {
    Res::new(
        &format!("shop/{name}"),
        version,
        &egress_policy(name, action, "127.0.0.1", ports),
    )
}

// ---- the node -------------------------------------------------------------------------------

/// Two local workloads: `shop/server` (a cgroup and a network namespace, reached over a veth
/// from the client namespace) and `shop/client` (a cgroup, connecting out over loopback).
struct Node {
    net: NetPair,
    _cg: CgroupTree,
    scratch: Scratch,
    server_cgroup: String,
    client_cgroup: String,
    /// Egress destinations on loopback (in this namespace), both accepting.
    dst_a: SocketAddr,
    dst_b: SocketAddr,
}

impl Node {
    fn new(test: &str) -> Self {
        let net = NetPair::new(test);
        let cg = CgroupTree::new(test);
        let server_cgroup = cg.child("server");
        let client_cgroup = cg.child("client");
        let (dst_a, _) = listener("127.0.0.1");
        let (dst_b, _) = listener("127.0.0.1");
        Self {
            net,
            _cg: cg,
            scratch: Scratch::new(test),
            server_cgroup,
            client_cgroup,
            dst_a,
            dst_b,
        }
    }

    /// The local file: where the workloads' processes are; `extra` documents appended. The
    /// server's address and service account here are overridden by the control plane's.
    fn local_config(&self, extra: &str) -> std::path::PathBuf {
        let netns = NetPair::netns_path(&self.net.server_ns);
        let text = format!(
            "apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: server
  namespace: shop
  annotations:
    meshward.io/cgroup: {server_cgroup}
    meshward.io/netns: {netns}
spec:
  address: 198.18.0.99
  serviceAccount: local-sa
  labels:
    app: server
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: client
  namespace: shop
  annotations:
    meshward.io/cgroup: {client_cgroup}
spec:
  labels:
    app: client
---
{extra}",
            server_cgroup = self.server_cgroup,
            client_cgroup = self.client_cgroup,
            netns = netns.display(),
        );
        self.scratch.write("local.yaml", &text)
    }

    /// The xDS workloads: the server (with its real address) and a remote peer at the client
    /// namespace's address, service account `peer`.
    fn workloads(&self, peer_sa: &str) -> Vec<Res> {
        vec![
            workload_res(
                "server",
                "v1",
                self.net.server_ip,
                "server",
                &["shop/server-in"],
            ),
            workload_res("peer", peer_sa, self.net.client_ip, peer_sa, &[]),
        ]
    }

    fn serve(&self, port: u16) -> Server {
        Server::start(
            &self.net.server_ns,
            Some(&self.server_cgroup),
            port,
            &self.scratch,
        )
    }

    /// connect() from the client namespace to the server workload.
    fn inbound(&self, port: u16) -> String {
        let dst: SocketAddr = format!("{}:{port}", self.net.server_ip)
            .parse()
            .expect("addr");
        probe_in_netns(&self.net.client_ns, None, dst).0
    }

    /// connect() from the client workload's cgroup.
    fn egress(&self, dst: SocketAddr) -> String {
        probe(&self.client_cgroup, "tcp", dst)
    }
}

fn start_agent(test: &str, config: &std::path::Path, server: &TestServer, mode: &str) -> Agent {
    Agent::start(
        test,
        config,
        &[
            "--xds-address",
            &server.address(),
            "--node-id",
            "test-node",
            "--xds-mode",
            mode,
        ],
    )
}

/// Waits for the subscription to and first ACK of every type.
async fn synced(server: &mut TestServer) {
    for t in TYPES {
        let sub = server.subscription(t).await;
        assert_eq!(sub["node_id"], "test-node", "{sub}");
        server.ack(t).await;
    }
}

// ---- tests ----------------------------------------------------------------------------------

/// Initial sync: identities and policies from the control plane, processes from the local
/// file, enforced in the kernel the moment the agent reports its first policy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn initial_sync_enforces_egress_and_inbound_policy_from_the_control_plane() {
    let node = Node::new("xds-initial");
    let s_allowed = node.serve(P_ALLOWED);
    let s_other = node.serve(P_OTHER);
    let mut server = TestServer::start(xds_server::free_port()).await;
    server.set(ADDRESS, &node.workloads("peer"), &[]).await;
    server
        .set(
            AUTHZ,
            &[Res::new(
                "shop/server-in",
                "v1",
                &allow_sa_to_port("server-in", "peer", P_ALLOWED.into()),
            )],
            &[],
        )
        .await;
    server
        .set(
            EGRESS,
            &[egress_res(
                "client-out",
                "v1",
                egress::Action::Deny,
                &[node.dst_a.port()],
            )],
            &[],
        )
        .await;
    let config = node.local_config("");
    let agent = start_agent("xds-initial", &config, &server, "delta");
    synced(&mut server).await;

    // Egress: the xDS EgressPolicy selects the local workload by its local label.
    assert_eq!(node.egress(node.dst_a), "EPERM", "xDS EgressPolicy DENY");
    assert_eq!(node.egress(node.dst_b), "ok", "not covered by the DENY");
    // Inbound: the xDS Authorization selects the server (it names the policy); the peer's
    // identity comes from its xDS Address.
    assert_eq!(
        node.inbound(P_ALLOWED),
        "ok",
        "peer's service account on the port"
    );
    assert_eq!(
        node.inbound(P_OTHER),
        "ECONNREFUSED",
        "no ALLOW rule for it"
    );
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(s_allowed.accepted(), vec![node.net.client_ip.to_string()]);
    assert!(s_other.accepted().is_empty(), "the server never accepted");

    // Merged: one server workload, identity from xDS, processes from the file.
    let policy = agent.json("/policy");
    let servers: Vec<&serde_json::Value> = policy["workloads"]
        .as_array()
        .expect("workloads")
        .iter()
        .filter(|w| w["name"] == "server")
        .collect();
    assert_eq!(servers.len(), 1, "{policy}");
    assert_eq!(servers[0]["principal"], "cluster.local/ns/shop/sa/server");
    assert_eq!(servers[0]["governed"], true);
    assert_eq!(servers[0]["inbound_governed"], true);
    assert_eq!(policy["sources"]["files"], config.display().to_string());
    assert_eq!(policy["sources"]["xds"], server.address());
    let locations: Vec<&str> = policy["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .filter_map(|r| r["location"].as_str())
        .collect();
    assert!(
        locations.contains(&"xds:Authorization/shop/server-in")
            && locations.contains(&"xds:EgressPolicy/shop/client-out"),
        "{locations:?}"
    );

    let health = agent.json("/healthz");
    let x = &health["xds"];
    assert_eq!(x["state"], "connected", "{health}");
    assert_eq!(x["initial_sync"], "complete", "{health}");
    assert_eq!(x["mode"], "delta");
    assert_eq!(x["nacks"], 0);
    for t in ["Address", "Authorization", "EgressPolicy"] {
        assert_eq!(x["types"][t]["last_acked_version"], "1", "{t}: {health}");
    }
    assert_eq!(x["types"]["Address"]["resources"], 2);
    assert_eq!(agent.metric("meshward_xds_connected", &[]), Some(1));
    assert_eq!(agent.metric("meshward_xds_nacks_total", &[]), Some(0));
    assert_eq!(
        agent.metric("meshward_xds_acks_total", &[("type", "Authorization")]),
        Some(1)
    );
    assert_eq!(
        agent.metric("meshward_xds_resources", &[("type", "Address")]),
        Some(2)
    );
    assert_eq!(
        agent.metric(
            "meshward_rule_verdicts_total",
            &[("policy", "client-out"), ("verdict", "deny")]
        ),
        Some(1)
    );
}

/// Adds, updates and removals of each type change enforcement; the ACK comes after the kernel
/// switched, so the next connect already sees it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_update_and_remove_change_enforcement() {
    let node = Node::new("xds-changes");
    let _s1 = node.serve(P_ALLOWED);
    let _s2 = node.serve(P_OTHER);
    let mut server = TestServer::start(xds_server::free_port()).await;
    server.set(ADDRESS, &node.workloads("peer"), &[]).await;
    server.set(AUTHZ, &[], &[]).await;
    server.set(EGRESS, &[], &[]).await;
    let config = node.local_config("");
    let _agent = start_agent("xds-changes", &config, &server, "delta");
    synced(&mut server).await;
    assert_eq!(node.egress(node.dst_a), "ok", "no policy yet");
    assert_eq!(node.inbound(P_OTHER), "ok", "no policy yet");

    // EgressPolicy: add, update, remove.
    let deny = egress::Action::Deny;
    server
        .set(
            EGRESS,
            &[egress_res("client-out", "v1", deny, &[node.dst_a.port()])],
            &[],
        )
        .await;
    server.ack(EGRESS).await;
    assert_eq!(node.egress(node.dst_a), "EPERM", "added");
    assert_eq!(node.egress(node.dst_b), "ok");
    server
        .set(
            EGRESS,
            &[egress_res("client-out", "v2", deny, &[node.dst_b.port()])],
            &[],
        )
        .await;
    server.ack(EGRESS).await;
    assert_eq!(node.egress(node.dst_a), "ok", "updated away");
    assert_eq!(node.egress(node.dst_b), "EPERM", "updated to");
    server.set(EGRESS, &[], &["shop/client-out"]).await;
    server.ack(EGRESS).await;
    assert_eq!(node.egress(node.dst_b), "ok", "removed");

    // Authorization: add, update, remove.
    server
        .set(
            AUTHZ,
            &[Res::new(
                "shop/no-port",
                "v1",
                &deny_port("no-port", P_ALLOWED.into()),
            )],
            &[],
        )
        .await;
    server.ack(AUTHZ).await;
    assert_eq!(node.inbound(P_ALLOWED), "ECONNREFUSED", "added");
    assert_eq!(node.inbound(P_OTHER), "ok");
    server
        .set(
            AUTHZ,
            &[Res::new(
                "shop/no-port",
                "v2",
                &deny_port("no-port", P_OTHER.into()),
            )],
            &[],
        )
        .await;
    server.ack(AUTHZ).await;
    assert_eq!(node.inbound(P_ALLOWED), "ok", "updated away");
    assert_eq!(node.inbound(P_OTHER), "ECONNREFUSED", "updated to");
    server.set(AUTHZ, &[], &["shop/no-port"]).await;
    server.ack(AUTHZ).await;
    assert_eq!(node.inbound(P_OTHER), "ok", "removed");

    // Address: the peer's identity decides a service-account ALLOW.
    server
        .set(
            AUTHZ,
            &[Res::new(
                "shop/server-in",
                "v1",
                &allow_sa_to_port("server-in", "peer", P_ALLOWED.into()),
            )],
            &[],
        )
        .await;
    server.ack(AUTHZ).await;
    assert_eq!(node.inbound(P_ALLOWED), "ok", "peer allowed");
    server.set(ADDRESS, &node.workloads("intruder"), &[]).await;
    server.ack(ADDRESS).await;
    assert_eq!(
        node.inbound(P_ALLOWED),
        "ECONNREFUSED",
        "the peer's address now has another service account"
    );
    server.set(ADDRESS, &node.workloads("peer"), &[]).await;
    server.ack(ADDRESS).await;
    assert_eq!(node.inbound(P_ALLOWED), "ok", "updated back");
    server.set(ADDRESS, &[], &["uid-peer"]).await;
    server.ack(ADDRESS).await;
    assert_eq!(
        node.inbound(P_ALLOWED),
        "ECONNREFUSED",
        "removed: the client's address has no identity"
    );
}

/// A malformed resource is NACKed naming it, and the whole response changes nothing; its fix
/// is ACKed and enforced. A policy that the local files define too is NACKed naming the file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nack_keeps_enforcement_and_the_fix_is_acked() {
    let node = Node::new("xds-nack");
    let _s1 = node.serve(P_ALLOWED);
    let mut server = TestServer::start(xds_server::free_port()).await;
    server.set(ADDRESS, &node.workloads("peer"), &[]).await;
    server.set(AUTHZ, &[], &[]).await;
    let deny = egress::Action::Deny;
    server
        .set(
            EGRESS,
            &[egress_res("client-out", "v1", deny, &[node.dst_a.port()])],
            &[],
        )
        .await;
    let local_authz = "apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: local-in
  namespace: shop
spec:
  action: AUDIT
  rules:
  - {}
---
";
    let config = node.local_config(local_authz);
    let mut agent = start_agent("xds-nack", &config, &server, "delta");
    synced(&mut server).await;
    assert_eq!(node.egress(node.dst_a), "EPERM");
    assert_eq!(node.egress(node.dst_b), "ok");
    let generation = agent.json("/healthz")["generation"].clone();

    // One response: a valid update (deny b instead of a) and a malformed resource.
    let mut bad = egress_policy("broken", deny, "127.0.0.1", &[]);
    if let Resource::EgressPolicy(e) = &mut bad {
        e.rules[0].to[0].ports = vec![0];
    }
    server
        .set(
            EGRESS,
            &[
                egress_res("client-out", "v2", deny, &[node.dst_b.port()]),
                Res::new("shop/broken", "v1", &bad),
            ],
            &[],
        )
        .await;
    let nack = server.nack(EGRESS).await;
    let detail = nack["error_detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("EgressPolicy shop/broken")
            && detail.contains("port 0 is out of range (1-65535)"),
        "{nack}"
    );
    assert_eq!(nack["error_code"], 3, "INVALID_ARGUMENT");
    assert_eq!(node.egress(node.dst_a), "EPERM", "enforcement as before");
    assert_eq!(
        node.egress(node.dst_b),
        "ok",
        "the valid part of a refused response is not applied either"
    );
    let health = agent.json("/healthz");
    assert_eq!(health["generation"], generation, "no new generation");
    assert_eq!(health["xds"]["nacks"], 1, "{health}");
    let reason = health["xds"]["last_nack_reason"]
        .as_str()
        .unwrap_or_default();
    assert!(reason.contains("EgressPolicy shop/broken"), "{health}");
    assert_eq!(agent.metric("meshward_xds_nacks_total", &[]), Some(1));

    // Undecodable bytes: NACK too.
    server
        .set(
            EGRESS,
            &[Res::raw("shop/broken", "v2", xds_server::junk(), None)],
            &[],
        )
        .await;
    let nack = server.nack(EGRESS).await;
    assert!(
        nack["error_detail"]
            .as_str()
            .unwrap_or_default()
            .contains("EgressPolicy shop/broken"),
        "{nack}"
    );
    assert_eq!(node.egress(node.dst_a), "EPERM", "enforcement as before");

    // The fix, with the update that came with the bad resource sent again (a delta server
    // takes what it sent as held; after a NACK the client still holds client-out v1).
    server
        .set(
            EGRESS,
            &[
                egress_res("client-out", "v3", deny, &[node.dst_b.port()]),
                Res::new(
                    "shop/broken",
                    "v3",
                    &egress_policy("broken", deny, "127.0.0.3", &[80]),
                ),
            ],
            &[],
        )
        .await;
    server.ack(EGRESS).await;
    assert_eq!(node.egress(node.dst_a), "ok", "client-out v3 in force");
    assert_eq!(node.egress(node.dst_b), "EPERM", "client-out v3 in force");
    assert_eq!(
        node.egress("127.0.0.3:80".parse().expect("addr")),
        "EPERM",
        "the fixed resource in force"
    );

    // A policy of the local files' name from the control plane: NACK naming the file:line.
    server
        .set(
            AUTHZ,
            &[Res::new(
                "shop/local-in",
                "v1",
                &deny_port("local-in", P_ALLOWED.into()),
            )],
            &[],
        )
        .await;
    let nack = server.nack(AUTHZ).await;
    let detail = nack["error_detail"].as_str().unwrap_or_default();
    let local_line = format!("{}:", config.display());
    assert!(
        detail.contains("Authorization shop/local-in: AuthorizationPolicy shop/local-in is also defined by the local files at")
            && detail.contains(&local_line),
        "{nack}"
    );
    assert_eq!(
        node.inbound(P_ALLOWED),
        "ok",
        "the refused DENY is not in force"
    );
    server.set(AUTHZ, &[], &["shop/local-in"]).await;
    server.ack(AUTHZ).await;
    let health = agent.wait_until("status ok again", |h| h["status"] == "ok");
    assert_eq!(health["xds"]["nacks"], 3, "{health}");
}

/// The restart test's resources: the peer allowed to P_ALLOWED, egress to a denied.
async fn load_state(server: &mut TestServer, node: &Node) {
    server.set(ADDRESS, &node.workloads("peer"), &[]).await;
    server
        .set(
            AUTHZ,
            &[Res::new(
                "shop/server-in",
                "v1",
                &allow_sa_to_port("server-in", "peer", P_ALLOWED.into()),
            )],
            &[],
        )
        .await;
    server
        .set(
            EGRESS,
            &[egress_res(
                "client-out",
                "v1",
                egress::Action::Deny,
                &[node.dst_a.port()],
            )],
            &[],
        )
        .await;
}

/// The control plane goes away and comes back with the same resources while probes keep
/// connecting: no probe is wrongly allowed or wrongly denied at any moment, and the resync
/// applies nothing new.
async fn control_plane_restart(mode: &str, test: &str) {
    let node = Node::new(test);
    let s_allowed = node.serve(P_ALLOWED);
    let s_other = node.serve(P_OTHER);
    let port = xds_server::free_port();
    let mut server = TestServer::start(port).await;
    load_state(&mut server, &node).await;
    let config = node.local_config("");
    let mut agent = start_agent(test, &config, &server, mode);
    synced(&mut server).await;
    let generation = agent.json("/healthz")["generation"].clone();

    // Probes: egress a (denied) and b (allowed); inbound P_ALLOWED (allowed), P_OTHER (denied).
    let stop = Arc::new(AtomicBool::new(false));
    let egress_loop = {
        let stop = stop.clone();
        let (rel, a, b) = (node.client_cgroup.clone(), node.dst_a, node.dst_b);
        std::thread::spawn(move || {
            let mut prober = Prober::start(None, Some(&rel));
            let mut wrong = Vec::new();
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                for (dst, want) in [(a, "EPERM"), (b, "ok")] {
                    let got = prober.probe("tcp", None, dst);
                    if got != want {
                        wrong.push(format!("egress {dst}: {got}, want {want}"));
                    }
                    n += 1;
                }
            }
            (n, wrong)
        })
    };
    let inbound_loop = {
        let stop = stop.clone();
        let ns = node.net.client_ns.clone();
        let ip = node.net.server_ip;
        std::thread::spawn(move || {
            let mut prober = Prober::start(Some(&ns), None);
            let mut wrong = Vec::new();
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                for (port, want) in [(P_ALLOWED, "ok"), (P_OTHER, "ECONNREFUSED")] {
                    let dst: SocketAddr = format!("{ip}:{port}").parse().expect("addr");
                    let got = prober.probe("tcp", None, dst);
                    if got != want {
                        wrong.push(format!("inbound {dst}: {got}, want {want}"));
                    }
                    n += 1;
                }
            }
            (n, wrong)
        })
    };
    std::thread::sleep(Duration::from_millis(500));

    drop(server);
    agent.wait_until("the agent sees the control plane gone", |h| {
        h["xds"]["state"] == "connecting" && !h["xds"]["last_error"].is_null()
    });
    assert_eq!(agent.metric("meshward_xds_connected", &[]), Some(0));
    // Away for a while: the last good policy stays enforced (the probes run meanwhile).
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(agent.json("/healthz")["status"], "ok");

    // Back, with its resources loaded before it accepts any client.
    let mut server = TestServer::start_held(port).await;
    load_state(&mut server, &node).await;
    server.serve().await;
    let subscriptions: Vec<serde_json::Value> = {
        let mut v = Vec::new();
        for t in TYPES {
            v.push(server.subscription(t).await);
            server.ack(t).await;
        }
        v
    };
    if mode == "delta" {
        assert_eq!(
            subscriptions[1]["initial_resource_versions"],
            serde_json::json!({"shop/server-in": "v1"}),
            "resumes with the versions held"
        );
    } else {
        assert_eq!(
            subscriptions[1]["version_info"], "1",
            "resumes with the version held"
        );
    }
    let health = agent.wait_until("reconnected", |h| h["xds"]["state"] == "connected");
    assert_eq!(health["xds"]["connections"], 2, "{health}");
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    let (n_egress, wrong_egress) = egress_loop.join().expect("egress probes");
    let (n_inbound, wrong_inbound) = inbound_loop.join().expect("inbound probes");

    assert!(
        wrong_egress.is_empty() && wrong_inbound.is_empty(),
        "wrong verdicts during the outage or resync:\n{}\n{}",
        wrong_egress.join("\n"),
        wrong_inbound.join("\n")
    );
    assert!(
        n_egress > 20 && n_inbound > 20,
        "enough probes ran: {n_egress} egress, {n_inbound} inbound"
    );
    let health = agent.json("/healthz");
    assert_eq!(
        health["generation"], generation,
        "the resync re-sent the same resources: no new generation, no intermediate state"
    );
    assert_eq!(health["xds"]["nacks"], 0, "{health}");
    assert!(s_other.accepted().is_empty(), "never accepted a denied one");
    assert!(!s_allowed.accepted().is_empty());

    // And the new stream is live: a change is enforced.
    server.set(EGRESS, &[], &["shop/client-out"]).await;
    server.ack(EGRESS).await;
    assert_eq!(node.egress(node.dst_a), "ok", "removed after the resync");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delta_control_plane_restart_keeps_enforcement_continuous() {
    control_plane_restart("delta", "xds-restart-delta").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sotw_control_plane_restart_keeps_enforcement_continuous() {
    control_plane_restart("sotw", "xds-restart-sotw").await;
}

/// 10,000 Authorization resources: accepted in one response, all in force.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_authorizations_are_enforced() {
    const N: u16 = 10_000;
    const BASE: u16 = 20_000;
    let node = Node::new("xds-10k");
    let denied: Vec<u16> = vec![BASE, BASE + 4_321, BASE + N - 1];
    let open = BASE - 1;
    let servers: Vec<Server> = denied
        .iter()
        .chain([open].iter())
        .map(|p| node.serve(*p))
        .collect();
    let mut server = TestServer::start(xds_server::free_port()).await;
    server.set(ADDRESS, &node.workloads("peer"), &[]).await;
    server.set(EGRESS, &[], &[]).await;
    let resources: Vec<Res> = (0..N)
        .map(|i| {
            let name = format!("deny-{i:05}");
            Res::new(
                &format!("shop/{name}"),
                "v1",
                &deny_port(&name, u32::from(BASE + i)),
            )
        })
        .collect();
    server.set(AUTHZ, &resources, &[]).await;
    let config = node.local_config("");
    let started = Instant::now();
    let agent = start_agent("xds-10k", &config, &server, "delta");
    eprintln!(
        "10,000 Authorizations: agent started and enforcing after {:?}",
        started.elapsed()
    );
    synced(&mut server).await;

    for p in &denied {
        assert_eq!(node.inbound(*p), "ECONNREFUSED", "port {p} is denied");
    }
    assert_eq!(node.inbound(open), "ok", "port {open} is not");
    std::thread::sleep(Duration::from_millis(200));
    for (p, s) in denied.iter().zip(&servers) {
        assert!(s.accepted().is_empty(), "port {p}: never accepted");
    }
    let health = agent.json("/healthz");
    assert_eq!(health["xds"]["types"]["Authorization"]["resources"], 10_000);
    assert_eq!(
        agent.metric("meshward_xds_resources", &[("type", "Authorization")]),
        Some(10_000)
    );
    let rules = agent.json("/policy")["rules"]
        .as_array()
        .map(Vec::len)
        .unwrap_or(0);
    assert!(rules >= 10_000, "{rules} rules");

    // One removal among 10,000: that port opens, the others stay denied.
    server.set(AUTHZ, &[], &["shop/deny-04321"]).await;
    server.ack(AUTHZ).await;
    assert_eq!(node.inbound(BASE + 4_321), "ok", "its DENY was removed");
    assert_eq!(node.inbound(BASE), "ECONNREFUSED");
}
