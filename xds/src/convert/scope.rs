//! Which workloads an Authorization reaches, expressed with control's selectors.
//!
//! control selects by namespace (the policy's, or every namespace from the root namespace) and
//! labels. GLOBAL and NAMESPACE scopes are exactly that with no labels. WORKLOAD_SELECTOR
//! policies are named by the workloads they select (`Workload.authorization_policies`), so
//! each such policy gets a label of its own, [`selector_label`], and the workloads that name it
//! carry that label. A NAMESPACE policy of the root namespace is treated the same way, since
//! control would otherwise apply it to every namespace.

use control::{Config, Settings};

use super::authorization::ConvertedPolicy;
use super::workload::ConvertedWorkload;
use crate::proto::authorization::Scope;

/// The label by which the policy `namespace/name` selects its workloads. `:` cannot appear in
/// a Kubernetes label key, so this never collides with a real label.
pub fn selector_label(namespace: &str, name: &str) -> String {
    label_for(&format!("{namespace}/{name}"))
}

fn label_for(policy: &str) -> String {
    format!("xds.meshward.io/authorization:{policy}")
}

const SELECTED: &str = "selected";

/// What `apply` needs, gathered while converting.
#[derive(Default)]
pub(crate) struct Scopes {
    /// (index in `config.workloads`, policies naming it)
    workloads: Vec<(usize, Vec<String>)>,
    /// (index in `config.authorization_policies`, scope)
    policies: Vec<(usize, Scope)>,
}

impl Scopes {
    pub fn add_workload(&mut self, index: usize, w: &ConvertedWorkload) {
        self.workloads.push((index, w.selected_by.clone()));
    }

    pub fn add_policy(&mut self, index: usize, p: &ConvertedPolicy) {
        self.policies.push((index, p.scope));
    }

    pub fn apply(self, config: &mut Config, settings: &Settings) {
        let mut root_namespace_policies = Vec::new();
        for (i, scope) in self.policies {
            let policy = &mut config.authorization_policies[i];
            let by_label = match scope {
                Scope::Global => false,
                Scope::Namespace => policy.namespace == settings.root_namespace,
                Scope::WorkloadSelector => true,
            };
            if by_label {
                let label = selector_label(&policy.namespace, &policy.name);
                policy.match_labels.insert(label.clone(), SELECTED.into());
                if scope == Scope::Namespace {
                    root_namespace_policies.push(label);
                }
            }
        }
        for (i, selected_by) in self.workloads {
            let w = &mut config.workloads[i];
            for policy in selected_by {
                w.labels.insert(label_for(&policy), SELECTED.into());
            }
            if w.namespace == settings.root_namespace {
                for label in &root_namespace_policies {
                    w.labels.insert(label.clone(), SELECTED.into());
                }
            }
        }
    }
}
