//! Inbound authorization (Istio AuthorizationPolicy) on the real kernel, as root: a server
//! workload in its own network namespace and cgroup, clients in another namespace on a veth.
//! sk_lookup refuses a denied SYN: the client gets ECONNREFUSED at once, the server never
//! accepts.

mod support;

use std::{net::SocketAddr, time::Duration};

use support::*;

/// A WorkloadEntry with an address; `netns` and `cgroup` make it a local server.
fn entry(ns: &str, name: &str, sa: &str, address: &str, local: Option<(&str, &str)>) -> String {
    let annotations = match local {
        Some((cgroup, netns)) => format!(
            "  annotations:\n    meshward.io/cgroup: {cgroup}\n    meshward.io/netns: {netns}\n"
        ),
        None => String::new(),
    };
    format!(
        "apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata:\n  name: {name}\n  namespace: {ns}\n{annotations}spec:\n  address: {address}\n  serviceAccount: {sa}\n  labels:\n    app: {name}\n---\n"
    )
}

fn authz(ns: &str, name: &str, app: Option<&str>, action: &str, rules: &str) -> String {
    let selector = app
        .map(|a| format!("  selector:\n    matchLabels:\n      app: {a}\n"))
        .unwrap_or_default();
    format!(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: {name}\n  namespace: {ns}\nspec:\n{selector}  action: {action}\n  rules:\n{rules}---\n"
    )
}

struct Node {
    net: NetPair,
    _cg: CgroupTree,
    scratch: Scratch,
    server_cgroup: String,
}

impl Node {
    fn new(test: &str) -> Self {
        let net = NetPair::new(test);
        let cg = CgroupTree::new(test);
        let server_cgroup = cg.child("server");
        Self {
            net,
            _cg: cg,
            scratch: Scratch::new(test),
            server_cgroup,
        }
    }

    fn server_entry(&self, ns: &str) -> String {
        let netns = NetPair::netns_path(&self.net.server_ns);
        entry(
            ns,
            "server",
            "server",
            self.net.server_ip,
            Some((&self.server_cgroup, netns.to_str().expect("utf-8"))),
        )
    }

    fn serve(&self, port: u16) -> Server {
        Server::start(
            &self.net.server_ns,
            Some(&self.server_cgroup),
            port,
            &self.scratch,
        )
    }

    fn connect(&self, port: u16) -> (String, Duration) {
        let dst: SocketAddr = format!("{}:{port}", self.net.server_ip)
            .parse()
            .expect("addr");
        probe_in_netns(&self.net.client_ns, None, dst)
    }
}

#[test]
fn principal_and_port_rules_refuse_promptly_and_the_server_never_accepts() {
    let node = Node::new("authz-principal");
    let (p1, p2) = (18081, 18082);
    let s1 = node.serve(p1);
    let s2 = node.serve(p2);
    let config = node.scratch.write(
        "policy.yaml",
        &[
            node.server_entry("shop"),
            entry("shop", "client", "client", node.net.client_ip, None),
            authz(
                "shop",
                "client-to-p1",
                Some("server"),
                "ALLOW",
                &format!("  - from:\n    - source:\n        principals: [\"cluster.local/ns/shop/sa/client\"]\n    to:\n    - operation:\n        ports: [\"{p1}\"]\n"),
            ),
        ]
        .concat(),
    );
    let agent = Agent::start("authz-principal", &config, &[]);

    let (allowed, _) = node.connect(p1);
    assert_eq!(allowed, "ok", "client principal on p1 is allowed");
    let (denied, took) = node.connect(p2);
    assert_eq!(denied, "ECONNREFUSED", "no ALLOW rule for p2");
    assert!(
        took < Duration::from_secs(1),
        "refused promptly, took {took:?}"
    );
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(s1.accepted(), vec![node.net.client_ip.to_string()]);
    assert!(
        s2.accepted().is_empty(),
        "the server never accepted a denied connection"
    );

    let events = agent.json("/events");
    let deny = events["events"]
        .as_array()
        .and_then(|v| v.iter().find(|e| e["verdict"] == "deny"))
        .cloned()
        .expect("a deny event");
    assert_eq!(deny["direction"], "inbound");
    assert_eq!(deny["hook"], "sk_lookup");
    assert_eq!(deny["workload"], "server");
    assert_eq!(deny["source_workload"], "shop/client");
    assert_eq!(deny["destination"], format!("{}:{p2}", node.net.server_ip));
    assert!(
        deny["rule"].as_str().unwrap_or("").contains("default deny"),
        "{deny}"
    );
    assert_eq!(
        agent.metric(
            "meshward_rule_verdicts_total",
            &[("policy", "client-to-p1"), ("verdict", "allow")]
        ),
        Some(1)
    );
}

