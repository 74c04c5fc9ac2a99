//! From xDS resources to `control`'s model, with the meaning the YAML forms have.
//!
//! Every resource is converted on its own, each problem recorded against it; then what spans
//! resources is checked (duplicate names) and tied together (WORKLOAD_SELECTOR scopes). Any
//! error rejects the whole response, so the previous generation stays in force.

mod authorization;
mod egress;
mod problems;
mod scope;
mod values;
mod workload;

use std::collections::BTreeMap;

use control::{Config, Diagnostics, Settings};

use crate::rejection::Rejections;
use crate::resource::{Resource, ResourceType};
use crate::snapshot::Snapshot;
use problems::Problems;

pub use scope::selector_label;

/// The configuration the snapshot declares. Warnings (for example host bits set in a CIDR) are
/// in `Config::warnings`, each at the [`location`](crate::location) of its resource.
pub fn to_config(snapshot: &Snapshot, settings: &Settings) -> Result<Config, Rejections> {
    let mut rejections = Rejections::default();
    let mut warnings = Diagnostics::new();
    let mut config = Config::default();
    let mut scopes = scope::Scopes::default();
    let mut names = Names::default();

    for (name, resource) in snapshot.iter(ResourceType::Address) {
        let mut p = Problems::new(ResourceType::Address, name);
        if let Resource::Address(a) = resource
            && let Some(w) = workload::convert(a, settings, &mut p)
            && names.unique(&mut p, (&w.workload.namespace, &w.workload.name))
        {
            scopes.add_workload(config.workloads.len(), &w);
            config.workloads.push(w.workload);
        }
        p.finish(&mut rejections, &mut warnings);
    }
    names = Names::default();
    for (name, resource) in snapshot.iter(ResourceType::Authorization) {
        let mut p = Problems::new(ResourceType::Authorization, name);
        if let Resource::Authorization(a) = resource
            && let Some(c) = authorization::convert(a, settings, &mut p)
            && names.unique(&mut p, (&c.policy.namespace, &c.policy.name))
        {
            scopes.add_policy(config.authorization_policies.len(), &c);
            config.authorization_policies.push(c.policy);
        }
        p.finish(&mut rejections, &mut warnings);
    }
    names = Names::default();
    for (name, resource) in snapshot.iter(ResourceType::EgressPolicy) {
        let mut p = Problems::new(ResourceType::EgressPolicy, name);
        if let Resource::EgressPolicy(e) = resource
            && let Some(policy) = egress::convert(e, &mut p)
            && names.unique(&mut p, (&policy.namespace, &policy.name))
        {
            config.egress_policies.push(policy);
        }
        p.finish(&mut rejections, &mut warnings);
    }
    if !rejections.is_empty() {
        return Err(rejections);
    }
    scopes.apply(&mut config, settings);
    config.warnings = warnings;
    Ok(config)
}

/// First resource seen for each `namespace/name` of one type.
#[derive(Default)]
struct Names {
    first: BTreeMap<(String, String), String>,
}

