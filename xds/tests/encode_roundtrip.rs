//! `from_config` says what the YAML says: the resources it makes, read back by `to_config` and
//! merged with the local WorkloadEntries as the agent merges them (docs/xds.md, "Merge rule"),
//! compile to tables that decide every probed connection as the YAML's own tables do, naming
//! the same rule. For the YAML of `yaml_equivalence.rs` and for random configurations.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::Arc;

use control::{
    CompiledPolicy, Config, PortMatch, Resolutions, RuleIds, Settings, compile, evaluate,
    evaluate_inbound, identity_of,
};
use xds::proto::authorization::Scope;
use xds::proto::workload::address;
use xds::{Entry, Resource, ResourceType, Snapshot, from_config, to_config};

const YAML: &str = include_str!("data/equivalence.yaml");

fn load(yaml: &str) -> Config {
    control::load_config_str("mesh.yaml", yaml).unwrap_or_else(|d| panic!("{d}\n{yaml}"))
}

fn compiled(config: &Config) -> CompiledPolicy {
    compile(
        config,
        &Settings::default(),
        &Resolutions::new(),
        &RuleIds::new(),
    )
    .unwrap_or_else(|d| panic!("compile failed:\n{d}"))
}

/// The resources as a client holds them: by natural name, per type.
fn snapshot(resources: &[Resource]) -> Snapshot {
    let mut sets: BTreeMap<ResourceType, xds::ResourceSet> = BTreeMap::new();
    for r in resources {
        let name = r.natural_name().expect("a natural name");
        let entry = Entry {
            version: "1".into(),
            resource: Arc::new(r.clone()),
        };
        let previous = sets
            .entry(r.resource_type())
            .or_default()
            .insert(name, entry);
        assert!(previous.is_none(), "two resources share a name");
    }
    let mut s = Snapshot::new();
    for (ty, set) in sets {
        s.set(ty, set);
    }
    s
}

/// What the agent enforces: the local WorkloadEntries completed by xDS (identity from xDS,
/// node-local facts and labels from the local entry, plus xDS's selector labels), and xDS's
/// policies. A copy of `dataplane/src/agent/merge.rs` for the workloads.
fn merged(local: &Config, xds: &Config) -> Config {
    let mut workloads = Vec::new();
    for x in &xds.workloads {
        let mut w = match local
            .workloads
            .iter()
            .find(|l| (&l.namespace, &l.name) == (&x.namespace, &x.name))
        {
            Some(l) => l.clone(),
            None => panic!("xDS workload {}/{} has no local entry", x.namespace, x.name),
        };
        w.address = x.address;
        w.service_account = x.service_account.clone();
        w.labels.extend(x.labels.clone());
        workloads.push(w);
    }
    Config {
        workloads,
        egress_policies: xds.egress_policies.clone(),
        authorization_policies: xds.authorization_policies.clone(),
        ..Default::default()
    }
}

/// YAML → resources → wire bytes → resources → `to_config`.
fn through_xds(config: &Config) -> Config {
    let resources = from_config(config, &Settings::default()).unwrap_or_else(|d| panic!("{d}"));
    // Over the wire: what the server sends is what the client decodes.
    let resources: Vec<Resource> = resources
        .iter()
        .map(|r| Resource::decode(r.resource_type(), &r.to_any()).unwrap())
        .collect();
    to_config(&snapshot(&resources), &Settings::default()).unwrap_or_else(|r| panic!("{r}"))
}

