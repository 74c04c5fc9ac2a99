//! The reconciler: the one writer of the kernel tables. It turns a config into a compiled
//! generation and applies it whole, or rejects it whole and keeps the previous one in force.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::PathBuf,
    sync::Arc,
};

use anyhow::Result;
use dataplane::kernel::{
    attach::Attachments,
    cgroup,
    loader::Kernel,
    tables::{Generation, Tables},
};
use dataplane_common::{FIRST_RULE_ID, WorkloadValue, rule_ids};

use super::{
    binaries,
    dns::Resolver,
    source::ConfigSource,
    state::{ReloadStatus, Shared, Snapshot, WorkloadStatus, now_rfc3339},
};

/// How often `spec.binaries` patterns are resolved again (a package upgrade replaces files).
const BINARY_RECHECK: std::time::Duration = std::time::Duration::from_secs(5);

pub struct Options {
    pub cgroup_root: PathBuf,
    pub settings: control::Settings,
    pub events_per_sec: u32,
}

pub struct Reconciler {
    kernel: Kernel,
    tables: Tables,
    attachments: Attachments,
    shared: Arc<Shared>,
    source: ConfigSource,
    resolver: Resolver,
    opts: Options,
    /// Last config that was applied (kept to recompile when DNS answers or cgroups change).
    config: Option<control::Config>,
    compiled: Option<Arc<control::CompiledPolicy>>,
    rule_ids: control::RuleIds,
    /// Executable files of the `spec.binaries` patterns, as last resolved.
    binaries: control::BinaryResolutions,
    binaries_checked: tokio::time::Instant,
    workloads: Vec<WorkloadStatus>,
    last_reload: Option<ReloadStatus>,
    last_good: Option<ReloadStatus>,
    swept_stale_links: bool,
}

impl Reconciler {
    pub fn new(
        kernel: Kernel,
        tables: Tables,
        shared: Arc<Shared>,
        source: ConfigSource,
        resolver: Resolver,
        opts: Options,
    ) -> Self {
        // Rule ids recorded by a previous agent keep their counters.
        let recorded = shared.counters().recorded_names();
        let rule_ids: control::RuleIds = recorded
            .into_iter()
            .filter(|(id, _)| *id >= FIRST_RULE_ID)
            .collect();
        Self {
            kernel,
            tables,
            attachments: Attachments::default(),
            shared,
            source,
            resolver,
            opts,
            config: None,
            compiled: None,
            rule_ids,
            binaries: control::BinaryResolutions::new(),
            binaries_checked: tokio::time::Instant::now(),
            workloads: Vec::new(),
            last_reload: None,
            last_good: None,
            swept_stale_links: false,
        }
    }

    /// Reads the config and applies it, or records why not (the previous policy stays).
    pub async fn reload(&mut self, trigger: &str) {
        let config = match self.source.load() {
            Ok(c) => c,
            Err(diags) => return self.rejected(trigger, &diags),
        };
        self.apply_config(config, trigger).await;
    }

    /// Periodic work: file changes, DNS refreshes that are due, cgroups that appeared or vanished.
    pub async fn on_tick(&mut self) {
        if self.source.changed() {
            return self.reload("file change").await;
        }
        let Some(config) = self.config.clone() else {
            return;
        };
        let dns_due = self
            .resolver
            .next_refresh()
            .is_some_and(|t| t <= tokio::time::Instant::now());
        if dns_due {
            let names = self
                .compiled
                .as_ref()
                .map(|c| c.dns_names.clone())
                .unwrap_or_default();
            if self.resolver.refresh(&names).await {
                return self.apply_config(config, "DNS answer changed").await;
            }
        }
        if self.binaries_checked.elapsed() >= BINARY_RECHECK {
            self.binaries_checked = tokio::time::Instant::now();
            let patterns = self
                .compiled
                .as_ref()
                .map(|c| c.binary_patterns.clone())
                .unwrap_or_default();
            if binaries::resolve(&patterns) != self.binaries {
                return self.apply_config(config, "executable files changed").await;
            }
        }
        if self.cgroups_changed() {
            self.apply_config(config, "cgroup appeared or vanished")
                .await;
        }
    }

