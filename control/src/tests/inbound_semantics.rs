//! AuthorizationPolicy (inbound) compile and evaluation semantics over small configurations.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Instant;

use dataplane_common::{MAX_INBOUND_ENTRIES_PER_SLOT, RuleMatch, identities, workload_flags};

use super::{lines, load, load_config_str};
use crate::{
    AuthorizationAction, AuthorizationPolicy, AuthorizationRule, CompiledPolicy, Config, Location,
    Prefix, Resolutions, RuleIds, RuleKind, Settings, Source, Spanned, Workload, compile,
    evaluate_inbound, identity_of,
};

const WORKLOADS: &str = r#"
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: web, namespace: shop}
spec: {labels: {app: web}, serviceAccount: web-sa, address: 10.0.0.1}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: db, namespace: shop}
spec: {labels: {app: db}, serviceAccount: db-sa, address: 10.0.0.2}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: api, namespace: other}
spec: {labels: {app: web}, address: "2001:db8::1"}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: batch, namespace: shop}
spec: {labels: {app: batch}, serviceAccount: web-sa}
"#;

/// Lines taken by `WORKLOADS` (policies start on the next line).
const WORKLOAD_LINES: usize = 20;

fn authz(ns: &str, name: &str, body: &str) -> String {
    format!(
        "---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n{body}"
    )
}

fn compile_text(policies: &str) -> CompiledPolicy {
    let config = load(&format!("{WORKLOADS}{policies}"));
    compile(
        &config,
        &Settings::default(),
        &Resolutions::new(),
        &RuleIds::new(),
    )
    .unwrap_or_else(|d| panic!("compile failed:\n{d}"))
}

/// Decides a connection to `server` (`ns/name`) on `port` from `from`: `ns/name` of a
/// workload (its address, or 10.200.0.1 if it has none, with its identity), or an IP address
/// (identity as the kernel finds it). Returns "allow authz:shop/p#0", "deny (default deny…)",
/// plus " audit <rule>".
fn decide(p: &CompiledPolicy, server: &str, from: &str, port: u16) -> String {
    let (ns, name) = server.split_once('/').unwrap();
    let w = p.workload_by_name(ns, name).unwrap();
    let (ip, identity) = match from.parse::<IpAddr>() {
        Ok(ip) => (ip, identity_of(p, ip)),
        Err(_) => {
            let (ns, name) = from.split_once('/').unwrap();
            let src = p.workload_by_name(ns, name).unwrap();
            (
                src.address.unwrap_or("10.200.0.1".parse().unwrap()),
                src.workload_id,
            )
        }
    };
    let d = evaluate_inbound(p, w.workload_id, ip, identity, port);
    let mut s = format!("{} {}", d.verdict, p.rule_name(d.rule_id));
    if let Some(a) = d.audit_rule_id {
        s.push_str(&format!(" audit {}", p.rule_name(a)));
    }
    s
}

const DEFAULT_ALLOW: &str =
    "allow (inbound default allow: no ALLOW AuthorizationPolicy selects the workload)";
const DEFAULT_DENY: &str = "deny (inbound default deny: no ALLOW AuthorizationPolicy rule matched)";

