//! `networking.istio.io` WorkloadEntry.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Component, Path, PathBuf};

use super::metadata::{Metadata, check_dns_subdomain};
use crate::decode::{self, Ctx, Fields};
use crate::model::Workload;
use crate::yaml::Node;

/// Annotation naming the cgroup (relative to the cgroup2 mount) of the workload's processes.
pub const CGROUP_ANNOTATION: &str = "meshward.io/cgroup";
/// Annotation naming the network namespace of the workload (a path such as
/// `/var/run/netns/NAME` or `/proc/PID/ns/net`): inbound connections to its address are
/// decided there.
pub const NETNS_ANNOTATION: &str = "meshward.io/netns";

const KNOWN: &[&str] = &[
    "address",
    "labels",
    "serviceAccount",
    "ports",
    "network",
    "locality",
    "weight",
];

pub(crate) fn decode(ctx: &mut Ctx<'_>, meta: &Metadata, spec: Option<&Node>) -> Option<Workload> {
    let mut address = Some(None);
    let mut labels = Some(BTreeMap::new());
    let mut service_account = Some("default".to_string());
    if let Some(spec) = spec {
        let mut f = Fields::open(ctx, spec, "spec")?;
        if let Some(n) = f.take("address") {
            address = decode::string(ctx, n, "spec.address").and_then(|s| match s.parse::<IpAddr>() {
                Ok(ip) => Some(Some(ip)),
                Err(_) => {
                    ctx.error(
                        n.line,
                        format!("spec.address: `{s}` is not an IP address (host names are not supported)"),
                    );
                    None
                }
            });
        }
        if let Some(n) = f.take("labels") {
            labels = decode::string_map(ctx, n, "spec.labels")
                .map(|m| m.into_iter().map(|(k, v)| (k, v.value)).collect());
        }
        if let Some(n) = f.take("serviceAccount") {
            service_account =
                decode::string(ctx, n, "spec.serviceAccount").and_then(
                    |s| match check_dns_subdomain(&s) {
                        Ok(()) => Some(s),
                        Err(e) => {
                            ctx.error(n.line, format!("spec.serviceAccount: {e}"));
                            None
                        }
                    },
                );
        }
        // Known WorkloadEntry fields that do not affect the node dataplane.
        f.ignore(&["ports", "network", "locality", "weight"]);
        f.finish(ctx, KNOWN);
    }

    let (cgroup, cgroup_line) = match meta.annotations.get(CGROUP_ANNOTATION) {
        None => (Some(None), 0),
        Some(a) => match normalise_cgroup(&a.value) {
            Ok(p) => (Some(Some(p)), a.line),
            Err(e) => {
                ctx.error(a.line, format!("annotation {CGROUP_ANNOTATION}: {e}"));
                (None, a.line)
            }
        },
    };

    let netns = match meta.annotations.get(NETNS_ANNOTATION) {
        None => Some(None),
        Some(a) if a.value.starts_with('/') && !a.value.split('/').any(|c| c == "..") => {
            Some(Some(PathBuf::from(&a.value)))
        }
        Some(a) => {
            ctx.error(
                a.line,
                format!(
                    "annotation {NETNS_ANNOTATION}: `{}` must be an absolute path without `..`",
                    a.value
                ),
            );
            None
        }
    };

    Some(Workload {
        namespace: meta.namespace.clone(),
        name: meta.name.value.clone(),
        labels: labels?,
        service_account: service_account?,
        address: address?,
        cgroup: cgroup?,
        netns: netns?,
        location: ctx.loc(meta.name.line),
        cgroup_line,
    })
}

/// A cgroup path relative to the cgroup2 mount: leading `/` stripped, no `..`, not empty.
fn normalise_cgroup(text: &str) -> Result<PathBuf, String> {
    let trimmed = text.trim().trim_start_matches('/').trim_end_matches('/');
    if trimmed.is_empty() {
        return Err("the cgroup path is empty (the root cgroup cannot be a workload)".to_string());
    }
    let mut out = PathBuf::new();
    for c in Path::new(trimmed).components() {
        match c {
            Component::Normal(part) => out.push(part),
            Component::CurDir => {}
            _ => {
                return Err(format!(
                    "`{text}` must be a path under the cgroup2 mount without `..`"
                ));
            }
        }
    }
    if out.as_os_str().is_empty() {
        return Err("the cgroup path is empty (the root cgroup cannot be a workload)".to_string());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::normalise_cgroup;
    use std::path::PathBuf;

    #[test]
    fn cgroup_paths() {
        assert_eq!(
            normalise_cgroup("/meshward/web/").unwrap(),
            PathBuf::from("meshward/web")
        );
        assert_eq!(normalise_cgroup("a/./b").unwrap(), PathBuf::from("a/b"));
        assert!(normalise_cgroup("/").is_err());
        assert!(normalise_cgroup("a/../b").is_err());
    }
}