    async fn apply_config(&mut self, config: control::Config, trigger: &str) {
        let mut compiled = match self.compile(&config) {
            Ok(c) => c,
            Err(diags) => return self.rejected(trigger, &diags),
        };
        let files = binaries::resolve(&compiled.binary_patterns);
        let files_changed = files != self.binaries;
        self.binaries = files;
        self.binaries_checked = tokio::time::Instant::now();
        if self.resolver.refresh(&compiled.dns_names).await || files_changed {
            compiled = match self.compile(&config) {
                Ok(c) => c,
                Err(diags) => return self.rejected(trigger, &diags),
            };
        }
        match self.apply(&compiled).await {
            Ok(generation) => {
                let warnings: Vec<String> = config
                    .warnings
                    .iter()
                    .chain(compiled.warnings.iter())
                    .map(|d| d.to_string())
                    .collect();
                for w in &warnings {
                    tracing::warn!("{w}");
                }
                tracing::info!(
                    trigger, generation, source = %self.source.describe(),
                    workloads = compiled.workloads.len(), rules = compiled.rules.len(),
                    entries = compiled.egress.len(), "policy applied"
                );
                self.rule_ids = compiled.rule_ids.clone();
                self.compiled = Some(Arc::new(compiled));
                self.config = Some(config);
                let status = self.status(trigger, true, Vec::new(), warnings);
                self.last_good = None;
                self.last_reload = Some(status);
                self.shared.count_reload(true);
                self.publish();
            }
            Err(e) => {
                let msg = format!("applying the policy to the kernel failed: {e:#}");
                self.rejected_with(trigger, vec![msg]);
            }
        }
    }

    fn compile(
        &self,
        config: &control::Config,
    ) -> Result<control::CompiledPolicy, control::Diagnostics> {
        control::compile_with_binaries(
            config,
            &self.opts.settings,
            &self.resolver.resolutions(),
            &self.binaries,
            &self.rule_ids,
        )
    }

    /// Attaches to new cgroups and network namespaces, switches the kernel to the new
    /// generation, then lets go of what the new generation no longer needs.
    async fn apply(&mut self, compiled: &control::CompiledPolicy) -> Result<u64> {
        let mut generation = Generation {
            egress: compiled.egress.clone(),
            inbound: compiled.inbound.clone(),
            sni_rules: compiled
                .sni_rules
                .iter()
                .map(|r| ((r.subject_id, r.port, r.name_key), r.rules))
                .collect(),
            sni_required: compiled
                .sni_required
                .iter()
                .map(|r| ((r.subject_id, r.port, r.addr), r.rule_id))
                .collect(),
            ..Generation::default()
        };
        let mut workloads = Vec::new();
        let mut governed = BTreeSet::new();
        for w in &compiled.workloads {
            let value = WorkloadValue {
                workload_id: w.workload_id,
                flags: w.flags,
            };
            let mut status = WorkloadStatus {
                namespace: w.namespace.clone(),
                name: w.name.clone(),
                principal: w.principal.clone(),
                cgroup: w.cgroup.as_ref().map(|c| c.display().to_string()),
                cgroup_id: None,
                governed: false,
                netns: w.netns.as_ref().map(|n| n.display().to_string()),
                netns_attached: false,
                inbound_governed: false,
                note: None,
            };
            match &w.cgroup {
                None => {
                    status.note =
                        Some("no meshward.io/cgroup annotation: no local processes".into())
                }
                Some(rel) => {
                    let path = self.opts.cgroup_root.join(rel);
                    match cgroup::cgroup_id(&path) {
                        Ok(id) => {
                            governed.insert(self.attachments.ensure_cgroup(
                                &mut self.kernel,
                                id,
                                &path,
                            )?);
                            generation.workloads.push((id, value));
                            status.cgroup_id = Some(id);
                            status.governed = true;
                        }
                        Err(e) => {
                            status.note = Some(format!("{e:#}; governed as soon as it exists"))
                        }
                    }
                }
            }
            if let Some(netns) = &w.netns {
                match self.attachments.ensure_netns(&mut self.kernel, netns) {
                    Ok(target) => {
                        governed.insert(target);
                        status.netns_attached = true;
                        status.inbound_governed = w.address.is_some();
                    }
                    Err(e) => {
                        status.note = Some(format!("{e:#}; inbound governed as soon as it exists"))
                    }
                }
            }
            workloads.push(status);
        }
        let flags_of: BTreeMap<u32, u32> = compiled
            .workloads
            .iter()
            .map(|w| (w.workload_id, w.flags))
            .collect();
        generation.binaries = compiled.binaries.clone();
        generation.subjects = compiled
            .subjects
            .iter()
            .map(|s| {
                let value = WorkloadValue {
                    workload_id: s.subject_id,
                    flags: s.flags,
                };
                ((s.workload_id, s.binary_id), value)
            })
            .collect();
        generation.identities = compiled
            .identities
            .iter()
            .map(|(addr, id)| {
                let flags = flags_of.get(id).copied().unwrap_or_default();
                (
                    *addr,
                    WorkloadValue {
                        workload_id: *id,
                        flags,
                    },
                )
            })
            .collect();
        let mut live: BTreeMap<u32, String> = compiled
            .rules
            .iter()
            .map(|r| (r.id, r.name.clone()))
            .collect();
        for id in [
            rule_ids::DEFAULT_ALLOW,
            rule_ids::DEFAULT_DENY,
            rule_ids::INBOUND_DEFAULT_ALLOW,
            rule_ids::INBOUND_DEFAULT_DENY,
            rule_ids::SNI_DEFAULT_DENY,
        ] {
            live.insert(id, compiled.rule_name(id));
        }
        self.shared.counters().record_names(&live)?;
        let number = self
            .tables
            .apply(&generation, self.opts.events_per_sec)
            .await?;
        self.attachments.retain(&governed);
        if !self.swept_stale_links {
            self.attachments.remove_stale_pins(&self.kernel);
            self.swept_stale_links = true;
        }
        self.shared.counters().forget_others(&live)?;
        self.workloads = workloads;
        Ok(number)
    }