#[test]
fn evaluation_order_truth_table() {
    // Each step of: DENY match → deny; no ALLOW policy → allow; ALLOW match → allow; else deny.
    // Port 1 matches the DENY rule, port 2 the ALLOW rule, port 3 neither.
    let deny = authz(
        "shop",
        "d",
        "  action: DENY\n  rules: [{to: [{operation: {ports: [\"1\"]}}]}]\n",
    );
    let allow = authz(
        "shop",
        "a",
        "  rules: [{to: [{operation: {ports: [\"1\", \"2\"]}}]}]\n",
    );
    // No policy at all.
    let p = compile_text("");
    assert_eq!(decide(&p, "shop/db", "shop/web", 1), DEFAULT_ALLOW);
    assert!(p.inbound.is_empty());
    // DENY only: deny on a match, default allow otherwise.
    let p = compile_text(&deny);
    assert_eq!(decide(&p, "shop/db", "shop/web", 1), "deny authz:shop/d#0");
    assert_eq!(decide(&p, "shop/db", "shop/web", 3), DEFAULT_ALLOW);
    // ALLOW only: allow on a match, default deny otherwise.
    let p = compile_text(&allow);
    assert_eq!(decide(&p, "shop/db", "shop/web", 2), "allow authz:shop/a#0");
    assert_eq!(decide(&p, "shop/db", "shop/web", 3), DEFAULT_DENY);
    // Both: DENY wins where both match.
    let p = compile_text(&format!("{deny}{allow}"));
    assert_eq!(decide(&p, "shop/db", "shop/web", 1), "deny authz:shop/d#0");
    assert_eq!(decide(&p, "shop/db", "shop/web", 2), "allow authz:shop/a#0");
    assert_eq!(decide(&p, "shop/db", "shop/web", 3), DEFAULT_DENY);
    // An ALLOW policy without rules allows nothing; a DENY policy without rules denies nothing.
    let p = compile_text(&format!(
        "{}{}",
        authz("shop", "nothing", "  selector: {matchLabels: {app: db}}\n"),
        authz("shop", "d", "  action: DENY\n")
    ));
    assert_eq!(decide(&p, "shop/db", "shop/web", 80), DEFAULT_DENY);
    assert_eq!(decide(&p, "shop/web", "shop/db", 80), DEFAULT_ALLOW);
    // A rule `{}` matches everything.
    let p = compile_text(&authz("shop", "all", "  rules: [{}]\n"));
    assert_eq!(
        decide(&p, "shop/db", "11.1.1.1", 80),
        "allow authz:shop/all#0"
    );
}

#[test]
fn flags_identities_rule_names_and_kinds() {
    let p = compile_text(&format!(
        "{}{}{}",
        authz(
            "shop",
            "a",
            "  selector: {matchLabels: {app: db}}\n  rules: [{}, {}]\n"
        ),
        authz("shop", "d", "  action: DENY\n  rules: [{}]\n"),
        // An EgressPolicy with the same namespace and name: a different rule.
        "---\napiVersion: meshward.io/v1alpha1\nkind: EgressPolicy\nmetadata: {name: a, namespace: shop}\nspec:\n  rules: [{}]\n"
    ));
    let flags = |n: &str| p.workload_by_name("shop", n).unwrap().flags;
    assert_eq!(
        flags("db"),
        workload_flags::HAS_ALLOW_INBOUND | workload_flags::HAS_ALLOW_POLICY
    );
    assert_eq!(flags("web"), workload_flags::HAS_ALLOW_POLICY);
    assert_eq!(flags("batch"), workload_flags::HAS_ALLOW_POLICY);
    let names: Vec<(&str, RuleKind)> = p.rules.iter().map(|r| (r.name.as_str(), r.kind)).collect();
    assert_eq!(
        names,
        vec![
            ("shop/a#0", RuleKind::Egress),
            ("authz:shop/a#0", RuleKind::Inbound),
            ("authz:shop/a#1", RuleKind::Inbound),
            ("authz:shop/d#0", RuleKind::Inbound),
        ]
    );
    assert_eq!(p.rules[1].location.to_string(), "t.yaml:27");
    // Addresses → ids, IPv4 mapped, sorted by address.
    let ids: Vec<(IpAddr, u32)> = p
        .identities
        .iter()
        .map(|(a, id)| (std::net::Ipv6Addr::from(*a).to_canonical(), *id))
        .collect();
    let id = |ns: &str, n: &str| p.workload_by_name(ns, n).unwrap().workload_id;
    assert_eq!(
        ids,
        vec![
            ("10.0.0.1".parse().unwrap(), id("shop", "web")),
            ("10.0.0.2".parse().unwrap(), id("shop", "db")),
            ("2001:db8::1".parse().unwrap(), id("other", "api")),
        ]
    );
    assert_eq!(
        identity_of(&p, "10.0.0.2".parse().unwrap()),
        id("shop", "db")
    );
    assert_eq!(
        identity_of(&p, "::ffff:10.0.0.2".parse().unwrap()),
        id("shop", "db")
    );
    assert_eq!(
        identity_of(&p, "10.0.0.3".parse().unwrap()),
        identities::UNKNOWN
    );
    let s = p.summary();
    assert_eq!((s.workloads_with_allow_inbound, s.identities), (1, 3));
    assert_eq!(s.inbound_entries, p.inbound.len());
}

