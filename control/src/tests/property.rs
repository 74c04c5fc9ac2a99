//! Randomized check: `evaluate` over the compiled (folded) tables must agree exactly with a
//! direct evaluation of the policy model, which knows nothing about tables or folding.

use std::collections::BTreeMap;
use std::net::IpAddr;

use dataplane_common::rule_ids;

use crate::model::labels_match;
use crate::net::{HostMatch, PortMatch, Prefix, parse_cidr};
use crate::{
    Action, BinaryMatch, CompiledPolicy, Config, Decision, EgressPolicy, EgressRule, EgressTarget,
    Host, Location, Resolutions, RuleIds, Settings, Spanned, Verdict, Workload, compile, evaluate,
};

/// SplitMix64: small, fast, good enough to explore; fixed seed keeps failures reproducible.
pub(super) struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
    pub fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

const ADDRS: &[&str] = &[
    "10.1.2.3",
    "10.1.2.4",
    "10.1.2.200",
    "10.1.3.1",
    "10.2.0.1",
    "11.0.0.1",
    "192.168.1.1",
    "2001:db8::1",
    "2001:db8::2",
    "2001:db9::1",
    "::1",
    "::a01:203",
];

const CIDRS: &[&str] = &[
    "10.0.0.0/8",
    "10.1.0.0/16",
    "10.1.2.0/24",
    "10.1.2.0/25",
    "10.1.2.3/32",
    "10.1.2.4",
    "192.168.0.0/16",
    "0.0.0.0/0",
    "2001:db8::/32",
    "2001:db8::1",
    "::/0",
    "::ffff:10.1.0.0/112",
    "::/96",
];

const PORTS: &[u16] = &[80, 443, 8080, 22];
const NAMESPACES: &[&str] = &["a", "b", "root"];

fn random_host(rng: &mut Rng) -> Host {
    let (text, matches) = match rng.below(10) {
        0 => ("*".to_string(), HostMatch::Any),
        1 => (
            "a.example.com".into(),
            HostMatch::Exact("a.example.com".into()),
        ),
        2 => (
            "c.example.com".into(),
            HostMatch::Exact("c.example.com".into()),
        ),
        3 => (
            "*.example.com".into(),
            HostMatch::Suffix("example.com".into()),
        ),
        4 | 5 => {
            // A random prefix of a known address.
            let ip: IpAddr = rng.pick(ADDRS).parse().unwrap();
            let len = if ip.is_ipv4() {
                96 + rng.below(33) as u8
            } else {
                rng.below(129) as u8
            };
            let p = Prefix::new(crate::net::to_bits(ip), len);
            (p.to_string(), HostMatch::Prefix(p))
        }
        _ => {
            let text = rng.pick(CIDRS).to_string();
            let p = parse_cidr(&text).unwrap().0;
            (text, HostMatch::Prefix(p))
        }
    };
    Host {
        text,
        matches,
        line: 1,
    }
}

fn random_rule(rng: &mut Rng) -> EgressRule {
    let to = (0..rng.below(3))
        .map(|_| EgressTarget {
            hosts: (0..rng.below(4)).map(|_| random_host(rng)).collect(),
            ports: (0..rng.below(3))
                .map(|_| Spanned {
                    value: if rng.chance(25) {
                        PortMatch::Any
                    } else {
                        PortMatch::Port(*rng.pick(PORTS))
                    },
                    line: 1,
                })
                .collect(),
            line: 1,
        })
        .collect();
    EgressRule { to, line: 1 }
}

fn labels(app: &str) -> BTreeMap<String, String> {
    BTreeMap::from([("app".to_string(), app.to_string())])
}

fn random_config(rng: &mut Rng) -> Config {
    let workloads = ["a/w1:x", "a/w2:y", "b/w3:x", "root/w4:y"]
        .iter()
        .map(|s| {
            let (ns, rest) = s.split_once('/').unwrap();
            let (name, app) = rest.split_once(':').unwrap();
            Workload {
                namespace: ns.into(),
                name: name.into(),
                labels: labels(app),
                service_account: "default".into(),
                address: None,
                cgroup: None,
                netns: None,
                location: Location::new("w.yaml", 1),
                cgroup_line: 0,
            }
        })
        .collect();
    let egress_policies = (0..1 + rng.below(6))
        .map(|i| EgressPolicy {
            namespace: rng.pick(NAMESPACES).to_string(),
            name: format!("p{i}"),
            match_labels: match rng.below(3) {
                0 => labels("x"),
                1 => labels("y"),
                _ => BTreeMap::new(),
            },
            binaries: if rng.chance(10) {
                vec![Spanned {
                    value: BinaryMatch::Exact("/bin/x".into()),
                    line: 1,
                }]
            } else {
                Vec::new()
            },
            action: *rng.pick(&[Action::Allow, Action::Deny, Action::Audit]),
            rules: (0..rng.below(4)).map(|_| random_rule(rng)).collect(),
            location: Location::new("p.yaml", 1),
        })
        .collect();
    Config {
        workloads,
        egress_policies,
        ..Config::default()
    }
}

/// The rule of `action` that the kernel reports for this flow, found directly from the model:
/// the exact-port key before the any-port key; within a key, the longest matching prefix, then
/// the first rule in (namespace, name, index) order.
fn naive_slot(
    policies: &[&EgressPolicy],
    compiled: &CompiledPolicy,
    resolved: &Resolutions,
    action: Action,
    dst: IpAddr,
    port: u16,
) -> u32 {
    for key in [port, 0] {
        // (prefix length, policy order, rule index) of the best match so far.
        let mut best: Option<(u8, usize, usize)> = None;
        for (pi, p) in policies.iter().enumerate() {
            if p.action != action {
                continue;
            }
            for (ri, rule) in p.rules.iter().enumerate() {
                let Some(len) = rule_match_len(rule, resolved, dst, port, key) else {
                    continue;
                };
                let better = match best {
                    None => true,
                    Some((bl, bp, br)) => len > bl || (len == bl && (pi, ri) < (bp, br)),
                };
                if better {
                    best = Some((len, pi, ri));
                }
            }
        }
        if let Some((_, pi, ri)) = best {
            let name = format!("{}/{}#{ri}", policies[pi].namespace, policies[pi].name);
            return compiled.rule_ids.id(&name).expect("rule has an id");
        }
    }
    0
}