/// Every probed verdict, with the deciding (and auditing) rule's name.
fn decisions(p: &CompiledPolicy, extra_sources: &[&str], ports: &[u16]) -> Vec<String> {
    let mut sources: Vec<IpAddr> = p.workloads.iter().filter_map(|w| w.address).collect();
    sources.extend(extra_sources.iter().map(|s| s.parse::<IpAddr>().unwrap()));
    let mut out = Vec::new();
    for w in &p.workloads {
        let who = format!("{}/{}", w.namespace, w.name);
        for &ip in &sources {
            for &port in ports {
                let d = evaluate_inbound(p, w.workload_id, ip, identity_of(p, ip), port);
                out.push(format!(
                    "{who} <- {ip}:{port}: {} by {} (audit {:?})",
                    d.verdict,
                    p.rule_name(d.rule_id),
                    d.audit_rule_id.map(|id| p.rule_name(id))
                ));
                let d = evaluate(p, w.workload_id, ip, port);
                out.push(format!(
                    "{who} -> {ip}:{port}: {} by {} (audit {:?})",
                    d.verdict,
                    p.rule_name(d.rule_id),
                    d.audit_rule_id.map(|id| p.rule_name(id))
                ));
            }
        }
    }
    out
}

/// The EgressPolicies without source locations (lines, files): field for field.
fn egress_fields(config: &Config) -> Vec<String> {
    let mut out: Vec<String> = config
        .egress_policies
        .iter()
        .map(|p| {
            let rules: Vec<Vec<(Vec<_>, Vec<_>)>> = p
                .rules
                .iter()
                .map(|r| {
                    r.to.iter()
                        .map(|t| {
                            (
                                t.hosts.iter().map(|h| h.matches.clone()).collect(),
                                // `*` alone is sent as no ports: both mean any port.
                                t.ports
                                    .iter()
                                    .map(|p| p.value)
                                    .filter(|p| *p != PortMatch::Any)
                                    .collect(),
                            )
                        })
                        .collect()
                })
                .collect();
            let binaries: Vec<_> = p.binaries.iter().map(|b| b.value.clone()).collect();
            format!(
                "{}/{} {:?} {:?} {binaries:?} {rules:?}",
                p.namespace, p.name, p.match_labels, p.action
            )
        })
        .collect();
    out.sort();
    out
}

/// Checks one configuration; returns its probes' outcomes.
fn round_trip(yaml: &str, extra_sources: &[&str], ports: &[u16]) -> String {
    let local = load(yaml);
    let xds = through_xds(&local);
    assert!(xds.warnings.is_empty(), "{}\n{yaml}", xds.warnings);
    let from_yaml = compiled(&local);
    let from_xds = compiled(&merged(&local, &xds));
    let (a, b) = (
        decisions(&from_yaml, extra_sources, ports),
        decisions(&from_xds, extra_sources, ports),
    );
    assert_eq!(a.len(), b.len());
    for (y, x) in a.iter().zip(&b) {
        assert_eq!(y, x, "YAML and its xDS form disagree for\n{yaml}");
    }
    assert_eq!(egress_fields(&local), egress_fields(&xds), "{yaml}");
    a.join("\n")
}

#[test]
fn the_equivalence_yaml_round_trips() {
    let all = round_trip(
        YAML,
        &["10.0.0.77", "192.168.1.1", "2001:db8::99", "8.8.8.8"],
        &[22, 53, 80, 443, 5432, 8080, 9000],
    );
    for outcome in [
        "deny by authz:shop/deny-other#0",
        "allow by authz:shop/db-only#0",
        "allow by authz:other/allow-sa#0",
        "allow by authz:other/allow-sa#1",
        "deny by (inbound default deny",
        "audit Some(\"authz:istio-system/global-audit#0\")",
        "allow by shop/web-out#0",
        "allow by shop/web-out#1",
        "deny by (default deny",
    ] {
        assert!(all.contains(outcome), "no probe gives `{outcome}`:\n{all}");
    }
}