#[test]
fn table_layout_groups_and_any_entry() {
    // One rule for principal web-sa on port 80: web (and batch, same principal) get groups of
    // their own; everybody else is in the ANY group. Every group has a ::/0 entry.
    let p = compile_text(&authz(
        "shop",
        "a",
        "  selector: {matchLabels: {app: db}}\n  rules:\n  - from: [{source: {principals: [cluster.local/ns/shop/sa/web-sa]}}]\n    to: [{operation: {ports: [\"80\"]}}]\n",
    ));
    let db = p.workload_by_name("shop", "db").unwrap().workload_id;
    let web = p.workload_by_name("shop", "web").unwrap().workload_id;
    let batch = p.workload_by_name("shop", "batch").unwrap().workload_id;
    let rule = p.rule_ids.id("authz:shop/a#0").unwrap();
    let groups: Vec<(u32, u32, u16, u8, RuleMatch)> = p
        .inbound
        .iter()
        .map(|e| (e.workload_id, e.identity, e.port, e.prefix_len, e.rules))
        .collect();
    let allow = RuleMatch {
        allow: rule,
        ..RuleMatch::default()
    };
    let none = RuleMatch::default();
    let mut want = vec![
        (db, web, 0, 0, none),
        (db, web, 80, 0, allow),
        (db, batch, 0, 0, none),
        (db, batch, 80, 0, allow),
        (db, identities::ANY, 0, 0, none),
    ];
    want.sort_by_key(|g| (g.0, g.1, g.2));
    assert_eq!(groups, want);
    assert!(p.inbound.iter().all(|e| e.addr == [0; 16]));
    assert_eq!(
        decide(&p, "shop/db", "shop/web", 80),
        "allow authz:shop/a#0"
    );
    assert_eq!(
        decide(&p, "shop/db", "shop/batch", 80),
        "allow authz:shop/a#0"
    );
    assert_eq!(decide(&p, "shop/db", "shop/web", 81), DEFAULT_DENY);
    assert_eq!(decide(&p, "shop/db", "other/api", 80), DEFAULT_DENY);
    assert_eq!(decide(&p, "shop/db", "10.0.0.9", 80), DEFAULT_DENY);
}

/// Compiles one ALLOW rule for shop/db with `source` and returns who may connect on port 80.
fn allowed_sources(source: &str) -> Vec<&'static str> {
    let p = compile_text(&authz(
        "shop",
        "a",
        &format!(
            "  selector: {{matchLabels: {{app: db}}}}\n  rules: [{{from: [{{source: {source}}}]}}]\n"
        ),
    ));
    [
        "shop/web",
        "shop/batch",
        "other/api",
        "10.0.0.9",
        "11.0.0.1",
    ]
    .into_iter()
    .filter(|from| decide(&p, "shop/db", from, 80).starts_with("allow"))
    .collect()
}

#[test]
fn principals_and_not_principals() {
    // Exact, presence, prefix, suffix.
    assert_eq!(
        allowed_sources("{principals: [cluster.local/ns/shop/sa/web-sa]}"),
        vec!["shop/web", "shop/batch"]
    );
    assert_eq!(
        allowed_sources("{principals: [\"*\"]}"),
        vec!["shop/web", "shop/batch", "other/api"]
    );
    assert_eq!(
        allowed_sources("{principals: [\"cluster.local/ns/other/*\"]}"),
        vec!["other/api"]
    );
    assert_eq!(
        allowed_sources("{principals: [\"*/sa/default\", \"*web-sa\"]}"),
        vec!["shop/web", "shop/batch", "other/api"]
    );
    assert_eq!(
        allowed_sources("{principals: [web-sa]}"),
        Vec::<&str>::new()
    );
    // Not-twins: a source without identity (UNKNOWN: 10.0.0.9, 11.0.0.1) has no principal
    // that could match, so every notPrincipals matches it (as in ztunnel).
    assert_eq!(
        allowed_sources("{notPrincipals: [cluster.local/ns/shop/sa/web-sa]}"),
        vec!["other/api", "10.0.0.9", "11.0.0.1"]
    );
    assert_eq!(
        allowed_sources("{notPrincipals: [\"*\"]}"),
        vec!["10.0.0.9", "11.0.0.1"]
    );
    assert_eq!(
        allowed_sources("{notPrincipals: [\"*/sa/default\"]}"),
        vec!["shop/web", "shop/batch", "10.0.0.9", "11.0.0.1"]
    );
    // Both fields AND-ed.
    assert_eq!(
        allowed_sources("{principals: [\"cluster.local/*\"], notPrincipals: [\"*default\"]}"),
        vec!["shop/web", "shop/batch"]
    );
}

