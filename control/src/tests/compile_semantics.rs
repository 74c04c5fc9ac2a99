//! Compile and evaluation semantics over small configurations.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Instant;

use dataplane_common::{
    FIRST_RULE_ID, MAX_EGRESS_ENTRIES_PER_SLOT, MAX_RULES, MAX_WORKLOADS, RuleMatch, rule_ids,
    workload_flags,
};

use super::{lines, load};
use crate::{
    Action, CompiledPolicy, Config, EgressPolicy, EgressRule, EgressTarget, Host, HostMatch,
    Location, Prefix, Resolutions, RuleIds, Settings, Verdict, Workload, compile, evaluate,
};
use crate::{BinaryResolutions, compile_with_binaries, evaluate_with_names};
use dataplane_common::sni_policy::{MAX_SUFFIXES, name_key, server_name_keys};

const WORKLOADS: &str = r#"
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: web, namespace: shop, annotations: {meshward.io/cgroup: mw/web}}
spec: {labels: {app: web}, serviceAccount: web-sa}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: db, namespace: shop}
spec: {labels: {app: db}, address: 10.9.9.9}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: api, namespace: other}
spec: {labels: {app: web}}
"#;

fn policy(ns: &str, name: &str, body: &str) -> String {
    format!(
        "---\napiVersion: meshward.io/v1alpha1\nkind: EgressPolicy\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n{body}"
    )
}

fn compile_with(text: &str, resolved: &Resolutions, previous: &RuleIds) -> CompiledPolicy {
    let config = load(text);
    match compile(&config, &Settings::default(), resolved, previous) {
        Ok(p) => p,
        Err(d) => panic!("compile failed:\n{d}"),
    }
}

fn compile_text(policies: &str) -> CompiledPolicy {
    compile_with(
        &format!("{WORKLOADS}{policies}"),
        &Resolutions::new(),
        &RuleIds::new(),
    )
}

/// "allow shop/p#0", "deny (default deny…)" plus the audit rule name if any.
fn decide(p: &CompiledPolicy, workload: &str, dst: &str, port: u16) -> String {
    let (ns, name) = workload.split_once('/').unwrap();
    let w = p.workload_by_name(ns, name).unwrap();
    let ip: IpAddr = dst.parse().unwrap();
    let d = evaluate(p, w.workload_id, ip, port);
    let mut s = format!("{} {}", d.verdict, p.rule_name(d.rule_id));
    if let Some(a) = d.audit_rule_id {
        s.push_str(&format!(" audit {}", p.rule_name(a)));
    }
    s
}

const DEFAULT_ALLOW: &str = "allow (default allow: no ALLOW policy selects the workload)";
const DEFAULT_DENY: &str = "deny (default deny: no ALLOW rule matched)";

#[test]
fn workloads_ids_flags_and_principals() {
    let p = compile_text(&policy(
        "shop",
        "a",
        "  selector: {matchLabels: {app: web}}\n  rules: [{}]\n",
    ));
    let names: Vec<(u32, &str, &str)> = p
        .workloads
        .iter()
        .map(|w| (w.workload_id, w.namespace.as_str(), w.name.as_str()))
        .collect();
    assert_eq!(
        names,
        vec![(1, "other", "api"), (2, "shop", "db"), (3, "shop", "web")]
    );
    let web = p.workload_by_name("shop", "web").unwrap();
    assert_eq!(web.principal, "cluster.local/ns/shop/sa/web-sa");
    assert_eq!(web.cgroup.as_deref(), Some(std::path::Path::new("mw/web")));
    assert_eq!(web.flags, workload_flags::HAS_ALLOW_POLICY);
    assert_eq!(p.workload_by_name("shop", "db").unwrap().flags, 0);
    assert_eq!(p.workload_by_name("other", "api").unwrap().flags, 0);
    assert_eq!(
        p.workload_by_address("10.9.9.9".parse().unwrap())
            .map(|w| w.name.as_str()),
        Some("db")
    );
    let s = p.summary();
    assert_eq!(
        (
            s.workloads,
            s.workloads_with_cgroup,
            s.workloads_with_allow_policy
        ),
        (3, 1, 1)
    );
    assert_eq!((s.rules, s.egress_entries), (1, 1));
    // Settings change the trust domain.
    let config = load(WORKLOADS);
    let settings = Settings {
        trust_domain: "example.org".into(),
        root_namespace: "mesh-root".into(),
    };
    let p = compile(&config, &settings, &Resolutions::new(), &RuleIds::new()).unwrap();
    assert_eq!(p.workloads[0].principal, "example.org/ns/other/sa/default");
}

