//! The config a case gives the agent: a WorkloadEntry per mesh workload (local ones with the
//! cgroup and network namespace the runner made), then the case's policy documents.

use std::path::PathBuf;

use crate::case::{Case, Placement, Policies, WorkloadSpec};

/// Where the runner put a case's workloads on this node.
pub struct Paths {
    /// Cgroup of each local workload, relative to the cgroup2 mount (`meshward.io/cgroup`).
    pub cgroups: Vec<(String, String)>,
    /// The case's network namespace (`meshward.io/netns`).
    pub netns: PathBuf,
    /// Directory of the named client binaries (`{{bin:NAME}}`).
    pub bin_dir: PathBuf,
}

impl Paths {
    /// Stand-ins for checking a case before anything is set up.
    pub fn placeholder() -> Self {
        Self {
            cgroups: Vec::new(),
            netns: PathBuf::from("/var/run/netns/meshward-conformance"),
            bin_dir: PathBuf::from("/run/meshward-conformance/bin"),
        }
    }

    fn cgroup(&self, workload: &str) -> String {
        self.cgroups
            .iter()
            .find(|(w, _)| w == workload)
            .map(|(_, c)| c.clone())
            .unwrap_or_else(|| format!("meshward-conformance/{workload}"))
    }
}

/// WorkloadEntries and policies in one multi-document YAML text.
pub fn config_text(case: &Case, policies: &Policies, paths: &Paths) -> String {
    let mut text = entries(case, paths, |_| true);
    text.push_str(&substitute(case, &policies.text, paths));
    text
}

/// The local workloads' WorkloadEntries only: what the node's files hold when the rest comes
/// over xDS.
pub fn local_entries_text(case: &Case, paths: &Paths) -> String {
    entries(case, paths, |w| w.placement == Placement::Local)
}

/// Lines before the policies in [`config_text`].
pub fn policies_offset(case: &Case) -> usize {
    entries(case, &Paths::placeholder(), |_| true)
        .lines()
        .count()
}

fn entries(case: &Case, paths: &Paths, keep: impl Fn(&WorkloadSpec) -> bool) -> String {
    let mut text = String::new();
    for w in case.workloads.iter().filter(|w| keep(w)) {
        if w.placement == Placement::External {
            continue;
        }
        let annotations = if w.placement == Placement::Local {
            format!(
                "  annotations:\n    meshward.io/cgroup: {}\n    meshward.io/netns: {}\n",
                paths.cgroup(&w.name),
                paths.netns.display()
            )
        } else {
            String::new()
        };
        let labels: String = w
            .labels
            .iter()
            .map(|(k, v)| format!("    {k}: {}\n", quote(v)))
            .collect();
        text.push_str(&format!(
            "apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata:\n  name: {}\n  namespace: {}\n{annotations}spec:\n  address: \"{}\"\n  serviceAccount: {}\n  labels:\n{labels}---\n",
            w.name, w.namespace, w.address, w.service_account
        ));
    }
    text
}

fn quote(v: &str) -> String {
    serde_json::Value::from(v).to_string()
}

/// `{{ip:NAME}}` → the workload's address, `{{bin:NAME}}` → the path of binary NAME,
/// `{{dns}}` → the case's DNS server.
pub fn substitute(case: &Case, text: &str, paths: &Paths) -> String {
    let mut out = text.replace("{{dns}}", crate::topology::DNS_ADDRESS);
    for w in &case.workloads {
        out = out.replace(&format!("{{{{ip:{}}}}}", w.name), &w.address.to_string());
    }
    while let Some(start) = out.find("{{bin:") {
        let Some(len) = out[start..].find("}}") else {
            break;
        };
        let name = out[start + 6..start + len].to_string();
        let path = paths.bin_dir.join(&name);
        out.replace_range(start..start + len + 2, &path.display().to_string());
    }
    out
}

/// Binary names a case's policies refer to with `{{bin:NAME}}`.
pub fn referenced_binaries(text: &str) -> Vec<String> {
    text.match_indices("{{bin:")
        .filter_map(|(i, _)| {
            let rest = &text[i + 6..];
            rest.find("}}").map(|end| rest[..end].to_string())
        })
        .collect()
}