#[test]
fn namespaces_and_not_namespaces() {
    assert_eq!(
        allowed_sources("{namespaces: [shop]}"),
        vec!["shop/web", "shop/batch"]
    );
    assert_eq!(
        allowed_sources("{namespaces: [\"*\"]}"),
        vec!["shop/web", "shop/batch", "other/api"]
    );
    assert_eq!(
        allowed_sources("{namespaces: [\"oth*\", \"*op\"]}"),
        vec!["shop/web", "shop/batch", "other/api"]
    );
    assert_eq!(
        allowed_sources("{notNamespaces: [shop]}"),
        vec!["other/api", "10.0.0.9", "11.0.0.1"]
    );
    assert_eq!(
        allowed_sources("{namespaces: [shop], notPrincipals: [\"*web-sa\"]}"),
        Vec::<&str>::new()
    );
}

#[test]
fn ip_blocks_and_not_ip_blocks() {
    assert_eq!(
        allowed_sources("{ipBlocks: [10.0.0.0/24]}"),
        vec!["shop/web", "10.0.0.9"]
    );
    assert_eq!(
        allowed_sources("{ipBlocks: [10.0.0.0/8, \"2001:db8::/32\"]}"),
        // batch has no address: the test sends it from 10.200.0.1.
        vec!["shop/web", "shop/batch", "other/api", "10.0.0.9"]
    );
    assert_eq!(
        allowed_sources("{notIpBlocks: [10.0.0.0/24]}"),
        vec!["shop/batch", "other/api", "11.0.0.1"]
    );
    assert_eq!(
        allowed_sources("{ipBlocks: [10.0.0.0/8], notIpBlocks: [10.0.0.9, 10.200.0.0/16]}"),
        vec!["shop/web"]
    );
    // Identity and address AND-ed; sources OR-ed.
    let p = compile_text(&authz(
        "shop",
        "a",
        "  selector: {matchLabels: {app: db}}\n  rules:\n  - from:\n    - source: {namespaces: [shop], ipBlocks: [10.0.0.0/24]}\n    - source: {ipBlocks: [11.0.0.0/8]}\n",
    ));
    assert_eq!(
        decide(&p, "shop/db", "shop/web", 80),
        "allow authz:shop/a#0"
    );
    assert_eq!(decide(&p, "shop/db", "shop/batch", 80), DEFAULT_DENY);
    assert_eq!(decide(&p, "shop/db", "10.0.0.9", 80), DEFAULT_DENY);
    assert_eq!(
        decide(&p, "shop/db", "11.0.0.1", 80),
        "allow authz:shop/a#0"
    );
}

#[test]
fn ports_and_not_ports() {
    let p = compile_text(&format!(
        "{}{}",
        authz(
            "shop",
            "a",
            "  rules:\n  - to: [{operation: {ports: [\"80\", \"443\"]}}]\n  - to: [{operation: {notPorts: [\"22\", \"80\"]}}, {operation: {ports: [\"8080\"], notPorts: [\"8080\"]}}]\n"
        ),
        authz(
            "shop",
            "d",
            "  action: DENY\n  rules: [{to: [{operation: {ports: [\"22\"]}}], from: [{source: {notNamespaces: [shop]}}]}]\n"
        ),
    ));
    assert_eq!(
        decide(&p, "shop/db", "shop/web", 80),
        "allow authz:shop/a#0"
    );
    assert_eq!(
        decide(&p, "shop/db", "shop/web", 443),
        "allow authz:shop/a#0"
    );
    assert_eq!(
        decide(&p, "shop/db", "shop/web", 9000),
        "allow authz:shop/a#1"
    );
    assert_eq!(
        decide(&p, "shop/db", "shop/web", 8080),
        "allow authz:shop/a#1"
    );
    assert_eq!(decide(&p, "shop/db", "shop/web", 22), DEFAULT_DENY);
    assert_eq!(
        decide(&p, "shop/db", "other/api", 22),
        "deny authz:shop/d#0"
    );
    // UNKNOWN has no namespace, so notNamespaces matches it.
    assert_eq!(decide(&p, "shop/db", "11.0.0.1", 22), "deny authz:shop/d#0");
}

