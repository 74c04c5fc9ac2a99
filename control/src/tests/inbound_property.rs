//! Randomized check: `evaluate_inbound` over the compiled inbound groups must agree exactly with
//! a direct evaluation of the AuthorizationPolicy model, written here from the documented
//! semantics without tables, groups, identities-by-signature or prefixes-as-entries.

use std::collections::BTreeMap;
use std::net::IpAddr;

use dataplane_common::{identities, rule_ids};

use super::property::Rng;
use crate::model::labels_match;
use crate::net::{Prefix, parse_cidr, to_bits};
use crate::{
    AuthorizationAction, AuthorizationPolicy, AuthorizationRule, CompiledPolicy, Condition, Config,
    Decision, Location, Operation, RuleIds, Settings, Source, Spanned, Verdict, Workload, compile,
    evaluate_inbound, identity_of, inbound_rule_name,
};

const SEED: u64 = 0x696e_626f_756e_6421;
const ROUNDS: u64 = 2500;

/// Source addresses: workload addresses are drawn from the first ones; the rest are unknown.
const ADDRS: &[&str] = &[
    "10.1.2.3",
    "10.1.2.4",
    "2001:db8::1",
    "10.2.0.1",
    "192.168.1.1",
    "10.1.2.200",
    "10.1.3.1",
    "11.0.0.1",
    "2001:db8::2",
    "2001:db9::1",
    "::1",
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
];

const PORTS: &[u16] = &[80, 443, 8080];
/// Flows also use ports no rule mentions.
const FLOW_PORTS: &[u16] = &[80, 443, 8080, 22, 9999];
const NAMESPACES: &[&str] = &["a", "b", "root"];

const PRINCIPALS: &[&str] = &[
    "cluster.local/ns/a/sa/s1",
    "cluster.local/ns/b/sa/default",
    "cluster.local/ns/root/sa/s3",
    "*",
    "cluster.local/ns/a/*",
    "*/sa/s1",
    "*default",
    "nobody",
];
const NS_VALUES: &[&str] = &["a", "b", "root", "*", "a*", "*t", "zz"];

fn s(v: &str) -> Spanned<String> {
    Spanned {
        value: v.to_string(),
        line: 1,
    }
}

fn some<T>(rng: &mut Rng, percent: u64, max: usize, mut f: impl FnMut(&mut Rng) -> T) -> Vec<T> {
    if rng.chance(percent) {
        (0..1 + rng.below(max)).map(|_| f(rng)).collect()
    } else {
        Vec::new()
    }
}

fn random_prefix(rng: &mut Rng) -> Prefix {
    if rng.chance(40) {
        // A random prefix of a known address.
        let ip: IpAddr = rng.pick(ADDRS).parse().unwrap();
        let len = if ip.is_ipv4() {
            96 + rng.below(33) as u8
        } else {
            rng.below(129) as u8
        };
        Prefix::new(to_bits(ip), len)
    } else {
        parse_cidr(rng.pick(CIDRS)).unwrap().0
    }
}

fn block(rng: &mut Rng) -> Spanned<Prefix> {
    Spanned {
        value: random_prefix(rng),
        line: 1,
    }
}

fn port(rng: &mut Rng) -> Spanned<u16> {
    Spanned {
        value: *rng.pick(PORTS),
        line: 1,
    }
}

fn random_source(rng: &mut Rng) -> Source {
    Source {
        principals: some(rng, 30, 2, |r| s(r.pick(PRINCIPALS))),
        not_principals: some(rng, 15, 2, |r| s(r.pick(PRINCIPALS))),
        request_principals: some(rng, 4, 1, |_| s("iss/sub")),
        not_request_principals: some(rng, 2, 1, |_| s("iss/bad")),
        namespaces: some(rng, 30, 2, |r| s(r.pick(NS_VALUES))),
        not_namespaces: some(rng, 15, 2, |r| s(r.pick(NS_VALUES))),
        ip_blocks: some(rng, 35, 3, block),
        not_ip_blocks: some(rng, 20, 2, block),
        remote_ip_blocks: some(rng, 3, 1, block),
        not_remote_ip_blocks: some(rng, 2, 1, block),
        line: 1,
    }
}

fn random_operation(rng: &mut Rng) -> Operation {
    Operation {
        hosts: some(rng, 3, 1, |_| s("a.example.com")),
        not_hosts: some(rng, 2, 1, |_| s("b.example.com")),
        ports: some(rng, 50, 2, port),
        not_ports: some(rng, 25, 2, port),
        methods: some(rng, 4, 1, |_| s("GET")),
        not_methods: Vec::new(),
        paths: some(rng, 3, 1, |_| s("/api")),
        not_paths: Vec::new(),
        line: 1,
    }
}

