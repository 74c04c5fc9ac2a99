//! The xDS forms mean what the YAML forms mean: the same policies written both ways compile to
//! tables that decide every probed connection the same way, naming the same rule.

use std::net::IpAddr;
use std::sync::Arc;

use control::{
    CompiledPolicy, Resolutions, RuleIds, Settings, compile, evaluate, evaluate_inbound,
    identity_of,
};
use xds::proto::Empty;
use xds::proto::authorization::string_match::MatchType;
use xds::proto::authorization::{
    self as authz, Authorization, Clause, Match, Rule, ServiceAccountMatch, StringMatch,
};
use xds::proto::egress::{self, EgressPolicy};
use xds::proto::workload::{Address, Workload, address};
use xds::{Entry, Resource, ResourceSet, ResourceType, Snapshot, to_config};

/// The YAML form (shared with `encode_roundtrip.rs`).
const YAML: &str = include_str!("data/equivalence.yaml");

fn exact(s: &str) -> StringMatch {
    StringMatch {
        match_type: Some(MatchType::Exact(s.into())),
    }
}

fn prefix(s: &str) -> StringMatch {
    StringMatch {
        match_type: Some(MatchType::Prefix(s.into())),
    }
}

fn suffix(s: &str) -> StringMatch {
    StringMatch {
        match_type: Some(MatchType::Suffix(s.into())),
    }
}

fn cidr(ip: &str, length: u32) -> authz::Address {
    let address = match ip.parse::<IpAddr>().unwrap() {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    };
    authz::Address { address, length }
}

fn clause(matches: Vec<Match>) -> Clause {
    Clause { matches }
}

fn workload(ns: &str, name: &str, sa: &str, ip: &str, policies: &[&str]) -> (String, Resource) {
    let address = match ip.parse::<IpAddr>().unwrap() {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    };
    let uid = format!("Kubernetes//Pod/{ns}/{name}");
    let w = Workload {
        uid: uid.clone(),
        name: name.into(),
        namespace: ns.into(),
        addresses: vec![address],
        service_account: sa.into(),
        authorization_policies: policies.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    };
    (
        uid,
        Resource::Address(Address {
            r#type: Some(address::Type::Workload(w)),
        }),
    )
}

fn policy(
    ns: &str,
    name: &str,
    scope: authz::Scope,
    action: authz::Action,
    rules: Vec<Rule>,
) -> Authorization {
    Authorization {
        name: name.into(),
        namespace: ns.into(),
        scope: scope as i32,
        action: action as i32,
        rules,
        dry_run: false,
    }
}

/// The same as `YAML`, as istiod (and meshward's EgressPolicy contract) would send it.
fn snapshot() -> Snapshot {
    let workloads = vec![
        workload("shop", "web", "web-sa", "10.0.0.1", &[]),
        workload("shop", "db", "db-sa", "10.0.0.2", &["shop/db-only"]),
        workload("other", "api", "", "2001:db8::1", &[]),
        workload("istio-system", "mon", "mon", "10.0.0.9", &[]),
    ];
    let policies = vec![
        policy(
            "shop",
            "deny-other",
            authz::Scope::Namespace,
            authz::Action::Deny,
            vec![Rule {
                clauses: vec![
                    clause(vec![Match {
                        not_namespaces: vec![exact("shop")],
                        ..Default::default()
                    }]),
                    clause(vec![Match {
                        destination_ports: vec![5432],
                        ..Default::default()
                    }]),
                ],
            }],
        ),
        policy(
            "shop",
            "db-only",
            authz::Scope::WorkloadSelector,
            authz::Action::Allow,
            vec![Rule {
                clauses: vec![
                    clause(vec![
                        Match {
                            principals: vec![exact("cluster.local/ns/shop/sa/web-sa")],
                            ..Default::default()
                        },
                        Match {
                            source_ips: vec![cidr("10.0.0.0", 24)],
                            not_source_ips: vec![cidr("10.0.0.9", 32)],
                            ..Default::default()
                        },
                    ]),
                    clause(vec![Match {
                        not_destination_ports: vec![22],
                        ..Default::default()
                    }]),
                ],
            }],
        ),
        Authorization {
            dry_run: true,
            ..policy(
                "istio-system",
                "global-audit",
                authz::Scope::Global,
                authz::Action::Allow,
                vec![Rule {
                    clauses: vec![clause(vec![Match {
                        namespaces: vec![prefix("sh")],
                        ..Default::default()
                    }])],
                }],
            )
        },
        policy(
            "other",
            "allow-sa",
            authz::Scope::Namespace,
            authz::Action::Allow,
            vec![
                Rule {
                    clauses: vec![
                        clause(vec![Match {
                            service_accounts: vec![ServiceAccountMatch {
                                namespace: "shop".into(),
                                service_account: "web-sa".into(),
                            }],
                            ..Default::default()
                        }]),
                        clause(vec![Match {
                            destination_ports: vec![8080],
                            ..Default::default()
                        }]),
                    ],
                },
                Rule {
                    clauses: vec![
                        clause(vec![Match {
                            principals: vec![StringMatch {
                                match_type: Some(MatchType::Presence(Empty {})),
                            }],
                            not_principals: vec![suffix("/sa/db-sa")],
                            ..Default::default()
                        }]),
                        clause(vec![Match {
                            not_source_ips: vec![cidr("10.0.0.0", 31)],
                            ..Default::default()
                        }]),
                        clause(vec![Match {
                            destination_ips: vec![cidr("2001:db8::", 64)],
                            ..Default::default()
                        }]),
                    ],
                },
            ],
        ),
    ];
    let egress = EgressPolicy {
        namespace: "shop".into(),
        name: "web-out".into(),
        selector: Some(egress::WorkloadSelector {
            match_labels: [("app".to_string(), "web".to_string())].into(),
        }),
        binaries: vec![],
        action: egress::Action::Allow as i32,
        rules: vec![
            egress::EgressRule {
                to: vec![egress::EgressTarget {
                    hosts: vec!["10.0.0.2".into(), "192.168.0.0/16".into()],
                    ports: vec![5432, 443],
                }],
            },
            egress::EgressRule {
                to: vec![egress::EgressTarget {
                    hosts: vec!["*".into()],
                    ports: vec![53],
                }],
            },
        ],
    };
    let entries = |v: Vec<(String, Resource)>| -> ResourceSet {
        v.into_iter()
            .map(|(name, r)| {
                (
                    name,
                    Entry {
                        version: "v1".into(),
                        resource: Arc::new(r),
                    },
                )
            })
            .collect()
    };
    let mut s = Snapshot::new();
    s.set(ResourceType::Address, entries(workloads));
    s.set(
        ResourceType::Authorization,
        entries(
            policies
                .into_iter()
                .map(|p| {
                    (
                        format!("{}/{}", p.namespace, p.name),
                        Resource::Authorization(p),
                    )
                })
                .collect(),
        ),
    );
    s.set(
        ResourceType::EgressPolicy,
        entries(vec![(
            "shop/web-out".into(),
            Resource::EgressPolicy(egress),
        )]),
    );
    s
}

