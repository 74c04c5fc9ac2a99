//! Reading configuration files into the validated [`Config`] model.

mod authorization_policy;
mod egress_policy;
mod metadata;
mod selector;
mod workload_entry;

pub use metadata::{check_dns_label, check_dns_subdomain};
pub use workload_entry::CGROUP_ANNOTATION;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::decode::{self, Ctx, Fields};
use crate::diagnostics::{Diagnostics, Location};
use crate::model::Config;
use crate::yaml::{self, Node};
use metadata::Kind;

/// Loads a YAML file, or every `*.yaml` / `*.yml` file of a directory (sorted by name, not
/// recursive). Each file may hold several documents. All problems are reported together; any
/// error rejects the whole configuration.
pub fn load_config(path: &Path) -> Result<Config, Diagnostics> {
    let files = list_files(path)?;
    let mut loader = Loader::default();
    if files.is_empty() {
        loader.diags.warning(
            Location::new(path.display().to_string(), 0),
            "no *.yaml or *.yml files in this directory; the configuration is empty",
        );
    }
    for file in files {
        let name = file.display().to_string();
        match std::fs::read_to_string(&file) {
            Ok(text) => loader.add_source(&name, &text),
            Err(e) => loader
                .diags
                .error(Location::new(name, 0), format!("cannot read file: {e}")),
        }
    }
    loader.finish()
}

/// Loads configuration from text; `source_name` stands for the file name in diagnostics.
pub fn load_config_str(source_name: &str, text: &str) -> Result<Config, Diagnostics> {
    let mut loader = Loader::default();
    loader.add_source(source_name, text);
    loader.finish()
}

fn list_files(path: &Path) -> Result<Vec<PathBuf>, Diagnostics> {
    let fail = |msg: String| {
        let mut d = Diagnostics::new();
        d.error(Location::new(path.display().to_string(), 0), msg);
        d
    };
    let meta = std::fs::metadata(path).map_err(|e| fail(format!("cannot read: {e}")))?;
    if !meta.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let entries =
        std::fs::read_dir(path).map_err(|e| fail(format!("cannot list directory: {e}")))?;
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| fail(format!("cannot list directory: {e}")))?;
        let p = entry.path();
        let is_yaml = p
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| e == "yaml" || e == "yml");
        if is_yaml && p.is_file() {
            files.push(p);
        }
    }
    files.sort();
    Ok(files)
}

/// Accumulates documents from several sources and checks what spans documents (duplicates,
/// shared cgroups).
#[derive(Default)]
struct Loader {
    config: Config,
    diags: Diagnostics,
    /// (kind, namespace, name) → where it was first defined.
    names: HashMap<(Kind, String, String), Location>,
    /// cgroup path → (workload ns/name, where it was first claimed).
    cgroups: HashMap<PathBuf, (String, Location)>,
}

impl Loader {
    fn add_source(&mut self, file: &str, text: &str) {
        let documents = match yaml::parse_documents(text) {
            Ok(docs) => docs,
            Err(e) => {
                self.diags.error(
                    Location::new(file, e.line),
                    format!("YAML syntax error: {}", e.message),
                );
                return;
            }
        };
        for doc in &documents {
            self.add_document(file, doc);
        }
    }

    fn add_document(&mut self, file: &str, doc: &Node) {
        let mut ctx = Ctx {
            file,
            diags: &mut self.diags,
        };
        let Some(mut top) = Fields::open(&mut ctx, doc, "") else {
            return;
        };
        let api_version = top
            .require(&mut ctx, "apiVersion")
            .and_then(|n| decode::string(&mut ctx, n, "apiVersion"));
        let kind_node = top.require(&mut ctx, "kind");
        let kind_text = kind_node.and_then(|n| decode::string(&mut ctx, n, "kind"));
        let metadata = top
            .require(&mut ctx, "metadata")
            .and_then(|n| metadata::decode_metadata(&mut ctx, n));
        let spec = top.take("spec");
        // `status` is written by controllers; it says nothing about intent.
        top.ignore(&["status"]);
        top.finish(
            &mut ctx,
            &["apiVersion", "kind", "metadata", "spec", "status"],
        );

        let (Some(api_version), Some(kind_text), Some(kind_node)) =
            (api_version, kind_text, kind_node)
        else {
            return;
        };
        let kind = match metadata::resolve_kind(&api_version, &kind_text) {
            Ok(k) => k,
            Err(e) => {
                ctx.error(kind_node.line, e);
                return;
            }
        };
        let Some(meta) = metadata else {
            // Still check the spec, so that one run reports every problem.
            let placeholder = metadata::Metadata {
                name: decode::Spanned {
                    value: String::new(),
                    line: doc.line,
                },
                namespace: "default".to_string(),
                annotations: Default::default(),
            };
            match kind {
                Kind::WorkloadEntry => drop(workload_entry::decode(&mut ctx, &placeholder, spec)),
                Kind::EgressPolicy => drop(egress_policy::decode(&mut ctx, &placeholder, spec)),
                Kind::AuthorizationPolicy => {
                    drop(authorization_policy::decode(&mut ctx, &placeholder, spec))
                }
            }
            return;
        };

        let key = (kind, meta.namespace.clone(), meta.name.value.clone());
        let here = ctx.loc(meta.name.line);
        if let Some(first) = self.names.get(&key) {
            ctx.error(
                meta.name.line,
                format!(
                    "duplicate {} {}/{} (first defined at {first})",
                    kind.name(),
                    meta.namespace,
                    meta.name.value
                ),
            );
            return;
        }
        self.names.insert(key, here);

        match kind {
            Kind::WorkloadEntry => {
                let Some(w) = workload_entry::decode(&mut ctx, &meta, spec) else {
                    return;
                };
                if let Some(cgroup) = &w.cgroup {
                    let who = format!("{}/{}", w.namespace, w.name);
                    if let Some((other, first)) = self.cgroups.get(cgroup) {
                        ctx.error(
                            w.cgroup_line,
                            format!(
                                "cgroup `{}` is already claimed by WorkloadEntry {other} (at {first})",
                                cgroup.display()
                            ),
                        );
                        return;
                    }
                    self.cgroups
                        .insert(cgroup.clone(), (who, ctx.loc(w.cgroup_line)));
                }
                self.config.workloads.push(w);
            }
            Kind::EgressPolicy => {
                if let Some(p) = egress_policy::decode(&mut ctx, &meta, spec) {
                    self.config.egress_policies.push(p);
                }
            }
            Kind::AuthorizationPolicy => {
                if let Some(p) = authorization_policy::decode(&mut ctx, &meta, spec) {
                    self.config.authorization_policies.push(p);
                }
            }
        }
    }

    fn finish(mut self) -> Result<Config, Diagnostics> {
        self.diags.sort();
        if self.diags.is_error() {
            tracing::debug!(problems = self.diags.len(), "configuration rejected");
            return Err(self.diags);
        }
        self.config.warnings = self.diags;
        tracing::debug!(
            workloads = self.config.workloads.len(),
            egress_policies = self.config.egress_policies.len(),
            authorization_policies = self.config.authorization_policies.len(),
            "configuration loaded"
        );
        Ok(self.config)
    }
}