#[test]
fn when_conditions() {
    let p = compile_text(&format!(
        "{}{}",
        authz(
            "shop",
            "a",
            "  selector: {matchLabels: {app: db}}\n  rules:\n  - when:\n    - {key: source.ip, values: [10.0.0.0/24], notValues: [10.0.0.9]}\n    - {key: destination.port, values: [\"80\"]}\n  - when:\n    - {key: source.principal, values: [\"*/sa/default\"]}\n  - when:\n    - {key: source.namespace, notValues: [other]}\n    - {key: destination.port, notValues: [\"80\"]}\n"
        ),
        authz(
            "other",
            "dst",
            "  rules:\n  - when: [{key: destination.ip, values: [\"2001:db8::/64\"]}]\n  - when: [{key: destination.ip, notValues: [\"2001:db8::/64\"]}]\n"
        ),
    ));
    assert_eq!(
        decide(&p, "shop/db", "shop/web", 80),
        "allow authz:shop/a#0"
    );
    assert_eq!(decide(&p, "shop/db", "10.0.0.9", 80), DEFAULT_DENY);
    assert_eq!(
        decide(&p, "shop/db", "10.0.0.8", 80),
        "allow authz:shop/a#0"
    );
    assert_eq!(
        decide(&p, "shop/db", "other/api", 80),
        "allow authz:shop/a#1"
    );
    assert_eq!(
        decide(&p, "shop/db", "shop/web", 81),
        "allow authz:shop/a#2"
    );
    assert_eq!(
        decide(&p, "shop/db", "other/api", 81),
        "allow authz:shop/a#1"
    );
    // UNKNOWN: no namespace, so the notValues condition matches.
    assert_eq!(
        decide(&p, "shop/db", "11.0.0.1", 81),
        "allow authz:shop/a#2"
    );
    // destination.ip is the server's own address.
    assert_eq!(
        decide(&p, "other/api", "11.0.0.1", 80),
        "allow authz:other/dst#0"
    );
}

#[test]
fn namespace_root_namespace_and_selector_scope() {
    let p = compile_text(&format!(
        "{}{}{}",
        // Namespace-wide: every workload of shop, none of other.
        authz("shop", "ns-wide", "  action: AUDIT\n  rules: [{}]\n"),
        // Root namespace with a selector: app=web in every namespace.
        authz(
            "istio-system",
            "root-web",
            "  selector: {matchLabels: {app: web}}\n  action: DENY\n  rules: [{to: [{operation: {ports: [\"9\"]}}]}]\n"
        ),
        // Selector in shop only.
        authz(
            "shop",
            "db-only",
            "  selector: {matchLabels: {app: db}}\n  rules: [{from: [{source: {ipBlocks: [11.0.0.0/8]}}]}]\n"
        ),
    ));
    assert_eq!(
        decide(&p, "shop/web", "11.0.0.1", 80),
        format!("{DEFAULT_ALLOW} audit authz:shop/ns-wide#0")
    );
    assert_eq!(
        decide(&p, "shop/web", "11.0.0.1", 9),
        "deny authz:istio-system/root-web#0 audit authz:shop/ns-wide#0"
    );
    assert_eq!(
        decide(&p, "other/api", "11.0.0.1", 9),
        "deny authz:istio-system/root-web#0"
    );
    assert_eq!(decide(&p, "other/api", "11.0.0.1", 80), DEFAULT_ALLOW);
    assert_eq!(
        decide(&p, "shop/db", "11.0.0.1", 9),
        "allow authz:shop/db-only#0 audit authz:shop/ns-wide#0"
    );
    assert_eq!(
        decide(&p, "shop/db", "12.0.0.1", 9),
        format!("{DEFAULT_DENY} audit authz:shop/ns-wide#0")
    );
    // With another root namespace, istio-system is an ordinary namespace without workloads.
    let config = load(&format!(
        "{WORKLOADS}{}",
        authz("istio-system", "x", "  action: DENY\n  rules: [{}]\n")
    ));
    let settings = Settings {
        root_namespace: "mesh-root".into(),
        ..Settings::default()
    };
    let p = compile(&config, &settings, &Resolutions::new(), &RuleIds::new()).unwrap();
    assert_eq!(decide(&p, "shop/web", "11.0.0.1", 80), DEFAULT_ALLOW);
    assert!(
        lines(&p.warnings).iter().any(|l| l
            .ends_with("AuthorizationPolicy istio-system/x selects no workload; it has no effect")),
        "{}",
        p.warnings
    );
}