#[test]
fn scopes_selectors_and_identities_are_istiods() {
    let resources = from_config(&load(YAML), &Settings::default()).unwrap();
    let mut scopes = BTreeMap::new();
    let mut selected = BTreeMap::new();
    for r in &resources {
        match r {
            Resource::Authorization(a) => {
                let scope = Scope::try_from(a.scope).unwrap();
                scopes.insert(format!("{}/{}", a.namespace, a.name), (scope, a.dry_run));
            }
            Resource::Address(a) => {
                let Some(address::Type::Workload(w)) = &a.r#type else {
                    panic!("a service")
                };
                assert_eq!(w.trust_domain, "cluster.local");
                assert_eq!(
                    r.natural_name().unwrap(),
                    format!(
                        "Kubernetes/networking.istio.io/WorkloadEntry/{}/{}",
                        w.namespace, w.name
                    )
                );
                selected.insert(w.name.clone(), w.authorization_policies.clone());
            }
            Resource::EgressPolicy(_) => {}
        }
    }
    assert_eq!(
        scopes,
        BTreeMap::from([
            ("shop/deny-other".to_string(), (Scope::Namespace, false)),
            ("shop/db-only".to_string(), (Scope::WorkloadSelector, false)),
            (
                "istio-system/global-audit".to_string(),
                (Scope::Global, true)
            ),
            ("other/allow-sa".to_string(), (Scope::Namespace, false)),
        ])
    );
    assert_eq!(selected["db"], vec!["shop/db-only".to_string()]);
    assert!(selected["web"].is_empty() && selected["api"].is_empty());
}

#[test]
fn root_namespace_selectors_reach_every_namespace() {
    let yaml = r#"
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: a, namespace: shop}
spec: {labels: {app: x}, address: 10.0.0.1}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: b, namespace: other}
spec: {labels: {app: x}, address: 10.0.0.2}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: c, namespace: other}
spec: {labels: {app: y}, address: 10.0.0.3}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: x-only-from-shop, namespace: istio-system}
spec:
  selector: {matchLabels: {app: x}}
  rules: [{from: [{source: {namespaces: [shop]}}]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: other-x, namespace: other}
spec:
  action: DENY
  selector: {matchLabels: {app: x}}
  rules: [{to: [{operation: {ports: ["22"]}}]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: empty-fields, namespace: other}
spec:
  action: AUDIT
  rules: [{from: [{source: {}}], to: [{operation: {}}]}]
"#;
    let resources = from_config(&load(yaml), &Settings::default()).unwrap();
    let policies: BTreeMap<String, Vec<String>> = resources
        .iter()
        .filter_map(|r| match r {
            Resource::Address(a) => match &a.r#type {
                Some(address::Type::Workload(w)) => {
                    Some((w.name.clone(), w.authorization_policies.clone()))
                }
                _ => None,
            },
            _ => None,
        })
        .collect();
    assert_eq!(policies["a"], vec!["istio-system/x-only-from-shop"]);
    assert_eq!(
        policies["b"],
        vec!["istio-system/x-only-from-shop", "other/other-x"]
    );
    assert!(policies["c"].is_empty());
    let all = round_trip(yaml, &["192.168.1.1"], &[22, 80]);
    for outcome in [
        "other/b <- 10.0.0.1:80: allow by authz:istio-system/x-only-from-shop#0",
        "other/b <- 10.0.0.1:22: deny by authz:other/other-x#0",
        "other/b <- 10.0.0.2:80: deny by (inbound default deny",
        "audit Some(\"authz:other/empty-fields#0\")",
    ] {
        assert!(all.contains(outcome), "no probe gives `{outcome}`:\n{all}");
    }
}

/// The Authorization resources `from_config` makes, by `namespace/name`.
fn authorizations(
    resources: &[Resource],
) -> BTreeMap<String, xds::proto::authorization::Authorization> {
    resources
        .iter()
        .filter_map(|r| match r {
            Resource::Authorization(a) => Some((format!("{}/{}", a.namespace, a.name), a.clone())),
            _ => None,
        })
        .collect()
}

/// Each probe's outcome must be among `outcomes` (YAML and xDS already agree on all of them).
fn expect(all: &str, outcomes: &[&str]) {
    for outcome in outcomes {
        assert!(all.contains(outcome), "no probe gives `{outcome}`:\n{all}");
    }
}

const SERVERS: &str = r#"
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: server, namespace: shop}
spec: {labels: {app: server}, address: 10.0.0.1}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: client, namespace: shop}
spec: {labels: {app: client}, address: 10.0.0.2, serviceAccount: reader}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: other, namespace: web}
spec: {labels: {app: other}, address: 10.0.1.1}
"#;