impl Names {
    fn unique(&mut self, p: &mut Problems, (namespace, name): (&String, &String)) -> bool {
        let key = (namespace.clone(), name.clone());
        if let Some(first) = self.first.get(&key) {
            p.error(format!(
                "duplicate {} {namespace}/{name} (first defined by resource `{first}`)",
                p.kind()
            ));
            return false;
        }
        self.first.insert(key, p.resource().to_string());
        true
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use control::{Action, BinaryMatch, HostMatch, PortMatch, Settings};

    use super::*;
    use crate::proto::authorization::{self as authz, Authorization};
    use crate::proto::egress::{self as egress, EgressPolicy};
    use crate::proto::workload::{self as wl, address};
    use crate::snapshot::{Entry, ResourceSet};

    fn set(resources: Vec<(&str, Resource)>) -> ResourceSet {
        resources
            .into_iter()
            .map(|(n, r)| {
                (
                    n.to_string(),
                    Entry {
                        version: "1".into(),
                        resource: Arc::new(r),
                    },
                )
            })
            .collect()
    }

    fn workload(ns: &str, name: &str, ip: [u8; 4], policies: &[&str]) -> Resource {
        Resource::Address(wl::Address {
            r#type: Some(address::Type::Workload(wl::Workload {
                uid: format!("c1/{ns}/{name}"),
                name: name.into(),
                namespace: ns.into(),
                addresses: vec![ip.to_vec()],
                authorization_policies: policies.iter().map(|s| s.to_string()).collect(),
                ..Default::default()
            })),
        })
    }

    fn authorization(ns: &str, name: &str, scope: authz::Scope) -> Resource {
        Resource::Authorization(Authorization {
            name: name.into(),
            namespace: ns.into(),
            scope: scope as i32,
            action: authz::Action::Allow as i32,
            rules: vec![],
            dry_run: false,
        })
    }

    fn egress_policy() -> EgressPolicy {
        EgressPolicy {
            namespace: "shop".into(),
            name: "web-out".into(),
            selector: Some(egress::WorkloadSelector {
                match_labels: BTreeMap::from([("app".to_string(), "web".to_string())]),
            }),
            binaries: vec!["/usr/bin/curl".into(), "/opt/app/*".into()],
            action: egress::Action::Deny as i32,
            rules: vec![
                egress::EgressRule {
                    to: vec![egress::EgressTarget {
                        hosts: vec![
                            "Example.COM.".into(),
                            "*.example.org".into(),
                            "10.1.2.3/8".into(),
                            "*".into(),
                        ],
                        ports: vec![443, 8443],
                    }],
                },
                egress::EgressRule { to: vec![] },
            ],
        }
    }

    fn snapshot(ty: ResourceType, resources: Vec<(&str, Resource)>) -> Snapshot {
        let mut s = Snapshot::new();
        s.set(ty, set(resources));
        s
    }

    #[test]
    fn egress_policy_every_field() {
        let s = snapshot(
            ResourceType::EgressPolicy,
            vec![("shop/web-out", Resource::EgressPolicy(egress_policy()))],
        );
        let config = to_config(&s, &Settings::default()).unwrap();
        let p = &config.egress_policies[0];
        assert_eq!((p.namespace.as_str(), p.name.as_str()), ("shop", "web-out"));
        assert_eq!(p.match_labels.get("app").map(String::as_str), Some("web"));
        assert_eq!(p.action, Action::Deny);
        let binaries: Vec<_> = p.binaries.iter().map(|b| b.value.clone()).collect();
        assert_eq!(
            binaries,
            vec![
                BinaryMatch::Exact("/usr/bin/curl".into()),
                BinaryMatch::Prefix("/opt/app/".into())
            ]
        );
        let hosts: Vec<_> = p.rules[0].to[0]
            .hosts
            .iter()
            .map(|h| h.matches.clone())
            .collect();
        assert_eq!(hosts[0], HostMatch::Exact("example.com".into()));
        assert_eq!(hosts[1], HostMatch::Suffix("example.org".into()));
        assert!(matches!(&hosts[2], HostMatch::Prefix(p) if p.to_string() == "10.0.0.0/8"));
        assert_eq!(hosts[3], HostMatch::Any);
        let ports: Vec<_> = p.rules[0].to[0].ports.iter().map(|p| p.value).collect();
        assert_eq!(ports, vec![PortMatch::Port(443), PortMatch::Port(8443)]);
        assert!(p.rules[1].to.is_empty());
        // The normalised CIDR is reported as YAML reports it.
        let warnings = config.warnings.to_string();
        assert!(
            warnings.contains("xds:EgressPolicy/shop/web-out: warning: rules[0].to[0].hosts[2]: `10.1.2.3/8` has host bits set; using 10.0.0.0/8"),
            "{warnings}"
        );
    }

    #[test]
    fn egress_policy_invalid_fields() {
        let mut e = egress_policy();
        e.action = 5;
        e.binaries.push("relative/path".into());
        e.rules[0].to[0].hosts.push("bad..name".into());
        e.rules[0].to[0].ports.push(0);
        let s = snapshot(
            ResourceType::EgressPolicy,
            vec![("shop/web-out", Resource::EgressPolicy(e))],
        );
        let text = to_config(&s, &Settings::default()).unwrap_err().to_string();
        for expected in [
            "EgressPolicy shop/web-out: action: unknown value 5 (expected ALLOW, DENY or AUDIT)",
            "EgressPolicy shop/web-out: binaries[2]: `relative/path` must be an absolute path",
            "EgressPolicy shop/web-out: rules[0].to[0].hosts[4]: `bad..name` is not a valid host name",
            "EgressPolicy shop/web-out: rules[0].to[0].ports[2]: port 0 is out of range (1-65535)",
        ] {
            assert!(text.contains(expected), "{expected}\n{text}");
        }
    }

    #[test]
    fn duplicate_names_are_rejected_naming_both_resources() {
        let mut s = snapshot(
            ResourceType::Authorization,
            vec![
                ("a", authorization("ns1", "p", authz::Scope::Namespace)),
                ("b", authorization("ns1", "p", authz::Scope::Namespace)),
            ],
        );
        s.set(
            ResourceType::Address,
            set(vec![
                ("w1", workload("ns1", "web", [10, 0, 0, 1], &[])),
                ("w2", workload("ns1", "web", [10, 0, 0, 2], &[])),
            ]),
        );
        let text = to_config(&s, &Settings::default()).unwrap_err().to_string();
        assert!(
            text.contains(
                "Authorization b: duplicate Authorization ns1/p (first defined by resource `a`)"
            ),
            "{text}"
        );
        assert!(
            text.contains("Address w2: duplicate Address ns1/web (first defined by resource `w1`)"),
            "{text}"
        );
    }

    #[test]
    fn scopes_become_namespaces_and_selector_labels() {
        let mut s = snapshot(
            ResourceType::Authorization,
            vec![
                (
                    "g",
                    authorization("istio-system", "g", authz::Scope::Global),
                ),
                ("n", authorization("ns1", "n", authz::Scope::Namespace)),
                (
                    "r",
                    authorization("istio-system", "r", authz::Scope::Namespace),
                ),
                (
                    "w",
                    authorization("ns1", "w", authz::Scope::WorkloadSelector),
                ),
            ],
        );
        s.set(
            ResourceType::Address,
            set(vec![
                ("a", workload("ns1", "a", [10, 0, 0, 1], &["ns1/w"])),
                ("b", workload("ns1", "b", [10, 0, 0, 2], &[])),
                ("c", workload("istio-system", "c", [10, 0, 0, 3], &[])),
            ]),
        );
        let config = to_config(&s, &Settings::default()).unwrap();
        let labels = |i: usize| config.authorization_policies[i].match_labels.clone();
        assert!(labels(0).is_empty(), "GLOBAL: root namespace, no labels");
        assert!(labels(1).is_empty(), "NAMESPACE: its namespace, no labels");
        let root_label = selector_label("istio-system", "r");
        let w_label = selector_label("ns1", "w");
        assert_eq!(labels(2).keys().collect::<Vec<_>>(), vec![&root_label]);
        assert_eq!(labels(3).keys().collect::<Vec<_>>(), vec![&w_label]);
        let workload_labels = |name: &str| {
            let w = config.workloads.iter().find(|w| w.name == name).unwrap();
            w.labels.keys().cloned().collect::<Vec<_>>()
        };
        assert_eq!(workload_labels("a"), vec![w_label]);
        assert!(workload_labels("b").is_empty());
        assert_eq!(workload_labels("c"), vec![root_label]);
    }
}
