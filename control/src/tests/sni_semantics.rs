//! SNI verdict semantics: name rules checked against TLS server names (`evaluate_sni`).

use std::net::IpAddr;

use super::load;
use crate::{CompiledPolicy, Resolutions, RuleIds, Settings, compile, evaluate, evaluate_sni};

const WEB: &str = r#"
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: web, namespace: shop, annotations: {meshward.io/cgroup: mw/web}}
spec: {labels: {app: web}}
"#;

fn compiled(policies: &str, resolved: &[(&str, &str)]) -> CompiledPolicy {
    let resolved: Resolutions = resolved
        .iter()
        .map(|(n, ip)| (n.to_string(), vec![ip.parse().unwrap()]))
        .collect();
    let config = load(&format!("{WEB}{policies}"));
    compile(&config, &Settings::default(), &resolved, &RuleIds::new()).expect("compiles")
}

fn policy(name: &str, action: &str, to: &str) -> String {
    format!(
        "---\napiVersion: meshward.io/v1alpha1\nkind: EgressPolicy\nmetadata: {{name: {name}, namespace: shop}}\nspec:\n  action: {action}\n  rules:\n  - to:\n{to}"
    )
}

/// "connect: allow shop/a#0 | sni: deny shop/d#0".
fn decide(p: &CompiledPolicy, dst: &str, port: u16, sni: Option<&str>) -> String {
    let w = p.workload_by_name("shop", "web").unwrap().workload_id;
    let ip: IpAddr = dst.parse().unwrap();
    let c = evaluate(p, w, ip, port);
    let s = evaluate_sni(p, w, ip, port, sni);
    let mut out = format!(
        "connect: {} {} | sni: {} {}",
        c.verdict,
        p.rule_name(c.rule_id),
        s.verdict,
        p.rule_name(s.rule_id)
    );
    if let Some(a) = s.audit_rule_id {
        out.push_str(&format!(" audit {}", p.rule_name(a)));
    }
    out
}

const SNI_DENY: &str =
    "deny (sni deny: admitted only by DNS-name ALLOW rules, and none names this TLS server name)";

#[test]
fn a_name_allowed_address_needs_an_allowed_server_name() {
    let p = compiled(
        &policy(
            "a",
            "ALLOW",
            "    - hosts: [ebpf.io, \"*.example.com\"]\n      ports: [443]\n",
        ),
        &[("ebpf.io", "5.5.5.5")],
    );
    let ok = "connect: allow shop/a#0 | sni: allow (none)";
    assert_eq!(decide(&p, "5.5.5.5", 443, Some("ebpf.io")), ok);
    assert_eq!(decide(&p, "5.5.5.5", 443, Some("EBPF.io.")), ok);
    // Another name allowed by a wildcard rule may share the address (CDN).
    assert_eq!(decide(&p, "5.5.5.5", 443, Some("a.b.example.com")), ok);
    // The wildcard does not cover the bare suffix.
    let cut = format!("connect: allow shop/a#0 | sni: {SNI_DENY}");
    assert_eq!(decide(&p, "5.5.5.5", 443, Some("example.com")), cut);
    assert_eq!(decide(&p, "5.5.5.5", 443, Some("evil.test")), cut);
    assert_eq!(decide(&p, "5.5.5.5", 443, None), cut);
    let long = format!("{}.ebpf.io", "a".repeat(130));
    assert_eq!(decide(&p, "5.5.5.5", 443, Some(&long)), cut);
}

#[test]
fn an_address_rule_exempts_the_address_from_the_name_check() {
    let p = compiled(
        &format!(
            "{}{}",
            policy("a", "ALLOW", "    - hosts: [ebpf.io]\n"),
            policy(
                "b",
                "ALLOW",
                "    - hosts: [5.5.5.0/24]\n      ports: [8443]\n"
            ),
        ),
        &[("ebpf.io", "5.5.5.5")],
    );
    // Port 8443: the CIDR rule admits the address whatever the name.
    assert!(decide(&p, "5.5.5.5", 8443, Some("other.test")).ends_with("sni: allow (none)"));
    // Other ports: admitted only by the name.
    assert!(decide(&p, "5.5.5.5", 443, Some("other.test")).ends_with(SNI_DENY));
    assert!(decide(&p, "5.5.5.5", 443, Some("ebpf.io")).ends_with("sni: allow (none)"));
}

#[test]
fn deny_and_audit_name_rules_apply_to_every_tls_connection() {
    let p = compiled(
        &format!(
            "{}{}{}",
            policy("all", "ALLOW", "    - hosts: [\"*\"]\n"),
            policy("d", "DENY", "    - hosts: [\"*.evil.test\", bad.test]\n"),
            policy(
                "au",
                "AUDIT",
                "    - hosts: [watched.test]\n      ports: [443]\n"
            ),
        ),
        &[],
    );
    assert_eq!(
        decide(&p, "7.7.7.7", 443, Some("x.y.evil.test")),
        "connect: allow shop/all#0 | sni: deny shop/d#0"
    );
    assert!(decide(&p, "7.7.7.7", 443, Some("BAD.test")).ends_with("sni: deny shop/d#0"));
    assert!(decide(&p, "7.7.7.7", 443, Some("evil.test")).ends_with("sni: allow (none)"));
    // An overlong name is cut where a DENY name rule could have matched it.
    let long = format!("{}.evil.test", "a".repeat(130));
    assert!(decide(&p, "7.7.7.7", 443, Some(&long)).ends_with("sni: deny shop/d#0"));
    assert_eq!(
        decide(&p, "7.7.7.7", 443, Some("watched.test")),
        "connect: allow shop/all#0 | sni: allow (none) audit shop/au#0"
    );
    assert!(decide(&p, "7.7.7.7", 80, Some("watched.test")).ends_with("sni: allow (none)"));
    assert!(decide(&p, "7.7.7.7", 443, None).ends_with("sni: allow (none)"));
}

#[test]
fn wildcards_too_deep_to_match_are_warned_about() {
    let p = compiled(
        &policy("d", "DENY", "    - hosts: [\"*.a.b.c.d.e.f.g.h.test\"]\n"),
        &[],
    );
    let w = super::lines(&p.warnings);
    assert!(
        w.iter().any(|l| l.contains("can never match a name")),
        "{w:?}"
    );
}