#[test]
fn custom_policies_are_not_sent() {
    let yaml = format!(
        r#"{SERVERS}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: ext, namespace: shop}}
spec:
  selector: {{matchLabels: {{app: server}}}}
  action: CUSTOM
  provider: {{name: opa}}
  rules: [{{to: [{{operation: {{ports: ["8080"]}}}}]}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: ext-all, namespace: web}}
spec: {{action: CUSTOM, provider: {{name: opa}}, rules: [{{}}]}}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: deny-22, namespace: shop}}
spec:
  selector: {{matchLabels: {{app: server}}}}
  action: DENY
  rules: [{{to: [{{operation: {{ports: ["22"]}}}}]}}]
"#
    );
    let resources = from_config(&load(&yaml), &Settings::default()).unwrap();
    let sent = authorizations(&resources);
    assert_eq!(sent.keys().collect::<Vec<_>>(), vec!["shop/deny-22"]);
    for r in &resources {
        if let Resource::Address(a) = r
            && let Some(address::Type::Workload(w)) = &a.r#type
        {
            assert!(
                !w.authorization_policies.iter().any(|p| p.contains("ext")),
                "{w:?}"
            );
        }
    }
    // Ignored: neither allows nor denies, nor makes its workloads default-deny.
    let all = round_trip(&yaml, &["192.168.1.1"], &[22, 8080]);
    expect(
        &all,
        &[
            "shop/server <- 10.0.0.2:8080: allow by (inbound default allow",
            "shop/server <- 10.0.0.2:22: deny by authz:shop/deny-22#0",
            "web/other <- 10.0.0.2:8080: allow by (inbound default allow",
        ],
    );
}

#[test]
fn allow_rules_with_http_only_fields_are_dropped_keeping_rule_names() {
    let yaml = format!(
        r#"{SERVERS}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: allow-mixed, namespace: shop}}
spec:
  selector: {{matchLabels: {{app: server}}}}
  rules:
  - from: [{{source: {{namespaces: [shop]}}}}]
    to: [{{operation: {{methods: [GET], ports: ["8080"]}}}}]
  - from: [{{source: {{namespaces: [shop], requestPrincipals: ["*"]}}}}]
  - from: [{{source: {{namespaces: [web]}}}}]
  - when: [{{key: "request.headers[x-team]", values: [shop]}}]
  - from: [{{source: {{ipBlocks: [10.0.0.0/24]}}}}]
    to: [{{operation: {{ports: ["9090"]}}}}]
  - to: [{{operation: {{paths: ["/admin"]}}}}]
  - from: [{{source: {{notRemoteIpBlocks: [10.9.0.0/16]}}}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: allow-http, namespace: web}}
spec:
  rules:
  - to: [{{operation: {{hosts: [other.web], ports: ["8080"]}}}}]
  - to: [{{operation: {{notMethods: [DELETE]}}}}]
    when: [{{key: connection.sni, values: ["*"]}}]
"#
    );
    let sent = authorizations(&from_config(&load(&yaml), &Settings::default()).unwrap());
    // #0, #1 and #3 keep their places as rules that never match; #5 and #6, last, are left out.
    assert_eq!(sent["shop/allow-mixed"].rules.len(), 5);
    // Every rule dropped: no rule, so the policy allows nothing to what it selects.
    assert!(sent["web/allow-http"].rules.is_empty());
    let all = round_trip(&yaml, &["192.168.1.1"], &[80, 8080, 9090]);
    expect(
        &all,
        &[
            "shop/server <- 10.0.0.2:8080: deny by (inbound default deny",
            "shop/server <- 10.0.1.1:8080: allow by authz:shop/allow-mixed#2",
            "shop/server <- 10.0.0.2:9090: allow by authz:shop/allow-mixed#4",
            "shop/server <- 192.168.1.1:8080: deny by (inbound default deny",
            "web/other <- 10.0.0.2:8080: deny by (inbound default deny",
            "web/other <- 10.0.1.1:80: deny by (inbound default deny",
            "shop/client <- 10.0.0.1:8080: allow by (inbound default allow",
        ],
    );
}

