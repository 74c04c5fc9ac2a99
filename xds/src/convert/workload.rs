//! `istio.workload.Address` → `control::Workload` (what a WorkloadEntry says).
//!
//! A workload gives IP → workload → principal for inbound identity. Services carry no identity
//! and no policy meshward enforces: they are checked and otherwise left aside.

use std::collections::BTreeMap;

use control::{Settings, Workload};

use super::problems::Problems;
use super::values;
use crate::proto::workload::{self as wire, NetworkMode, address};

/// A workload and the WORKLOAD_SELECTOR policies (`namespace/name`) that select it.
pub(crate) struct ConvertedWorkload {
    pub workload: Workload,
    pub selected_by: Vec<String>,
}

/// `None` for a service, or when the resource has errors (recorded in `p`).
pub(crate) fn convert(
    address: &wire::Address,
    settings: &Settings,
    p: &mut Problems,
) -> Option<ConvertedWorkload> {
    match &address.r#type {
        None => {
            p.error("neither `workload` nor `service` is set");
            None
        }
        Some(address::Type::Service(s)) => {
            check_service(s, p);
            None
        }
        Some(address::Type::Workload(w)) => convert_workload(w, settings, p),
    }
}

fn convert_workload(
    w: &wire::Workload,
    settings: &Settings,
    p: &mut Problems,
) -> Option<ConvertedWorkload> {
    p.check("name", control::check_dns_subdomain(&w.name));
    p.check("namespace", control::check_dns_label(&w.namespace));
    let service_account = if w.service_account.is_empty() {
        "default"
    } else {
        &w.service_account
    };
    p.check(
        "service_account",
        control::check_dns_subdomain(service_account),
    );
    // control derives every principal from the node's trust domain.
    if !w.trust_domain.is_empty() && w.trust_domain != settings.trust_domain {
        p.error(format!(
            "trust_domain `{}` differs from this node's `{}` (--trust-domain); principals would be wrong",
            w.trust_domain, settings.trust_domain
        ));
    }
    let network_mode = p.check(
        "network_mode",
        NetworkMode::try_from(w.network_mode).map_err(|_| {
            format!(
                "unknown value {} (expected STANDARD or HOST_NETWORK)",
                w.network_mode
            )
        }),
    );
    let mut addresses = Vec::with_capacity(w.addresses.len());
    for (i, a) in w.addresses.iter().enumerate() {
        if let Some(ip) = p.check(&format!("addresses[{i}]"), values::ip(a)) {
            addresses.push(ip);
        }
    }
    if p.has_errors() {
        return None;
    }
    // A host-network address is shared by every such workload of the node: it names none.
    let address = match network_mode {
        Some(NetworkMode::HostNetwork) => None,
        _ => addresses.first().copied(),
    };
    if address.is_some() && addresses.len() > 1 {
        p.warning(format!(
            "only the first address ({}) identifies the workload; connections from {} are from an unknown source",
            addresses[0],
            addresses[1..]
                .iter()
                .map(|a| a.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    Some(ConvertedWorkload {
        workload: Workload {
            namespace: w.namespace.clone(),
            name: w.name.clone(),
            labels: BTreeMap::new(),
            service_account: service_account.to_string(),
            address,
            cgroup: None,
            netns: None,
            location: p.location(),
            cgroup_line: 0,
        },
        selected_by: w.authorization_policies.clone(),
    })
}

fn check_service(s: &wire::Service, p: &mut Problems) {
    for (i, a) in s.addresses.iter().enumerate() {
        let path = format!("service.addresses[{i}]");
        let Some(ip) = p.check(&path, values::ip(&a.address)) else {
            continue;
        };
        let max = if ip.is_ipv4() { 32 } else { 128 };
        if a.length.is_some_and(|l| l > max) {
            p.error(format!(
                "{path}: prefix length {} is more than {max}",
                a.length.unwrap_or_default()
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::workload::{NetworkAddress, Service};
    use crate::resource::ResourceType;

    fn workload() -> wire::Workload {
        wire::Workload {
            uid: "cluster1//v1/Pod/ns1/web-0".into(),
            name: "web-0".into(),
            namespace: "ns1".into(),
            addresses: vec![vec![10, 0, 0, 5]],
            service_account: "web".into(),
            authorization_policies: vec!["ns1/allow-web".into()],
            ..Default::default()
        }
    }

    fn run(w: wire::Workload) -> (Option<ConvertedWorkload>, Problems) {
        let mut p = Problems::new(ResourceType::Address, "r");
        let a = wire::Address {
            r#type: Some(address::Type::Workload(w)),
        };
        (convert(&a, &Settings::default(), &mut p), p)
    }

    #[test]
    fn every_field() {
        let (c, p) = run(workload());
        assert!(!p.has_errors());
        let c = c.unwrap();
        assert_eq!(c.workload.name, "web-0");
        assert_eq!(c.workload.namespace, "ns1");
        assert_eq!(c.workload.service_account, "web");
        assert_eq!(c.workload.address, Some("10.0.0.5".parse().unwrap()));
        assert_eq!(c.workload.location.file, "xds:Address/r");
        assert_eq!(c.selected_by, vec!["ns1/allow-web".to_string()]);
        assert!(c.workload.cgroup.is_none());
    }

    #[test]
    fn defaults_and_modes() {
        let mut w = workload();
        w.service_account.clear();
        w.trust_domain = "cluster.local".into();
        w.addresses = vec![
            vec![0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
            vec![10, 0, 0, 5],
        ];
        let (c, p) = run(w.clone());
        let c = c.unwrap();
        assert_eq!(c.workload.service_account, "default");
        assert_eq!(c.workload.address, Some("fd00::1".parse().unwrap()));
        assert_eq!(p.warnings.len(), 1, "{:?}", p.warnings);
        w.network_mode = NetworkMode::HostNetwork as i32;
        assert_eq!(run(w.clone()).0.unwrap().workload.address, None);
        w.addresses.clear();
        w.network_mode = 0;
        assert_eq!(run(w).0.unwrap().workload.address, None);
    }

    #[test]
    fn invalid_fields() {
        type Mutation = fn(&mut wire::Workload);
        let cases: Vec<(Mutation, &str)> = vec![
            (
                |w| w.addresses = vec![vec![1, 2, 3]],
                "addresses[0]: an address has 3 bytes",
            ),
            (
                |w| w.trust_domain = "other.td".into(),
                "trust_domain `other.td` differs",
            ),
            (|w| w.network_mode = 7, "network_mode: unknown value 7"),
            (
                |w| w.name = "Web_0".into(),
                "name: `Web_0` is not a valid name",
            ),
            (
                |w| w.namespace = String::new(),
                "namespace: `` is not a valid namespace",
            ),
            (
                |w| w.service_account = "a/b".into(),
                "service_account: `a/b` is not a valid name",
            ),
        ];
        for (mutate, expected) in cases {
            let mut w = workload();
            mutate(&mut w);
            let (c, p) = run(w);
            assert!(c.is_none());
            assert!(
                p.errors.iter().any(|e| e.starts_with(expected)),
                "{expected}: {:?}",
                p.errors
            );
        }
    }

    #[test]
    fn services_are_checked_and_left_aside() {
        let mut p = Problems::new(ResourceType::Address, "ns1/svc.ns1.svc.cluster.local");
        let mut s = Service {
            name: "svc".into(),
            namespace: "ns1".into(),
            hostname: "svc.ns1.svc.cluster.local".into(),
            addresses: vec![NetworkAddress {
                network: String::new(),
                address: vec![10, 96, 0, 1],
                length: None,
            }],
        };
        let a = |s: &Service| wire::Address {
            r#type: Some(address::Type::Service(s.clone())),
        };
        assert!(convert(&a(&s), &Settings::default(), &mut p).is_none());
        assert!(!p.has_errors());
        s.addresses[0].length = Some(33);
        convert(&a(&s), &Settings::default(), &mut p);
        assert!(p.has_errors());
        let mut p = Problems::new(ResourceType::Address, "x");
        convert(
            &wire::Address { r#type: None },
            &Settings::default(),
            &mut p,
        );
        assert!(p.has_errors());
    }
}