    /// True when a workload's cgroup or netns exists now but did not at the last apply, or vice
    /// versa.
    fn cgroups_changed(&self) -> bool {
        self.workloads.iter().any(|w| {
            let cgroup_moved = w.cgroup.as_ref().is_some_and(|rel| {
                cgroup::cgroup_id(&self.opts.cgroup_root.join(rel)).ok() != w.cgroup_id
            });
            let netns_moved = w
                .netns
                .as_ref()
                .is_some_and(|n| std::path::Path::new(n).exists() != w.netns_attached);
            cgroup_moved || netns_moved
        })
    }

    fn rejected(&mut self, trigger: &str, diags: &control::Diagnostics) {
        let errors: Vec<String> = diags.iter().map(|d| d.to_string()).collect();
        self.rejected_with(trigger, errors);
    }

    fn rejected_with(&mut self, trigger: &str, errors: Vec<String>) {
        for e in &errors {
            tracing::error!("{e}");
        }
        tracing::error!(
            trigger, source = %self.source.describe(),
            generation = self.tables.generation(),
            "config rejected; the previous policy stays in force"
        );
        if self.last_good.is_none() {
            self.last_good = self.last_reload.clone().filter(|r| r.ok);
        }
        self.last_reload = Some(self.status(trigger, false, errors, Vec::new()));
        self.shared.count_reload(false);
        self.publish();
    }

    fn status(
        &self,
        trigger: &str,
        ok: bool,
        errors: Vec<String>,
        warnings: Vec<String>,
    ) -> ReloadStatus {
        ReloadStatus {
            ok,
            trigger: trigger.to_string(),
            at: now_rfc3339(),
            generation: self.tables.generation(),
            errors,
            warnings,
        }
    }

    fn publish(&self) {
        self.shared.publish(Snapshot {
            generation: self.tables.generation(),
            source: self.source.describe(),
            compiled: self.compiled.clone(),
            workloads: self.workloads.clone(),
            dns_names: self.resolver.status(),
            last_reload: self.last_reload.clone(),
            last_good_reload: self.last_good.clone(),
        });
    }
}