#[test]
fn deny_and_audit_rules_are_enforced_without_http_only_fields() {
    let yaml = format!(
        r#"{SERVERS}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: deny-post, namespace: shop}}
spec:
  selector: {{matchLabels: {{app: server}}}}
  action: DENY
  rules:
  - to: [{{operation: {{methods: [POST], ports: ["8081"]}}}}]
  - from: [{{source: {{namespaces: [web], notRequestPrincipals: ["*"]}}}}]
    to: [{{operation: {{ports: ["9090"]}}}}]
  - from: [{{source: {{ipBlocks: [192.168.0.0/16], remoteIpBlocks: [10.0.0.0/8]}}}}]
  - to: [{{operation: {{ports: ["7070"]}}}}]
    when:
    - {{key: "request.auth.claims[role]", notValues: [admin]}}
    - {{key: source.namespace, values: [shop]}}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: deny-paths, namespace: web}}
spec:
  action: DENY
  rules: [{{to: [{{operation: {{paths: ["/admin/*"], notHosts: [internal.example]}}}}]}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: audit-get, namespace: shop}}
spec:
  selector: {{matchLabels: {{app: server}}}}
  action: AUDIT
  rules:
  - to: [{{operation: {{methods: [GET], ports: ["8080"]}}}}]
  - from: [{{source: {{requestPrincipals: ["*"]}}}}, {{source: {{namespaces: [nowhere]}}}}]
    to: [{{operation: {{ports: ["80"]}}}}]
"#
    );
    let all = round_trip(&yaml, &["192.168.1.1"], &[80, 7070, 8080, 8081, 9090, 9999]);
    expect(
        &all,
        &[
            "shop/server <- 10.0.0.2:8081: deny by authz:shop/deny-post#0",
            "shop/server <- 10.0.1.1:9090: deny by authz:shop/deny-post#1",
            "shop/server <- 10.0.0.2:9090: allow by (inbound default allow",
            "shop/server <- 192.168.1.1:9999: deny by authz:shop/deny-post#2",
            "shop/server <- 10.0.0.2:7070: deny by authz:shop/deny-post#3",
            "shop/server <- 10.0.1.1:7070: allow by (inbound default allow",
            // An operation of only HTTP fields matches every operation.
            "web/other <- 10.0.0.2:9999: deny by authz:web/deny-paths#0",
            "shop/server <- 10.0.0.2:8080: allow by (inbound default allow: no ALLOW AuthorizationPolicy selects the workload) (audit Some(\"authz:shop/audit-get#0\"))",
            // A source of only HTTP fields matches every source.
            "shop/server <- 10.0.1.1:80: allow by (inbound default allow: no ALLOW AuthorizationPolicy selects the workload) (audit Some(\"authz:shop/audit-get#1\"))",
        ],
    );
}

#[test]
fn a_star_inside_a_pattern_is_literal_text() {
    let yaml = format!(
        r#"{SERVERS}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: literal, namespace: shop}}
spec:
  selector: {{matchLabels: {{app: server}}}}
  rules:
  - from: [{{source: {{principals: ["cluster.local/ns/*/sa/reader"]}}}}]
    to: [{{operation: {{ports: ["8080"]}}}}]
  - from: [{{source: {{principals: ["*/ns/web/*"], namespaces: ["w*b", "*b*"]}}}}]
    to: [{{operation: {{ports: ["9090"]}}}}]
  - from: [{{source: {{namespaces: ["sh*p*", "*"]}}}}]
    to: [{{operation: {{ports: ["80"]}}}}]
  - from: [{{source: {{notPrincipals: ["cluster.local/ns/*/sa/reader"]}}}}]
    to: [{{operation: {{ports: ["443"]}}}}]
    when: [{{key: source.namespace, notValues: ["sh*p"]}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: deny-literal, namespace: web}}
spec:
  action: DENY
  rules:
  - when: [{{key: source.principal, values: ["cluster.local/ns/shop/sa/*der", "**"]}}]
"#
    );
    let resources = from_config(&load(&yaml), &Settings::default()).unwrap();
    let sent = authorizations(&resources);
    let literal = format!("{:?}", sent["shop/literal"].rules[0]);
    assert!(
        literal.contains("Exact(\"cluster.local/ns/*/sa/reader\")"),
        "{literal}"
    );
    let all = round_trip(&yaml, &["192.168.1.1"], &[80, 443, 8080, 9090]);
    expect(
        &all,
        &[
            // Literal: no principal has a namespace `*`.
            "shop/server <- 10.0.0.2:8080: deny by (inbound default deny",
            "shop/server <- 10.0.1.1:9090: deny by (inbound default deny",
            "shop/server <- 10.0.0.2:80: allow by authz:shop/literal#2",
            "shop/server <- 10.0.1.1:80: allow by authz:shop/literal#2",
            "shop/server <- 10.0.0.2:443: allow by authz:shop/literal#3",
            "shop/server <- 192.168.1.1:443: allow by authz:shop/literal#3",
            "web/other <- 10.0.0.2:80: allow by (inbound default allow",
        ],
    );
}

