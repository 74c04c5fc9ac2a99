//! Differential tests: random policy sets and flows; the kernel's verdict on a real connect()
//! must equal what `explain` computes from the compiled tables, and a denial's event must name
//! the rule explain names. A failing case prints its seed (replay: MESHWARD_DIFF_SEED=<seed>).

mod support;

use std::net::SocketAddr;

use support::*;

const NAMESPACES: [&str; 3] = ["a", "b", "istio-system"];
const WORKLOADS: [(&str, &str, &str); 3] = [("a", "w0", "x"), ("a", "w1", "y"), ("b", "w2", "x")];
const PORTS: [u16; 5] = [80, 443, 8080, 9000, 15000];

fn seed() -> u64 {
    std::env::var("MESHWARD_DIFF_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_2026)
}

fn rounds() -> u64 {
    std::env::var("MESHWARD_DIFF_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(25)
}

/// A destination from a small universe, so random rules and flows overlap often.
fn random_ip(rng: &mut Rng) -> String {
    format!("127.{}.{}.{}", rng.below(3), rng.below(3), 1 + rng.below(3))
}

fn random_host(rng: &mut Rng) -> String {
    match rng.below(6) {
        0 => "\"*\"".into(),
        1 => format!("\"127.{}.0.0/16\"", rng.below(3)),
        2 => format!("\"127.{}.{}.0/24\"", rng.below(3), rng.below(3)),
        _ => format!("\"{}\"", random_ip(rng)),
    }
}

fn random_egress_policies(rng: &mut Rng, cgroups: &[String]) -> String {
    let mut out = String::new();
    for (i, (ns, name, app)) in WORKLOADS.iter().enumerate() {
        out.push_str(&workload(ns, name, app, &cgroups[i]));
    }
    for p in 0..1 + rng.below(5) {
        let ns = rng.pick(&NAMESPACES);
        let app = rng.chance(50).then(|| *rng.pick(&["x", "y"]));
        let action = *rng.pick(&["ALLOW", "ALLOW", "DENY", "AUDIT"]);
        let mut rules = String::new();
        for _ in 0..rng.below(4) {
            if rng.chance(10) {
                rules.push_str("  - {}\n");
                continue;
            }
            rules.push_str("  - to:\n");
            for _ in 0..1 + rng.below(2) {
                let mut fields = Vec::new();
                if rng.chance(80) {
                    let hosts: Vec<String> =
                        (0..1 + rng.below(2)).map(|_| random_host(rng)).collect();
                    fields.push(format!("hosts: [{}]", hosts.join(", ")));
                }
                if rng.chance(70) {
                    let ports: Vec<String> = (0..1 + rng.below(2))
                        .map(|_| {
                            if rng.chance(15) {
                                "\"*\"".into()
                            } else {
                                rng.pick(&PORTS).to_string()
                            }
                        })
                        .collect();
                    fields.push(format!("ports: [{}]", ports.join(", ")));
                }
                if fields.is_empty() {
                    fields.push("ports: [\"*\"]".into());
                }
                rules.push_str(&format!("    - {}\n", fields.join("\n      ")));
            }
        }
        if rules.is_empty() {
            out.push_str(&format!(
                "apiVersion: meshward.io/v1alpha1\nkind: EgressPolicy\nmetadata:\n  name: p{p}\n  namespace: {ns}\nspec:\n  action: {action}\n---\n"
            ));
        } else {
            out.push_str(&egress(ns, &format!("p{p}"), app, action, &rules));
        }
    }
    out
}

#[test]
fn egress_kernel_verdicts_equal_explain_for_random_policies() {
    let seed = seed();
    let mut rng = Rng::new(seed);
    let cg = CgroupTree::new("diff-egress");
    let cgroups: Vec<String> = WORKLOADS
        .iter()
        .map(|(_, name, _)| cg.child(name))
        .collect();
    let mut probers: Vec<Prober> = cgroups
        .iter()
        .map(|c| Prober::start(None, Some(c)))
        .collect();
    let scratch = Scratch::new("diff-egress");
    let mut config_text = random_egress_policies(&mut rng, &cgroups);
    let config = scratch.write("policy.yaml", &config_text);
    let mut agent = Agent::start("diff-egress", &config, &["--events-per-sec", "0"]);
    let mut events_seen = 0u64;
    let (mut flows, mut denied) = (0u64, 0u64);
    for round in 0..rounds() {
        if round > 0 {
            config_text = random_egress_policies(&mut rng, &cgroups);
            write_atomic(&config, &config_text);
            let want = round + 1;
            let h = agent.wait_until("next random policy", |h| {
                h["generation"] == want || h["status"] != "ok"
            });
            assert_eq!(
                h["status"], "ok",
                "seed {seed} round {round}: rejected\n{h}\n{config_text}"
            );
        }
        for _ in 0..150 {
            let w = rng.below(WORKLOADS.len() as u64) as usize;
            let (ns, name, _) = WORKLOADS[w];
            let kind = if rng.chance(80) { "tcp" } else { "udp" };
            let dst: SocketAddr = format!("{}:{}", random_ip(&mut rng), rng.pick(&PORTS))
                .parse()
                .expect("addr");
            let kernel = probers[w].probe(kind, None, dst);
            let explained = agent.json(&format!("/explain?from={ns}/{name}&to={dst}"));
            let expected_deny = explained["verdict"] == "deny";
            let context = || {
                format!(
                    "seed {seed} round {round}: {kind} {ns}/{name} -> {dst}: kernel {kernel}, explain {explained}\n{config_text}"
                )
            };
            assert_eq!(kernel == "EPERM", expected_deny, "{}", context());
            assert!(
                matches!(kernel.as_str(), "EPERM" | "ECONNREFUSED" | "ok"),
                "{}",
                context()
            );
            if expected_deny {
                let event = wait_for_event(&agent, &mut events_seen, |e| e["verdict"] == "deny");
                assert_eq!(
                    event["rule"],
                    explained["rule"],
                    "{}\nevent {event}",
                    context()
                );
                assert_eq!(event["destination"], dst.to_string(), "{}", context());
                denied += 1;
            }
            flows += 1;
        }
    }
    eprintln!(
        "seed {seed}: {flows} flows ({denied} denied) over {} random policy sets agreed",
        rounds()
    );
    assert_mixed(flows, denied);
}

/// A differential run proves little unless both verdicts occur often.
fn assert_mixed(flows: u64, denied: u64) {
    assert!(
        denied * 10 >= flows && (flows - denied) * 10 >= flows,
        "{denied} of {flows} denied: generator is lopsided"
    );
}

/// The first event after `seen` that satisfies `wanted`; `seen` moves past it.
fn wait_for_event(
    agent: &Agent,
    seen: &mut u64,
    wanted: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let page = agent.json(&format!("/events?since={seen}"));
        for e in page["events"].as_array().into_iter().flatten() {
            *seen = e["seq"].as_u64().unwrap_or(*seen);
            if wanted(e) {
                return e.clone();
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the expected event did not arrive"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// Clients for the inbound differential test: (address, Some((namespace, service account))) for
/// known workloads, None for sources without identity.
const CLIENTS: [(&str, Option<(&str, &str)>); 6] = [
    ("198.18.0.10", Some(("a", "c1"))),
    ("198.18.0.11", Some(("a", "c2"))),
    ("198.18.0.12", Some(("b", "c1"))),
    ("198.18.0.13", Some(("b", "c3"))),
    ("198.18.0.14", None),
    ("198.18.0.21", None),
];
const SERVER_PORTS: [u16; 3] = [18100, 18101, 18102];

fn random_values(rng: &mut Rng, pool: &[&str]) -> String {
    let n = 1 + rng.below(2);
    let values: Vec<String> = (0..n).map(|_| format!("\"{}\"", rng.pick(pool))).collect();
    format!("[{}]", values.join(", "))
}

fn random_source(rng: &mut Rng) -> String {
    const PRINCIPALS: [&str; 6] = [
        "cluster.local/ns/a/sa/c1",
        "cluster.local/ns/b/sa/c1",
        "*",
        "cluster.local/ns/b/*",
        "*/sa/c2",
        "cluster.local/ns/a/sa/nobody",
    ];
    const NAMESPACES: [&str; 4] = ["a", "b", "*", "c"];
    const BLOCKS: [&str; 5] = [
        "198.18.0.8/29",
        "198.18.0.12/30",
        "198.18.0.10",
        "198.18.0.0/24",
        "198.18.0.16/28",
    ];
    let mut fields = Vec::new();
    for (field, pool, chance) in [
        ("principals", &PRINCIPALS[..], 30),
        ("notPrincipals", &PRINCIPALS[..], 15),
        ("namespaces", &NAMESPACES[..], 25),
        ("notNamespaces", &NAMESPACES[..], 15),
        ("ipBlocks", &BLOCKS[..], 30),
        ("notIpBlocks", &BLOCKS[..], 15),
    ] {
        if rng.chance(chance) {
            fields.push(format!("{field}: {}", random_values(rng, pool)));
        }
    }
    if fields.is_empty() {
        fields.push(format!("ipBlocks: {}", random_values(rng, &BLOCKS)));
    }
    format!("    - source:\n        {}\n", fields.join("\n        "))
}

fn random_authorization(rng: &mut Rng, server: &str, clients: &str) -> String {
    let mut out = format!("{server}{clients}");
    for p in 0..1 + rng.below(4) {
        let ns = *rng.pick(&["a", "a", "b", "istio-system"]);
        let selector = if rng.chance(50) {
            "  selector:\n    matchLabels:\n      app: srv\n"
        } else {
            ""
        };
        let action = *rng.pick(&["ALLOW", "ALLOW", "DENY", "AUDIT"]);
        let mut rules = String::new();
        for _ in 0..rng.below(3) {
            if rng.chance(10) {
                rules.push_str("  - {}\n");
                continue;
            }
            let mut rule = String::new();
            if rng.chance(75) {
                rule.push_str("    from:\n");
                for _ in 0..1 + rng.below(2) {
                    rule.push_str(&random_source(rng));
                }
            }
            if rng.chance(50) {
                let field = if rng.chance(70) { "ports" } else { "notPorts" };
                let port = rng.pick(&SERVER_PORTS);
                rule.push_str(&format!(
                    "    to:\n    - operation:\n        {field}: [\"{port}\"]\n"
                ));
            }
            if rule.is_empty() {
                rules.push_str("  - {}\n");
            } else {
                rules.push_str(&format!("  -{}", &rule[3..]));
            }
        }
        let rules = if rules.is_empty() {
            String::new()
        } else {
            format!("  rules:\n{rules}")
        };
        out.push_str(&format!(
            "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: ap{p}\n  namespace: {ns}\nspec:\n{selector}  action: {action}\n{rules}---\n"
        ));
    }
    out
}

#[test]
fn inbound_kernel_verdicts_equal_explain_for_random_authorization_policies() {
    let seed = seed();
    let mut rng = Rng::new(seed ^ 0x1b0u64);
    let net = NetPair::new("diff-inbound");
    // The client host holds every client address on its veth.
    for (ip, _) in CLIENTS {
        add_client_address(&net, ip);
    }
    let cg = CgroupTree::new("diff-inbound");
    let server_cgroup = cg.child("server");
    let scratch = Scratch::new("diff-inbound");
    let _servers: Vec<Server> = SERVER_PORTS
        .iter()
        .map(|p| Server::start(&net.server_ns, Some(&server_cgroup), *p, &scratch))
        .collect();
    let netns = NetPair::netns_path(&net.server_ns);
    let server = format!(
        "apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata:\n  name: srv\n  namespace: a\n  annotations:\n    meshward.io/cgroup: {server_cgroup}\n    meshward.io/netns: {}\nspec:\n  address: {}\n  serviceAccount: srv\n  labels:\n    app: srv\n---\n",
        netns.display(),
        net.server_ip
    );
    let clients: String = CLIENTS
        .iter()
        .enumerate()
        .filter_map(|(i, (ip, who))| who.map(|(ns, sa)| (i, ip, ns, sa)))
        .map(|(i, ip, ns, sa)| {
            format!("apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata:\n  name: client{i}\n  namespace: {ns}\nspec:\n  address: {ip}\n  serviceAccount: {sa}\n---\n")
        })
        .collect();
    let mut prober = Prober::start(Some(&net.client_ns), None);
    let mut config_text = random_authorization(&mut rng, &server, &clients);
    let config = scratch.write("policy.yaml", &config_text);
    let mut agent = Agent::start("diff-inbound", &config, &["--events-per-sec", "0"]);
    let mut events_seen = 0u64;
    let (mut flows, mut denied) = (0u64, 0u64);
    for round in 0..rounds() {
        if round > 0 {
            config_text = random_authorization(&mut rng, &server, &clients);
            write_atomic(&config, &config_text);
            let want = round + 1;
            let h = agent.wait_until("next random policy", |h| {
                h["generation"] == want || h["status"] != "ok"
            });
            assert_eq!(
                h["status"], "ok",
                "seed {seed} round {round}: rejected\n{h}\n{config_text}"
            );
        }
        for _ in 0..150 {
            let (src, _) = *rng.pick(&CLIENTS);
            let port = *rng.pick(&SERVER_PORTS);
            let dst: SocketAddr = format!("{}:{port}", net.server_ip).parse().expect("addr");
            let (kernel, local_port) =
                prober.probe_with_port("tcp", Some(src.parse().expect("ip")), dst);
            let explained = agent.json(&format!("/explain?from={src}&to={dst}"));
            let expected_deny = explained["verdict"] == "deny";
            let context = || {
                format!(
                    "seed {seed} round {round}: {src} -> {dst}: kernel {kernel}, explain {explained}\n{config_text}"
                )
            };
            assert!(
                matches!(kernel.as_str(), "ok" | "ECONNREFUSED"),
                "{}",
                context()
            );
            assert_eq!(kernel == "ECONNREFUSED", expected_deny, "{}", context());
            if expected_deny {
                // Match on the whole 4-tuple: a SYN that meets a server TIME_WAIT socket is
                // looked up twice (two events for one connect).
                let source = format!("{src}:{local_port}");
                let event = wait_for_event(&agent, &mut events_seen, |e| {
                    e["verdict"] == "deny"
                        && e["source"] == source
                        && e["destination"] == dst.to_string()
                });
                assert_eq!(
                    event["rule"],
                    explained["rule"],
                    "{}\nevent {event}",
                    context()
                );
                denied += 1;
            }
            flows += 1;
        }
    }
    eprintln!(
        "seed {seed}: {flows} inbound flows ({denied} denied) over {} random policy sets agreed",
        rounds()
    );
    assert_mixed(flows, denied);
}

fn add_client_address(net: &NetPair, ip: &str) {
    let out = std::process::Command::new("ip")
        .args(["-n", &net.client_ns, "-o", "link", "show", "type", "veth"])
        .output()
        .expect("ip link");
    let text = String::from_utf8_lossy(&out.stdout);
    let dev = text
        .split(':')
        .nth(1)
        .map(|d| d.trim().split('@').next().unwrap_or("").to_string())
        .expect("client veth");
    let status = std::process::Command::new("ip")
        .args([
            "-n",
            &net.client_ns,
            "addr",
            "add",
            &format!("{ip}/24"),
            "dev",
            &dev,
        ])
        .status()
        .expect("ip addr add");
    assert!(status.success(), "add {ip} to {dev}");
}