#[test]
fn deny_by_ip_block_beats_allow_and_audit_never_blocks() {
    let node = Node::new("authz-deny-audit");
    let port = 18090;
    let server = node.serve(port);
    let scratch_policy = |deny_block: &str| {
        [
            node.server_entry("bank"),
            entry("bank", "client", "client", node.net.client_ip, None),
            authz(
                "bank",
                "allow-bank",
                Some("server"),
                "ALLOW",
                "  - from:\n    - source:\n        namespaces: [\"bank\"]\n",
            ),
            authz(
                "bank",
                "deny-block",
                None,
                "DENY",
                &format!("  - from:\n    - source:\n        ipBlocks: [\"{deny_block}\"]\n"),
            ),
            authz("istio-system", "audit-all", None, "AUDIT", "  - {}\n"),
        ]
        .concat()
    };
    let config = node
        .scratch
        .write("policy.yaml", &scratch_policy("198.18.0.0/31"));
    let mut agent = Agent::start("authz-deny-audit", &config, &[]);
    let (r, took) = node.connect(port);
    assert_eq!(
        r, "ECONNREFUSED",
        "DENY by ipBlock beats the namespace ALLOW"
    );
    assert!(took < Duration::from_secs(1), "took {took:?}");
    assert_eq!(
        agent.metric(
            "meshward_rule_verdicts_total",
            &[("policy", "deny-block"), ("verdict", "deny")]
        ),
        Some(1)
    );

    // The block no longer covers the client: the ALLOW decides, the AUDIT only counts.
    write_atomic(&config, scratch_policy("198.18.0.2/32"));
    agent.wait_until("new policy", |h| h["generation"] == 2);
    assert_eq!(node.connect(port).0, "ok");
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(server.accepted().len(), 1);
    assert_eq!(
        agent.metric(
            "meshward_rule_verdicts_total",
            &[("policy", "audit-all"), ("verdict", "audit")]
        ),
        Some(2),
        "audited both times, blocked neither time by the audit"
    );
}

#[test]
fn unknown_sources_have_no_principal() {
    let node = Node::new("authz-unknown");
    let port = 18095;
    let _server = node.serve(port);
    // The client has no WorkloadEntry: no principal, no namespace.
    let rules = |source: &str| {
        [
            node.server_entry("web"),
            authz(
                "web",
                "who",
                Some("server"),
                "ALLOW",
                &format!("  - from:\n    - source:\n{source}"),
            ),
        ]
        .concat()
    };
    let config = node
        .scratch
        .write("policy.yaml", &rules("        principals: [\"*\"]\n"));
    let mut agent = Agent::start("authz-unknown", &config, &[]);
    assert_eq!(
        node.connect(port).0,
        "ECONNREFUSED",
        "principals [*] needs an identity"
    );

    write_atomic(&config, rules("        ipBlocks: [\"198.18.0.0/24\"]\n"));
    agent.wait_until("ipBlocks policy", |h| h["generation"] == 2);
    assert_eq!(
        node.connect(port).0,
        "ok",
        "an IP block matches sources without identity"
    );
}