#[test]
fn what_has_no_wire_form_is_an_error_naming_the_policy() {
    // CUSTOM, HTTP-only fields and a `*` inside a pattern all have a faithful form now (the
    // tests above); an egress `*` port beside numbered ports does not.
    let yaml = r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ext, namespace: shop}
spec: {action: CUSTOM, provider: {name: opa}, rules: [{}]}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: http, namespace: shop}
spec:
  action: DENY
  rules:
  - to: [{operation: {methods: [GET], ports: ["80"]}}]
    when: [{key: "request.headers[x-id]", values: [a]}]
  - from: [{source: {principals: ["a*b"], requestPrincipals: ["*"]}}]
---
apiVersion: meshward.io/v1alpha1
kind: EgressPolicy
metadata: {name: out, namespace: shop}
spec:
  rules: [{to: [{hosts: ["*"], ports: ["*", "443"]}]}]
"#;
    let text = from_config(&load(yaml), &Settings::default())
        .unwrap_err()
        .to_string();
    assert!(
        text.contains(
            "mesh.yaml:19: error: EgressPolicy shop/out: cannot be sent over xDS: spec.rules[0].to[0].ports: `*` next to numbered ports"
        ),
        "{text}"
    );
    assert_eq!(text.lines().count(), 1, "{text}");
}

