//! `apiVersion`, `kind` and `metadata` of a Kubernetes-style document.

use std::collections::BTreeMap;

use crate::decode::{self, Ctx, Fields, Spanned};
use crate::yaml::Node;

/// The kinds meshward understands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Kind {
    WorkloadEntry,
    EgressPolicy,
    AuthorizationPolicy,
}

impl Kind {
    pub fn name(&self) -> &'static str {
        match self {
            Kind::WorkloadEntry => "WorkloadEntry",
            Kind::EgressPolicy => "EgressPolicy",
            Kind::AuthorizationPolicy => "AuthorizationPolicy",
        }
    }
}

/// apiVersions accepted for each kind.
const KINDS: &[(Kind, &[&str])] = &[
    (
        Kind::WorkloadEntry,
        &[
            "networking.istio.io/v1",
            "networking.istio.io/v1beta1",
            "networking.istio.io/v1alpha3",
        ],
    ),
    (Kind::EgressPolicy, &["meshward.io/v1alpha1"]),
    (
        Kind::AuthorizationPolicy,
        &["security.istio.io/v1", "security.istio.io/v1beta1"],
    ),
];

/// Finds the kind for `kind` + `apiVersion`, or explains what is accepted.
pub(crate) fn resolve_kind(api_version: &str, kind: &str) -> Result<Kind, String> {
    match KINDS.iter().find(|(k, _)| k.name() == kind) {
        Some((k, versions)) if versions.contains(&api_version) => Ok(*k),
        Some((_, versions)) => Err(format!(
            "apiVersion `{api_version}` is not supported for kind {kind} (expected one of: {})",
            versions.join(", ")
        )),
        None => Err(format!(
            "unknown kind `{kind}` (expected one of: WorkloadEntry, EgressPolicy, AuthorizationPolicy)"
        )),
    }
}

/// The part of `metadata` meshward uses.
pub(crate) struct Metadata {
    pub name: Spanned<String>,
    pub namespace: String,
    pub annotations: BTreeMap<String, Spanned<String>>,
}

/// Fields set by Kubernetes itself; accepted so that `kubectl get -o yaml` output loads.
const IGNORED_METADATA: &[&str] = &[
    "labels",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "managedFields",
];

pub(crate) fn decode_metadata(ctx: &mut Ctx<'_>, node: &Node) -> Option<Metadata> {
    let mut f = Fields::open(ctx, node, "metadata")?;
    let name_node = f.require(ctx, "name");
    let name = name_node.and_then(|n| {
        let s = decode::string(ctx, n, "metadata.name")?;
        if let Err(e) = check_dns_subdomain(&s) {
            ctx.error(n.line, format!("metadata.name: {e}"));
            return None;
        }
        Some(Spanned {
            value: s,
            line: n.line,
        })
    });
    let namespace = match f.take("namespace") {
        None => Some("default".to_string()),
        Some(n) => decode::string(ctx, n, "metadata.namespace").and_then(|s| {
            if let Err(e) = check_dns_label(&s) {
                ctx.error(n.line, format!("metadata.namespace: {e}"));
                return None;
            }
            Some(s)
        }),
    };
    let annotations = match f.take("annotations") {
        None => Some(BTreeMap::new()),
        Some(n) => decode::string_map(ctx, n, "metadata.annotations"),
    };
    if let Some(labels) = f.take("labels") {
        decode::string_map(ctx, labels, "metadata.labels");
    }
    f.ignore(IGNORED_METADATA);
    f.finish(
        ctx,
        &[
            "name",
            "namespace",
            "annotations",
            "labels",
            "uid",
            "resourceVersion",
            "generation",
            "creationTimestamp",
            "managedFields",
        ],
    );
    Some(Metadata {
        name: name?,
        namespace: namespace?,
        annotations: annotations?,
    })
}

/// A Kubernetes object name (DNS-1123 subdomain).
pub fn check_dns_subdomain(s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > 253 {
        return Err(format!("`{s}` must have 1-253 characters"));
    }
    let ok = s
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.ends_with(|c: char| c.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{s}` is not a valid name (lowercase letters, digits, `-` and `.`, starting and ending with a letter or digit)"
        ))
    }
}

/// A Kubernetes namespace name (DNS-1123 label).
pub fn check_dns_label(s: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{s}` is not a valid namespace (1-63 lowercase letters, digits and `-`)"
        ))
    }
}