fn random_condition(rng: &mut Rng) -> Condition {
    let key = *rng.pick(&[
        "source.ip",
        "source.namespace",
        "source.principal",
        "destination.port",
        "destination.ip",
        "request.headers[x-token]",
    ]);
    let value = |r: &mut Rng| -> Spanned<String> {
        match key {
            "source.ip" | "destination.ip" => s(&random_prefix(r).to_string()),
            "source.namespace" => s(r.pick(NS_VALUES)),
            "source.principal" => s(r.pick(PRINCIPALS)),
            "destination.port" => s(&r.pick(PORTS).to_string()),
            _ => s("t"),
        }
    };
    let (mut values, mut not_values) = (Vec::new(), Vec::new());
    match rng.below(4) {
        0 | 1 => values = (0..1 + rng.below(2)).map(|_| value(rng)).collect(),
        2 => not_values = (0..1 + rng.below(2)).map(|_| value(rng)).collect(),
        _ => {
            values = vec![value(rng)];
            not_values = vec![value(rng)];
        }
    }
    Condition {
        key: key.to_string(),
        values,
        not_values,
        line: 1,
    }
}

fn random_rule(rng: &mut Rng) -> AuthorizationRule {
    AuthorizationRule {
        from: some(rng, 70, 2, random_source),
        to: some(rng, 50, 2, random_operation),
        when: some(rng, 25, 2, random_condition),
        line: 1,
    }
}

fn labels(app: &str) -> BTreeMap<String, String> {
    BTreeMap::from([("app".to_string(), app.to_string())])
}

fn random_config(rng: &mut Rng) -> Config {
    // (namespace/name:app, service account); addresses drawn without repetition.
    let specs = [
        ("a/w1:x", "s1"),
        ("a/w2:y", "s2"),
        ("b/w3:x", "s1"),
        ("b/w4:y", "default"),
        ("root/w5:x", "s3"),
        ("a/w6:x", "default"),
    ];
    let mut free: Vec<&str> = ADDRS[..6].to_vec();
    let workloads = specs
        .iter()
        .map(|(spec, sa)| {
            let (ns, rest) = spec.split_once('/').unwrap();
            let (name, app) = rest.split_once(':').unwrap();
            let address = if rng.chance(80) && !free.is_empty() {
                let i = rng.below(free.len());
                Some(free.remove(i).parse().unwrap())
            } else {
                None
            };
            Workload {
                namespace: ns.into(),
                name: name.into(),
                labels: labels(app),
                service_account: sa.to_string(),
                address,
                cgroup: None,
                netns: None,
                location: Location::new("w.yaml", 1),
                cgroup_line: 0,
            }
        })
        .collect();
    let authorization_policies = (0..1 + rng.below(5))
        .map(|i| {
            let action = match rng.below(20) {
                0 => AuthorizationAction::Custom,
                1..=7 => AuthorizationAction::Allow,
                8..=14 => AuthorizationAction::Deny,
                _ => AuthorizationAction::Audit,
            };
            AuthorizationPolicy {
                namespace: rng.pick(NAMESPACES).to_string(),
                name: format!("p{i}"),
                match_labels: match rng.below(3) {
                    0 => labels("x"),
                    1 => labels("y"),
                    _ => BTreeMap::new(),
                },
                action,
                provider: (action == AuthorizationAction::Custom).then(|| "ext".to_string()),
                rules: (0..rng.below(4)).map(|_| random_rule(rng)).collect(),
                location: Location::new("p.yaml", 1),
            }
        })
        .collect();
    Config {
        workloads,
        authorization_policies,
        ..Config::default()
    }
}

// ---- the direct evaluator ----

/// istiod's string matching, written out again.
fn str_matches(pattern: &str, value: &str) -> bool {
    if pattern == "*" {
        !value.is_empty()
    } else if let Some(suffix) = pattern.strip_prefix('*') {
        value.ends_with(suffix)
    } else if let Some(prefix) = pattern.strip_suffix('*') {
        value.starts_with(prefix)
    } else {
        pattern == value
    }
}

/// What is known of the source: its workload's principal and namespace, if any.
struct Src<'a> {
    ip: IpAddr,
    attrs: Option<(String, &'a str)>,
}

/// `values` any-match / `not_values` none-match over an attribute that may be absent (then
/// only the negated form matches: no value matches).
fn attr_field(attr: Option<&str>, patterns: &[Spanned<String>], negated: bool) -> bool {
    if patterns.is_empty() {
        return true;
    }
    let Some(v) = attr else { return negated };
    patterns.iter().any(|p| str_matches(&p.value, v)) != negated
}