#[test]
fn evaluation_order_truth_table() {
    // No policy at all: everything allowed by default.
    let p = compile_text("");
    assert_eq!(decide(&p, "shop/web", "1.2.3.4", 80), DEFAULT_ALLOW);

    // DENY only: denied where it matches, default allow elsewhere.
    let p = compile_text(&policy(
        "shop",
        "d",
        "  action: DENY\n  rules:\n  - to: [{hosts: [1.2.3.4]}]\n",
    ));
    assert_eq!(decide(&p, "shop/web", "1.2.3.4", 80), "deny shop/d#0");
    assert_eq!(decide(&p, "shop/web", "1.2.3.5", 80), DEFAULT_ALLOW);

    // DENY beats ALLOW, even a more specific one.
    let p = compile_text(&format!(
        "{}{}",
        policy("shop", "a", "  rules:\n  - to: [{hosts: [1.2.3.4]}]\n"),
        policy(
            "shop",
            "d",
            "  action: DENY\n  rules:\n  - to: [{hosts: [1.0.0.0/8]}]\n"
        )
    ));
    assert_eq!(decide(&p, "shop/web", "1.2.3.4", 80), "deny shop/d#0");
    assert_eq!(decide(&p, "shop/web", "2.2.3.4", 80), DEFAULT_DENY);

    // ALLOW policy with no rules: allow-nothing.
    let p = compile_text(&policy("shop", "nothing", "  action: ALLOW\n"));
    assert_eq!(decide(&p, "shop/web", "1.2.3.4", 80), DEFAULT_DENY);
    assert_eq!(decide(&p, "other/api", "1.2.3.4", 80), DEFAULT_ALLOW);

    // An empty rule `{}` matches everything.
    let p = compile_text(&policy("shop", "all", "  rules: [{}]\n"));
    assert_eq!(decide(&p, "shop/web", "::1", 1), "allow shop/all#0");

    // AUDIT never changes the verdict; it is reported alongside.
    let p = compile_text(&format!(
        "{}{}",
        policy(
            "shop",
            "au",
            "  action: AUDIT\n  rules:\n  - to: [{ports: [443]}]\n"
        ),
        policy(
            "shop",
            "d",
            "  action: DENY\n  rules:\n  - to: [{hosts: [9.9.9.9]}]\n"
        )
    ));
    assert_eq!(
        decide(&p, "shop/web", "1.1.1.1", 443),
        format!("{DEFAULT_ALLOW} audit shop/au#0")
    );
    assert_eq!(
        decide(&p, "shop/web", "9.9.9.9", 443),
        "deny shop/d#0 audit shop/au#0"
    );
    assert_eq!(decide(&p, "shop/web", "1.1.1.1", 80), DEFAULT_ALLOW);
    let p = compile_text(&format!(
        "{}{}",
        policy("shop", "au", "  action: AUDIT\n  rules: [{}]\n"),
        policy("shop", "a", "  rules:\n  - to: [{ports: [443]}]\n")
    ));
    assert_eq!(
        decide(&p, "shop/web", "1.1.1.1", 443),
        "allow shop/a#0 audit shop/au#0"
    );
    assert_eq!(
        decide(&p, "shop/web", "1.1.1.1", 80),
        format!("{DEFAULT_DENY} audit shop/au#0")
    );
    // An AUDIT policy alone does not make the workload default-deny.
    let p = compile_text(&policy("shop", "au", "  action: AUDIT\n  rules: [{}]\n"));
    assert_eq!(
        decide(&p, "shop/web", "1.1.1.1", 80),
        format!("{DEFAULT_ALLOW} audit shop/au#0")
    );
}

#[test]
fn first_rule_in_policy_order_wins_a_slot() {
    let p = compile_text(&format!(
        "{}{}",
        policy("shop", "b", "  rules:\n  - to: [{hosts: [1.2.3.4]}]\n"),
        policy(
            "shop",
            "a",
            "  rules:\n  - to: [{ports: [80]}]\n  - to: [{hosts: [1.2.3.4]}]\n"
        )
    ));
    assert_eq!(decide(&p, "shop/web", "1.2.3.4", 443), "allow shop/a#1");
    // Port-specific entries come first in the kernel's merge.
    assert_eq!(decide(&p, "shop/web", "1.2.3.4", 80), "allow shop/a#0");
}