/// A random configuration: workloads of three namespaces (one the root), AuthorizationPolicies
/// with every L4 field and condition key, now and then an HTTP-only field or key, a CUSTOM
/// action or a `*` inside a pattern, EgressPolicies with every host form.
fn random_yaml(rng: &mut fastrand::Rng) -> String {
    const NAMESPACES: [&str; 3] = ["shop", "other", "istio-system"];
    const APPS: [&str; 3] = ["web", "db", "api"];
    let pick =
        |rng: &mut fastrand::Rng, items: &[&str]| items[rng.usize(..items.len())].to_string();
    let some = |rng: &mut fastrand::Rng, items: &[&str], max: usize| -> String {
        let n = rng.usize(1..=max);
        let chosen: BTreeSet<String> = (0..n)
            .map(|_| format!("\"{}\"", pick(rng, items)))
            .collect();
        format!("[{}]", chosen.into_iter().collect::<Vec<_>>().join(", "))
    };
    let mut y = String::new();
    let workloads = rng.usize(2..=6);
    for i in 0..workloads {
        let ns = pick(rng, &NAMESPACES);
        let address = if rng.u8(..4) == 0 {
            format!("\"2001:db8::{}\"", i + 1)
        } else {
            format!("10.0.{}.{}", rng.u8(..3), i + 1)
        };
        let sa = match rng.u8(..3) {
            0 => String::new(),
            n => format!(", serviceAccount: sa{n}"),
        };
        let tier = if rng.bool() { ", tier: front" } else { "" };
        writeln!(
            y,
            "---\napiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata:\n  name: w{i}\n  namespace: {ns}\n  annotations: {{meshward.io/cgroup: test/w{i}, meshward.io/netns: /var/run/netns/w{i}}}\nspec: {{labels: {{app: {}{tier}}}{sa}, address: {address}}}",
            pick(rng, &APPS)
        )
        .unwrap();
    }
    let principals = [
        "cluster.local/ns/shop/sa/sa1",
        "cluster.local/ns/other/sa/default",
        "*/sa/sa2",
        "cluster.local/ns/istio-system/*",
        "*",
        "cluster.local/ns/*/sa/sa1",
        "*/ns/shop/*",
    ];
    let namespaces = ["shop", "oth*", "*-system", "*", "sh*p", "*th*"];
    let blocks = [
        "10.0.0.0/16",
        "10.0.1.0/24",
        "10.0.2.3/32",
        "10.0.0.0/31",
        "2001:db8::/64",
        "::/0",
        "0.0.0.0/0",
    ];
    let ports = ["80", "443", "5432", "8080"];
    for i in 0..rng.usize(0..=5) {
        let mut spec = String::new();
        if rng.bool() {
            let labels = if rng.bool() {
                format!("{{app: {}}}", pick(rng, &APPS))
            } else {
                format!("{{app: {}, tier: front}}", pick(rng, &APPS))
            };
            writeln!(spec, "  selector: {{matchLabels: {labels}}}").unwrap();
        }
        match rng.u8(..8) {
            0 => writeln!(spec, "  action: CUSTOM\n  provider: {{name: opa}}").unwrap(),
            _ => writeln!(spec, "  action: {}", pick(rng, &["ALLOW", "DENY", "AUDIT"])).unwrap(),
        }
        writeln!(spec, "  rules:").unwrap();
        for _ in 0..rng.usize(0..=3) {
            let mut rule = Vec::new();
            if rng.bool() {
                let sources: Vec<String> = (0..rng.usize(1..=2))
                    .map(|_| {
                        let mut fields = Vec::new();
                        for (name, pool) in [
                            ("principals", &principals[..]),
                            ("notPrincipals", &principals[..]),
                            ("namespaces", &namespaces[..]),
                            ("notNamespaces", &namespaces[..]),
                            ("ipBlocks", &blocks[..]),
                            ("notIpBlocks", &blocks[..]),
                        ] {
                            if rng.u8(..4) == 0 {
                                fields.push(format!("{name}: {}", some(rng, pool, 2)));
                            }
                        }
                        // HTTP-only.
                        for (name, pool) in [
                            ("requestPrincipals", &principals[..]),
                            ("notRemoteIpBlocks", &blocks[..]),
                        ] {
                            if rng.u8(..10) == 0 {
                                fields.push(format!("{name}: {}", some(rng, pool, 2)));
                            }
                        }
                        format!("{{source: {{{}}}}}", fields.join(", "))
                    })
                    .collect();
                rule.push(format!("from: [{}]", sources.join(", ")));
            }
            if rng.bool() {
                let ops: Vec<String> = (0..rng.usize(1..=2))
                    .map(|_| {
                        let mut fields = Vec::new();
                        if rng.bool() {
                            fields.push(format!("ports: {}", some(rng, &ports, 2)));
                        }
                        if rng.u8(..3) == 0 {
                            fields.push(format!("notPorts: {}", some(rng, &ports, 2)));
                        }
                        if rng.u8(..6) == 0 {
                            fields.push("methods: [GET]".into()); // HTTP-only
                        }
                        format!("{{operation: {{{}}}}}", fields.join(", "))
                    })
                    .collect();
                rule.push(format!("to: [{}]", ops.join(", ")));
            }
            if rng.u8(..3) == 0 {
                let conditions: Vec<String> = (0..rng.usize(1..=2))
                    .map(|_| {
                        let (key, pool): (&str, &[&str]) = match rng.u8(..6) {
                            0 => ("source.ip", &blocks),
                            1 => ("destination.ip", &blocks),
                            2 => ("source.principal", &principals),
                            3 => ("source.namespace", &namespaces),
                            4 if rng.bool() => ("\"request.headers[x-id]\"", &namespaces),
                            _ => ("destination.port", &ports),
                        };
                        let field = if rng.bool() { "values" } else { "notValues" };
                        format!("{{key: {key}, {field}: {}}}", some(rng, pool, 2))
                    })
                    .collect();
                rule.push(format!("when: [{}]", conditions.join(", ")));
            }
            writeln!(spec, "  - {{{}}}", rule.join(", ")).unwrap();
        }
        if let Some(without) = spec.strip_suffix("  rules:\n") {
            // No rules: allows nothing (ALLOW), matches nothing (DENY, AUDIT).
            spec = without.to_string();
        }
        writeln!(
            y,
            "---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{name: authz{i}, namespace: {}}}\nspec:\n{spec}",
            pick(rng, &NAMESPACES)
        )
        .unwrap();
    }
    let hosts = [
        "10.0.0.1",
        "10.0.1.0/24",
        "2001:db8::/64",
        "192.168.0.0/16",
        "*",
        "example.com",
        "*.example.org",
    ];
    for i in 0..rng.usize(0..=3) {
        let mut spec = String::new();
        if rng.bool() {
            writeln!(
                spec,
                "  selector: {{matchLabels: {{app: {}}}}}",
                pick(rng, &APPS)
            )
            .unwrap();
        }
        if rng.u8(..4) == 0 {
            writeln!(spec, "  binaries: [/usr/bin/curl, \"/opt/app/*\"]").unwrap();
        }
        writeln!(spec, "  action: {}", pick(rng, &["ALLOW", "DENY", "AUDIT"])).unwrap();
        writeln!(spec, "  rules:").unwrap();
        for _ in 0..rng.usize(1..=3) {
            let targets: Vec<String> = (0..rng.usize(0..=2))
                .map(|_| {
                    let mut fields = vec![format!("hosts: {}", some(rng, &hosts, 2))];
                    match rng.u8(..3) {
                        0 => {}
                        1 => fields.push("ports: [\"*\"]".into()),
                        _ => fields.push(format!("ports: {}", some(rng, &ports, 2))),
                    }
                    format!("{{{}}}", fields.join(", "))
                })
                .collect();
            writeln!(spec, "  - {{to: [{}]}}", targets.join(", ")).unwrap();
        }
        writeln!(
            y,
            "---\napiVersion: meshward.io/v1alpha1\nkind: EgressPolicy\nmetadata: {{name: out{i}, namespace: {}}}\nspec:\n{spec}",
            pick(rng, &NAMESPACES)
        )
        .unwrap();
    }
    y
}