#[test]
fn audit_never_blocks_and_first_rule_in_policy_order_is_reported() {
    let p = compile_text(&format!(
        "{}{}{}",
        authz("shop", "b-audit", "  action: AUDIT\n  rules: [{}]\n"),
        authz(
            "shop",
            "a-audit",
            "  action: AUDIT\n  rules:\n  - to: [{operation: {ports: [\"80\"]}}]\n  - {}\n"
        ),
        authz(
            "shop",
            "allow",
            "  rules: [{to: [{operation: {ports: [\"80\"]}}]}]\n"
        ),
    ));
    assert_eq!(
        decide(&p, "shop/db", "shop/web", 80),
        "allow authz:shop/allow#0 audit authz:shop/a-audit#0"
    );
    assert_eq!(
        decide(&p, "shop/db", "shop/web", 81),
        format!("{DEFAULT_DENY} audit authz:shop/a-audit#1")
    );
    // AUDIT alone: never a deny.
    let p = compile_text(&authz("shop", "audit", "  action: AUDIT\n  rules: [{}]\n"));
    for from in ["shop/web", "11.0.0.1", "other/api"] {
        assert_eq!(
            decide(&p, "shop/db", from, 80),
            format!("{DEFAULT_ALLOW} audit authz:shop/audit#0")
        );
    }
}

#[test]
fn http_only_fields_allow_dropped_deny_enforced_without() {
    let text = format!(
        "{WORKLOADS}{}{}",
        authz(
            "shop",
            "allow",
            "  selector: {matchLabels: {app: db}}\n  rules:\n  - to: [{operation: {methods: [GET], ports: [\"80\"]}}]\n  - from: [{source: {ipBlocks: [11.0.0.0/8]}}]\n"
        ),
        authz(
            "shop",
            "deny",
            "  selector: {matchLabels: {app: db}}\n  action: DENY\n  rules:\n  - from: [{source: {requestPrincipals: [\"iss/*\"], namespaces: [other]}}]\n    when: [{key: \"request.headers[x-token]\", values: [t]}]\n"
        ),
    );
    let config = load(&text);
    let p = compile(
        &config,
        &Settings::default(),
        &Resolutions::new(),
        &RuleIds::new(),
    )
    .unwrap();
    let l = WORKLOAD_LINES;
    assert_eq!(
        lines(&p.warnings),
        vec![
            format!(
                "t.yaml:{}: warning: AuthorizationPolicy shop/allow: spec.rules[0] uses HTTP-only `to[0].operation.methods` (line {}); meshward enforces L4 only, so this ALLOW rule is dropped (it allows nothing), as istiod does for ztunnel",
                l + 8,
                l + 8
            ),
            format!(
                "t.yaml:{}: warning: AuthorizationPolicy shop/deny: spec.rules[0] uses HTTP-only `from[0].source.requestPrincipals` (line {}), `when[0]` key `request.headers[x-token]` (line {}); this DENY rule is enforced more strictly, without them, as istiod does for ztunnel",
                l + 18,
                l + 18,
                l + 19
            ),
        ]
    );
    // The dropped ALLOW rule has no id and allows nothing; the other one still works.
    assert_eq!(p.rule_ids.id("authz:shop/allow#0"), None);
    assert_eq!(decide(&p, "shop/db", "shop/web", 80), DEFAULT_DENY);
    assert_eq!(
        decide(&p, "shop/db", "11.0.0.1", 80),
        "allow authz:shop/allow#1"
    );
    // The DENY rule applies to namespace other, whatever the request.
    assert_eq!(
        decide(&p, "shop/db", "other/api", 80),
        "deny authz:shop/deny#0"
    );

    // Every rule dropped: the policy still selects db, which now allows nothing.
    let p = compile_text(&authz(
        "shop",
        "allow",
        "  selector: {matchLabels: {app: db}}\n  rules: [{to: [{operation: {paths: [/x]}}]}]\n",
    ));
    assert_eq!(decide(&p, "shop/db", "shop/web", 80), DEFAULT_DENY);
    assert_eq!(decide(&p, "shop/web", "shop/db", 80), DEFAULT_ALLOW);
    assert!(
        p.warnings.to_string().contains(
            "every rule was dropped; the ALLOW policy still selects its workloads and so allows nothing to them"
        ),
        "{}",
        p.warnings
    );
}