fn in_blocks(ip: IpAddr, blocks: &[Spanned<Prefix>]) -> bool {
    blocks.iter().any(|b| b.value.contains(ip))
}

fn in_texts(ip: IpAddr, texts: &[Spanned<String>]) -> bool {
    texts
        .iter()
        .any(|t| parse_cidr(&t.value).unwrap().0.contains(ip))
}

fn has_http_only(rule: &AuthorizationRule) -> bool {
    rule.from.iter().any(|s| {
        !s.request_principals.is_empty()
            || !s.not_request_principals.is_empty()
            || !s.remote_ip_blocks.is_empty()
            || !s.not_remote_ip_blocks.is_empty()
    }) || rule.to.iter().any(|o| {
        !o.hosts.is_empty()
            || !o.not_hosts.is_empty()
            || !o.methods.is_empty()
            || !o.not_methods.is_empty()
            || !o.paths.is_empty()
            || !o.not_paths.is_empty()
    }) || rule.when.iter().any(|c| c.key.starts_with("request."))
}

/// The rule's L4 fields against one flow; HTTP-only fields are ignored (the caller has already
/// dropped ALLOW rules that have them).
fn rule_matches(rule: &AuthorizationRule, server: &Workload, src: &Src<'_>, port: u16) -> bool {
    let principal = src.attrs.as_ref().map(|(p, _)| p.as_str());
    let namespace = src.attrs.as_ref().map(|(_, n)| *n);
    let from = rule.from.is_empty()
        || rule.from.iter().any(|s| {
            attr_field(principal, &s.principals, false)
                && attr_field(principal, &s.not_principals, true)
                && attr_field(namespace, &s.namespaces, false)
                && attr_field(namespace, &s.not_namespaces, true)
                && (s.ip_blocks.is_empty() || in_blocks(src.ip, &s.ip_blocks))
                && !in_blocks(src.ip, &s.not_ip_blocks)
        });
    let to = rule.to.is_empty()
        || rule.to.iter().any(|o| {
            (o.ports.is_empty() || o.ports.iter().any(|p| p.value == port))
                && !o.not_ports.iter().any(|p| p.value == port)
        });
    let when = rule.when.iter().all(|c| match c.key.as_str() {
        "source.ip" => {
            (c.values.is_empty() || in_texts(src.ip, &c.values)) && !in_texts(src.ip, &c.not_values)
        }
        "destination.ip" => server.address.is_some_and(|ip| {
            (c.values.is_empty() || in_texts(ip, &c.values)) && !in_texts(ip, &c.not_values)
        }),
        "source.principal" | "source.namespace" => {
            let attr = if c.key == "source.principal" {
                principal
            } else {
                namespace
            };
            attr_field(attr, &c.values, false) && attr_field(attr, &c.not_values, true)
        }
        "destination.port" => {
            let p = |t: &Spanned<String>| t.value.parse::<u16>().unwrap() == port;
            (c.values.is_empty() || c.values.iter().any(p)) && !c.not_values.iter().any(p)
        }
        _ => true,
    });
    from && to && when
}

fn naive_decision(
    config: &Config,
    settings: &Settings,
    compiled: &CompiledPolicy,
    server: &Workload,
    src: &Src<'_>,
    port: u16,
) -> Decision {
    let mut policies: Vec<&AuthorizationPolicy> = config
        .authorization_policies
        .iter()
        .filter(|p| p.action != AuthorizationAction::Custom)
        .filter(|p| {
            (p.namespace == server.namespace || p.namespace == settings.root_namespace)
                && labels_match(&p.match_labels, &server.labels)
        })
        .collect();
    policies.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    let has_allow = policies
        .iter()
        .any(|p| p.action == AuthorizationAction::Allow);
    let first = |action: AuthorizationAction| -> u32 {
        for p in policies.iter().filter(|p| p.action == action) {
            for (i, rule) in p.rules.iter().enumerate() {
                if action == AuthorizationAction::Allow && has_http_only(rule) {
                    continue;
                }
                if rule_matches(rule, server, src, port) {
                    let name = inbound_rule_name(&p.namespace, &p.name, i);
                    return compiled.rule_ids.id(&name).expect("rule has an id");
                }
            }
        }
        0
    };
    let deny = first(AuthorizationAction::Deny);
    let allow = first(AuthorizationAction::Allow);
    let audit = first(AuthorizationAction::Audit);
    let (verdict, rule_id) = if deny != 0 {
        (Verdict::Deny, deny)
    } else if !has_allow {
        (Verdict::Allow, rule_ids::INBOUND_DEFAULT_ALLOW)
    } else if allow != 0 {
        (Verdict::Allow, allow)
    } else {
        (Verdict::Deny, rule_ids::INBOUND_DEFAULT_DENY)
    };
    Decision {
        verdict,
        rule_id,
        audit_rule_id: (audit != 0).then_some(audit),
    }
}