#[test]
fn random_configurations_round_trip() {
    // Seeds from MESHWARD_SEED reproduce a failure; otherwise a fixed range.
    let first: u64 = std::env::var("MESHWARD_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let count = if std::env::var("MESHWARD_SEED").is_ok() {
        1
    } else {
        300
    };
    let mut all = String::new();
    for seed in first..first + count {
        let mut rng = fastrand::Rng::with_seed(seed);
        let yaml = random_yaml(&mut rng);
        let outcomes = std::panic::catch_unwind(|| {
            round_trip(
                &yaml,
                &["10.0.9.9", "192.168.1.1", "2001:db8::ff", "2001:db9::1"],
                &[80, 443, 5432, 8080, 9000],
            )
        })
        .unwrap_or_else(|e| {
            eprintln!("seed {seed} failed (MESHWARD_SEED={seed} reproduces it)");
            std::panic::resume_unwind(e)
        });
        all.push_str(&outcomes);
        all.push('\n');
    }
    // The random configurations reach every kind of outcome, so agreement says something.
    for outcome in [
        ": allow by authz:",
        ": deny by authz:",
        "audit Some(\"authz:",
        "deny by (inbound default deny",
        "allow by (inbound default allow",
        "-> 10.0.1.", // egress probes ran
        ": allow by shop/out",
        ": deny by other/out",
        "audit Some(\"istio-system/out",
        "deny by (default deny",
    ] {
        assert!(all.contains(outcome), "no probe gives `{outcome}`");
    }
}
