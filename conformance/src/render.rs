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
/// `{{dns}}` / `{{dns6}}` → the case's DNS server's IPv4 / IPv6 address.
pub fn substitute(case: &Case, text: &str, paths: &Paths) -> String {
    let mut out = text
        .replace("{{dns}}", crate::topology::DNS_ADDRESS)
        .replace("{{dns6}}", crate::topology::DNS_ADDRESS6);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::load_file;

    #[test]
    fn placeholders_are_filled_without_moving_lines() {
        let text = "name: t\nworkloads:\n  - {name: a}\n  - {name: b, placement: remote, address: \"fd00::2\"}\n  - {name: c, placement: external}\npolicies: |\n  # {{ip:b}} {{bin:curl}} {{dns}}\n  apiVersion: meshward.io/v1alpha1\n  kind: EgressPolicy\n  metadata: {name: e}\n  spec: {action: DENY, rules: [{to: [{hosts: [\"{{ip:c}}/32\"]}]}]}\n";
        let case = &load_file("c.yaml", text).unwrap()[0];
        let paths = Paths::placeholder();
        let out = config_text(case, &case.policies, &paths);
        assert!(
            out.contains("# fd00::2 /run/meshward-conformance/bin/curl 10.88.255.53\n"),
            "{out}"
        );
        assert!(out.contains("hosts: [\"10.88.0.3/32\"]"), "{out}");
        assert_eq!(
            out.lines().count(),
            policies_offset(case) + case.policies.text.lines().count()
        );
        // The external workload has no entry; the remote one has no cgroup.
        assert_eq!(out.matches("kind: WorkloadEntry").count(), 2);
        assert_eq!(out.matches("meshward.io/cgroup").count(), 1);
        assert_eq!(
            local_entries_text(case, &paths)
                .matches("kind: WorkloadEntry")
                .count(),
            1
        );
        assert_eq!(
            referenced_binaries(&case.policies.text),
            vec!["curl".to_string()]
        );
    }
}