fn compiled(config: &control::Config) -> CompiledPolicy {
    compile(
        config,
        &Settings::default(),
        &Resolutions::new(),
        &RuleIds::new(),
    )
    .unwrap_or_else(|d| panic!("compile failed:\n{d}"))
}

/// Every (server, source, port) verdict with the name of the deciding and the auditing rule.
fn inbound_decisions(p: &CompiledPolicy) -> Vec<String> {
    let servers = [
        ("shop", "web"),
        ("shop", "db"),
        ("other", "api"),
        ("istio-system", "mon"),
    ];
    let sources = [
        "10.0.0.1",
        "10.0.0.2",
        "2001:db8::1",
        "10.0.0.9",
        "10.0.0.77",
        "192.168.1.1",
        "2001:db8::99",
    ];
    let mut out = Vec::new();
    for (ns, name) in servers {
        let server = p.workload_by_name(ns, name).expect("server workload");
        for src in sources {
            let ip: IpAddr = src.parse().unwrap();
            for port in [22u16, 80, 5432, 8080, 9000] {
                let d = evaluate_inbound(p, server.workload_id, ip, identity_of(p, ip), port);
                out.push(format!(
                    "{ns}/{name} <- {src}:{port}: {} by {} (audit {:?})",
                    d.verdict,
                    p.rule_name(d.rule_id),
                    d.audit_rule_id.map(|id| p.rule_name(id))
                ));
            }
        }
    }
    out
}

fn egress_decisions(p: &CompiledPolicy) -> Vec<String> {
    let mut out = Vec::new();
    for (ns, name) in [("shop", "web"), ("shop", "db")] {
        let w = p.workload_by_name(ns, name).expect("workload");
        for dst in ["10.0.0.2", "192.168.3.4", "8.8.8.8"] {
            for port in [53u16, 443, 5432] {
                let d = evaluate(p, w.workload_id, dst.parse().unwrap(), port);
                out.push(format!(
                    "{ns}/{name} -> {dst}:{port}: {} by {}",
                    d.verdict,
                    p.rule_name(d.rule_id)
                ));
            }
        }
    }
    out
}

#[test]
fn xds_and_yaml_forms_decide_alike() {
    let from_yaml = compiled(&control::load_config_str("mesh.yaml", YAML).unwrap());
    let config = to_config(&snapshot(), &Settings::default()).unwrap_or_else(|r| panic!("{r}"));
    assert!(config.warnings.is_empty(), "{}", config.warnings);
    let from_xds = compiled(&config);
    let (a, b) = (inbound_decisions(&from_yaml), inbound_decisions(&from_xds));
    for (y, x) in a.iter().zip(&b) {
        assert_eq!(y, x, "YAML and xDS disagree");
    }
    // The probes reach every kind of outcome, so agreement says something.
    let all = a.join("\n");
    for outcome in [
        "deny by authz:shop/deny-other#0",
        "allow by authz:shop/db-only#0",
        "allow by authz:other/allow-sa#0",
        "allow by authz:other/allow-sa#1",
        "deny by (inbound default deny",
        "allow by (inbound default allow",
        "audit Some(\"authz:istio-system/global-audit#0\")",
    ] {
        assert!(all.contains(outcome), "no probe gives `{outcome}`:\n{all}");
    }
}

/// Egress applies to local processes, found by the cgroups of local WorkloadEntries; istiod's
/// workloads carry neither cgroups nor labels. So an EgressPolicy from xDS selects the local
/// workloads, and must then decide as its YAML twin does.
#[test]
fn xds_egress_policy_decides_as_its_yaml_twin_over_local_workloads() {
    let local = control::load_config_str("mesh.yaml", YAML).unwrap();
    let from_yaml = compiled(&local);
    let xds = to_config(&snapshot(), &Settings::default()).unwrap_or_else(|r| panic!("{r}"));
    let combined = control::Config {
        workloads: local.workloads.clone(),
        egress_policies: xds.egress_policies,
        ..Default::default()
    };
    let (a, b) = (
        egress_decisions(&from_yaml),
        egress_decisions(&compiled(&combined)),
    );
    assert_eq!(a, b);
    let all = a.join("\n");
    for outcome in [
        "allow by shop/web-out#0",
        "allow by shop/web-out#1",
        "deny by (default deny",
        "allow by (default allow",
    ] {
        assert!(all.contains(outcome), "no probe gives `{outcome}`:\n{all}");
    }
}
