//! `meshward.v1alpha1.EgressPolicy` → `control::EgressPolicy`, read as the YAML kind is.

use control::{
    Action, BinaryMatch, EgressPolicy, EgressRule, EgressTarget, Host, HostMatch, PortMatch,
    Spanned,
};

use super::problems::Problems;
use super::values;
use crate::proto::egress::{self as wire};

pub(crate) fn convert(e: &wire::EgressPolicy, p: &mut Problems) -> Option<EgressPolicy> {
    p.check("name", control::check_dns_subdomain(&e.name));
    p.check("namespace", control::check_dns_label(&e.namespace));
    let action = p.check(
        "action",
        wire::Action::try_from(e.action)
            .map_err(|_| format!("unknown value {} (expected ALLOW, DENY or AUDIT)", e.action)),
    );
    let binaries: Vec<Spanned<BinaryMatch>> = e
        .binaries
        .iter()
        .enumerate()
        .filter_map(|(i, b)| p.check(&format!("binaries[{i}]"), BinaryMatch::parse(b)))
        .map(|value| Spanned { value, line: 0 })
        .collect();
    let rules: Vec<EgressRule> = e
        .rules
        .iter()
        .enumerate()
        .map(|(r, rule)| EgressRule {
            to: rule
                .to
                .iter()
                .enumerate()
                .map(|(t, target)| convert_target(&format!("rules[{r}].to[{t}]"), target, p))
                .collect(),
            line: 0,
        })
        .collect();
    if p.has_errors() {
        return None;
    }
    Some(EgressPolicy {
        namespace: e.namespace.clone(),
        name: e.name.clone(),
        match_labels: e
            .selector
            .as_ref()
            .map(|s| s.match_labels.clone())
            .unwrap_or_default(),
        binaries,
        action: match action? {
            wire::Action::Allow => Action::Allow,
            wire::Action::Deny => Action::Deny,
            wire::Action::Audit => Action::Audit,
        },
        rules,
        location: p.location(),
    })
}

fn convert_target(path: &str, t: &wire::EgressTarget, p: &mut Problems) -> EgressTarget {
    let mut hosts = Vec::with_capacity(t.hosts.len());
    for (i, text) in t.hosts.iter().enumerate() {
        let at = format!("{path}.hosts[{i}]");
        if let Some((matches, normalised)) = p.check(&at, control::parse_host(text)) {
            if normalised && let HostMatch::Prefix(prefix) = &matches {
                p.warning(format!("{at}: `{text}` has host bits set; using {prefix}"));
            }
            hosts.push(Host {
                text: text.clone(),
                matches,
                line: 0,
            });
        }
    }
    let ports = t
        .ports
        .iter()
        .enumerate()
        .filter_map(|(i, v)| p.check(&format!("{path}.ports[{i}]"), values::port(*v)))
        .map(|port| Spanned {
            value: PortMatch::Port(port),
            line: 0,
        })
        .collect();
    EgressTarget {
        hosts,
        ports,
        line: 0,
    }
}