#[test]
fn namespace_root_namespace_and_selector_scope() {
    let p = compile_text(&format!(
        "{}{}{}",
        policy(
            "shop",
            "web-only",
            "  selector: {matchLabels: {app: web}}\n  action: DENY\n  rules:\n  - to: [{hosts: [1.1.1.1]}]\n"
        ),
        policy(
            "istio-system",
            "everyone",
            "  action: DENY\n  rules:\n  - to: [{hosts: [2.2.2.2]}]\n"
        ),
        policy(
            "istio-system",
            "web-everywhere",
            "  selector: {matchLabels: {app: web}}\n  action: DENY\n  rules:\n  - to: [{hosts: [3.3.3.3]}]\n"
        ),
    ));
    assert_eq!(decide(&p, "shop/web", "1.1.1.1", 1), "deny shop/web-only#0");
    assert_eq!(decide(&p, "shop/db", "1.1.1.1", 1), DEFAULT_ALLOW);
    assert_eq!(
        decide(&p, "other/api", "1.1.1.1", 1),
        DEFAULT_ALLOW,
        "other namespace"
    );
    for w in ["shop/web", "shop/db", "other/api"] {
        assert_eq!(
            decide(&p, w, "2.2.2.2", 1),
            "deny istio-system/everyone#0",
            "{w}"
        );
    }
    assert_eq!(
        decide(&p, "other/api", "3.3.3.3", 1),
        "deny istio-system/web-everywhere#0"
    );
    assert_eq!(decide(&p, "shop/db", "3.3.3.3", 1), DEFAULT_ALLOW);
    // A policy in a namespace with no workloads selects nothing.
    let p = compile_text(&policy("empty", "x", "  rules: [{}]\n"));
    assert!(p.workloads.iter().all(|w| w.flags == 0));
    assert!(p.egress.is_empty());
    assert_eq!(p.rules.len(), 1);
}

#[test]
fn covering_prefixes_are_folded_into_longer_ones() {
    let p = compile_text(&format!(
        "{}{}",
        policy(
            "shop",
            "d",
            "  action: DENY\n  rules:\n  - to: [{hosts: [10.0.0.0/8]}]\n"
        ),
        policy(
            "shop",
            "a",
            "  selector: {matchLabels: {app: web}}\n  rules:\n  - to: [{hosts: [10.1.2.3]}]\n"
        ),
    ));
    let web = p.workload_by_name("shop", "web").unwrap().workload_id;
    let deny = p.rule_ids.id("shop/d#0").unwrap();
    let allow = p.rule_ids.id("shop/a#0").unwrap();
    let host = p
        .egress
        .iter()
        .find(|e| e.workload_id == web && e.prefix_len == 128)
        .unwrap();
    assert_eq!(host.addr, dataplane_common::ipv4_mapped([10, 1, 2, 3]));
    assert_eq!(
        host.rules,
        RuleMatch {
            deny,
            allow,
            audit: 0
        }
    );
    assert_eq!(decide(&p, "shop/web", "10.1.2.3", 80), "deny shop/d#0");
    assert_eq!(decide(&p, "shop/web", "10.1.2.4", 80), "deny shop/d#0");
    assert_eq!(decide(&p, "shop/web", "11.1.2.3", 80), DEFAULT_DENY);
    let n = p.egress.iter().filter(|e| e.workload_id == web).count();
    assert_eq!(n, 2, "one entry per distinct prefix");
}

#[test]
fn families_and_any_host() {
    let p = compile_text(&policy(
        "shop",
        "a",
        "  rules:\n  - to: [{hosts: [\"10.0.0.0/8\"]}]\n  - to: [{hosts: [\"2001:db8::/32\"]}]\n  - to: [{hosts: [\"*\"], ports: [53]}]\n",
    ));
    assert_eq!(decide(&p, "shop/web", "10.2.3.4", 80), "allow shop/a#0");
    assert_eq!(
        decide(&p, "shop/web", "::ffff:10.2.3.4", 80),
        "allow shop/a#0"
    );
    // The IPv6 address whose low 32 bits look like 10.x is not IPv4.
    assert_eq!(decide(&p, "shop/web", "::a02:304", 80), DEFAULT_DENY);
    assert_eq!(decide(&p, "shop/web", "2001:db8::7", 80), "allow shop/a#1");
    assert_eq!(decide(&p, "shop/web", "2001:db9::7", 80), DEFAULT_DENY);
    assert_eq!(decide(&p, "shop/web", "8.8.8.8", 53), "allow shop/a#2");
    assert_eq!(
        decide(&p, "shop/web", "2001:4860::8888", 53),
        "allow shop/a#2"
    );
    let any = p.egress.iter().find(|e| e.port == 53).unwrap();
    assert_eq!((any.prefix_len, any.addr), (0, [0; 16]));
}