#[test]
fn inbound_tables_agree_with_direct_evaluation_of_the_model() {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    let mut previous = RuleIds::new();
    for round in 0..ROUNDS {
        let seed = SEED ^ round.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let mut rng = Rng(seed);
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
        let compiled = compile(&config, &settings, &Default::default(), &previous)
            .unwrap_or_else(|d| panic!("seed {seed:#x} (round {round}): compile failed:\n{d}"));
        // Sources: every workload from its own address, every workload from a foreign address
        // (the tables do not assume the two agree), and addresses of no workload.
        let mut sources: Vec<(IpAddr, u32)> = Vec::new();
        for w in &config.workloads {
            let id = compiled
                .workload_by_name(&w.namespace, &w.name)
                .unwrap()
                .workload_id;
            if let Some(ip) = w.address {
                assert_eq!(identity_of(&compiled, ip), id, "seed {seed:#x}");
                sources.push((ip, id));
            }
            sources.push((rng.pick(ADDRS).parse().unwrap(), id));
        }
        for _ in 0..4 {
            let ip: IpAddr = if rng.chance(30) {
                IpAddr::V4([10, 1, 2, rng.below(256) as u8].into())
            } else {
                rng.pick(&ADDRS[5..]).parse().unwrap()
            };
            sources.push((ip, identity_of(&compiled, ip)));
        }
        for server in &config.workloads {
            let cw = compiled
                .workload_by_name(&server.namespace, &server.name)
                .unwrap();
            for &(ip, identity) in &sources {
                let peer = config.workloads.iter().find(|w| {
                    compiled
                        .workload_by_name(&w.namespace, &w.name)
                        .unwrap()
                        .workload_id
                        == identity
                });
                let src = Src {
                    ip,
                    attrs: peer.map(|w| {
                        (
                            format!("cluster.local/ns/{}/sa/{}", w.namespace, w.service_account),
                            w.namespace.as_str(),
                        )
                    }),
                };
                assert!(peer.is_some() || identity == identities::UNKNOWN);
                for &port in FLOW_PORTS {
                    let got = evaluate_inbound(&compiled, cw.workload_id, ip, identity, port);
                    let want = naive_decision(&config, &settings, &compiled, server, &src, port);
                    if got != want {
                        panic!(
                            "seed {seed:#x} (round {round}): {}/{} <- {ip} (identity {identity}) port {port}\n got {got:?} ({} / audit {:?})\nwant {want:?} ({} / audit {:?})\nworkloads: {:#?}\npolicies: {:#?}",
                            server.namespace,
                            server.name,
                            compiled.rule_name(got.rule_id),
                            got.audit_rule_id.map(|a| compiled.rule_name(a)),
                            compiled.rule_name(want.rule_id),
                            want.audit_rule_id.map(|a| compiled.rule_name(a)),
                            config.workloads,
                            config.authorization_policies
                        );
                    }
                    *counts.entry("flows").or_default() += 1;
                    let kind = match (got.verdict, got.rule_id) {
                        (Verdict::Allow, rule_ids::INBOUND_DEFAULT_ALLOW) => "default allow",
                        (Verdict::Deny, rule_ids::INBOUND_DEFAULT_DENY) => "default deny",
                        (Verdict::Allow, _) => "allow rule",
                        (Verdict::Deny, _) => "deny rule",
                    };
                    *counts.entry(kind).or_default() += 1;
                    if got.audit_rule_id.is_some() {
                        *counts.entry("audited").or_default() += 1;
                    }
                    if identity == identities::UNKNOWN {
                        *counts.entry("unknown source").or_default() += 1;
                    }
                }
            }
        }
        *counts.entry("inbound entries").or_default() += compiled.inbound.len();
        previous = compiled.rule_ids.clone();
    }
    println!("{counts:?}");
    // The generator must reach every outcome, or the comparison proves little.
    let flows = counts["flows"];
    for kind in [
        "default allow",
        "default deny",
        "allow rule",
        "deny rule",
        "audited",
    ] {
        assert!(
            counts.get(kind).copied().unwrap_or(0) > flows / 50,
            "too few `{kind}` outcomes: {counts:?}"
        );
    }
}