#[test]
fn unknown_identity_semantics() {
    // A source address of no workload: no principal, no namespace.
    let p = compile_text(&format!(
        "{}{}",
        authz(
            "shop",
            "d",
            "  action: DENY\n  rules:\n  - from: [{source: {notPrincipals: [cluster.local/ns/shop/sa/web-sa]}}]\n"
        ),
        authz(
            "shop",
            "a",
            "  rules:\n  - from: [{source: {notNamespaces: [other]}}]\n  - from: [{source: {ipBlocks: [\"0.0.0.0/0\"]}}]\n"
        ),
    ));
    // notPrincipals matches UNKNOWN (no principal can match), so the DENY applies to it...
    assert_eq!(decide(&p, "shop/db", "11.0.0.1", 80), "deny authz:shop/d#0");
    // ...and to a known workload with another principal.
    assert_eq!(
        decide(&p, "shop/db", "other/api", 80),
        "deny authz:shop/d#0"
    );
    assert_eq!(
        decide(&p, "shop/db", "shop/web", 80),
        "allow authz:shop/a#0"
    );
    // An identity-less IPv6 source is denied by the notPrincipals DENY as well.
    assert_eq!(
        decide(&p, "shop/db", "2001:db8::99", 80),
        "deny authz:shop/d#0"
    );
}

#[test]
fn custom_policies_are_ignored_with_a_warning() {
    let p = compile_text(&authz(
        "shop",
        "ext",
        "  action: CUSTOM\n  provider: {name: opa}\n  rules: [{}]\n",
    ));
    assert_eq!(
        lines(&p.warnings),
        vec![format!(
            "t.yaml:{}: warning: AuthorizationPolicy shop/ext: action CUSTOM (provider `opa`) is not supported: istiod hands it to an external authorization provider, which meshward does not have; the policy is ignored",
            WORKLOAD_LINES + 4
        )]
    );
    assert!(p.rules.is_empty() && p.inbound.is_empty());
    assert_eq!(decide(&p, "shop/db", "shop/web", 80), DEFAULT_ALLOW);
}

#[test]
fn parser_warnings_and_errors_for_authorization_policies() {
    let text = authz(
        "shop",
        "a",
        "  rules:\n  - from: []\n    to: []\n  - from: [{source: {principals: []}}]\n",
    );
    let c = load(&text);
    assert_eq!(
        lines(&c.warnings),
        vec![
            "t.yaml:7: warning: spec.rules[0].from: an empty list matches any source; omit the field to say so",
            "t.yaml:8: warning: spec.rules[0].to: an empty list matches any operation; omit the field to say so",
            "t.yaml:9: warning: spec.rules[1].from[0].source.principals: an empty list is the same as an absent field; omit the field to say so",
        ]
    );
    let text = authz(
        "shop",
        "a",
        "  rules:\n  - when:\n    - {key: source.ipp, values: [x]}\n    - {key: source.ip, values: [10.0.0.0/33]}\n    - {key: destination.port, notValues: [\"0\"]}\n    - {key: \"request.headers[x]\", values: [y]}\n",
    );
    let err = match load_config_str("t.yaml", &text) {
        Ok(_) => panic!("accepted"),
        Err(d) => lines(&d),
    };
    assert_eq!(err.len(), 3, "{err:?}");
    assert!(
        err[0].starts_with(
            "t.yaml:8: error: spec.rules[0].when[0].key: unknown key `source.ipp` (expected one of: source.ip, "
        ),
        "{err:?}"
    );
    assert_eq!(
        err[1],
        "t.yaml:9: error: spec.rules[0].when[1]: `10.0.0.0/33` is not a valid CIDR: prefix length must be 0-32"
    );
    assert_eq!(
        err[2],
        "t.yaml:10: error: spec.rules[0].when[2]: port 0 is out of range (1-65535)"
    );
}