#[test]
fn port_specific_and_any_port_merge() {
    let p = compile_text(&format!(
        "{}{}{}",
        policy(
            "shop",
            "a",
            "  rules:\n  - to: [{hosts: [1.2.3.4], ports: [443]}]\n"
        ),
        policy(
            "shop",
            "d",
            "  action: DENY\n  rules:\n  - to: [{hosts: [1.0.0.0/8]}]\n"
        ),
        policy(
            "shop",
            "e",
            "  action: AUDIT\n  rules:\n  - to: [{ports: [\"*\", 22]}]\n"
        ),
    ));
    // Any-port DENY applies on 443 even though the 443 entry is more specific.
    assert_eq!(
        decide(&p, "shop/web", "1.2.3.4", 443),
        "deny shop/d#0 audit shop/e#0"
    );
    assert_eq!(
        decide(&p, "shop/web", "2.2.3.4", 443),
        format!("{DEFAULT_DENY} audit shop/e#0")
    );
    let p = compile_text(&format!(
        "{}{}",
        policy("shop", "a", "  rules:\n  - to: [{hosts: [1.2.3.4]}]\n"),
        policy(
            "shop",
            "d",
            "  action: DENY\n  rules:\n  - to: [{hosts: [1.0.0.0/8], ports: [22]}]\n"
        ),
    ));
    assert_eq!(decide(&p, "shop/web", "1.2.3.4", 22), "deny shop/d#0");
    assert_eq!(decide(&p, "shop/web", "1.2.3.4", 23), "allow shop/a#0");
}

#[test]
fn rule_ids_are_stable_across_compiles() {
    let first = compile_with(
        &format!(
            "{WORKLOADS}{}{}",
            policy("shop", "a", "  rules: [{}, {}, {}]\n"),
            policy("shop", "b", "  action: DENY\n  rules: [{}]\n")
        ),
        &Resolutions::new(),
        &RuleIds::new(),
    );
    let ids = |p: &CompiledPolicy| -> BTreeMap<String, u32> {
        p.rules.iter().map(|r| (r.name.clone(), r.id)).collect()
    };
    assert_eq!(
        ids(&first),
        BTreeMap::from([
            ("shop/a#0".into(), FIRST_RULE_ID),
            ("shop/a#1".into(), FIRST_RULE_ID + 1),
            ("shop/a#2".into(), FIRST_RULE_ID + 2),
            ("shop/b#0".into(), FIRST_RULE_ID + 3),
        ])
    );
    // a#1 and a#2 go away (a now has one rule); c appears and a new policy 0 sorts first.
    let second = compile_with(
        &format!(
            "{WORKLOADS}{}{}{}{}",
            policy("shop", "a", "  rules: [{}]\n"),
            policy("shop", "b", "  action: DENY\n  rules: [{}]\n"),
            policy("shop", "c", "  rules: [{}, {}]\n"),
            policy("shop", "0", "  rules: [{}]\n"),
        ),
        &Resolutions::new(),
        &first.rule_ids,
    );
    assert_eq!(
        ids(&second),
        BTreeMap::from([
            ("shop/0#0".into(), FIRST_RULE_ID + 1),
            ("shop/a#0".into(), FIRST_RULE_ID),
            ("shop/b#0".into(), FIRST_RULE_ID + 3),
            ("shop/c#0".into(), FIRST_RULE_ID + 2),
            ("shop/c#1".into(), FIRST_RULE_ID + 4),
        ])
    );
    assert_eq!(second.rule(FIRST_RULE_ID + 3).unwrap().action, Action::Deny);
    assert_eq!(
        second.rule(FIRST_RULE_ID + 3).unwrap().location.to_string(),
        "t.yaml:28"
    );
    assert!(second.rule(FIRST_RULE_ID + 9).is_none());
    // After a restart the agent rebuilds the assignment from the pinned name map.
    let pinned: RuleIds = second
        .rule_ids
        .iter()
        .map(|(id, n)| (id, n.to_string()))
        .collect();
    assert_eq!(pinned, second.rule_ids);
}

