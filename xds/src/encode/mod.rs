//! From `control`'s model (what the YAML files say) to the xDS resources that say the same:
//! the reverse of [`to_config`](crate::to_config), for a control plane (or a conformance
//! runner) that serves policies written as YAML.

mod authorization;
mod egress;
pub(crate) mod values;

use std::collections::BTreeMap;

use control::{Config, Diagnostics, Settings, Workload};

use crate::proto::authorization::Scope;
use crate::proto::workload::{self as wire, address};
use crate::resource::Resource;

/// Every workload, AuthorizationPolicy and EgressPolicy of `config` as the resources istiod
/// (and meshward's EgressPolicy contract) would send for them, in that order; each has a
/// [`Resource::natural_name`] (a workload's uid, a policy's `namespace/name`).
///
/// [`to_config`](crate::to_config) of these resources compiles to tables that decide every
/// connection as `config` does, once merged with the local WorkloadEntries (docs/xds.md,
/// "Merge rule"):
///
/// - Workloads carry identity only: uid `Kubernetes/networking.istio.io/WorkloadEntry/<ns>/<name>`
///   (istiod's form), namespace, name, address, service account and the node's trust domain.
///   Node-local facts are not part of xDS and are left out: the `meshward.io/cgroup` and
///   `meshward.io/netns` annotations and the labels. The agent takes them from its local
///   WorkloadEntries. Each workload lists, in `authorization_policies`, every
///   WORKLOAD_SELECTOR policy whose selector selects its labels (in its namespace, or from the
///   root namespace), which is how istiod tells ztunnel — and how `to_config` selects.
/// - AuthorizationPolicies get istiod's scope (GLOBAL: root namespace, no selector;
///   NAMESPACE: no selector; WORKLOAD_SELECTOR: a selector), ALLOW or DENY, AUDIT as ALLOW
///   with `dry_run`, and one wire rule per rule (see `encode/authorization.rs`). What meshward
///   does not evaluate is lowered as istiod lowers it for ztunnel, as control does with the
///   YAML: CUSTOM policies are not sent (nor named by workloads); ALLOW rules with HTTP-only
///   fields are dropped (kept as never-matching rules where later rules need their index);
///   DENY and AUDIT rules are sent without their HTTP-only fields.
/// - EgressPolicies are field for field, binaries included (they are policy, not node-local;
///   the agent resolves them to executable files itself).
///
/// What has no faithful wire form is an error at the policy's location naming it, never
/// dropped: an egress `*` port next to numbered ports (and condition values that are not
/// addresses or ports, which the YAML loader already refuses).
pub fn from_config(config: &Config, settings: &Settings) -> Result<Vec<Resource>, Diagnostics> {
    let mut diags = Diagnostics::new();
    let mut out = Vec::new();
    let selecting: Vec<&control::AuthorizationPolicy> = config
        .authorization_policies
        .iter()
        .filter(|p| {
            p.action != control::AuthorizationAction::Custom
                && authorization::scope(p, settings) == Scope::WorkloadSelector
        })
        .collect();
    for w in &config.workloads {
        let selected_by = selecting
            .iter()
            .filter(|p| selects(p, w, settings))
            .map(|p| format!("{}/{}", p.namespace, p.name))
            .collect();
        out.push(workload(w, selected_by, settings));
    }
    for p in &config.authorization_policies {
        match authorization::encode(p, settings) {
            Ok(Some(a)) => out.push(Resource::Authorization(a)),
            // CUSTOM: ignored, so nothing is sent (`authorization::encode`).
            Ok(None) => {}
            Err(errors) => report(
                &mut diags,
                "AuthorizationPolicy",
                (&p.namespace, &p.name),
                &p.location,
                errors,
            ),
        }
    }
    for p in &config.egress_policies {
        match egress::encode(p) {
            Ok(e) => out.push(Resource::EgressPolicy(e)),
            Err(errors) => report(
                &mut diags,
                "EgressPolicy",
                (&p.namespace, &p.name),
                &p.location,
                errors,
            ),
        }
    }
    if diags.is_error() {
        return Err(diags);
    }
    Ok(out)
}

/// The uid istiod gives a WorkloadEntry in the default cluster.
pub fn workload_uid(namespace: &str, name: &str) -> String {
    format!("Kubernetes/networking.istio.io/WorkloadEntry/{namespace}/{name}")
}

fn workload(w: &Workload, selected_by: Vec<String>, settings: &Settings) -> Resource {
    Resource::Address(wire::Address {
        r#type: Some(address::Type::Workload(wire::Workload {
            uid: workload_uid(&w.namespace, &w.name),
            name: w.name.clone(),
            namespace: w.namespace.clone(),
            addresses: w.address.map(values::ip).into_iter().collect(),
            trust_domain: settings.trust_domain.clone(),
            service_account: w.service_account.clone(),
            authorization_policies: selected_by,
            ..Default::default()
        })),
    })
}

/// Whether a policy with a selector applies to `w`, as control decides it.
fn selects(p: &control::AuthorizationPolicy, w: &Workload, settings: &Settings) -> bool {
    (p.namespace == w.namespace || p.namespace == settings.root_namespace)
        && labels_match(&p.match_labels, &w.labels)
}

fn labels_match(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// One error per reason, at the policy's location and naming it.
fn report(
    diags: &mut Diagnostics,
    kind: &str,
    (ns, name): (&str, &str),
    at: &control::Location,
    errors: Vec<String>,
) {
    for e in errors {
        diags.error(
            at.clone(),
            format!("{kind} {ns}/{name}: cannot be sent over xDS: {e}"),
        );
    }
}