/// The longest prefix by which `rule` matches the flow under port key `key`, if it does.
fn rule_match_len(
    rule: &EgressRule,
    resolved: &Resolutions,
    dst: IpAddr,
    port: u16,
    key: u16,
) -> Option<u8> {
    if rule.to.is_empty() {
        return (key == 0).then_some(0);
    }
    let mut best = None;
    for t in &rule.to {
        let port_ok = if t.ports.is_empty() {
            key == 0
        } else {
            t.ports.iter().any(|p| match p.value {
                PortMatch::Any => key == 0,
                PortMatch::Port(n) => key != 0 && n == port && key == port,
            })
        };
        if !port_ok {
            continue;
        }
        let lens: Vec<u8> = if t.hosts.is_empty() {
            vec![0]
        } else {
            t.hosts
                .iter()
                .flat_map(|h| -> Vec<u8> {
                    match &h.matches {
                        HostMatch::Any => vec![0],
                        HostMatch::Prefix(p) => {
                            if p.contains(dst) {
                                vec![p.prefix_len()]
                            } else {
                                vec![]
                            }
                        }
                        HostMatch::Exact(name) => resolved
                            .get(name)
                            .into_iter()
                            .flatten()
                            .filter(|ip| crate::net::to_bits(**ip) == crate::net::to_bits(dst))
                            .map(|_| 128)
                            .collect(),
                        HostMatch::Suffix(_) => vec![],
                    }
                })
                .collect()
        };
        best = best.max(lens.into_iter().max());
    }
    best
}

fn naive_decision(
    config: &Config,
    settings: &Settings,
    resolved: &Resolutions,
    compiled: &CompiledPolicy,
    workload: &Workload,
    dst: IpAddr,
    port: u16,
) -> Decision {
    let mut policies: Vec<&EgressPolicy> = config
        .egress_policies
        .iter()
        // The flows come from processes running no named binary: binary-scoped policies never
        // apply to them.
        .filter(|p| p.binaries.is_empty())
        .filter(|p| {
            (p.namespace == workload.namespace || p.namespace == settings.root_namespace)
                && labels_match(&p.match_labels, &workload.labels)
        })
        .collect();
    policies.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    let has_allow = policies.iter().any(|p| p.action == Action::Allow);
    let slot = |a| naive_slot(&policies, compiled, resolved, a, dst, port);
    let (deny, allow, audit) = (slot(Action::Deny), slot(Action::Allow), slot(Action::Audit));
    let (verdict, rule_id) = if deny != 0 {
        (Verdict::Deny, deny)
    } else if !has_allow {
        (Verdict::Allow, rule_ids::DEFAULT_ALLOW)
    } else if allow != 0 {
        (Verdict::Allow, allow)
    } else {
        (Verdict::Deny, rule_ids::DEFAULT_DENY)
    };
    Decision {
        verdict,
        rule_id,
        audit_rule_id: (audit != 0).then_some(audit),
    }
}

#[test]
fn tables_agree_with_direct_evaluation_of_the_model() {
    let mut rng = Rng(0x6d65_7368_7761_7264);
    let resolved = Resolutions::from([(
        "a.example.com".to_string(),
        vec!["10.1.2.3".parse().unwrap(), "2001:db8::1".parse().unwrap()],
    )]);
    let mut previous = RuleIds::new();
    let (mut checked, mut denies, mut allows, mut audits) = (0, 0, 0, 0);
    for round in 0..400 {
        let config = random_config(&mut rng);
        let settings = Settings {
            root_namespace: if round % 2 == 0 {
                "root"
            } else {
                "istio-system"
            }
            .into(),
            ..Settings::default()
        };
        let compiled = compile(&config, &settings, &resolved, &previous)
            .unwrap_or_else(|d| panic!("round {round}: compile failed:\n{d}"));
        for w in &config.workloads {
            let id = compiled
                .workload_by_name(&w.namespace, &w.name)
                .unwrap()
                .workload_id;
            for _ in 0..12 {
                let dst: IpAddr = if rng.chance(20) {
                    IpAddr::V4([10, 1, 2, rng.below(256) as u8].into())
                } else {
                    rng.pick(ADDRS).parse().unwrap()
                };
                let port = if rng.chance(5) { 0 } else { *rng.pick(PORTS) };
                let got = evaluate(&compiled, id, dst, port);
                let want = naive_decision(&config, &settings, &resolved, &compiled, w, dst, port);
                assert_eq!(
                    got, want,
                    "round {round}: {}/{} -> {dst}:{port}\nconfig: {:#?}",
                    w.namespace, w.name, config.egress_policies
                );
                checked += 1;
                match got.verdict {
                    Verdict::Deny => denies += 1,
                    Verdict::Allow => allows += 1,
                }
                audits += usize::from(got.audit_rule_id.is_some());
            }
        }
        // Feed ids forward like the agent does, so reuse and stability are exercised too.
        previous = compiled.rule_ids.clone();
    }
    println!("checked {checked} flows: {allows} allowed, {denies} denied, {audits} audited");
    // The generator must exercise every outcome, or the comparison proves little.
    assert!(denies > checked / 10 && allows > checked / 10 && audits > checked / 20);
}
