//! Local files + xDS → the one config the reconciler compiles (docs/xds.md, "Merge rule").
//!
//! - Local files give node-local facts (which cgroup and network namespace hold a workload's
//!   processes, its labels) and may hold policies; xDS gives workloads (identity: address and
//!   service account) and policies.
//! - A local WorkloadEntry and an xDS Workload with the same namespace/name are one workload:
//!   address and service account from xDS (the control plane is authoritative for identity);
//!   cgroup, netns, labels and the source location from the local entry, plus the
//!   `xds.meshward.io/authorization:*` selector labels of the xDS workload.
//! - Policies are the union. A policy of the same kind, namespace and name on both sides is a
//!   conflict: whichever side proposes it second is refused (an xDS response is NACKed naming
//!   the local file:line; a local reload is rejected at its file:line).

use std::collections::HashMap;

use control::{Config, Diagnostics, Location};

/// Who proposes the change being merged; the conflicting definition on that side is the one
/// refused, at its own location.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proposer {
    Files,
    Xds,
}

/// The merged config, or errors at the location of the refused side's definitions.
pub fn merge(local: &Config, xds: &Config, proposer: Proposer) -> Result<Config, Diagnostics> {
    let mut diags = Diagnostics::new();
    let mut merged = Config::default();

    // Workloads: xDS's, each completed by the local entry of the same name; then local-only.
    let local_by_name: HashMap<(&str, &str), usize> = local
        .workloads
        .iter()
        .enumerate()
        .map(|(i, w)| ((w.namespace.as_str(), w.name.as_str()), i))
        .collect();
    let mut joined = vec![false; local.workloads.len()];
    for x in &xds.workloads {
        let Some(&i) = local_by_name.get(&(x.namespace.as_str(), x.name.as_str())) else {
            merged.workloads.push(x.clone());
            continue;
        };
        joined[i] = true;
        let l = &local.workloads[i];
        let mut w = l.clone();
        w.address = x.address;
        w.service_account = x.service_account.clone();
        w.labels.extend(x.labels.clone());
        merged.workloads.push(w);
    }
    merged.workloads.extend(
        local
            .workloads
            .iter()
            .zip(&joined)
            .filter(|(_, joined)| !**joined)
            .map(|(w, _)| w.clone()),
    );

    // Policies: the union, with conflicts refused on the proposer's side.
    let mut conflict = |kind: &str, ns: &str, name: &str, l: &Location, x: &Location| {
        let (at, other) = match proposer {
            Proposer::Xds => (x, format!("the local files at {l}")),
            Proposer::Files => (l, format!("the control plane ({x})")),
        };
        diags.error(
            at.clone(),
            format!(
                "{kind} {ns}/{name} is also defined by {other}; a policy comes from one place (rename one, or remove one)"
            ),
        );
    };
    let local_egress: HashMap<(&str, &str), &Location> = local
        .egress_policies
        .iter()
        .map(|p| ((p.namespace.as_str(), p.name.as_str()), &p.location))
        .collect();
    for p in &xds.egress_policies {
        if let Some(l) = local_egress.get(&(p.namespace.as_str(), p.name.as_str())) {
            conflict("EgressPolicy", &p.namespace, &p.name, l, &p.location);
        }
    }
    let local_authz: HashMap<(&str, &str), &Location> = local
        .authorization_policies
        .iter()
        .map(|p| ((p.namespace.as_str(), p.name.as_str()), &p.location))
        .collect();
    for p in &xds.authorization_policies {
        if let Some(l) = local_authz.get(&(p.namespace.as_str(), p.name.as_str())) {
            conflict("AuthorizationPolicy", &p.namespace, &p.name, l, &p.location);
        }
    }
    if diags.is_error() {
        return Err(diags);
    }
    merged.egress_policies = local
        .egress_policies
        .iter()
        .chain(&xds.egress_policies)
        .cloned()
        .collect();
    merged.authorization_policies = local
        .authorization_policies
        .iter()
        .chain(&xds.authorization_policies)
        .cloned()
        .collect();
    merged.warnings = Diagnostics(
        local
            .warnings
            .iter()
            .chain(xds.warnings.iter())
            .cloned()
            .collect(),
    );
    Ok(merged)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use control::{
        Action, AuthorizationAction, AuthorizationPolicy, EgressPolicy, Settings, Workload,
    };

    fn local() -> Config {
        let text = "\
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: web
  namespace: shop
  annotations:
    meshward.io/cgroup: test/web
    meshward.io/netns: /var/run/netns/web
spec:
  address: 10.9.9.9
  serviceAccount: local-sa
  labels:
    app: web
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: batch
  namespace: shop
  annotations:
    meshward.io/cgroup: test/batch
spec:
  labels:
    app: batch
---
apiVersion: meshward.io/v1alpha1
kind: EgressPolicy
metadata:
  name: web-out
  namespace: shop
spec:
  selector:
    matchLabels:
      app: web
  action: DENY
  rules:
  - to:
    - hosts: [\"10.0.0.1\"]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: web-in
  namespace: shop
spec:
  action: DENY
  rules:
  - to:
    - operation:
        ports: [\"81\"]
";
        control::load_config_str("local.yaml", text).expect("valid local config")
    }

    fn xds_workload(ns: &str, name: &str, ip: &str, sa: &str, selected_by: &[&str]) -> Workload {
        Workload {
            namespace: ns.into(),
            name: name.into(),
            labels: selected_by
                .iter()
                .map(|p| {
                    let (ns, name) = p.split_once('/').expect("ns/name");
                    (xds::selector_label(ns, name), String::new())
                })
                .collect(),
            service_account: sa.into(),
            address: Some(ip.parse().expect("ip")),
            cgroup: None,
            netns: None,
            location: Location::new(format!("xds:Address/uid-{name}"), 0),
            cgroup_line: 0,
        }
    }

    fn xds_authz(ns: &str, name: &str) -> AuthorizationPolicy {
        AuthorizationPolicy {
            namespace: ns.into(),
            name: name.into(),
            match_labels: BTreeMap::new(),
            action: AuthorizationAction::Deny,
            provider: None,
            rules: Vec::new(),
            location: Location::new(format!("xds:Authorization/{ns}/{name}"), 0),
        }
    }

    fn xds_egress(ns: &str, name: &str) -> EgressPolicy {
        EgressPolicy {
            namespace: ns.into(),
            name: name.into(),
            match_labels: BTreeMap::new(),
            binaries: Vec::new(),
            action: Action::Deny,
            rules: Vec::new(),
            location: Location::new(format!("xds:EgressPolicy/{ns}/{name}"), 0),
        }
    }

    fn xds() -> Config {
        Config {
            workloads: vec![
                xds_workload("shop", "web", "10.1.0.5", "web", &["shop/only-web"]),
                xds_workload("shop", "remote", "10.1.0.6", "remote", &[]),
            ],
            egress_policies: vec![xds_egress("shop", "x-out")],
            authorization_policies: vec![xds_authz("shop", "only-web")],
            warnings: Diagnostics::new(),
        }
    }

    fn find<'a>(c: &'a Config, name: &str) -> &'a Workload {
        c.workloads
            .iter()
            .find(|w| w.name == name)
            .unwrap_or_else(|| panic!("workload {name}"))
    }

    #[test]
    fn one_workload_identity_from_xds_local_facts_from_files() {
        let merged = merge(&local(), &xds(), Proposer::Xds).expect("merges");
        assert_eq!(
            merged.workloads.len(),
            3,
            "web joined; remote and batch alone"
        );
        let web = find(&merged, "web");
        assert_eq!(web.address, Some("10.1.0.5".parse().unwrap()), "from xDS");
        assert_eq!(web.service_account, "web", "from xDS");
        assert_eq!(
            web.cgroup.as_deref(),
            Some(std::path::Path::new("test/web"))
        );
        assert_eq!(
            web.netns.as_deref(),
            Some(std::path::Path::new("/var/run/netns/web"))
        );
        let labels: Vec<&str> = web.labels.keys().map(String::as_str).collect();
        assert_eq!(
            labels,
            vec!["app", "xds.meshward.io/authorization:shop/only-web"]
        );
        assert_eq!(
            web.location.file, "local.yaml",
            "errors point at the local entry"
        );
        let remote = find(&merged, "remote");
        assert!(remote.cgroup.is_none());
        assert_eq!(remote.location.file, "xds:Address/uid-remote");
        let batch = find(&merged, "batch");
        assert_eq!(batch.address, None);
        assert_eq!(batch.service_account, "default");
    }

    #[test]
    fn policies_are_the_union() {
        let merged = merge(&local(), &xds(), Proposer::Xds).expect("merges");
        let names = |v: Vec<(&str, &str)>| -> Vec<String> {
            v.into_iter().map(|(ns, n)| format!("{ns}/{n}")).collect()
        };
        assert_eq!(
            names(
                merged
                    .egress_policies
                    .iter()
                    .map(|p| (p.namespace.as_str(), p.name.as_str()))
                    .collect()
            ),
            vec!["shop/web-out", "shop/x-out"]
        );
        assert_eq!(
            names(
                merged
                    .authorization_policies
                    .iter()
                    .map(|p| (p.namespace.as_str(), p.name.as_str()))
                    .collect()
            ),
            vec!["shop/web-in", "shop/only-web"]
        );
        // The merged config is one the compiler accepts.
        control::compile(
            &merged,
            &Settings::default(),
            &Default::default(),
            &Default::default(),
        )
        .expect("compiles");
    }

    #[test]
    fn nothing_from_xds_is_the_local_config() {
        let merged = merge(&local(), &Config::default(), Proposer::Files).expect("merges");
        assert_eq!(merged.workloads.len(), 2);
        assert_eq!(find(&merged, "web").service_account, "local-sa");
        assert_eq!(merged.egress_policies.len(), 1);
        assert_eq!(merged.authorization_policies.len(), 1);
        let merged = merge(&Config::default(), &xds(), Proposer::Xds).expect("merges");
        assert_eq!(merged.workloads.len(), 2);
        assert!(find(&merged, "web").cgroup.is_none());
    }

    #[test]
    fn a_policy_on_both_sides_is_refused_on_the_proposing_side() {
        let mut x = xds();
        x.authorization_policies.push(xds_authz("shop", "web-in"));
        x.egress_policies.push(xds_egress("shop", "web-out"));
        // Same name, other kind: no conflict.
        x.authorization_policies.push(xds_authz("shop", "x-out"));
        let diags = merge(&local(), &x, Proposer::Xds).unwrap_err();
        let text = diags.to_string();
        assert_eq!(diags.len(), 2, "{text}");
        assert!(
            text.contains("xds:EgressPolicy/shop/web-out: error: EgressPolicy shop/web-out is also defined by the local files at local.yaml:"),
            "{text}"
        );
        assert!(
            text.contains("xds:Authorization/shop/web-in: error: AuthorizationPolicy shop/web-in is also defined by the local files at local.yaml:"),
            "{text}"
        );
        // As a NACK, each names its resource.
        let rejections = xds::Rejections::from_diagnostics(&diags).to_string();
        assert!(
            rejections.contains("Authorization shop/web-in: AuthorizationPolicy shop/web-in is also defined by the local files at local.yaml:"),
            "{rejections}"
        );
        // A local reload that collides is refused at its own file:line.
        let text = merge(&local(), &x, Proposer::Files)
            .unwrap_err()
            .to_string();
        assert!(
            text.contains("local.yaml:")
                && text.contains(
                    "is also defined by the control plane (xds:Authorization/shop/web-in)"
                ),
            "{text}"
        );
    }

    #[test]
    fn warnings_of_both_sides_are_kept() {
        let mut x = xds();
        x.warnings
            .warning(Location::new("xds:Authorization/shop/only-web", 0), "w1");
        let mut l = local();
        l.warnings.warning(Location::new("local.yaml", 3), "w0");
        let merged = merge(&l, &x, Proposer::Xds).expect("merges");
        let text = merged.warnings.to_string();
        assert!(text.contains("w0") && text.contains("w1"), "{text}");
    }
}
