//! `control::EgressPolicy` → `meshward.v1alpha1.EgressPolicy`, field for field.

use control::{BinaryMatch, EgressPolicy, PortMatch};

use crate::proto::egress as wire;

/// The wire form, or every reason it has none.
pub(crate) fn encode(p: &EgressPolicy) -> Result<wire::EgressPolicy, Vec<String>> {
    let mut errors = Vec::new();
    let rules = p
        .rules
        .iter()
        .enumerate()
        .map(|(r, rule)| wire::EgressRule {
            to: rule
                .to
                .iter()
                .enumerate()
                .map(|(t, target)| wire::EgressTarget {
                    // As written: `convert` parses them with the YAML loader's `parse_host`.
                    hosts: target.hosts.iter().map(|h| h.text.clone()).collect(),
                    ports: ports(
                        &format!("spec.rules[{r}].to[{t}].ports"),
                        target.ports.iter().map(|p| p.value),
                        &mut errors,
                    ),
                })
                .collect(),
        })
        .collect();
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(wire::EgressPolicy {
        namespace: p.namespace.clone(),
        name: p.name.clone(),
        selector: (!p.match_labels.is_empty()).then(|| wire::WorkloadSelector {
            match_labels: p.match_labels.clone(),
        }),
        binaries: p
            .binaries
            .iter()
            .map(|b| match &b.value {
                BinaryMatch::Exact(path) => path.clone(),
                BinaryMatch::Prefix(prefix) => format!("{prefix}*"),
            })
            .collect(),
        action: match p.action {
            control::Action::Allow => wire::Action::Allow,
            control::Action::Deny => wire::Action::Deny,
            control::Action::Audit => wire::Action::Audit,
        } as i32,
        rules,
    })
}

/// `*` alone means any port, as no ports do. Next to numbered ports it keeps its own (port 0)
/// entries in the tables, which the wire list of numbers cannot say.
fn ports(path: &str, ports: impl Iterator<Item = PortMatch>, errors: &mut Vec<String>) -> Vec<u32> {
    let ports: Vec<PortMatch> = ports.collect();
    let numbered: Vec<u32> = ports
        .iter()
        .filter_map(|p| match p {
            PortMatch::Port(n) => Some(u32::from(*n)),
            PortMatch::Any => None,
        })
        .collect();
    if ports.contains(&PortMatch::Any) && !numbered.is_empty() {
        errors.push(format!(
            "{path}: `*` next to numbered ports has no form in meshward.v1alpha1.EgressPolicy (write the `*` target on its own)"
        ));
    }
    numbered
}
