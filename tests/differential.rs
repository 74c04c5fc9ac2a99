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
        .unwrap_or(12)
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
    let mut flows = 0;
    for round in 0..rounds() {
        if round > 0 {
            config_text = random_egress_policies(&mut rng, &cgroups);
            std::fs::write(&config, &config_text).expect("write config");
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
                let event = wait_for_event(&agent, &mut events_seen, "deny");
                assert_eq!(
                    event["rule"],
                    explained["rule"],
                    "{}\nevent {event}",
                    context()
                );
                assert_eq!(event["destination"], dst.to_string(), "{}", context());
            }
            flows += 1;
        }
    }
    eprintln!(
        "seed {seed}: {flows} flows over {} random policy sets agreed",
        rounds()
    );
}

/// The next event with the given verdict after `seen` (skipping audit events).
fn wait_for_event(agent: &Agent, seen: &mut u64, verdict: &str) -> serde_json::Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let page = agent.json(&format!("/events?since={seen}"));
        for e in page["events"].as_array().into_iter().flatten() {
            *seen = e["seq"].as_u64().unwrap_or(*seen);
            if e["verdict"] == verdict {
                return e.clone();
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no {verdict} event arrived"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}
