//! The validated policy model: what a configuration says, independent of how it was written.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;

use serde::Serialize;

use crate::decode::Spanned;
use crate::diagnostics::{Diagnostics, Location};
use crate::net::{HostMatch, PortMatch, Prefix};

/// Everything a configuration declares. Built by [`crate::load_config`].
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Config {
    pub workloads: Vec<Workload>,
    pub egress_policies: Vec<EgressPolicy>,
    pub authorization_policies: Vec<AuthorizationPolicy>,
    /// Problems that do not reject the configuration.
    pub warnings: Diagnostics,
}

/// A WorkloadEntry: one workload, optionally with the cgroup that holds its local processes.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Workload {
    pub namespace: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub service_account: String,
    pub address: Option<IpAddr>,
    /// Path relative to the cgroup2 mount (annotation `meshward.io/cgroup`), no leading `/`.
    pub cgroup: Option<PathBuf>,
    /// Network namespace path (annotation `meshward.io/netns`) for inbound enforcement.
    pub netns: Option<PathBuf>,
    pub location: Location,
    /// Where the cgroup annotation was written (for duplicate-cgroup errors).
    pub cgroup_line: usize,
}

/// What a matching rule does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Action {
    Allow,
    Deny,
    /// Reported, never changes the verdict.
    Audit,
}

impl Action {
    pub fn as_str(&self) -> &'static str {
        match self {
            Action::Allow => "ALLOW",
            Action::Deny => "DENY",
            Action::Audit => "AUDIT",
        }
    }
}

/// `meshward.io/v1alpha1` EgressPolicy.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EgressPolicy {
    pub namespace: String,
    pub name: String,
    /// `spec.selector.matchLabels`; empty selects every workload in scope.
    pub match_labels: BTreeMap<String, String>,
    /// `spec.binaries`; empty means every process of the workload.
    pub binaries: Vec<Spanned<BinaryMatch>>,
    pub action: Action,
    pub rules: Vec<EgressRule>,
    pub location: Location,
}

/// An executable path, or a prefix of paths (`/usr/bin/*`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BinaryMatch {
    Exact(String),
    Prefix(String),
}

impl BinaryMatch {
    /// Reads a `binaries` entry: an absolute path, or a path prefix ending in `*`.
    pub fn parse(text: &str) -> Result<BinaryMatch, String> {
        let (body, is_prefix) = match text.strip_suffix('*') {
            Some(body) => (body, true),
            None => (text, false),
        };
        if !body.starts_with('/') || body.contains('*') {
            return Err(format!(
                "`{text}` must be an absolute path, optionally ending in `*` to match a prefix"
            ));
        }
        Ok(if is_prefix {
            BinaryMatch::Prefix(body.to_string())
        } else {
            BinaryMatch::Exact(body.to_string())
        })
    }
}

/// One rule: matches if any of `to` matches; no `to` at all matches every connection.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EgressRule {
    pub to: Vec<EgressTarget>,
    pub line: usize,
}

/// One `to` entry: a host AND a port must match. Empty lists mean "any".
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EgressTarget {
    /// Empty = any host.
    pub hosts: Vec<Host>,
    /// Empty = any port.
    pub ports: Vec<Spanned<PortMatch>>,
    pub line: usize,
}

/// A `hosts` entry as written and as understood.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct Host {
    pub text: String,
    pub matches: HostMatch,
    pub line: usize,
}

/// AuthorizationPolicy action.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AuthorizationAction {
    Allow,
    Deny,
    Audit,
    Custom,
}

/// `security.istio.io` AuthorizationPolicy (inbound; the L4 part is enforced, see
/// `compile/inbound.rs`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AuthorizationPolicy {
    pub namespace: String,
    pub name: String,
    pub match_labels: BTreeMap<String, String>,
    pub action: AuthorizationAction,
    /// `spec.provider.name`, required with CUSTOM.
    pub provider: Option<String>,
    /// No rules: matches nothing (with ALLOW, Istio's allow-nothing).
    pub rules: Vec<AuthorizationRule>,
    pub location: Location,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct AuthorizationRule {
    pub from: Vec<Source>,
    pub to: Vec<Operation>,
    pub when: Vec<Condition>,
    pub line: usize,
}

/// `rules[].from[].source`. Empty lists are "not set".
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Source {
    pub principals: Vec<Spanned<String>>,
    pub not_principals: Vec<Spanned<String>>,
    pub request_principals: Vec<Spanned<String>>,
    pub not_request_principals: Vec<Spanned<String>>,
    pub namespaces: Vec<Spanned<String>>,
    pub not_namespaces: Vec<Spanned<String>>,
    pub ip_blocks: Vec<Spanned<Prefix>>,
    pub not_ip_blocks: Vec<Spanned<Prefix>>,
    pub remote_ip_blocks: Vec<Spanned<Prefix>>,
    pub not_remote_ip_blocks: Vec<Spanned<Prefix>>,
    pub line: usize,
}

/// `rules[].to[].operation`. Empty lists are "not set".
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Operation {
    pub hosts: Vec<Spanned<String>>,
    pub not_hosts: Vec<Spanned<String>>,
    pub ports: Vec<Spanned<u16>>,
    pub not_ports: Vec<Spanned<u16>>,
    pub methods: Vec<Spanned<String>>,
    pub not_methods: Vec<Spanned<String>>,
    pub paths: Vec<Spanned<String>>,
    pub not_paths: Vec<Spanned<String>>,
    pub line: usize,
}

/// `rules[].when[]`.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Condition {
    pub key: String,
    pub values: Vec<Spanned<String>>,
    pub not_values: Vec<Spanned<String>>,
    pub line: usize,
}

/// True if every `selector` label is present in `labels` with the same value.
pub(crate) fn labels_match(
    selector: &BTreeMap<String, String>,
    labels: &BTreeMap<String, String>,
) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}