#[test]
fn binaries_scoped_policies() {
    let text = format!(
        "{WORKLOADS}{}{}{}",
        policy(
            "shop",
            "a",
            "  binaries: [/usr/bin/curl]\n  rules:\n  - to: [{hosts: [1.1.1.1]}]\n"
        ),
        policy(
            "shop",
            "d",
            "  action: DENY\n  binaries: [/usr/bin/*]\n  rules:\n  - to: [{hosts: [2.2.2.2]}]\n"
        ),
        policy(
            "shop",
            "gone",
            "  binaries: [/opt/missing]\n  rules:\n  - {}\n"
        ),
    );
    let config = load(&text);
    let (curl, wget, other) = ((8, 100), (8, 101), (8, 999));
    let files: BinaryResolutions = [
        ("/usr/bin/curl".to_string(), vec![curl]),
        ("/usr/bin/*".to_string(), vec![curl, wget]),
    ]
    .into_iter()
    .collect();
    let p = compile_with_binaries(
        &config,
        &Settings::default(),
        &Resolutions::new(),
        &files,
        &RuleIds::new(),
    )
    .unwrap_or_else(|d| panic!("{d}"));
    let web = p.workload_by_name("shop", "web").unwrap().workload_id;
    let as_process = |file, dst: &str| {
        let id = p.subject_of(web, Some(file));
        let d = evaluate(&p, id, dst.parse().unwrap(), 80);
        format!("{} {}", d.verdict, p.rule_name(d.rule_id))
    };
    // curl: selected by the ALLOW (only 1.1.1.1) and the DENY.
    assert_eq!(as_process(curl, "1.1.1.1"), "allow shop/a#0");
    assert_eq!(as_process(curl, "3.3.3.3"), DEFAULT_DENY);
    assert_eq!(as_process(curl, "2.2.2.2"), "deny shop/d#0");
    // wget: only the DENY applies; no ALLOW policy selects it.
    assert_eq!(as_process(wget, "3.3.3.3"), DEFAULT_ALLOW);
    assert_eq!(as_process(wget, "2.2.2.2"), "deny shop/d#0");
    // Any other executable (or an unreadable one): none of the binary-scoped policies.
    assert_eq!(as_process(other, "2.2.2.2"), DEFAULT_ALLOW);
    assert_eq!(decide(&p, "shop/web", "1.1.1.1", 80), DEFAULT_ALLOW);
    // One file class per distinct policy set; subjects only for workloads the policies select.
    assert_eq!(p.binaries.len(), 2);
    assert!(
        p.subjects
            .iter()
            .all(|s| s.workload_id == web || p.workload(s.workload_id).is_some())
    );
    assert_ne!(
        p.workload(web).unwrap().flags & workload_flags::HAS_BINARY_RULES,
        0
    );
    assert_eq!(p.binary_patterns.len(), 3);
    let w = lines(&p.warnings);
    assert!(
        w.iter()
            .any(|l| l.contains("binary `/opt/missing` names no executable file now")),
        "{w:?}"
    );
}