#[test]
fn duplicate_addresses_are_an_error_naming_both() {
    let text = format!(
        "{WORKLOADS}---\napiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata: {{name: twin, namespace: other}}\nspec: {{address: \"::ffff:10.0.0.2\"}}\n"
    );
    let config = load(&text);
    let err = compile(
        &config,
        &Settings::default(),
        &Resolutions::new(),
        &RuleIds::new(),
    )
    .unwrap_err();
    assert_eq!(
        lines(&err),
        vec![format!(
            "t.yaml:{}: error: WorkloadEntry other/twin: address ::ffff:10.0.0.2 is already the address of WorkloadEntry shop/db (at t.yaml:9); a source address must name one workload",
            WORKLOAD_LINES + 4
        )]
    );
}

// ---- scale and capacity, over models built directly ----

fn workload(name: &str) -> Workload {
    Workload {
        namespace: "ns".into(),
        name: name.into(),
        labels: BTreeMap::new(),
        service_account: "default".into(),
        address: None,
        cgroup: None,
        netns: None,
        location: Location::new("big.yaml", 1),
        cgroup_line: 0,
    }
}

fn ip_rule(first: u32, count: u32) -> AuthorizationRule {
    AuthorizationRule {
        from: vec![Source {
            ip_blocks: (first..first + count)
                .map(|ip| Spanned {
                    value: Prefix::host(IpAddr::V4(ip.into())),
                    line: 1,
                })
                .collect(),
            line: 1,
            ..Source::default()
        }],
        line: 1,
        ..AuthorizationRule::default()
    }
}

fn policy(name: &str, line: usize, rules: Vec<AuthorizationRule>) -> AuthorizationPolicy {
    AuthorizationPolicy {
        namespace: "ns".into(),
        name: name.into(),
        match_labels: BTreeMap::new(),
        action: AuthorizationAction::Allow,
        provider: None,
        rules,
        location: Location::new("big.yaml", line),
    }
}

#[test]
fn compiles_100k_single_ip_inbound_rules() {
    let config = Config {
        workloads: vec![workload("w")],
        authorization_policies: (0..100u32)
            .map(|p| {
                policy(
                    &format!("p{p:03}"),
                    1,
                    (0..1000)
                        .map(|r| ip_rule(0x0a00_0000 + p * 1000 + r, 1))
                        .collect(),
                )
            })
            .collect(),
        ..Config::default()
    };
    let start = Instant::now();
    let p = compile(
        &config,
        &Settings::default(),
        &Resolutions::new(),
        &RuleIds::new(),
    )
    .unwrap();
    println!(
        "compiled 100k single-IP inbound rules in {:?}",
        start.elapsed()
    );
    assert_eq!(p.rules.len(), 100_000);
    // One group (ANY, any port): ::/0 and one entry per address.
    assert_eq!(p.inbound.len(), 100_001);
    assert_eq!(decide(&p, "ns/w", "10.0.0.5", 80), "allow authz:ns/p000#5");
    assert_eq!(
        decide(&p, "ns/w", "10.1.134.159", 80),
        "allow authz:ns/p099#999"
    );
    assert_eq!(decide(&p, "ns/w", "10.1.134.160", 80), DEFAULT_DENY);
}

#[test]
fn inbound_capacity_overflow_names_where_it_happened() {
    let per_policy = 100_000u32;
    let config = Config {
        workloads: vec![workload("w")],
        authorization_policies: (0..3u32)
            .map(|p| {
                policy(
                    &format!("p{p}"),
                    10 + p as usize,
                    (0..per_policy / 100)
                        .map(|r| ip_rule(p * per_policy + r * 100, 100))
                        .collect(),
                )
            })
            .collect(),
        ..Config::default()
    };
    let err = compile(
        &config,
        &Settings::default(),
        &Resolutions::new(),
        &RuleIds::new(),
    )
    .unwrap_err();
    assert_eq!(
        lines(&err),
        vec![format!(
            "big.yaml:10: error: too many inbound table entries: more than {MAX_INBOUND_ENTRIES_PER_SLOT} at workload ns/w (selected by AuthorizationPolicy ns/p0, ns/p1, ns/p2); reduce the rules, the identities and ports they distinguish, or the workloads they select"
        )]
    );
}