#[test]
fn dns_names_and_wildcards() {
    let text = format!(
        "{WORKLOADS}{}{}",
        policy(
            "shop",
            "a",
            "  rules:\n  - to: [{hosts: [API.example.com., \"*.cdn.net\"]}]\n"
        ),
        policy(
            "shop",
            "d",
            "  action: DENY\n  rules:\n  - to: [{hosts: [\"*.evil.org\", bad.example.com]}]\n"
        ),
    );
    let p = compile_with(&text, &Resolutions::new(), &RuleIds::new());
    assert_eq!(
        p.dns_names.iter().map(String::as_str).collect::<Vec<_>>(),
        vec!["api.example.com", "bad.example.com"]
    );
    // Unresolved: matches nothing yet.
    assert_eq!(decide(&p, "shop/web", "5.5.5.5", 443), DEFAULT_DENY);
    assert!(p.warnings.is_empty(), "{}", p.warnings);
    // Every name host is watched for the workload; wildcards by their `.suffix` key.
    let web = p.workload_by_name("shop", "web").unwrap().workload_id;
    let watched: Vec<(u32, u64, &str)> = p
        .dns_watch
        .iter()
        .filter(|w| w.workload_id == web)
        .map(|w| (w.workload_id, w.name_key, w.pattern.as_str()))
        .collect();
    for (key, pattern) in [
        (name_key(b"api.example.com"), "api.example.com"),
        (name_key(b".cdn.net"), "*.cdn.net"),
        (name_key(b".evil.org"), "*.evil.org"),
        (name_key(b"bad.example.com"), "bad.example.com"),
    ] {
        assert!(
            watched.contains(&(web, key, pattern)),
            "{pattern}: {watched:?}"
        );
    }
    assert_eq!(watched.len(), 4, "{watched:?}");
    // An address learned under a watched name is decided by that name's rules.
    let learned = |name: &str| {
        let mut keys = [0u64; MAX_SUFFIXES + 1];
        let n = server_name_keys(name.as_bytes(), &mut keys);
        let d = evaluate_with_names(&p, web, "5.5.5.5".parse().unwrap(), 443, &keys[..n]);
        format!("{} {}", d.verdict, p.rule_name(d.rule_id))
    };
    assert_eq!(learned("img.cdn.net"), "allow shop/a#0");
    assert_eq!(learned("x.evil.org"), "deny shop/d#0");
    assert_eq!(learned("bad.example.com"), "deny shop/d#0");
    assert_eq!(
        learned("cdn.net"),
        DEFAULT_DENY,
        "a wildcard needs a label before it"
    );
    assert_eq!(learned("other.test"), DEFAULT_DENY);

    let resolved = Resolutions::from([
        (
            "api.example.com".to_string(),
            vec!["5.5.5.5".parse().unwrap(), "2001:db8::5".parse().unwrap()],
        ),
        (
            "bad.example.com".to_string(),
            vec!["6.6.6.6".parse().unwrap()],
        ),
    ]);
    let p2 = compile_with(&text, &resolved, &p.rule_ids);
    assert_eq!(decide(&p2, "shop/web", "5.5.5.5", 443), "allow shop/a#0");
    assert_eq!(
        decide(&p2, "shop/web", "2001:db8::5", 443),
        "allow shop/a#0"
    );
    assert_eq!(decide(&p2, "shop/web", "5.5.5.6", 443), DEFAULT_DENY);
    assert_eq!(decide(&p2, "shop/web", "6.6.6.6", 443), "deny shop/d#0");
    assert_eq!(p2.rule_ids, p.rule_ids);
}

#[test]
fn unknown_workload_and_reserved_names() {
    let p = compile_text(&policy("shop", "a", "  rules: []\n"));
    let d = evaluate(&p, 999, "1.1.1.1".parse().unwrap(), 80);
    assert_eq!(
        (d.verdict, d.rule_id),
        (Verdict::Allow, rule_ids::DEFAULT_ALLOW)
    );
    assert_eq!(
        p.rule_name(rule_ids::DEFAULT_DENY),
        "(default deny: no ALLOW rule matched)"
    );
    assert_eq!(p.rule_name(12345), "(unknown rule 12345)");
}

// ---- capacity and scale, over models built directly ----

fn workload(ns: &str, name: &str) -> Workload {
    Workload {
        namespace: ns.into(),
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

fn host_rule(ip: u32) -> EgressRule {
    hosts_rule(ip, 1)
}

/// A rule allowing `count` consecutive IPv4 addresses from `first`.
fn hosts_rule(first: u32, count: u32) -> EgressRule {
    EgressRule {
        to: vec![EgressTarget {
            hosts: (first..first + count)
                .map(|ip| {
                    let addr = IpAddr::V4(ip.into());
                    Host {
                        text: addr.to_string(),
                        matches: HostMatch::Prefix(Prefix::host(addr)),
                        line: 1,
                    }
                })
                .collect(),
            ports: Vec::new(),
            line: 1,
        }],
        line: 1,
    }
}

fn egress(name: &str, line: usize, rules: Vec<EgressRule>) -> EgressPolicy {
    EgressPolicy {
        namespace: "ns".into(),
        name: name.into(),
        match_labels: BTreeMap::new(),
        binaries: Vec::new(),
        action: Action::Allow,
        rules,
        location: Location::new("big.yaml", line),
    }
}

fn compile_model(config: &Config) -> Result<CompiledPolicy, crate::Diagnostics> {
    compile(
        config,
        &Settings::default(),
        &Resolutions::new(),
        &RuleIds::new(),
    )
}

#[test]
fn compiles_100k_single_ip_rules() {
    let config = Config {
        workloads: vec![workload("ns", "w")],
        egress_policies: (0..100u32)
            .map(|p| {
                egress(
                    &format!("p{p:03}"),
                    1,
                    (0..1000)
                        .map(|r| host_rule(0x0a00_0000 + p * 1000 + r))
                        .collect(),
                )
            })
            .collect(),
        ..Config::default()
    };
    let start = Instant::now();
    let p = compile_model(&config).unwrap();
    println!("compiled 100k single-IP rules in {:?}", start.elapsed());
    assert_eq!(p.rules.len(), 100_000);
    assert_eq!(p.egress.len(), 100_000);
    let start = Instant::now();
    let d = evaluate(&p, 1, "10.0.0.5".parse().unwrap(), 80);
    println!("first evaluate (builds the index) in {:?}", start.elapsed());
    assert_eq!(p.rule_name(d.rule_id), "ns/p000#5");
}

#[test]
fn capacity_overflow_names_where_it_happened() {
    // Egress entries: the policy that pushes the table over the limit is named.
    let per_policy = 100_000u32;
    let config = Config {
        workloads: vec![workload("ns", "w")],
        egress_policies: (0..3u32)
            .map(|p| {
                egress(
                    &format!("p{p}"),
                    10 + p as usize,
                    (0..per_policy / 100)
                        .map(|r| hosts_rule(p * per_policy + r * 100, 100))
                        .collect(),
                )
            })
            .collect(),
        ..Config::default()
    };
    let err = compile_model(&config).unwrap_err();
    assert_eq!(
        lines(&err),
        vec![format!(
            "big.yaml:12: error: too many egress table entries: more than {MAX_EGRESS_ENTRIES_PER_SLOT} at EgressPolicy ns/p2 (workload ns/w); reduce the rules or the workloads they select"
        )]
    );

    // Rules.
    let limit = (MAX_RULES - FIRST_RULE_ID) as usize;
    let empty_rule = EgressRule {
        to: Vec::new(),
        line: 1,
    };
    let config = Config {
        egress_policies: vec![
            egress("a", 3, vec![empty_rule.clone(); limit - 1]),
            egress("b", 7, vec![empty_rule.clone(); 2]),
        ],
        ..Config::default()
    };
    let err = compile_model(&config).unwrap_err();
    assert_eq!(
        lines(&err),
        vec![format!(
            "big.yaml:7: error: too many rules: {} at EgressPolicy ns/b, the kernel holds at most {limit}",
            limit + 1
        )]
    );

    // Workloads: the first one past the limit in (namespace, name) order.
    let config = Config {
        workloads: (0..=MAX_WORKLOADS)
            .map(|i| {
                let mut w = workload("ns", &format!("w{i:05}"));
                w.location = Location::new("big.yaml", i as usize + 1);
                w
            })
            .collect(),
        ..Config::default()
    };
    let err = compile_model(&config).unwrap_err();
    assert_eq!(
        lines(&err),
        vec![format!(
            "big.yaml:{}: error: too many workloads: WorkloadEntry ns/w{MAX_WORKLOADS:05} exceeds the kernel's limit of {MAX_WORKLOADS}",
            MAX_WORKLOADS + 1
        )]
    );
}

#[test]
fn rule_names_longer_than_the_kernel_limit_are_rejected() {
    let long = "n".repeat(130);
    let config = load(&format!(
        "{WORKLOADS}{}",
        policy("shop", &long, "  rules: [{}]\n")
    ));
    let err = compile(
        &config,
        &Settings::default(),
        &Resolutions::new(),
        &RuleIds::new(),
    )
    .unwrap_err();
    let l = lines(&err);
    assert_eq!(l.len(), 1, "{l:?}");
    assert!(
        l[0].starts_with("t.yaml:21: error: rule name `shop/nnn"),
        "{l:?}"
    );
    assert!(l[0].ends_with("is longer than 128 bytes, the kernel's rule name limit; use a shorter namespace or policy name"), "{l:?}");
}
